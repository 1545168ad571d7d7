"""The live executor trading a perpetual: target signals through the unchanged order gateway
(risk -> filters -> limiter -> order manager) and `UsdmCcxtExchange` into the in-process USDⓈ-M
simulator (real sockets, the bundled real BTCUSDT perpetual recording, stepped by hand).

A strategy goes long, then short (the long closed reduce-only first, then the short opened),
then flat (a reduce-only buy); afterwards the ledger — orders, fills, position — equals the
simulator's account, and start-up reconciliation of that account is clean. The bot around the
executor (feed, user-data stream) is not used here: docs/futures.md says what is left.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tessera.config.models import RiskConfig
from tessera.execution.ccxt_exchange import open_exchange
from tessera.execution.gateway import OrderGateway
from tessera.execution.ids import ClientOrderIdGenerator
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderStatus
from tessera.execution.perp.margin import MarginMode
from tessera.execution.perp_reconcile import PerpSettings
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import PerpReconciler
from tessera.execution.sizing import MarketKind
from tessera.execution.state import OrderEvent
from tessera.live.account import AccountBook
from tessera.live.executor import SignalExecutor
from tessera.live.signals import LocalSignalQueue, Signal, SignalKind
from tessera.risk.engine import AccountView, RiskEngine
from tessera.sim.usdm import UsdmVenue, usdm_market, usdm_trading_config, usdm_venue
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange

USDM_BTC = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/usdm/btcusdt_20240808.gz"
KEY, SECRET = "usdm-key", "usdm-secret"
D = Decimal


class _NoLimit:
    async def admit(self) -> float:
        return 0.0


class PerpDesk:
    """The executor's collaborators, wired as the bot wires them, on a perpetual."""

    def __init__(self, venue: UsdmVenue, database_url: str) -> None:
        assert venue.engine is not None
        self.venue = venue
        self.filters = venue.engine.filters
        self.store = ExecutionStore(database_url)
        self.exchange = open_exchange(venue.sim.rest_url, KEY, SECRET, exchange_id="binance-usdm")
        assert isinstance(self.exchange, UsdmCcxtExchange)
        self.manager = OrderManager(self.store, self.exchange, "perp-run", "", "dev", self)
        self.ids = ClientOrderIdGenerator("perp-run", self.store.next_seq("perp-run"))
        self.manager.take_seq = self.ids.take
        self.gateway = OrderGateway(
            self.manager, RiskEngine(RiskConfig()), self.filters, _NoLimit(), self.view
        )
        self.problems: list[str] = []
        self.executor = SignalExecutor(
            queue=LocalSignalQueue(),
            store=self.store,
            manager=self.manager,
            gateway=self.gateway,
            account=AccountBook(self.filters, "USDT"),
            filters=self.filters,
            ids=self.ids,
            known=lambda strategy, symbol: symbol in self.filters,
            can_record=lambda: True,
            failed=lambda where, exc: self.problems.append(f"{where}: {exc!r}"),
            problem=self.problems.append,
            wire_ns={},
            consumer="perp",
            max_signal_age_s=60.0,
            claim_idle_ms=30_000,
            market=MarketKind.PERPETUAL,
        )

    def view(self) -> AccountView:
        positions = {s: p.qty for (s, _), p in self.manager.positions.items()}
        marks = {"BTCUSDT": self.venue.engine.mark("BTCUSDT")} if self.venue.engine else {}
        return AccountView(positions, marks, len(self.manager.live))

    def on_event(self, order: Order, event: OrderEvent, live_orders: int) -> None:
        if order.status.is_terminal:
            self.manager.live.pop(order.client_order_id, None)

    def position(self) -> Decimal:
        p = self.manager.positions.get(("BTCUSDT", "s"))
        return p.qty if p is not None else D(0)


_seq = iter(range(1, 10**9))


def target(qty: str) -> Signal:
    now = time.time_ns()
    return Signal(
        signal_id=f"perp-run:s:BTCUSDT:0:{next(_seq)}",
        strategy="s",
        symbol="BTCUSDT",
        target_qty=qty,
        ts_event=now,
        ts_recv=now,
        ts_signal=now,
        kind=SignalKind.TARGET,
        order={},
    )


@pytest.fixture
async def desk(database_url: str) -> AsyncIterator[PerpDesk]:
    v = usdm_venue(
        usdm_market([USDM_BTC]),
        speed=None,
        autostart=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )
    async with v.sim:
        v.sim.release(15_000)
        d = PerpDesk(v, database_url)
        try:
            yield d
        finally:
            await d.exchange.close()
            d.store.close()


async def test_a_strategy_goes_long_short_and_flat_and_the_ledger_equals_the_exchange(
    desk: PerpDesk,
) -> None:
    rec = PerpReconciler(
        desk.manager,
        desk.filters,
        ["BTCUSDT"],
        PerpSettings(leverage=20, mode=MarginMode.CROSS),
        account="perp",
    )
    assert (await rec.run()).ok
    steps = [("0.010", D("0.010")), ("-0.010", D("-0.010")), ("0", D(0))]
    for qty, want in steps:
        assert await desk.executor.execute_signal(target(qty))
        assert desk.position() == want, desk.problems
        [pos] = await desk.exchange.positions(["BTCUSDT"])
        assert pos.qty == want
    assert desk.problems == []
    orders = sorted(desk.store.list_orders(), key=lambda o: o.ts_created)
    assert [(o.side, o.qty, o.reduce_only, o.status) for o in orders] == [
        (OrderSide.BUY, D("0.010"), False, OrderStatus.FILLED),
        (OrderSide.SELL, D("0.010"), True, OrderStatus.FILLED),  # the long closed first
        (OrderSide.SELL, D("0.010"), False, OrderStatus.FILLED),  # then the short opened
        (OrderSide.BUY, D("0.010"), True, OrderStatus.FILLED),  # flat: reduce-only
    ]
    # the ledger's fills are the exchange's trades, one for one
    ours = sorted((f.trade_id, f.side, f.qty, f.price, f.fee) for f in desk.store.all_fills())
    theirs = sorted(
        (t.fill.trade_id, t.fill.side, t.fill.qty, t.fill.price, t.fill.fee)
        for t in await desk.exchange.my_trades("BTCUSDT")
    )
    assert ours == theirs and len(ours) == 4
    assert {t.exchange_order_id for t in await desk.exchange.my_trades("BTCUSDT")} == {
        o.exchange_order_id for o in orders
    }
    report = await rec.run()
    assert report.ok and report.fills_imported == 0, report.problems
    # the wallet moved by exactly the fees and realized PnL of those fills
    [usdt] = (await desk.exchange.perp_balances()).values()
    fills = desk.store.all_fills()
    cash = sum((f.qty * f.price * (1 if f.side is OrderSide.SELL else -1) for f in fills), D(0))
    assert usdt.wallet == D(10_000) + cash - sum((f.fee for f in fills), D(0))
