"""`PerpPaperExchange` on real recorded USDⓈ-M BTCUSDT quotes and prints, through `OrderManager`.

The recording (samples/binance-raw-ws/usdm/btcusdt_20240808.gz, two minutes before the
2024-08-09 00:00 funding time) is fed as the venue's market data, its event times as the
exchange's clock; the fills are decided by the same matcher as spot paper and booked into the
backtest's `PerpAccount`. Levels come from the recording itself, never invented. The ledger
(`ExecutionStore`'s fills, written by `OrderManager` from the paper reports) is compared with
the paper account.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import secrets
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.data.barfile import read_bar_file
from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    SAMPLE_FUTURES,
    SAMPLE_MARK_1H,
    read_funding_rates,
    read_mark_prices,
)
from tessera.execution.exchange import OrderRejectedError
from tessera.execution.fees import FeeSchedule
from tessera.execution.manager import OrderManager
from tessera.execution.matching import SlippageKind, SlippageModel
from tessera.execution.orders import ExitReason, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.paper import FUNDING_GRACE_NS, PaperPerpError, PerpPaperExchange
from tessera.execution.perp.funding import nominal_funding_time
from tessera.execution.perp.margin import MarginMode
from tessera.execution.persistence import ExecutionStore
from tessera.live.perp_account import perp_filters
from tessera.sim.usdm.market import usdm_brackets, usdm_exchange_info

USDM = Path(__file__).resolve().parents[2] / "samples/binance-raw-ws/usdm/btcusdt_20240808.gz"
SYM = "BTCUSDT"
FILTERS = perp_filters(usdm_exchange_info([SYM]))
BRACKETS = {SYM: usdm_brackets()[SYM]}
FEES = FeeSchedule(Decimal("2"), Decimal("5"))  # USDⓈ-M's base tier: 0.02 % maker, 0.05 % taker
D = Decimal
HEAD = 500
MS = 1_000_000
FUNDING_2024_08_09 = 1723161600000 * MS  # 2024-08-09 00:00 UTC, after the recording
Event = tuple[str, int, Decimal, Decimal]


def events() -> list[Event]:
    """("quote", ns, bid, ask) and ("trade", ns, price, qty) in the order Binance sent them."""
    out: list[Event] = []
    with gzip.open(USDM, "rt") as fh:
        for line in fh:
            doc = orjson.loads(line.split(" ", 1)[1])
            stream, d = doc.get("stream", ""), doc.get("data", {})
            if stream.endswith("@bookTicker"):
                out.append(("quote", int(d["E"]) * MS, D(d["b"]), D(d["a"])))
            elif stream.endswith("@trade") or stream.endswith("@aggTrade"):
                out.append(("trade", int(d["E"]) * MS, D(d["p"]), D(d["q"])))
    return out


@functools.cache
def _recording() -> list[Event]:
    return events()


@pytest.fixture(scope="module")
def market() -> list[Event]:
    evs = _recording()
    assert sum(e[0] == "trade" for e in evs) > 100 and sum(e[0] == "quote" for e in evs) > 100
    return evs


class Venue:
    """The paper exchange, its clock (the recording's event time) and the order manager."""

    def __init__(self, url: str, clock_ns: int, **kw: object) -> None:
        self.now = clock_ns
        self.store = ExecutionStore(url)
        self.paper = PerpPaperExchange(
            FILTERS, BRACKETS, self.store, initial_balances={"USDT": "1000"}, fees=FEES,
            slippage=SlippageModel(SlippageKind.NONE), clock=lambda: self.now, leverage=10, **kw,  # type: ignore[arg-type]
        )  # fmt: skip
        self.om = OrderManager(self.store, self.paper, "run-paper-usdm")
        self.paper.on_report = self.om.on_execution_report

    def feed(self, evs: Sequence[Event]) -> None:
        for kind, ts, a, b in evs:
            self.now = ts
            if kind == "quote":
                self.paper.on_quote(SYM, a, b)
            else:
                self.paper.on_trade(SYM, a, b)

    def ledger_position(self) -> Decimal:
        fills = [f.fill for f in self.store.list_fills(limit=1000)]
        return sum((f.qty * f.side.sign for f in fills), D(0))

    def ledger_fees(self) -> Decimal:
        return sum((f.fill.fee for f in self.store.list_fills(limit=1000)), D(0))


def order(cid: str, side: OrderSide, qty: str, typ: OrderType = OrderType.MARKET,
          symbol: str = SYM, **kw: object) -> Order:  # fmt: skip
    return Order(cid, symbol, side, typ, D(qty), reason=ExitReason.for_type(typ), **kw)  # type: ignore[arg-type]


async def test_a_long_opens_at_the_ask_and_a_reduce_only_sell_closes_it_at_the_bid(
    market: list[Event], database_url: str
) -> None:
    v = Venue(database_url, market[0][1])
    v.feed(market[:HEAD])
    _, ask = v.paper.quotes[SYM]
    buy = order("u-1", OrderSide.BUY, "0.01")
    await v.om.submit(buy)
    assert buy.status is OrderStatus.FILLED and buy.avg_price == ask
    [pos] = await v.paper.positions([SYM])
    assert (pos.qty, pos.entry_price, pos.leverage) == (D("0.01"), ask, 10)
    assert v.ledger_position() == pos.qty

    # a reduce-only order larger than the long would open a short: refused as Binance -2022
    with pytest.raises(OrderRejectedError) as err:
        await v.paper.submit(order("u-2", OrderSide.SELL, "0.02", reduce_only=True))
    assert err.value.code == -2022

    v.feed(market[HEAD : 2 * HEAD])
    bid2, _ = v.paper.quotes[SYM]
    sell = order("u-3", OrderSide.SELL, "0.01", reduce_only=True)
    await v.om.submit(sell)
    assert sell.status is OrderStatus.FILLED and sell.avg_price == bid2
    assert v.paper.account.positions == {} and v.ledger_position() == 0
    fees = (ask + bid2) * D("0.01") * D("0.0005")
    assert v.ledger_fees() == fees == v.paper.account.fees_paid
    wallet = D(1000) + D("0.01") * (bid2 - ask) - fees
    assert v.paper.account.wallet == wallet
    assert (await v.paper.perp_balances())["USDT"].wallet == wallet
    v.store.close()


async def test_a_short_rests_as_a_limit_fills_as_maker_on_a_print_and_a_reduce_only_buy_closes_it(
    market: list[Event], database_url: str
) -> None:
    v = Venue(database_url, market[0][1])
    v.feed(market[:HEAD])
    _, ask = v.paper.quotes[SYM]
    later = [e for e in market[HEAD:] if e[0] == "trade"]
    high = max(e[2] for e in later)
    assert high > ask  # the recording trades above the ask of the order's arrival
    short = order("s-1", OrderSide.SELL, "0.01", OrderType.LIMIT, price=high)
    await v.om.submit(short)
    assert short.status is OrderStatus.ACCEPTED
    v.feed(market[HEAD:])
    assert short.status is OrderStatus.FILLED and short.avg_price == high
    [pos] = await v.paper.positions([SYM])
    assert pos.qty == D("-0.01") and pos.entry_price == high
    assert v.ledger_position() == pos.qty
    mark = market[-1][2] if market[-1][0] == "trade" else v.paper.last[SYM]
    assert pos.unrealized_pnl == D("-0.01") * (mark - high)
    maker = high * D("0.01") * D("0.0002")
    assert v.ledger_fees() == maker

    _, ask = v.paper.quotes[SYM]
    cover = order("s-2", OrderSide.BUY, "0.01", reduce_only=True)
    await v.om.submit(cover)
    assert cover.status is OrderStatus.FILLED and cover.avg_price == ask
    assert v.paper.account.positions == {} and v.ledger_position() == 0
    fees = maker + ask * D("0.01") * D("0.0005")
    assert v.paper.account.wallet == D(1000) + D("0.01") * (high - ask) - fees
    assert v.ledger_fees() == fees
    v.store.close()


async def test_orders_beyond_the_margin_or_reducing_nothing_are_refused_like_binance(
    market: list[Event], database_url: str
) -> None:
    v = Venue(database_url, market[0][1])
    v.feed(market[:HEAD])
    _, ask = v.paper.quotes[SYM]
    # 1 BTC at 10x needs ask / 10 of margin, far above the 1000 USDT wallet
    assert ask / 10 > 1000
    with pytest.raises(OrderRejectedError) as err:
        await v.paper.submit(order("m-1", OrderSide.BUY, "1"))
    assert err.value.code == -2019
    with pytest.raises(OrderRejectedError) as err:
        await v.paper.submit(order("m-2", OrderSide.BUY, "0.01", reduce_only=True))
    assert err.value.code == -2022
    assert v.paper.trades == [] and v.paper.account.wallet == 1000
    v.store.close()


async def test_a_funding_time_passed_with_a_position_and_no_rate_stops_the_paper_account(
    market: list[Event], database_url: str
) -> None:
    v = Venue(database_url, market[0][1])
    v.feed(market[:HEAD])
    await v.om.submit(order("f-1", OrderSide.BUY, "0.01"))
    v.now = FUNDING_2024_08_09 + FUNDING_GRACE_NS  # a minute after 00:00 UTC, not settled
    with pytest.raises(PaperPerpError, match="funding"):
        await v.paper.submit(order("f-2", OrderSide.SELL, "0.01", reduce_only=True))
    with pytest.raises(PaperPerpError, match="funding"):
        v.paper.on_trade(SYM, market[HEAD][2], D("0.001"))
    v.store.close()


async def test_a_restart_keeps_a_flat_wallet_and_takes_the_configured_margin_mode(
    market: list[Event], database_url: str
) -> None:
    v = Venue(database_url, market[0][1])
    v.feed(market[:HEAD])
    await v.om.submit(order("r-1", OrderSide.BUY, "0.01"))
    await v.om.submit(order("r-2", OrderSide.SELL, "0.01", reduce_only=True))
    wallet = v.paper.account.wallet
    assert wallet < 1000  # two taker fees, a zero spread at most
    again = Venue(database_url, market[HEAD][1], margin_mode=MarginMode.CROSS)
    assert again.paper.account.wallet == wallet and again.paper.account.mode is MarginMode.CROSS
    assert again.paper.account.fees_paid == v.paper.account.fees_paid
    again.feed(market[HEAD : HEAD + 50])
    opened = order("r-3", OrderSide.BUY, "0.01")
    await again.om.submit(opened)
    assert opened.status is OrderStatus.FILLED
    v.store.close()
    again.store.close()


def _same_account(a: PerpPaperExchange, b: PerpPaperExchange) -> None:
    """Everything the account booked, its positions as ``positionRisk`` says them (at the
    same marks), its wallets, its funding clock and its open orders, equal."""
    assert a.account.to_state() == b.account.to_state()
    b.account.marks = dict(a.account.marks)  # market data, not the account: the next print's
    assert a.position_list([SYM]) == b.position_list([SYM]) and a.wallets() == b.wallets()
    assert a.next_funding_ns == b.next_funding_ns
    opened = {c: r.order for c, r in a.book.items() if r.status.is_open}
    assert {c: r.order for c, r in b.book.items() if r.status.is_open} == opened


async def test_a_restart_with_a_long_and_a_resting_reduce_only_limit_is_the_same_account(
    market: list[Event], database_url: str
) -> None:
    """Run, stop with a 10x long open and a reduce-only sell limit resting above the market,
    start again on the same database: the same account, position and order (reduce-only
    still); the recording's later prints then fill the limit as maker and close the long."""
    v = Venue(database_url, market[0][1], margin_mode=MarginMode.ISOLATED)
    v.feed(market[:HEAD])
    _, ask = v.paper.quotes[SYM]
    await v.om.submit(order("k-1", OrderSide.BUY, "0.01"))
    high = max(e[2] for e in market[HEAD:] if e[0] == "trade")
    assert high > ask  # the recording trades above the entry later
    await v.om.submit(order("k-2", OrderSide.SELL, "0.01", OrderType.LIMIT, price=high,
                            reduce_only=True))  # fmt: skip
    await v.paper.close()
    v.store.close()

    again = Venue(database_url, v.now, margin_mode=MarginMode.ISOLATED)
    _same_account(v.paper, again.paper)
    assert again.paper.book["k-2"].order.reduce_only
    [pos] = await again.paper.positions([SYM])
    assert (pos.qty, pos.entry_price, pos.leverage) == (D("0.01"), ask, 10)
    assert pos.isolated_wallet == D("0.01") * ask / 10

    again.feed(market[HEAD:])
    closed = again.store.get_order("k-2")
    assert closed is not None and closed.status is OrderStatus.FILLED
    assert again.paper.account.positions == {} and again.ledger_position() == 0
    fees = ask * D("0.01") * D("0.0005") + high * D("0.01") * D("0.0002")
    assert again.paper.account.wallet == D(1000) + D("0.01") * (high - ask) - fees
    again.store.close()


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 400), st.sampled_from(["BUY", "SELL"]),
                  st.sampled_from(["0.001", "0.005", "0.01", "0.02"]), st.booleans()),
        min_size=1, max_size=6,
    ),
    isolated=st.booleans(),
)  # fmt: skip
async def test_saving_and_loading_the_paper_account_is_the_identity_over_fill_sequences(
    tmp_path: Path,
    steps: list[tuple[int, str, str, bool]],
    isolated: bool,
) -> None:
    """Market orders on the recording's quotes (some refused: margin, reduce-only), a reduce-
    only limit resting at the end; a paper exchange started on the same database after each
    step is the same account."""
    market = _recording()
    mode = MarginMode.ISOLATED if isolated else MarginMode.CROSS
    url = f"sqlite:///{tmp_path / f'prop-{secrets.token_hex(4)}.db'}"
    v = Venue(url, market[0][1], margin_mode=mode)
    at = 50
    v.feed(market[:at])  # a quote to trade on
    for n, (gap, side, qty, reduce_only) in enumerate(steps):
        v.feed(market[at : at + gap])
        at += gap
        with contextlib.suppress(OrderRejectedError):  # margin, reduce-only: refused
            await v.paper.submit(order(f"p-{n}", OrderSide(side), qty, reduce_only=reduce_only))
        held = v.paper.account.net_positions().get(SYM, D(0))
        if held:
            exit_side = OrderSide.SELL if held > 0 else OrderSide.BUY
            bid, ask = v.paper.quotes[SYM]
            far = ask * D("1.01") if held > 0 else bid * D("0.99")
            await v.paper.submit(order(f"q-{n}", exit_side, str(abs(held)), OrderType.LIMIT,
                                       price=far.quantize(D("0.1")), reduce_only=True))  # fmt: skip
        again = PerpPaperExchange(
            FILTERS, BRACKETS, ExecutionStore(url), initial_balances={"USDT": "1000"}, fees=FEES,
            slippage=SlippageModel(SlippageKind.NONE), clock=lambda: v.now, leverage=10,
            margin_mode=mode,
        )  # fmt: skip
        _same_account(v.paper, again)
        assert again.store is not None
        again.store.close()
        v.paper.session = again.session  # the newest owns the book: the run goes on as it
    v.store.close()


def _ns(frame: pl.DataFrame, column: str) -> list[int]:
    return [int(x) for x in frame[column].dt.epoch("ns")]


async def test_a_short_held_over_a_funding_time_receives_the_real_rate_on_the_mark() -> None:
    """Bar mode: the real XRPUSDT 1h candles (freqtrade's test data) quote the paper exchange at
    each close; a short held over 2021-11-18 00:00 is paid that time's real rate (0.01 %) on
    the real mark, as Binance books it: -position x mark x rate to the wallet."""
    sym = "XRPUSDT"
    bars = read_bar_file(SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather")
    rates = read_funding_rates(SAMPLE_FUNDING)
    marks = read_mark_prices(SAMPLE_MARK_1H)
    due = nominal_funding_time(_ns(rates, "open_time")[0])
    rate = D(repr(rates["funding_rate"][0]))
    mark = D(repr(marks["open"][_ns(marks, "open_time").index(due)]))
    before = [i for i, t in enumerate(_ns(bars, "open_time")) if t + 3_600 * 10**9 <= due]
    close = D(repr(bars["close"][before[-1]]))
    now = due - MS  # the last bar before the funding time closes a millisecond before it
    paper = PerpPaperExchange(
        perp_filters(usdm_exchange_info([sym])), {sym: usdm_brackets()[sym]},
        initial_balances={"USDT": "1000"}, fees=FEES, slippage=SlippageModel(SlippageKind.NONE),
        clock=lambda: now, leverage=2,
    )  # fmt: skip
    paper.on_quote(sym, close, close)  # no book in bar mode: the close is the quote
    await paper.submit(order("x-1", OrderSide.SELL, "100", symbol=sym))
    assert paper.account.net_positions() == {sym: D(-100)} and paper.next_funding_ns == due
    wallet = paper.account.wallet
    paper.settle_funding(due, {sym: (rate, mark)})
    [entry] = paper.account.funding
    assert entry.amount == D(100) * mark * rate > 0
    assert paper.account.wallet == wallet + entry.amount
    assert (await paper.perp_balances())["USDT"].wallet == paper.account.wallet
    assert paper.next_funding_ns == due + 8 * 3_600 * 10**9
    now = due + FUNDING_GRACE_NS  # settled: the account goes on past the time
    paper.on_trade(sym, close, D(1))


def test_a_leverage_above_the_real_bracket_is_refused_naming_symbol_and_cap() -> None:
    cap = BRACKETS[SYM].max_leverage(D(0))
    with pytest.raises(ValueError, match=f"BTCUSDT: leverage {cap + 1}x is above the {cap}x"):
        PerpPaperExchange(FILTERS, BRACKETS, initial_balances={"USDT": "1000"}, leverage=cap + 1)


async def test_a_50x_long_is_liquidated_at_its_liquidation_price_and_booked_as_the_exchanges(
    database_url: str,
) -> None:
    """Bar mode on the real XRPUSDT 1h candles: each close is the quote and the print (the
    mark). An isolated 50x long is closed by the exchange when a close reaches its liquidation
    price: at that price, with the liquidation fee (`PerpAccount.liquidate`, as the backtest),
    its resting reduce-only order canceled, and the close reported as the exchange's own order
    (``by_exchange``), which the order manager books as a liquidation — never an exception."""
    sym = "XRPUSDT"
    bars = read_bar_file(SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather")
    hour = 3_600 * 10**9
    ends = [t + hour - MS for t in _ns(bars, "open_time")]  # each close's time
    closes = [D(repr(c)) for c in bars["close"]]

    def window(i: int) -> range:  # the closes after i before its next funding time
        due = (ends[i] // (8 * hour) + 1) * 8 * hour
        return range(i + 1, next(j for j in range(i, len(ends)) if ends[j] >= due))

    # the first close after which the market falls 2 % before the next funding time
    start = next(i for i in range(len(closes) - 9)
                 if any(closes[j] <= closes[i] * D("0.98") for j in window(i)))  # fmt: skip
    now = ends[start]
    store = ExecutionStore(database_url)
    paper = PerpPaperExchange(
        perp_filters(usdm_exchange_info([sym])), {sym: usdm_brackets()[sym]}, store,
        initial_balances={"USDT": "1000"}, fees=FEES, slippage=SlippageModel(SlippageKind.NONE),
        clock=lambda: now, leverage=50, margin_mode=MarginMode.ISOLATED,
    )  # fmt: skip
    om = OrderManager(store, paper, "run-paper-liq")
    reports: list[object] = []
    exchange_orders: list[Order] = []
    om.on_exchange_order = exchange_orders.append

    def on_report(report: object) -> None:
        reports.append(report)
        om.on_execution_report(report)  # type: ignore[arg-type]

    paper.on_report = on_report
    paper.on_quote(sym, closes[start], closes[start])
    paper.on_trade(sym, closes[start], D(1))
    await om.submit(order("l-1", OrderSide.BUY, "1000", symbol=sym))
    above = (closes[start] * D("1.05")).quantize(D("0.0001"))  # on XRPUSDT's tick
    take_profit = order("l-2", OrderSide.SELL, "1000", OrderType.LIMIT, symbol=sym,
                        price=above, reduce_only=True)  # fmt: skip
    await om.submit(take_profit)
    assert take_profit.status is OrderStatus.ACCEPTED
    pos = paper.account.positions[sym]
    lp = paper.account.liquidation_price(sym)
    assert lp is not None and pos.entry_price * D("0.97") < lp < pos.entry_price
    wallet = paper.account.wallet
    cut = next(j for j in window(start) if closes[j] <= lp)
    for i in range(start + 1, cut + 1):
        now = ends[i]
        assert paper.account.positions  # held until the close that reaches the price
        paper.on_quote(sym, closes[i], closes[i])
        paper.on_trade(sym, closes[i], D(1))
    assert paper.account.positions == {}
    [liq] = paper.account.liquidations
    assert (liq.price, liq.qty, liq.entry_price) == (lp, D(1000), pos.entry_price)
    assert paper.account.wallet == wallet + liq.realized_pnl - liq.fee
    assert take_profit.status is OrderStatus.CANCELED
    [rep] = [r for r in reports if getattr(r, "by_exchange", False)]
    assert rep.side is OrderSide.SELL and rep.fill.price == lp and rep.fill.fee == liq.fee  # type: ignore[attr-defined]
    [booked] = exchange_orders
    assert booked.reason is ExitReason.LIQUIDATION and booked.status is OrderStatus.FILLED
    fills = [f.fill for f in store.list_fills(limit=100)]
    assert sum((f.qty * f.side.sign for f in fills), D(0)) == 0
    assert [t.fill.price for t in await paper.my_trades(sym)][-1] == lp
    again = PerpPaperExchange(
        perp_filters(usdm_exchange_info([sym])), {sym: usdm_brackets()[sym]}, store,
        initial_balances={"USDT": "1000"}, fees=FEES, clock=lambda: now, leverage=50,
        margin_mode=MarginMode.ISOLATED,
    )  # fmt: skip
    assert again.account.to_state() == paper.account.to_state()  # the liquidation kept too
    store.close()
