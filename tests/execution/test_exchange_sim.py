"""`CcxtExchange` (ccxt, signed REST) against the simulator's private API, over real sockets.

The market is the real BTCUSDT recording, stepped by hand so that each test knows the book and
which replayed trades come next. The order life cycles, Binance's error codes as ccxt sees them
through a local URL, and a submit whose response is lost (exactly one order results).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from venue_helpers import resting_price

from tessera.execution.exchange import (
    AuthError,
    OrderRejectedError,
    OutcomeUnknownError,
    UnknownOrderError,
)
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType, TimeInForce
from tessera.execution.persistence import ExecutionStore
from tessera.live.ratelimit import RateLimitBannedError
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.venues.binance_spot.exchange import CcxtExchange

BTC_0808 = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
KEY, SECRET = "test-key", "test-secret"


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket.from_recording([BTC_0808])


@pytest.fixture
async def venue(market: SimMarket) -> AsyncIterator[tuple[ExchangeSimulator, TradingEngine]]:
    sim = ExchangeSimulator(market, speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        sim.release(4000)  # a live book: the recorded snapshot plus the first diffs
        yield sim, engine


@pytest.fixture
async def ex(venue: tuple[ExchangeSimulator, TradingEngine]) -> AsyncIterator[CcxtExchange]:
    sim, _ = venue
    client = CcxtExchange(sim.rest_url, KEY, SECRET)
    yield client
    await client.close()


def order(cid: str, side: str, otype: str, qty: str, price: str | None = None,
          tif: TimeInForce = TimeInForce.GTC) -> Order:  # fmt: skip
    return Order(
        client_order_id=cid,
        symbol="BTCUSDT",
        side=OrderSide(side),
        type=OrderType(otype),
        qty=Decimal(qty),
        price=Decimal(price) if price else None,
        time_in_force=tif,
    )


def best(sim: ExchangeSimulator) -> tuple[Decimal, Decimal]:
    sim.state.advance_to(sim.head)
    book = sim.state.books["BTCUSDT"]
    return max(book.bids), min(book.asks)


async def test_market_order_walks_the_book_and_moves_balances(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    sim, _ = venue
    _, ask = best(sim)
    before = await ex.balances()
    got = await ex.submit(order("t-mkt-1", "BUY", "MARKET", "0.01000"))
    assert got.status is OrderStatus.FILLED and got.filled_qty == Decimal("0.01")
    assert got.client_order_id == "t-mkt-1" and got.fills
    assert got.fills[0].price == ask  # best ask first
    assert sum(f.qty for f in got.fills) == Decimal("0.01")
    assert got.filled_notional == sum(f.price * f.qty for f in got.fills)
    after = await ex.balances()
    fee = sum(f.fee for f in got.fills)
    assert after["BTC"].free == before["BTC"].free + Decimal("0.01") - fee
    assert after["USDT"].free == before["USDT"].free - got.filled_notional
    trades = await ex.my_trades("BTCUSDT")
    assert [t.fill.trade_id for t in trades] == [f.trade_id for f in got.fills]
    assert all(t.fill.liquidity.value == "taker" for t in trades)
    assert {t.exchange_order_id for t in trades} == {got.exchange_order_id}


async def test_resting_limit_fills_as_replayed_trades_cross_it(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    sim, engine = venue
    low = resting_price(sim)
    placed = await ex.submit(order("t-lim-1", "BUY", "LIMIT", "0.00100", f"{low:.2f}"))
    assert placed.status is OrderStatus.ACCEPTED and placed.filled_qty == 0
    assert [o.client_order_id for o in await ex.open_orders("BTCUSDT")] == ["t-lim-1"]
    locked = (await ex.balances())["USDT"].locked
    assert locked == low * Decimal("0.001")
    sim.release(len(sim.market.frames))  # the market moves on through our price
    engine.match_resting()
    done = await ex.query("BTCUSDT", "t-lim-1")
    assert done is not None and done.status is OrderStatus.FILLED
    assert done.filled_notional == low * Decimal("0.001")  # at our limit: maker
    fills = await ex.my_trades("BTCUSDT")
    assert fills and all(t.fill.liquidity.value == "maker" and t.fill.price == low for t in fills)
    assert (await ex.balances())["USDT"].locked == 0


async def test_cancel_and_unknown_orders(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    sim, _ = venue
    bid, _ = best(sim)
    far = (bid * Decimal("0.9")).quantize(Decimal("0.01"))
    await ex.submit(order("t-cxl-1", "BUY", "LIMIT", "0.00100", str(far)))
    canceled = await ex.cancel("BTCUSDT", "t-cxl-1")
    assert canceled.status is OrderStatus.CANCELED and canceled.client_order_id == "t-cxl-1"
    with pytest.raises(UnknownOrderError) as cancel_again:
        await ex.cancel("BTCUSDT", "t-cxl-1")
    assert cancel_again.value.code == -2011
    assert await ex.query("BTCUSDT", "never-sent") is None
    assert (await ex.balances())["USDT"].locked == 0


async def test_rejections_carry_binance_codes(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    sim, _ = venue
    bid, ask = best(sim)
    cases = [
        # (ccxt rounds amounts and prices to the market's steps itself, so the filters are
        # reached through their bounds)
        (order("t-rej-1", "BUY", "LIMIT", "9001", str(bid)), -1013, "LOT_SIZE"),
        (order("t-rej-2", "BUY", "LIMIT", "0.00001", str(bid)), -1013, "MIN_NOTIONAL"),
        (order("t-rej-3", "BUY", "LIMIT", "0.00100", "2000000"), -1013, "PRICE_FILTER"),
        (order("t-rej-4", "BUY", "MARKET", "50"), -2010, "insufficient balance"),
        (order("t-rej-5", "BUY", "LIMIT_MAKER", "0.00100", str(ask)), -2010, "immediately match"),
    ]
    for o, code, text in cases:
        with pytest.raises(OrderRejectedError) as err:
            await ex.submit(o)
        assert err.value.code == code and text in str(err.value), o.client_order_id
    assert await ex.open_orders("BTCUSDT") == []


async def test_ioc_and_fok(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    sim, _ = venue
    _, ask = best(sim)
    book = sim.state.books["BTCUSDT"]
    at_best = Decimal(book.asks[ask])
    big = (at_best + Decimal("0.5")).quantize(Decimal("0.00001"))
    ioc = await ex.submit(order("t-ioc", "BUY", "LIMIT", str(big), str(ask), TimeInForce.IOC))
    assert ioc.status is OrderStatus.EXPIRED and ioc.filled_qty == at_best  # the rest expired
    fok = await ex.submit(order("t-fok", "BUY", "LIMIT", str(big), str(ask), TimeInForce.FOK))
    assert fok.status is OrderStatus.EXPIRED and fok.filled_qty == 0 and not fok.fills


async def test_bad_credentials_are_auth_errors(
    venue: tuple[ExchangeSimulator, TradingEngine],
) -> None:
    sim, _ = venue
    for key, secret, code in ((KEY, "wrong", -1022), ("other-key", SECRET, -2015)):
        client = CcxtExchange(sim.rest_url, key, secret)
        try:
            with pytest.raises(AuthError) as err:
                await client.balances()
            assert err.value.code == code
        finally:
            await client.close()


async def test_a_lost_response_ends_with_exactly_one_order(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    sim, engine = venue
    bid, _ = best(sim)
    price = str(bid * Decimal("0.95")).split(".")[0]
    for n, cid in enumerate(("t-lost-1", "t-lost-2", "t-lost-3"), 1):
        engine.config.lose_responses = 1  # the order is placed, its response never arrives
        o = order(cid, "BUY", "LIMIT", "0.00100", price)
        try:
            got = await ex.submit(o)  # may learn of it through a duplicate answer ...
        except OutcomeUnknownError:
            got = await ex.submit_resolved(o)  # ... or resolves it by client order id
        assert sim.stats.faults["lost_order_response"] == n
        assert got.client_order_id == cid and got.status is OrderStatus.ACCEPTED
        assert sum(1 for x in engine.orders.values() if x.client_order_id == cid) == 1
    engine.config.lose_responses = 1
    got = await ex.submit_resolved(order("t-lost-4", "SELL", "MARKET", "0.00100"))
    assert got.status is OrderStatus.FILLED
    assert sum(1 for x in engine.orders.values() if x.client_order_id == "t-lost-4") == 1
    assert len(await ex.open_orders("BTCUSDT")) == 3


HTTP = Path(__file__).resolve().parents[2] / "samples/binance-api/spot-http"


def _keys(path: str) -> set[str]:
    import json

    doc = json.loads((HTTP / path).read_text())
    return set((doc[0] if isinstance(doc, list) else doc).keys())


async def test_responses_have_the_real_payloads_fields(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    """Every field of the recorded real responses is present, with the same JSON types."""
    sim, _ = venue
    bid, _ = best(sim)
    full = await ex.client.private_post_order(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
         "newOrderRespType": "FULL"}
    )  # fmt: skip
    assert _keys("new_order_full_response.json") <= set(full)
    assert isinstance(full["orderId"], int) and isinstance(full["transactTime"], int)
    assert isinstance(full["fills"][0]["tradeId"], int) and isinstance(full["price"], str)
    await ex.submit(order("t-shape", "BUY", "LIMIT", "0.00100", str(bid - 100)))
    queried = await ex.client.private_get_order(
        {"symbol": "BTCUSDT", "origClientOrderId": "t-shape"}
    )
    assert _keys("order_response.json") <= set(queried)
    canceled = await ex.client.private_delete_order(
        {"symbol": "BTCUSDT", "origClientOrderId": "t-shape"}
    )
    assert _keys("cancel_order_response.json") <= set(canceled)
    account = await ex.client.private_get_account()
    assert _keys("account_response.json") - {"balances"} <= set(account)
    trades = await ex.client.private_get_mytrades({"symbol": "BTCUSDT"})
    assert _keys("account_trades_response.json") <= set(trades[0])


async def test_partial_fill_then_cancel(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    """A resting order partly filled by a print, then canceled: the fill stays, the rest ends."""
    sim, engine = venue
    price = resting_price(sim)
    await ex.submit(order("t-part", "BUY", "LIMIT", "1.00000", str(price)))
    (ours,) = [o for o in engine.orders.values() if o.client_order_id == "t-part"]
    # step the replay until the first prints reach our price: real prints are smaller than 1 BTC
    n = sim.head
    while ours.executed_qty == 0 and n < len(sim.market.frames):
        n = min(n + 20, len(sim.market.frames))
        sim.release(n)
        engine.match_resting()
    filled = ours.executed_qty
    assert 0 < filled < 1
    mid = await ex.query("BTCUSDT", "t-part")
    assert mid is not None and mid.status is OrderStatus.PARTIALLY_FILLED
    assert mid.filled_qty == filled
    done = await ex.cancel("BTCUSDT", "t-part")
    assert done.status is OrderStatus.CANCELED and done.filled_qty == filled
    assert (await ex.balances())["USDT"].locked == 0


async def test_order_rate_limit_answers_429(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    from tessera.execution.exchange import RateLimitedError

    sim, engine = venue
    engine.config.max_orders_10s = 3
    bid, _ = best(sim)
    for i in range(3):
        await ex.submit(order(f"t-rate-{i}", "BUY", "LIMIT", "0.00100", str(bid - 100)))
    with pytest.raises(RateLimitedError) as err:
        await ex.submit(order("t-rate-3", "BUY", "LIMIT", "0.00100", str(bid - 100)))
    assert err.value.code == -1015


# --- the exchange's clock (issue 14, defect 10) ---------------------------------------------


def resyncs(reason: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("tessera_exchange_clock_resyncs_total", {"reason": reason})
    return value or 0.0


@pytest.mark.parametrize("skew_ms", [10_000, -10_000])
async def test_every_signed_call_works_when_the_exchange_clock_is_skewed_from_the_start(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange, skew_ms: int
) -> None:
    """A host clock 10 s off the exchange's (either way): the first balance load, a submit, a
    query, the open orders, a cancel and the trades all go through, signed with the exchange's
    time measured before the first signed request."""
    sim, engine = venue
    sim.faults.clock_skew_ms = skew_ms
    balances = await ex.balances()
    assert balances["USDT"].free == Decimal("100000")
    clock = ex.clock
    assert clock.uncertainty_ms is not None
    assert abs(clock.offset_ms - skew_ms) <= clock.uncertainty_ms
    low = resting_price(sim)
    placed = await ex.submit(order("t-skew-1", "BUY", "LIMIT", "0.00100", f"{low:.2f}"))
    assert placed.status is OrderStatus.ACCEPTED
    found = await ex.query("BTCUSDT", "t-skew-1")
    assert found is not None and found.exchange_order_id == placed.exchange_order_id
    assert [o.client_order_id for o in await ex.open_orders("BTCUSDT")] == ["t-skew-1"]
    canceled = await ex.cancel("BTCUSDT", "t-skew-1")
    assert canceled.status is OrderStatus.CANCELED
    filled = await ex.submit(order("t-skew-2", "SELL", "MARKET", "0.00100"))
    assert filled.status is OrderStatus.FILLED
    assert [t.exchange_order_id for t in await ex.my_trades("BTCUSDT")] == [
        filled.exchange_order_id
    ] * len(filled.fills)
    # the exchange stamped our order by its clock: we read the same time
    (sim_order,) = [o for o in engine.orders.values() if o.client_order_id == "t-skew-1"]
    assert abs(sim_order.time_ms - ex.clock.now_ms()) < 5_000


async def test_a_skew_that_appears_mid_run_is_recovered_by_one_resync_and_one_retry(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    sim, _ = venue
    await ex.balances()  # synchronised at start, no skew
    assert abs(ex.clock.offset_ms) <= (ex.clock.uncertainty_ms or 0)
    bid, _ = best(sim)
    far = (bid * Decimal("0.9")).quantize(Decimal("0.01"))
    await ex.submit(order("t-mid-1", "BUY", "LIMIT", "0.00100", str(far)))
    steps: list[tuple[int, str]] = [(10_000, "balances"), (-10_000, "query"), (7_000, "cancel")]
    for skew_ms, call in steps:
        sim.faults.clock_skew_ms = skew_ms  # the exchange's clock jumps (or ours did)
        path = {"balances": "/api/v3/account", "query": "/api/v3/order", "cancel": "/api/v3/order"}
        sent = sim.stats.rest_requests[path[call]]
        before = resyncs("recv_window")
        if call == "balances":
            assert (await ex.balances())["USDT"].locked == far * Decimal("0.001")
        elif call == "query":
            got = await ex.query("BTCUSDT", "t-mid-1")
            assert got is not None and got.status is OrderStatus.ACCEPTED
        else:
            assert (await ex.cancel("BTCUSDT", "t-mid-1")).status is OrderStatus.CANCELED
        assert sim.stats.rest_requests[path[call]] == sent + 2, call  # refused, then retried
        assert resyncs("recv_window") == before + 1, call
        assert abs(ex.clock.offset_ms - skew_ms) <= (ex.clock.uncertainty_ms or 0), call


async def test_a_submit_refused_for_its_timestamp_is_a_rejection_and_is_not_resent(
    venue: tuple[ExchangeSimulator, TradingEngine], ex: CcxtExchange
) -> None:
    """-1021 on a new order: the exchange never took it. A definitive rejection (the order
    manager records REJECTED), never an unknown outcome, and not resent behind the manager's
    back; the clock is resynchronised so the next order goes through."""
    sim, engine = venue
    await ex.balances()
    sim.faults.clock_skew_ms = -10_000
    sent = sim.stats.rest_requests["/api/v3/order"]
    before = resyncs("recv_window")
    with pytest.raises(OrderRejectedError) as refused:
        await ex.submit_resolved(order("t-ts-1", "BUY", "MARKET", "0.00100"))
    assert refused.value.code == -1021 and "recvWindow" in str(refused.value)
    assert not isinstance(refused.value, OutcomeUnknownError)
    assert sim.stats.rest_requests["/api/v3/order"] == sent + 1  # sent once, not retried
    assert resyncs("recv_window") == before + 1
    assert engine.orders == {}
    assert await ex.query("BTCUSDT", "t-ts-1") is None  # the exchange never had it
    again = await ex.submit(order("t-ts-1", "BUY", "MARKET", "0.00100"))
    assert again.status is OrderStatus.FILLED


# --- a halt while the rate limiter holds a new order back ------------------------------------


class _HaltingLimiter:
    """Holds the next new order back; trading halts meanwhile (``halted`` set)."""

    def __init__(self) -> None:
        self.halted = False

    async def acquire(self, weight: int = 1, orders: int = 0) -> float:
        if orders:
            await asyncio.sleep(0.01)
            self.halted = True
        return 0.0

    async def observe_headers(self, headers: Mapping[str, str]) -> None:
        return None

    async def on_429(self, retry_after_s: float) -> None:
        return None

    async def on_418(self, retry_after_s: float) -> None:
        return None


@asynccontextmanager
async def _manager_behind(
    sim: ExchangeSimulator, limiter: Any, tmp_path: Path, run: str
) -> AsyncIterator[tuple[OrderManager, ExecutionStore]]:
    """An order manager on a SQLite ledger, sending through ccxt behind ``limiter``."""
    client = CcxtExchange(sim.rest_url, KEY, SECRET, limiter=limiter)
    store = ExecutionStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        yield OrderManager(store, client, run, "", "live"), store
    finally:
        await client.close()
        store.close()


def _event_reasons(store: ExecutionStore, cid: str) -> list[str | None]:
    """The reasons of an order's recorded events, oldest first."""
    with store.engine.connect() as c:
        rows = c.exec_driver_sql(
            "SELECT reason FROM order_events WHERE client_order_id = ? ORDER BY id", (cid,)
        )
        return [r[0] for r in rows]


def _buy(cid: str, run: str, n: int) -> Order:
    """A market buy of 0.001 BTC with the signal id a bot of ``run`` would give it."""
    o = order(cid, "BUY", "MARKET", "0.00100")
    o.signal_id = f"{run}:s:BTCUSDT:0:{n}"
    return o


async def test_an_order_held_back_by_the_rate_limiter_is_not_sent_once_trading_halted(
    venue: tuple[ExchangeSimulator, TradingEngine], tmp_path: Path
) -> None:
    """The intent is durable, the adapter's rate limiter holds the request back, and trading
    halts meanwhile: asked once the wait is over (`Sending.guard`, set by `OrderManager.submit`
    from the gateway's check), the order is refused before the request — REJECTED, "never
    sent" — and the exchange has no such order."""
    sim, engine = venue
    limiter = _HaltingLimiter()
    async with _manager_behind(sim, limiter, tmp_path, "guard-run") as (manager, store):
        o = _buy("t-guard-1", "guard-run", 1)
        placed = await manager.submit(
            o, may_send=lambda _: "risk:halted" if limiter.halted else None
        )
        assert placed.status is OrderStatus.REJECTED
        assert placed.reject_reason == "never sent: risk:halted"
        assert "t-guard-1" not in {x.client_order_id for x in engine.orders.values()}
        stored = store.get_order("t-guard-1")
        assert stored is not None and stored.status is OrderStatus.REJECTED
        # without a halt, the same path sends
        limiter.halted = False
        sent = await manager.submit(_buy("t-guard-2", "guard-run", 2), may_send=lambda _: None)
        assert sent.status is OrderStatus.FILLED


class _BanningLimiter(_HaltingLimiter):
    """The key is banned (418) when a new order asks for its weight."""

    async def acquire(self, weight: int = 1, orders: int = 0) -> float:
        if orders:
            raise RateLimitBannedError(int(time.time() * 1000) + 60_000)
        return 0.0


async def test_an_order_the_rate_limiter_refuses_for_a_ban_is_closed_as_never_sent(
    venue: tuple[ExchangeSimulator, TradingEngine], tmp_path: Path
) -> None:
    """The ban raised in the adapter's limiter, before the request (`Sending.held`): the order
    is closed CANCELED "never sent" at once rather than left in flight for a recovery, and the
    ban still reaches the caller (the executor keeps the signal for later)."""
    sim, engine = venue
    async with _manager_behind(sim, _BanningLimiter(), tmp_path, "ban-run") as (manager, store):
        o = _buy("t-ban-1", "ban-run", 1)
        with pytest.raises(RateLimitBannedError):
            await manager.submit(o, may_send=lambda _: None)
        assert o.status is OrderStatus.CANCELED and "t-ban-1" not in manager.live
        stored = store.get_order("t-ban-1")
        assert stored is not None and stored.status is OrderStatus.CANCELED
        assert "t-ban-1" not in {x.client_order_id for x in engine.orders.values()}
        reasons = _event_reasons(store, "t-ban-1")
        assert any(
            r and r.startswith("never sent: RateLimitBannedError: exchange ban (418)")
            for r in reasons
        ), reasons


class _BlockingLimiter(_HaltingLimiter):
    """Holds every new order back until cancelled (a window that never frees in time)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()

    async def acquire(self, weight: int = 1, orders: int = 0) -> float:
        if orders:
            self.holding.set()
            await asyncio.Event().wait()
        return 0.0


async def test_a_submit_stopped_while_the_rate_limiter_holds_it_back_is_closed_as_never_sent(
    venue: tuple[ExchangeSimulator, TradingEngine], tmp_path: Path
) -> None:
    """A bot stopping while its adapter's rate limiter holds a new order back cancels the
    submit: the request never left (`Sending.held`), so the order is closed CANCELED "never
    sent" there and then, not left SUBMITTED for a shutdown recovery whose query would wait
    in the same limiter (a CI run: 35 s of request weight against a 15 s final recovery)."""
    sim, engine = venue
    limiter = _BlockingLimiter()
    async with _manager_behind(sim, limiter, tmp_path, "held-run") as (manager, store):
        o = _buy("t-held-1", "held-run", 1)
        task = asyncio.create_task(manager.submit(o))
        await asyncio.wait_for(limiter.holding.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stored = store.get_order("t-held-1")
        assert stored is not None and stored.status is OrderStatus.CANCELED
        assert o.status is OrderStatus.CANCELED and "t-held-1" not in manager.live
        assert "t-held-1" not in {x.client_order_id for x in engine.orders.values()}
        reasons = _event_reasons(store, "t-held-1")
        assert "never sent: stopped while the rate limiter held it back" in reasons


class _SilentExchange:
    """An adapter that says nothing of its request (no `Sending`): its submit just waits."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()

    async def submit(self, order: Order) -> None:
        self.waiting.set()
        await asyncio.Event().wait()


async def test_a_submit_cancelled_in_an_adapter_that_does_not_say_stays_in_flight(
    tmp_path: Path,
) -> None:
    """Without the adapter's word the request may have left: the cancelled order stays
    SUBMITTED, for recovery by its client order id (the conservative side)."""
    store = ExecutionStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        exchange = _SilentExchange()
        manager = OrderManager(store, exchange, "silent-run", "", "live")  # type: ignore[arg-type]
        o = order("t-silent-1", "BUY", "MARKET", "0.00100")
        task = asyncio.create_task(manager.submit(o))
        await asyncio.wait_for(exchange.waiting.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stored = store.get_order("t-silent-1")
        assert stored is not None and stored.status is OrderStatus.SUBMITTED
    finally:
        store.close()
