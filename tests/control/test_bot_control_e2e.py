"""The control API of a paper bot trading the simulator, end to end over HTTP.

A `TradingBot` runs in the test's event loop in paper mode (its market data from the exchange
simulator over sockets, its orders filled by the paper exchange), with the control API on a free
port and two tokens: ``ops`` (operate) and ``viewer`` (read). Two strategies trade: ``buyer``
holds 0.001 BTC, ``rester`` keeps one LIMIT buy resting at half the market. Over the real API
(httpx against ``bot.control_url``) the test reads every view, then acts — cancel the resting
order, pause ``buyer`` and close its position, halt — and checks each effect in the bot *and*
in the store: a halt from the API is the same row ``tessera risk halt`` writes, so a new bot on
the same database starts halted; the pause survives that restart too; a reset from the API
resumes trading. Every action is in ``control_actions`` with who, role, how and why; the read
token is refused (403) with nothing done.

Both databases; the PostgreSQL run takes its signals through Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))
from inprocess_bot import bot_options, running_simulator, wait_until

from tessera.config.models import ControlConfig, ControlToken, RiskConfig, StrategyRef
from tessera.execution.orders import ExitReason, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.live.bot import TradingBot
from tessera.live.halt import ACCOUNT
from tessera.strategies.base import Bar, Strategy, StrategyContext

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
NOTIFY_TESTS = str(Path(__file__).resolve().parents[1] / "notify")  # its local HTTP receiver

OPS_TOKEN = "ops-token-" + "a" * 32
READ_TOKEN = "read-token-" + "b" * 32
QTY = Decimal("0.001")


class Buyer(Strategy):
    """Holds ``QTY`` BTC: its target every bar."""

    name = "ctl_buyer"

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if not ctx.warming:
            ctx.target_position(bar.symbol, QTY)


class Rester(Strategy):
    """Keeps one LIMIT buy resting at half the market (it never fills): places a new one
    whenever it has none, so that it tries to trade on every bar."""

    name = "ctl_rester"

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        if ctx.warming or ctx.open_orders(bar.symbol):
            return
        price = (Decimal(repr(bar.close)) / 2).quantize(Decimal("0.01"))
        ctx.submit_order(bar.symbol, OrderSide.BUY, QTY, OrderType.LIMIT, price=price)


def _control() -> ControlConfig:
    def sha(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    return ControlConfig(
        enabled=True,
        port=0,
        console=True,
        tokens=[
            ControlToken(name="ops", role="operate", sha256=sha(OPS_TOKEN)),
            ControlToken(name="viewer", role="read", sha256=sha(READ_TOKEN)),
        ],
    )


@pytest.fixture
def strategies(monkeypatch: pytest.MonkeyPatch) -> list[StrategyRef]:
    from tessera.strategies import base

    monkeypatch.setitem(base._REGISTRY, Buyer.name, Buyer)
    monkeypatch.setitem(base._REGISTRY, Rester.name, Rester)
    return [StrategyRef(name=Buyer.name), StrategyRef(name=Rester.name)]


@pytest.fixture(params=["sqlite", "postgres+redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Where the bot keeps its ledger and its signals."""
    if request.param == "sqlite":
        return {"database_url": f"sqlite:///{tmp_path / 'bot.db'}"}
    prefix = request.getfixturevalue("redis_prefix")
    return {
        "database_url": request.getfixturevalue("fresh_postgres_url"),
        "redis_url": "redis://127.0.0.1:6379/0",
        "signal_stream": f"{prefix}:signals",
        "_redis": request.getfixturevalue("redis_client"),
    }


class RunningBot:
    def __init__(self, bot: TradingBot, task: asyncio.Task[int]) -> None:
        self.bot = bot
        self.task = task

    def client(self, token: str) -> httpx.AsyncClient:
        assert self.bot.control_url is not None
        return httpx.AsyncClient(
            base_url=self.bot.control_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
        )

    async def stop(self) -> int:
        self.bot._request_stop()
        return await asyncio.wait_for(self.task, 60)


async def _start(options: dict[str, Any], sim: Any, **kw: Any) -> RunningBot:
    opts = {k: v for k, v in options.items() if not k.startswith("_")}
    # a price band wide enough for the resting buy at half the market
    risk = RiskConfig(price_band_pct=60.0)
    bot = TradingBot(bot_options(sim, mode="paper", control=_control(), risk=risk, **opts, **kw))
    task = asyncio.create_task(bot.run())
    await wait_until(lambda: bot.health.ready or task.done(), 60, "the bot ready")
    if task.done():
        raise AssertionError(f"the bot stopped at start: {task.result()} {bot.problems}")
    return RunningBot(bot, task)


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    # one pass of the bundled recording outlasts the test: no loop back in time
    with running_simulator(speed=5.0) as (simulator, _engine):
        yield simulator


def _held(bot: TradingBot, strategy: str) -> Decimal:
    position = bot.manager.positions.get(("BTCUSDT", strategy))
    return position.qty if position is not None else Decimal(0)


def _orders_of(store: ExecutionStore, strategy: str) -> int:
    return store.orders_page(strategy=strategy, limit=1)[1]


async def _poll(cond: Callable[[], Any], within: float, what: str) -> None:
    await wait_until(cond, within, what)


async def test_an_operator_reads_and_acts_on_a_paper_bot_over_the_control_api(
    sim: Any, backend: dict[str, Any], strategies: list[StrategyRef]
) -> None:
    t0 = time.monotonic()
    db = backend["database_url"]
    run = await _start(backend, sim, strategies=strategies)
    bot = run.bot
    events = bot.hub.subscribe(maxsize=100_000)
    store = ExecutionStore(db)
    try:
        buyer, rester = Buyer.name, Rester.name
        await _poll(lambda: _held(bot, buyer) == QTY, 60, "buyer long")
        await _poll(
            lambda: any(o.strategy == rester for o in bot.manager.live.values()), 30, "a limit"
        )
        async with run.client(OPS_TOKEN) as ops, run.client(READ_TOKEN) as viewer:
            # --- reads, with the read token --------------------------------------------------
            status = (await viewer.get("/api/v1/status")).json()
            assert status["mode"] == "paper" and status["trading"] == "trading"
            assert {s["strategy"]: s["state"] for s in status["strategies"]} == {
                buyer: "running",
                rester: "running",
            }
            assert status["market_data"][0]["symbol"] == "BTCUSDT"
            assert status["market_data"][0]["last_event_ns"] is not None
            balances = (await viewer.get("/api/v1/balances")).json()
            assets = {a["asset"]: a for a in balances["assets"]}
            btc = Decimal(assets["BTC"]["free"]) + Decimal(assets["BTC"]["locked"])
            assert btc >= QTY * Decimal("0.99")  # less a fee in BTC
            assert Decimal(assets["USDT"]["locked"]) > 0  # the resting buy holds quote
            assert Decimal(balances["equity"]) > 0
            positions = (await viewer.get("/api/v1/positions")).json()
            (held,) = [p for p in positions if p["strategy"] == buyer]
            assert Decimal(held["qty"]) == QTY and held["mark_price"] is not None
            opened = (await viewer.get("/api/v1/orders/open")).json()
            (resting,) = [o for o in opened if o["strategy"] == rester]
            assert resting["type"] == "LIMIT" and resting["status"] in ("ACCEPTED", "NEW")
            orders = (await viewer.get("/api/v1/orders", params={"strategy": buyer})).json()
            assert orders["total"] >= 1 and all(o["strategy"] == buyer for o in orders["items"])
            fills = (await viewer.get("/api/v1/fills", params={"limit": 1})).json()
            assert fills["total"] >= 1 and len(fills["items"]) == 1
            pnl = {p["strategy"]: p for p in (await viewer.get("/api/v1/pnl")).json()}
            assert pnl[buyer]["trades"] >= 1 and Decimal(pnl[buyer]["fees"]) >= 0
            assert pnl[rester]["trades"] == 0
            risk = (await viewer.get("/api/v1/risk")).json()
            assert risk["state"] == "trading" and "max_order_notional" in risk["limits"]
            logs = (await viewer.get("/api/v1/logs", params={"limit": 50})).json()
            assert isinstance(logs, list)
            await _poll(lambda: store.equity_history(None, 10), 15, "an equity sample")
            equity = (await viewer.get("/api/v1/equity")).json()
            assert equity and Decimal(equity[-1]["equity"]) > 0

            # the console is served beside the API (its pages need a session: to /login)
            page = await viewer.get("/", follow_redirects=False)
            assert page.status_code in (200, 302, 303, 307), page.status_code

            # --- a read token cannot act -----------------------------------------------------
            refused = await viewer.post("/api/v1/risk/halt", json={"reason": "curious"})
            assert refused.status_code == 403
            assert bot.risk.halt is None and store.load_halt(ACCOUNT) is None
            rows, _ = store.list_actions(100, 0)
            assert not [r for r in rows if r["actor"] == "viewer" and r["outcome"] == "done"]

            # --- cancel the resting order ----------------------------------------------------
            cid = resting["client_order_id"]
            done = await ops.post(f"/api/v1/orders/{cid}/cancel", json={"reason": "too far"})
            assert done.status_code == 200, done.text
            assert done.json()["outcome"] == "done"
            await _poll(lambda: (o := store.get_order(cid)) is not None
                        and o.status.value == "CANCELED", 15, "the order cancelled")  # fmt: skip
            again = await ops.post(f"/api/v1/orders/{cid}/cancel", json={"reason": "again"})
            assert again.status_code == 409
            missing = await ops.post("/api/v1/orders/nope-1/cancel", json={"reason": "x"})
            assert missing.status_code == 404

            # --- pause buyer, then close its position ----------------------------------------
            paused = await ops.post(f"/api/v1/strategies/{buyer}/pause", json={"reason": "risk"})
            assert paused.status_code == 200, paused.text
            before = _orders_of(store, buyer)
            closed = await ops.post(
                "/api/v1/positions/BTCUSDT/close",
                params={"strategy": buyer},
                json={"reason": "flatten by hand"},
            )
            assert closed.status_code == 200, closed.text
            await _poll(lambda: not _held(bot, buyer), 15, "flat")
            page, _ = store.orders_page(strategy=buyer, limit=1)
            assert page[0].reason is ExitReason.MANUAL and page[0].reduce_only
            assert page[0].type is OrderType.MARKET
            # paused: no order from it over a few bars, although its target is still long
            bars = bot._last_bar["BTCUSDT"]
            await _poll(lambda: bot._last_bar["BTCUSDT"] > bars + 3 * 10**9, 20, "three bars")
            assert _orders_of(store, buyer) == before + 1  # the close only
            flat = await ops.post(
                "/api/v1/positions/BTCUSDT/close",
                params={"strategy": buyer},
                json={"reason": "again"},
            )
            assert flat.status_code == 409
            unknown = await ops.post("/api/v1/strategies/nobody/pause", json={"reason": "x"})
            assert unknown.status_code == 404

            # --- halt: no order after it; a second halt is refused ---------------------------
            halted = await ops.post("/api/v1/risk/halt", json={"reason": "going home"})
            assert halted.status_code == 200, halted.text
            stored = store.load_halt(ACCOUNT)
            assert stored is not None and "going home" in stored["reason"]
            assert "ops" in stored["reason"]
            assert (await ops.post("/api/v1/risk/halt", json={"reason": "x"})).status_code == 409
            total = store.orders_page(limit=1)[1]
            bars = bot._last_bar["BTCUSDT"]
            await _poll(lambda: bot._last_bar["BTCUSDT"] > bars + 3 * 10**9, 20, "three bars")
            assert store.orders_page(limit=1)[1] == total
        await run.stop()
        kinds = set()
        while events._queue:
            event = await events.get()
            kinds.add(event.kind)
        assert {"order", "fill", "equity", "halt", "strategy_paused", "control_action"} <= kinds

        # --- a new bot on the same database: halted, buyer still paused ----------------------
        run = await _start(backend, sim, strategies=strategies)
        bot = run.bot
        assert bot.risk.halt is not None and "going home" in bot.risk.halt.reason
        assert bot.guards[buyer].held is not None and bot.guards[buyer].held.by == "ops"
        async with run.client(OPS_TOKEN) as ops:
            status = (await ops.get("/api/v1/status")).json()
            assert status["trading"] == "halted"
            states = {s["strategy"]: s for s in status["strategies"]}
            assert states[buyer]["state"] == "paused" and states[buyer]["paused_by"] == "ops"
            reset = await ops.post("/api/v1/risk/reset", json={"reason": "back"})
            assert reset.status_code == 200, reset.text
            assert store.load_halt(ACCOUNT) is None and bot.risk.halt is None
            assert (await ops.post("/api/v1/risk/reset", json={"reason": "x"})).status_code == 409
            before = _orders_of(store, buyer)
            resumed = await ops.post(f"/api/v1/strategies/{buyer}/resume", json={"reason": "ok"})
            assert resumed.status_code == 200, resumed.text
            await _poll(lambda: _orders_of(store, buyer) > before, 30, "buyer trading again")
            await _poll(lambda: _held(bot, buyer) == QTY, 30, "long")
            actions = (await ops.get("/api/v1/actions", params={"limit": 100})).json()
        await run.stop()

        # --- the audit trail --------------------------------------------------------------------
        rows = actions["items"]
        assert actions["total"] == len(rows)
        done = [(r["action"], r["actor"]) for r in rows if r["outcome"] == "done"]
        assert sorted(done) == sorted(
            [
                ("cancel", "ops"),
                ("pause", "ops"),
                ("close", "ops"),
                ("halt", "ops"),
                ("reset", "ops"),
                ("resume", "ops"),
            ]
        )
        refused_rows = [r for r in rows if r["outcome"] == "refused"]
        assert {r["action"] for r in refused_rows} >= {"cancel", "close", "halt", "reset"}
        for r in rows:
            assert r["via"] == "token" and r["reason"]
            assert r["role"] == ("read" if r["actor"] == "viewer" else "operate")
        halt_row = next(r for r in rows if r["action"] == "halt" and r["outcome"] == "done")
        assert halt_row["reason"] == "going home"
    finally:
        if not run.task.done():
            await run.stop()
        store.close()
    print(f"wall time {time.monotonic() - t0:.1f} s")


async def test_a_paper_bot_with_notify_urls_tells_a_person_of_its_fills_and_halts(
    sim: Any, tmp_path: Path, strategies: list[StrategyRef]
) -> None:
    """The bot starts the notifier when ``notify.urls`` names a target: its first fill and an
    operator's halt reach a local HTTP receiver through Apprise's ``json://``."""
    sys.path.insert(0, NOTIFY_TESTS)
    from notify_receiver import start_receiver, stop_receiver

    from tessera.config.models import NotifyConfig

    rx = start_receiver()
    try:
        notify = NotifyConfig(urls=[f"json://127.0.0.1:{rx.port}/bot"], events=["fill", "halt"])
        backend = {"database_url": f"sqlite:///{tmp_path / 'bot.db'}"}
        run = await _start(backend, sim, strategies=strategies[:1], notify=notify)
        try:
            await _poll(lambda: _held(run.bot, Buyer.name) == QTY, 60, "buyer long")

            def titles() -> list[str]:
                return [str(b.get("title", "")) for b in rx.bodies() if isinstance(b, dict)]

            # one fill ("BUY 0.001 BTCUSDT @ ...") or a burst of them ("2 fills: BTCUSDT buy x2")
            await _poll(
                lambda: any("BTCUSDT" in t and "buy" in t.lower() for t in titles()), 20, "a fill"
            )
            async with run.client(OPS_TOKEN) as ops:
                halted = await ops.post("/api/v1/risk/halt", json={"reason": "lunch"})
                assert halted.status_code == 200, halted.text
            await _poll(lambda: any("HALTED" in t and "lunch" in t for t in titles()), 20, "halt")
            assert not any(OPS_TOKEN in str(b) for b in rx.bodies())
        finally:
            await run.stop()
    finally:
        stop_receiver(rx)


async def test_a_control_port_in_use_is_a_clear_start_error(
    sim: Any, tmp_path: Path, strategies: list[StrategyRef]
) -> None:
    import socket

    from tessera.live.bot import BotStartError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        control = _control().model_copy(update={"port": port})
        db = f"sqlite:///{tmp_path / 'bot.db'}"
        bot = TradingBot(
            bot_options(sim, db, mode="paper", control=control, strategies=strategies[:1])
        )
        with pytest.raises(BotStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            await asyncio.wait_for(bot.run(), 90)
    assert bot.orders_sent == 0 and bot.control_url is None


async def test_a_notify_url_apprise_cannot_read_is_a_clear_start_error_without_the_url(
    sim: Any, tmp_path: Path, strategies: list[StrategyRef]
) -> None:
    from pydantic import SecretStr

    from tessera.config.models import NotifyConfig
    from tessera.live.bot import BotStartError

    secret = "tok-s3cr3t-value"
    notify = NotifyConfig(urls=[SecretStr(f"nosuchscheme://{secret}@example/x")])
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    bot = TradingBot(bot_options(sim, db, mode="paper", notify=notify, strategies=strategies[:1]))
    with pytest.raises(BotStartError) as info:
        await asyncio.wait_for(bot.run(), 90)
    assert secret not in str(info.value) and "URL" in str(info.value).upper()
    assert bot.orders_sent == 0
