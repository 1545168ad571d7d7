"""freqtrade's futures backtest, restated in Decimal from the raw files, and set against ours.

The fixtures are freqtrade 2026.9's own output (`freqtrade backtesting`, run offline in its
venv) for the cross-check strategy of issue 17: the real Binance XRP/USDT:USDT 1h candles,
SMA 10/30 long/short flips, 3x isolated, stake 1,000 USDT, taker fee 0.0004, wallet 10,000:

    .venv/bin/python bench/peers/freqtrade_futures_run.py --scenario mark8h \
        --out tests/backtest/fixtures/freqtrade_futures_mark8h.json
    .venv/bin/python bench/peers/freqtrade_futures_run.py --scenario mark1h \
        --out tests/backtest/fixtures/freqtrade_futures_mark1h.json
    .venv/bin/python bench/peers/freqtrade_futures_run.py --scenario mark8h --leverage 25 \
        --out tests/backtest/fixtures/freqtrade_futures_mark8h_25x.json

so CI needs no freqtrade. These tests restate each of freqtrade's conventions (written down in
docs/comparison.md, "Perpetual futures vs freqtrade") from the bundled files alone, with our
readers and our funding and liquidation domain code, and check that the restatement gives
freqtrade's trades, funding (to 1e-8), profits and final balance: if freqtrade's numbers
and ours part, a test names the convention. Then our perpetual backtest (`BacktestEngine`
with `PerpInputs`) runs the same rule on the same files and is set against freqtrade: same
trades, fills and fees, the same funding but for the one payment our schedule does not charge
(an entry at the funding hour's open), and a final balance that differs by exactly that. At
25x the first long meets the liquidation price, and there the two part as a test states.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.perp_inputs import load_perp_inputs
from tessera.config import BacktestConfig
from tessera.data.barfile import read_bar_file
from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    SAMPLE_FUTURES,
    SAMPLE_MARK_1H,
    SAMPLE_MARK_8H,
    as_decimal,
    funding_rates_from_frames,
    read_funding_rates,
    read_mark_prices,
)
from tessera.execution.perp.funding import HOUR_NS, FundingRate, funding_payment, schedule
from tessera.execution.perp.margin import MarginMode, PerpPosition, liquidation_price
from tessera.strategies.base import Bar, Strategy, StrategyContext
from tessera.venues.binance_usdm.brackets import parse_leverage_brackets

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BRACKETS = SAMPLE_FUTURES.parents[1] / "binance-usdm" / "leverage_brackets.json"
MS = 1_000_000
FAST, SLOW, STARTUP = 10, 30, 30
STAKE, LEVERAGE, FEE, WALLET = Decimal(1000), Decimal(3), Decimal("0.0004"), Decimal(10000)
LOT_STEP = Decimal("0.1")  # XRPUSDT LOT_SIZE stepSize in the bundled exchangeInfo


@dataclass(frozen=True)
class Trade:
    side: int  # +1 long, -1 short
    open_ms: int
    close_ms: int
    open_rate: Decimal
    close_rate: Decimal
    exit_reason: str


def _fixture(scenario: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"freqtrade_futures_{scenario}.json").read_text()))


@pytest.fixture(scope="module")
def ft8() -> dict[str, Any]:
    return _fixture("mark8h")


@pytest.fixture(scope="module")
def ft1() -> dict[str, Any]:
    return _fixture("mark1h")


@pytest.fixture(scope="module")
def bars() -> tuple[list[int], list[Decimal], list[Decimal]]:
    frame = read_bar_file(SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather")
    opens_ms = [t // MS for t in frame["open_time"].dt.epoch("ns").to_list()]
    return (
        opens_ms,
        [as_decimal(v) for v in frame["open"]],
        [as_decimal(v) for v in frame["close"]],
    )


def _rates(mark_file: Path) -> list[FundingRate]:
    rates, _missing = funding_rates_from_frames(
        read_funding_rates(SAMPLE_FUNDING), read_mark_prices(mark_file)
    )
    return rates


def _sides(closes: list[Decimal]) -> dict[int, int]:
    """Bar index -> +1 when SMA10 > SMA30 at its close, -1 when below, 0 when equal."""
    out: dict[int, int] = {}
    for i in range(SLOW - 1, len(closes)):
        fast = sum(closes[i - FAST + 1 : i + 1], Decimal(0)) / FAST
        slow = sum(closes[i - SLOW + 1 : i + 1], Decimal(0)) / SLOW
        out[i] = (fast > slow) - (fast < slow)
    return out


def _freqtrade_loop(
    opens_ms: list[int], opens: list[Decimal], closes: list[Decimal]
) -> list[Trade]:
    """freqtrade's backtest loop for this strategy, restated.

    The frame is trimmed by the startup candles and, signals shifted by one candle, its first
    row dropped: the first row traded is bar STARTUP + 1 and acts on bar STARTUP's close. At
    each row the signal of the previous close is acted on at this row's open: an opposite
    signal exits, and the same row enters the other way (freqtrade runs its loop a second
    time when a position closed and the other direction is signalled), but no entry on the
    last row, where whatever is open is force-exited at the open.
    """
    sides = _sides(closes)
    last = len(opens) - 1
    trades: list[Trade] = []
    pos: tuple[int, int, Decimal] | None = None  # side, open_ms, open_rate
    for i in range(STARTUP + 1, last + 1):
        want = sides[i - 1]
        if pos is not None and want == -pos[0]:
            trades.append(Trade(pos[0], pos[1], opens_ms[i], pos[2], opens[i], "exit_signal"))
            pos = None
        if pos is None and want != 0 and i != last:
            pos = (want, opens_ms[i], opens[i])
    if pos is not None:
        trades.append(Trade(pos[0], pos[1], opens_ms[last], pos[2], opens[last], "force_exit"))
    return trades


def _ft_trades(doc: dict[str, Any]) -> list[Trade]:
    return [
        Trade(
            -1 if t["is_short"] else 1,
            t["open_timestamp"],
            t["close_timestamp"],
            as_decimal(t["open_rate"]),
            as_decimal(t["close_rate"]),
            t["exit_reason"],
        )
        for t in doc["trades"]
    ]


def _amount(open_rate: Decimal, leverage: Decimal = LEVERAGE) -> Decimal:
    """stake x leverage / open, truncated to the lot step (freqtrade's amount_to_precision)."""
    return (STAKE * leverage / open_rate).quantize(LOT_STEP, rounding=ROUND_DOWN)


def _freqtrade_funding(trade: Trade, amount: Decimal, rates: list[FundingRate]) -> Decimal:
    """Every funding time from entry to exit, both ends included, at the mark candle's open."""
    total = Decimal(0)
    for r in rates:
        if r.mark_price is not None and trade.open_ms * MS <= r.ts_ns <= trade.close_ms * MS:
            total += funding_payment(trade.side * amount, r.mark_price, r.rate)
    return total


def test_freqtrade_trades_are_the_sma_flips_filled_at_the_next_open(
    ft8: dict[str, Any], bars: tuple[list[int], list[Decimal], list[Decimal]]
) -> None:
    opens_ms, opens, closes = bars
    ours = _freqtrade_loop(opens_ms, opens, closes)
    assert _ft_trades(ft8) == ours
    assert [t.side for t in ours] == [1, -1, 1, -1, 1]
    assert ft8["total_trades"] == 5
    # The rule is not decided by float noise: at every decision the SMAs differ by > 6e-5.
    gaps = []
    for i in range(STARTUP, len(closes)):
        fast = sum(closes[i - FAST + 1 : i + 1], Decimal(0)) / FAST
        slow = sum(closes[i - SLOW + 1 : i + 1], Decimal(0)) / SLOW
        gaps.append(abs(fast - slow) / slow)
    assert min(gaps) > Decimal("6e-5")


def test_freqtrade_amount_is_stake_times_leverage_over_the_open_truncated_to_the_lot_step(
    ft8: dict[str, Any],
) -> None:
    for t in ft8["trades"]:
        amount = _amount(as_decimal(t["open_rate"]))
        assert as_decimal(t["amount"]) == amount
        # the stake is recomputed from the truncated amount: margin = amount x open / leverage
        stake = amount * as_decimal(t["open_rate"]) / LEVERAGE
        assert abs(Decimal(str(t["stake_amount"])) - stake) < Decimal("1e-8")  # 8 decimals
        assert t["leverage"] == 3.0
        assert t["fee_open"] == t["fee_close"] == 0.0004
    assert ft8["market"]["precision"]["amount"] == 0.1


def test_freqtrade_funding_is_amount_times_the_mark_candles_open_times_the_rate_entry_to_exit(
    ft8: dict[str, Any],
) -> None:
    rates = _rates(SAMPLE_MARK_8H)
    by_ts = {r.ts_ns: r for r in rates}
    total = Decimal(0)
    for trade, t in zip(_ft_trades(ft8), ft8["trades"], strict=True):
        amount = as_decimal(t["amount"])
        ours = _freqtrade_funding(trade, amount, rates)
        assert abs(Decimal(str(t["funding_fees"])) - ours) < Decimal("1e-8"), t["open_date"]
        # the rows freqtrade summed are ours: funding time floored, mark = that 8h candle's open
        for row in t["funding_rows"]:
            r = by_ts[row["time_ms"] * MS]
            assert (as_decimal(row["mark"]), as_decimal(row["rate"])) == (r.mark_price, r.rate)
        total += ours
    # longs pay, shorts receive (all rates in the window are positive): -0.27825857 USDT net
    assert total.quantize(Decimal("0.00000001")) == Decimal("-0.27825857")
    assert abs(Decimal(str(ft8["total_funding_fees"])) - total) < Decimal("1e-8")


def test_freqtrade_profit_and_final_balance_restated_to_the_cent(ft8: dict[str, Any]) -> None:
    rates = _rates(SAMPLE_MARK_8H)
    balance = WALLET
    for trade, t in zip(_ft_trades(ft8), ft8["trades"], strict=True):
        amount = as_decimal(t["amount"])
        funding = _freqtrade_funding(trade, amount, rates)
        entry = amount * trade.open_rate
        exit_ = amount * trade.close_rate
        # fees are taker fee x notional at each fill; PnL is side x amount x (exit - entry)
        profit = trade.side * (exit_ - entry) - FEE * (entry + exit_) + funding
        assert abs(Decimal(str(t["profit_abs"])) - profit) < Decimal("1e-8"), t["open_date"]
        balance += profit
    # freqtrade's final balance: the wallet plus the closed trades' profit_abs (8 decimals each)
    assert balance.quantize(Decimal("0.01")) == Decimal("9720.98")
    assert abs(Decimal(str(ft8["final_balance"])) - balance) < Decimal("1e-7")
    assert ft8["starting_balance"] == 10000


def test_freqtrade_liquidation_price_is_binances_isolated_formula_plus_a_five_percent_buffer(
    ft8: dict[str, Any],
) -> None:
    brackets = parse_leverage_brackets(json.loads(BRACKETS.read_text()))["XRPUSDT"]
    for t in ft8["trades"]:
        liq = t["liquidation"]
        side = -1 if t["is_short"] else 1
        open_rate, amount = as_decimal(t["open_rate"]), as_decimal(t["amount"])
        margin = amount * open_rate / LEVERAGE  # freqtrade's isolated wallet = the stake
        position = PerpPosition("XRPUSDT", side * amount, open_rate, 3, MarginMode.ISOLATED, margin)
        ours = liquidation_price(position, brackets)
        assert ours is not None
        # bracket 1 (mmr 0.005, cum 0) in both tier tables for this size
        assert (liq["maintenance_margin_rate"], liq["maintenance_amount"]) == (0.005, 0.0)
        assert abs(Decimal(str(liq["liquidation_price_raw"])) - ours) < Decimal("1e-12")
        # freqtrade then moves it 5 % of the way to the entry (liquidation_buffer 0.05) and
        # rounds it to the price precision it derives from the candles (5 decimals here)
        buffered = ours + side * abs(open_rate - ours) * Decimal("0.05")
        assert abs(Decimal(str(liq["liquidation_price"])) - buffered) <= Decimal("0.000005")


def test_our_funding_schedule_differs_from_freqtrade_only_at_an_entry_on_the_funding_hour(
    ft8: dict[str, Any], bars: tuple[list[int], list[Decimal], list[Decimal]]
) -> None:
    """Ours: funding time t is paid at the close of the bar ending at t, by the position held
    over that bar (an order at that close comes after it). freqtrade: every t with
    entry <= t <= exit, so a trade entered at t's open also pays t, and at a flip on the
    funding hour both trades pay it. Here only the first trade (long, in at 08:00) differs."""
    opens_ms = bars[0]
    rates = _rates(SAMPLE_MARK_8H)
    trades = _ft_trades(ft8)
    amounts = [as_decimal(t["amount"]) for t in ft8["trades"]]
    sched = schedule(rates, [o * MS for o in opens_ms], HOUR_NS)
    ours: set[tuple[int, int]] = set()
    for bar, due in sched.due.items():
        held = [k for k, tr in enumerate(trades) if tr.open_ms <= opens_ms[bar] < tr.close_ms]
        ours |= {(k, r.ts_ns // MS) for k in held for r in due}
    theirs = {
        (k, r.ts_ns // MS)
        for k, tr in enumerate(trades)
        for r in rates
        if tr.open_ms * MS <= r.ts_ns <= tr.close_ms * MS
    }
    assert ours <= theirs
    extra = sorted(theirs - ours)
    assert extra == [(0, trades[0].open_ms)]
    first = next(r for r in rates if r.ts_ns == trades[0].open_ms * MS)
    assert first.mark_price is not None
    paid = funding_payment(amounts[0], first.mark_price, first.rate)
    assert paid == Decimal("-0.300043900")  # 2709.2 XRP x 1.1075 x 0.0001, 2021-11-18 08:00


def test_freqtrades_default_1h_marks_drop_the_funding_after_the_mark_file_ends(
    ft1: dict[str, Any], ft8: dict[str, Any]
) -> None:
    """freqtrade 2026.9 marks Binance funding with 1h mark candles and joins rates to marks
    with an inner join: the bundled 1h mark file ends 2021-11-19 09:00, so the funding of the
    later trades is 0 although their rates are in the funding file."""
    assert _ft_trades(ft1) == _ft_trades(ft8)
    rates8 = _rates(SAMPLE_MARK_8H)
    rates1 = _rates(SAMPLE_MARK_1H)
    last_mark_ms = max(read_mark_prices(SAMPLE_MARK_1H)["open_time"].dt.epoch("ms").to_list())
    dropped = []
    for k, (trade, t) in enumerate(zip(_ft_trades(ft1), ft1["trades"], strict=True)):
        amount = as_decimal(t["amount"])
        ours = _freqtrade_funding(trade, amount, rates1)
        assert abs(Decimal(str(t["funding_fees"])) - ours) < Decimal("1e-8")
        if trade.open_ms > last_mark_ms:
            assert t["funding_fees"] == 0.0
        if t["funding_fees"] == 0.0 and _freqtrade_funding(trade, amount, rates8) != 0:
            dropped.append(k)
    # the third and fourth trades (2021-11-19 15:00 -> 11-21 02:00) held through five funding
    # times (four and one) that freqtrade books as nothing; the fifth held through none
    assert dropped == [2, 3]


# --- our perpetual backtest on the same inputs ----------------------------------------------

BARS_FILE = SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather"


class _FreqtradeRule(Strategy):
    """The cross-check rule in our engine: at the close of bar i (from bar STARTUP on, as
    freqtrade), hold long if SMA10 > SMA30, short if below, flipping at once; at the close of
    the second-to-last bar go flat (freqtrade closes what is open at the last bar's open).

    Sizing is freqtrade's, which sizes at the fill price: ``stake x leverage / next open``
    truncated to 0.1. A strategy deciding at a close does not know the next open, so the test
    hands it the bar file's opens for sizing only (the signal uses closes up to bar i)."""

    name = "freqtrade_rule"

    def __init__(self, symbol: str, opens: list[Decimal], leverage: int) -> None:
        super().__init__([symbol])
        self._symbol = symbol
        self._opens = opens
        self._leverage = Decimal(leverage)
        self._closes: list[Decimal] = []

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self._closes.append(as_decimal(bar.close))
        i = len(self._closes) - 1
        last = len(self._opens) - 1
        if i < STARTUP or i >= last:
            return
        if i == last - 1:
            ctx.target_position(self._symbol, Decimal(0))
            return
        closes = self._closes
        fast = sum(closes[i - FAST + 1 : i + 1], Decimal(0)) / FAST
        slow = sum(closes[i - SLOW + 1 : i + 1], Decimal(0)) / SLOW
        want = (fast > slow) - (fast < slow)
        held = ctx.position(self._symbol)
        if want == 0 or (held > 0 and want > 0) or (held < 0 and want < 0):
            return
        ctx.target_position(self._symbol, want * _amount(self._opens[i + 1], self._leverage))


def _run_ours(leverage: int) -> Any:
    frame = read_bar_file(BARS_FILE)
    series = BarSeries.from_frame("XRPUSDT", frame, interval="1h")
    opens = [as_decimal(v) for v in frame["open"]]
    inputs = load_perp_inputs(
        [series],
        mark_files={"XRPUSDT": SAMPLE_MARK_8H},
        funding_files={"XRPUSDT": SAMPLE_FUNDING},
    )
    cfg = BacktestConfig.model_validate(
        {
            "initial_cash": WALLET,
            "fees": {"maker_bps": 4, "taker_bps": 4},
            "slippage": {"kind": "none"},
            "fill_at": "next_open",
            "perp": {"leverage": leverage, "margin_mode": "isolated"},
        }
    )
    strategy = _FreqtradeRule("XRPUSDT", opens, leverage)
    return BacktestEngine(cfg, perp=inputs).run([series], [strategy])


@pytest.fixture(scope="module")
def ours() -> Any:
    return _run_ours(3)


def test_our_perp_backtest_makes_freqtrades_trades(ours: Any, ft8: dict[str, Any]) -> None:
    theirs = _ft_trades(ft8)
    got = [
        (t.side, t.entry_time // MS, t.exit_time // MS, t.qty, t.entry_price, t.exit_price)
        for t in ours.trades
    ]
    want = [
        (
            "long" if tr.side > 0 else "short",
            tr.open_ms,
            tr.close_ms,
            as_decimal(t["amount"]),
            tr.open_rate,
            tr.close_rate,
        )
        for tr, t in zip(theirs, ft8["trades"], strict=True)
    ]
    assert got == want
    assert ours.denials == []
    assert ours.perp.liquidations == ()


def test_our_perp_backtest_charges_freqtrades_fees(ours: Any, ft8: dict[str, Any]) -> None:
    fees = sum((r.fill.fee for r in ours.fills), Decimal(0))
    theirs = sum(
        (
            FEE
            * as_decimal(t["amount"])
            * (as_decimal(t["open_rate"]) + as_decimal(t["close_rate"]))
            for t in ft8["trades"]
        ),
        Decimal(0),
    )
    assert fees == theirs  # exact: fee x notional at every fill (a flip: a close, an open)
    assert ours.perp.fees_paid == theirs


def test_our_trade_pnl_is_freqtrades_profit_without_the_trades_funding(
    ours: Any, ft8: dict[str, Any]
) -> None:
    """freqtrade's profit_abs includes the funding paid over the trade; our Trade.pnl is
    realized PnL net of fees, funding being the account's own entries (`result.perp`)."""
    for ot, t in zip(ours.trades, ft8["trades"], strict=True):
        theirs = Decimal(str(t["profit_abs"])) - Decimal(str(t["funding_fees"]))
        assert abs(ot.pnl - theirs) < Decimal("1e-8"), t["open_date"]


def test_our_perp_backtest_pays_freqtrades_funding_but_the_entry_on_the_funding_hour(
    ours: Any, ft8: dict[str, Any]
) -> None:
    rates = _rates(SAMPLE_MARK_8H)
    first = _ft_trades(ft8)[0]
    at_entry = next(r for r in rates if r.ts_ns == first.open_ms * MS)
    assert at_entry.mark_price is not None
    missed = funding_payment(
        as_decimal(ft8["trades"][0]["amount"]), at_entry.mark_price, at_entry.rate
    )
    theirs = Decimal(str(ft8["total_funding_fees"]))
    ours_total = ours.perp.funding_total
    assert abs(ours_total - (theirs - missed)) < Decimal("1e-8")
    assert ours_total.quantize(Decimal("0.00000001")) == Decimal("0.02178533")
    assert ours.perp.funding_times == 8  # freqtrade: 9 payments over the five trades


def test_our_final_balance_is_freqtrades_plus_the_funding_it_charges_at_the_first_entry(
    ours: Any, ft8: dict[str, Any]
) -> None:
    missed = Decimal("-0.300043900")  # 2709.2 XRP x 1.1075 x 0.0001 at 2021-11-18 08:00
    theirs = Decimal(str(ft8["final_balance"]))
    assert ours.perp.final_wallet == ours.final_equity  # flat at the end
    assert abs(ours.perp.final_wallet - (theirs - missed)) < Decimal("1e-7")
    assert ours.perp.final_wallet.quantize(Decimal("0.01")) == Decimal("9721.28")


# --- 25x: where liquidation decides --------------------------------------------------------


def test_at_25x_freqtrade_books_its_stop_past_the_liquidation_price_where_we_liquidate() -> None:
    """At 25x the first long's candle (2021-11-18 13:00, low 1.06094) reaches both
    freqtrade's stop (stoploss -0.99 / 25 = 3.96 % below the entry) and its liquidation price.
    freqtrade checks the stop first and books a stop_loss at 1.06346, beyond the liquidation
    price; Binance, and our engine, liquidate at 1.0699426: the bracket of the notional at
    the liquidation price (24,156 USDT: our table's bracket 3, mmr 0.01, cum 85), where
    freqtrade's formula takes the tier of the stake (1,000 USDT: tier 1, mmr 0.005) and gets
    1.0683497. The four later trades are the same in both."""
    ft25 = _fixture("mark8h_25x")
    ours25 = _run_ours(25)
    first = ft25["trades"][0]
    open_rate = as_decimal(first["open_rate"])
    # the stop price, rounded towards the entry (up for a long) to the candles' 5 decimals
    stop = (open_rate * (1 - Decimal("0.99") / 25)).quantize(Decimal("0.00001"), ROUND_UP)
    assert (first["exit_reason"], as_decimal(first["close_rate"])) == ("stop_loss", stop)
    assert first["min_rate"] < first["close_rate"] < first["liquidation"]["liquidation_price"]

    (liq,) = ours25.perp.liquidations
    assert liq.ts // MS == first["close_timestamp"]
    brackets = parse_leverage_brackets(json.loads(BRACKETS.read_text()))["XRPUSDT"]
    amount = as_decimal(first["amount"])
    position = PerpPosition(
        "XRPUSDT", amount, open_rate, 25, MarginMode.ISOLATED, amount * open_rate / 25
    )
    assert liq.price == liquidation_price(position, brackets)
    assert brackets.tier_for(amount * liq.price).maintenance_margin_rate == Decimal("0.01")
    assert liq.price.quantize(Decimal("0.0000001")) == Decimal("1.0699426")
    # freqtrade's raw price is Binance's formula with the stake's tier (mmr 0.005, cum 0)
    theirs_raw = (amount * open_rate / 25 - amount * open_rate) / (
        amount * Decimal("0.005") - amount
    )
    raw = Decimal(str(first["liquidation"]["liquidation_price_raw"]))
    assert abs(raw - theirs_raw) < Decimal("1e-12")
    assert raw.quantize(Decimal("0.0000001")) == Decimal("1.0683497")

    got = [(t.side, t.entry_time // MS, t.exit_time // MS, t.qty) for t in ours25.trades]
    want = [
        ("short" if t["is_short"] else "long", t["open_timestamp"], t["close_timestamp"],
         as_decimal(t["amount"]))
        for t in ft25["trades"]
    ]  # fmt: skip
    assert got == want
    assert [t.exit_reason for t in ours25.trades][:2] == ["liquidation", "signal"]

    # the balances differ by the first trade (its exit and our liquidation fee) and by the
    # 08:00 funding freqtrade charges that entry; by nothing else
    first_theirs = Decimal(str(first["profit_abs"])) - Decimal(str(first["funding_fees"]))
    missed = funding_payment(amount, Decimal("1.1075"), Decimal("0.0001"))
    expected = Decimal(str(ft25["final_balance"])) + (ours25.trades[0].pnl - first_theirs) - missed
    assert abs(ours25.perp.final_wallet - expected) < Decimal("1e-7")
