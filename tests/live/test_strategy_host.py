"""`StrategyHost` across a restart, on a real ledger (SQLite): a trailing stop restored from the
stored state takes in the highs of the bars the new bot's warm-up brings (the bars that closed
while it was down), sends nothing while warming, and moves the stop once the warm-up is over —
with a bot host faked only where it would need an exchange."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tessera.config.models import StrategyRef
from tessera.execution.ids import ClientOrderIdGenerator
from tessera.execution.orders import Order
from tessera.execution.persistence import ExecutionStore
from tessera.live.strategy_host import StrategyHost
from tessera.strategies import base
from tessera.strategies.base import Bar, Strategy, StrategyContext

D = Decimal
SYM = "BTCUSDT"
MIN = 60_000_000_000


class TrailOnce(Strategy):
    """Puts a 5 % trailing stop under a position on its first traded bar."""

    name: ClassVar[str] = "trail_once"

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not ctx.warming and not ctx.state.get("placed"):
            ctx.trail_stop(SYM, D("1"), trail_pct=D("5"))
            ctx.state["placed"] = True


class Host:
    """What `LiveContext` asks of the bot; signals are recorded instead of queued."""

    def __init__(self) -> None:
        self.now_ns = 0
        self.warming = False
        self.last_prices: dict[str, Decimal] = {}
        self.latest_features: dict[str, dict[str, float]] = {}
        self.predictions: dict[str, float] = {}
        self.ids = ClientOrderIdGenerator("host-test")
        self.published: list[tuple[str, dict[str, str] | None]] = []
        self.live: list[Order] = []  # the order manager's open orders (after reconciliation)
        self._seq = itertools.count(1)

    def tradeable_position(self, symbol: str, strategy: str) -> Decimal:
        return D("1")

    def equity(self) -> Decimal:
        return D("100000")

    def cash(self) -> Decimal:
        return D("100000")

    def live_orders(self, strategy: str) -> list[Order]:
        return self.live

    def signal_id(self, strategy: str, symbol: str) -> str | None:
        return None if self.warming else f"sig-{next(self._seq)}"

    def publish(
        self,
        signal_id: str,
        strategy: str,
        symbol: str,
        kind: str,
        target: Decimal | None = None,
        order: dict[str, str] | None = None,
    ) -> None:
        self.published.append((str(kind), order))

    def tick_size(self, symbol: str) -> Decimal | None:
        return D("0.01")

    def order_types(self, symbol: str) -> frozenset[str]:
        return frozenset({"STOP_LOSS", "LIMIT", "MARKET"})


def _bar(host: Host, minute: int, high: float) -> Bar:
    bar = Bar(SYM, minute * MIN, (minute + 1) * MIN - 1, high - 1, high, high - 2, high - 1, 1.0)
    host.last_prices[SYM] = D(repr(bar.close))
    host.now_ns = bar.close_time
    return bar


def _strategy_host(host: Host, store: ExecutionStore) -> StrategyHost:
    failures: list[Any] = []
    strategies = StrategyHost(
        [StrategyRef(name="trail_once")],
        [SYM],
        host,
        store,
        max_errors=3,
        on_paused=lambda s, why: failures.append(why),
        failed=lambda what, exc: failures.append((what, exc)),
        can_write=lambda: True,
    )
    strategies.restore()
    return strategies


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._REGISTRY, TrailOnce.name, TrailOnce)


def test_a_restarted_bots_trailing_stop_catches_up_on_its_warm_up_bars_then_moves(
    tmp_path: Path,
) -> None:
    store = ExecutionStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        first_host = Host()
        first = _strategy_host(first_host, store)
        first.start()
        first.on_bar(_bar(first_host, 1, 101.0), warming=False)  # placed from the close, 100
        first.on_bar(_bar(first_host, 2, 110.0), warming=False)  # moved: 104.5
        stops = [o["stop_price"] for k, o in first_host.published if k == "order" and o]
        assert [D(s) for s in stops] == [D("95"), D("104.5")]
        first.stop()

        host = Host()
        host.warming = True
        second = _strategy_host(host, store)
        host.live = [t.order for t in second.contexts["trail_once"]._trails.values()]
        second.start()
        for minute, high in ((1, 300.0), (2, 300.0), (3, 120.0), (4, 112.0)):
            second.on_bar(_bar(host, minute, high), warming=True)
        assert host.published == []  # nothing goes out while warming
        host.warming = False
        second.warmed_up()
        kinds = [k for k, _ in host.published]
        assert kinds == ["cancel", "order"]
        order = host.published[1][1]
        assert order is not None and D(order["stop_price"]) == D("114")  # 120 * 0.95
        # written at once: a second restart starts from the moved stop and minute 4
        third = _strategy_host(Host(), store)
        ((cid, trail),) = third.contexts["trail_once"]._trails.items()
        assert trail.stop == D("114") and trail.seen == 4 * MIN and cid == order["client_order_id"]
    finally:
        store.close()
