"""The perpetual-futures backtest on the real Binance XRP/USDT perpetual data bundled from
freqtrade's test data (samples/SOURCES.md): 1h trade candles, 1h mark candles, 8h funding rates.

The bars run 2021-11-17 01:00 -> 11-21 04:00 UTC (100 hourly bars); the 1h mark file covers
their first 57; the funding history 2021-11-18 00:00 -> 12-18 00:00 every 8 h. Default costs:
taker 10 bps, 1 bp slippage, market orders filled at the next bar's open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.backtest import BarSeries
from tessera.backtest.engine import BacktestEngine
from tessera.backtest.perp_account import PerpAccount
from tessera.backtest.perp_inputs import PerpInputError, PerpInputs, load_perp_inputs
from tessera.backtest.results import BacktestResult, perp_summary_lines
from tessera.config.models import BacktestConfig
from tessera.data.barfile import read_bar_file
from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    SAMPLE_FUTURES,
    SAMPLE_MARK_1H,
    SAMPLE_MARK_8H,
    funding_rates_from_frames,
    read_funding_rates,
    read_mark_prices,
)
from tessera.execution.fees import FeeSchedule
from tessera.execution.orders import ExitReason, Fill, OrderSide
from tessera.execution.perp.margin import MarginMode, liquidation_price
from tessera.strategies.base import Bar, Strategy, StrategyContext
from tessera.strategies.guard import StrategyError

D = Decimal
REPO = Path(__file__).resolve().parents[2]
BARS_1H = SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather"
SYM = "XRPUSDT"
NS = 1_000_000_000


def ns(iso: str) -> int:
    return int(pl.Series([iso]).str.to_datetime(time_zone="UTC").dt.epoch("ns")[0])


@pytest.fixture(scope="module")
def xrp_1h() -> BarSeries:
    return BarSeries.from_frame(SYM, read_bar_file(BARS_1H), "1h")


@pytest.fixture(scope="module")
def inputs_1h(xrp_1h: BarSeries) -> PerpInputs:
    return load_perp_inputs(
        [xrp_1h], mark_files={SYM: SAMPLE_MARK_1H}, funding_files={SYM: SAMPLE_FUNDING}
    )


class Targets(Strategy):
    """Target positions at given bar indices; an optional leverage set at the start."""

    name = "targets"

    def __init__(
        self, symbols: list[str], plan: dict[int, Decimal], leverage: int | None = None
    ) -> None:
        super().__init__(symbols)
        self.plan = plan
        self.leverage = leverage
        self.i = -1
        self.fills: list[Fill] = []

    def on_start(self, ctx: StrategyContext) -> None:
        if self.leverage is not None:
            ctx.set_leverage(self.symbols[0], self.leverage)

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        self.i += 1
        if self.i in self.plan:
            ctx.target_position(bar.symbol, self.plan[self.i])

    def on_fill(self, fill: Fill, ctx: StrategyContext) -> None:
        self.fills.append(fill)


def run(
    series: BarSeries,
    inputs: PerpInputs | None,
    plan: dict[int, Decimal],
    *,
    leverage: int | None = None,
    mode: str = "isolated",
    cash: str = "10000",
    **cfg: Any,
) -> tuple[BacktestEngine, BacktestResult, Targets]:
    config = BacktestConfig.model_validate(
        {"initial_cash": cash, "perp": {"margin_mode": mode}, **cfg}
    )
    strat = Targets([series.symbol], plan, leverage)
    engine = BacktestEngine(config, None, perp=inputs)
    result = engine.run([series], [strat])
    return engine, result, strat


# --- funding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "sign"), [(D(1000), -1), (D(-1000), 1)])
def test_a_long_pays_and_a_short_receives_funding_at_a_positive_rate(
    xrp_1h: BarSeries, inputs_1h: PerpInputs, target: Decimal, sign: int
) -> None:
    engine, result, _ = run(xrp_1h, inputs_1h, {0: target})
    acct = engine.perp_account
    assert acct is not None
    first = acct.funding[0]
    # By hand: the first funding time in the bars is 2021-11-18 00:00 UTC (fundingTime
    # 00:00:00.017, floored to the hour); its rate is 0.0001 and the mark then is the open of
    # the 1h mark candle at 00:00, 1.09503. Notional 1,000 x 1.09503 = 1,095.03 USDT; x 0.0001
    # = 0.109503 USDT, paid by the long to the short.
    assert first.ts_ns == ns("2021-11-18T00:00:00")
    assert (first.rate, first.mark) == (D("0.0001"), D("1.09503"))
    assert first.amount == sign * D("0.109503")
    assert result.perp is not None
    assert result.perp.funding_total == sum((e.amount for e in acct.funding), D(0))
    assert result.perp.funding_by_symbol == {SYM: result.perp.funding_total}
    # every funding time inside the bars is paid once the position is open (10 in the bars)
    assert len(acct.funding) == 10


def test_a_month_of_funding_on_a_constant_1000_xrp_long_is_the_pinned_8_031210148() -> None:
    # The trade bars that cover the month are the 8h candles (the "8h mark" file, which is
    # trade-price candles: docs/futures.md); the funding marks are their opens, as in the
    # pinned test of tests/execution/perp/test_perp_funding.py.
    frame = read_bar_file(SAMPLE_MARK_8H)
    series = BarSeries.from_frame(SYM, frame, "8h")
    inputs = load_perp_inputs(
        [series], mark_files={SYM: SAMPLE_MARK_8H}, funding_files={SYM: SAMPLE_FUNDING}
    )
    engine, _, _ = run(series, inputs, {0: D(1000)}, slippage={"kind": "none"})
    acct = engine.perp_account
    assert acct is not None
    # The position exists from the second bar's open (2021-11-18 08:00, next-open fill), so the
    # engine pays the 89 funding times 11-18 16:00 ... 12-18 00:00; the first two (00:00, at the
    # first bar's open, and 08:00, at the first bar's close, before the fill) find it flat.
    assert len(acct.funding) == 89
    assert acct.funding[0].ts_ns == ns("2021-11-18T16:00:00")
    assert {e.qty for e in acct.funding} == {D(1000)}
    # the two it did not hold over, independently from the raw files with polars
    raw = pl.read_ipc(SAMPLE_FUNDING).with_columns(pl.col("date").dt.truncate("1h"))
    marks = pl.read_ipc(SAMPLE_MARK_8H).select("date", pl.col("open").alias("mark"))
    first_two = raw.join(marks, on="date").sort("date").head(2)
    unpaid = sum(
        (
            D(f"{m:.15g}") * D(f"{r:.15g}") * 1000
            for m, r in first_two.select("mark", "open").rows()
        ),
        D(0),
    )
    assert sum((e.amount for e in acct.funding), D(0)) - unpaid == D("-8.031210148")


def test_a_position_closed_at_a_funding_time_pays_it_and_one_opened_there_does_not(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    # bar 22 closes at 2021-11-18 00:00; its order fills at the 00:00 open of bar 23
    assert xrp_1h.open_time[23] == ns("2021-11-18T00:00:00")
    engine, _, strat = run(xrp_1h, inputs_1h, {0: D(1000), 22: D(0)})
    assert engine.perp_account is not None
    assert strat.fills[-1].ts_event == ns("2021-11-18T00:00:00")  # closed at the funding time
    assert [e.ts_ns for e in engine.perp_account.funding] == [ns("2021-11-18T00:00:00")]
    engine, _, strat = run(xrp_1h, inputs_1h, {22: D(1000)})
    assert engine.perp_account is not None
    assert strat.fills[0].ts_event == ns("2021-11-18T00:00:00")  # opened at the funding time
    assert engine.perp_account.funding[0].ts_ns == ns("2021-11-18T08:00:00")


def test_the_account_books_the_whole_month_of_funding_as_the_pinned_figure() -> None:
    rates, _ = funding_rates_from_frames(
        read_funding_rates(SAMPLE_FUNDING), read_mark_prices(SAMPLE_MARK_8H)
    )
    acct = _account()
    acct.apply_fill(_fill(OrderSide.BUY, D(1000), D("1.0959"), D(0)))
    for fr in rates:
        acct.settle_funding({SYM: fr})
    assert len(acct.funding) == 91
    assert acct.wallet - D(10000) == D("-8.031210148")
    assert [e.kind for e in acct.funding[:1]] == ["funding"]


def test_a_perpetual_without_funding_history_is_refused_unless_funding_is_off(
    xrp_1h: BarSeries,
) -> None:
    with pytest.raises(PerpInputError, match="no-funding"):
        load_perp_inputs([xrp_1h], mark_files={SYM: None}, funding_files={SYM: None})
    off = load_perp_inputs(
        [xrp_1h], mark_files={SYM: None}, funding_files={SYM: None}, funding=False
    )
    engine, result, _ = run(xrp_1h, off, {0: D(1000)})
    assert engine.perp_account is not None and engine.perp_account.funding == []
    lines = perp_summary_lines(result)
    assert "funding OFF" in lines[0]
    assert f"{SYM} mark: none stored: the trade price for all 100 bars" in lines


# --- margin and liquidation ---------------------------------------------------------------------


def test_an_isolated_50x_long_is_liquidated_at_its_liquidation_price_with_the_fee(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    engine, result, strat = run(xrp_1h, inputs_1h, {0: D(9000)}, leverage=50)
    # Entry: the 02:00 open 1.07896 + 1 bp slippage = 1.079067896. Isolated margin
    # 9,000 x 1.079067896 / 50 = 194.23222128. Notional stays in XRP's first bracket
    # (<= 10,000: mmr 0.005, cum 0), so by Binance's formula
    # LP = (194.23222128 - 9,000 x 1.079067896) / (9,000 x 0.005 - 9,000)
    #    = -9,517.37884272 / -8,955 = 1.06280054... . The mark low of the 03:00 bar is
    # 1.05931 (1h mark file): crossed.
    entry = D("1.079067896")
    margin = 9000 * entry / 50
    with localcontext() as ctx:
        ctx.prec = 40  # the domain's precision for liquidation prices
        lp = (margin - 9000 * entry) / (9000 * D("0.005") - 9000)
    assert engine.perp_account is not None and result.perp is not None
    [liq] = result.perp.liquidations
    assert liq.price == lp
    assert (liq.ts, liq.mark_extreme) == (ns("2021-11-17T03:00:00"), D("1.05931"))
    # closed at the liquidation price; the fee (0.5 % of 9,000 x LP = 47.83) is what the
    # isolated margin has left at that price, so the account loses exactly its margin
    assert liq.realized_pnl == 9000 * (lp - entry)
    assert liq.fee == margin + liq.realized_pnl
    assert liq.loss == margin
    close = strat.fills[-1]
    assert (close.side, close.qty, close.price) == (OrderSide.SELL, D(9000), lp)
    assert [r.reason for r in result.fills] == [ExitReason.SIGNAL, ExitReason.LIQUIDATION]
    assert result.trades[0].exit_reason == "liquidation"
    assert engine.perp_account.positions == {}
    assert any(line.startswith("LIQUIDATED XRPUSDT 9000") for line in perp_summary_lines(result))


def test_the_report_marks_a_liquidation_on_the_chart_and_lists_it(
    xrp_1h: BarSeries, inputs_1h: PerpInputs, tmp_path: Path
) -> None:
    from tessera.backtest.report import write_report

    _, result, _ = run(xrp_1h, inputs_1h, {0: D(9000)}, leverage=50)
    text = write_report(result, xrp_1h, tmp_path / "r.html").read_text()
    assert "Perpetual: funding, margin, liquidation" in text
    assert "<li class=liq>LIQUIDATED XRPUSDT 9000" in text
    assert '"name":"liquidation"' in text  # the chart's marker trace
    assert "<script src=" not in text  # still self-contained


def test_the_same_long_on_cross_margin_survives_on_the_whole_wallet_and_dies_on_a_small_one(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    engine, result, _ = run(xrp_1h, inputs_1h, {0: D(9000)}, leverage=50, mode="cross")
    assert result.perp is not None and result.perp.liquidations == ()
    # a 300 USDT wallet: after the 9.71 entry fee the cross wallet is 290.29, more than the
    # 194.23 isolated margin, so the liquidation price is lower but the mark still reaches it
    # (on 2021-11-18 15:00, after two funding payments came out of the same wallet)
    engine, result, strat = run(
        xrp_1h, inputs_1h, {0: D(9000)}, leverage=50, mode="cross", cash="300"
    )
    assert result.perp is not None and engine.perp_account is not None
    [liq] = result.perp.liquidations
    assert liq.ts == ns("2021-11-18T15:00:00")
    entry = D("1.079067896")
    funding = [e.amount for e in engine.perp_account.funding]
    assert len(funding) == 2
    wallet = D(300) - 9000 * entry * D("0.001") + sum(funding, D(0))
    with localcontext() as ctx:
        ctx.prec = 40
        lp = (wallet - 9000 * entry) / (9000 * D("0.005") - 9000)
    assert liq.price == lp < D("1.06280054")
    assert liq.mode == "cross"
    # at LP the wallet left equals the maintenance margin, 0.5 % of the notional (bracket 1),
    # and so does the fee (liquidationFee 0.005): the fee takes what is left, the wallet ends
    # at zero (to Decimal's precision) and never below
    assert liq.realized_pnl == 9000 * (lp - entry)
    assert abs(liq.fee - 9000 * lp * D("0.005")) < D("1e-20")
    assert liq.fee == min(9000 * lp * D("0.005"), wallet + liq.realized_pnl)
    assert D(0) <= engine.perp_account.wallet < D("1e-20")
    assert strat.fills[-1].price == lp


def test_an_order_needing_more_margin_than_available_is_denied_and_counted(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    # 1,000 XRP at ~1.08 needs ~1,080 USDT of margin at 1x; the wallet has 100
    _, result, strat = run(xrp_1h, inputs_1h, {0: D(1000)}, cash="100")
    assert strat.fills == []
    assert result.denial_counts() == {"insufficient_margin": 1}
    # at 20x it needs ~54 + ~1.08 fee: it goes (and is liquidated later: XRP falls ~7 %)
    _, result, strat = run(xrp_1h, inputs_1h, {0: D(1000)}, cash="100", leverage=20)
    assert (strat.fills[0].side, strat.fills[0].qty) == (OrderSide.BUY, D(1000))
    assert result.denial_counts() == {}


def test_leverage_above_the_bracket_maximum_is_refused(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    # XRPUSDT's first bracket allows 75x
    with pytest.raises(StrategyError, match="above the 75x"):
        run(xrp_1h, inputs_1h, {}, leverage=100)
    # 100,000 XRP (~108,000 USDT) is in the third bracket, 40x at most: 50x is denied
    _, result, strat = run(xrp_1h, inputs_1h, {0: D(100000)}, leverage=50, cash="100000")
    assert strat.fills == []
    assert result.denial_counts() == {"leverage_above_bracket": 1}
    with pytest.raises(ValueError, match=r"backtest\.perp\.leverage"):
        run(xrp_1h, inputs_1h, {}, perp={"leverage": 100})


def test_a_flip_from_long_to_short_closes_reduce_only_then_opens(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    engine, result, strat = run(xrp_1h, inputs_1h, {0: D(1000), 5: D(-1000)})
    sides = [(f.side, f.qty) for f in strat.fills]
    assert sides == [(OrderSide.BUY, D(1000)), (OrderSide.SELL, D(1000)), (OrderSide.SELL, D(1000))]
    flip = [o for o in result.orders if o.side is OrderSide.SELL]
    assert [o.reduce_only for o in flip] == [True, False]
    acct = engine.perp_account
    assert acct is not None and acct.positions[SYM].qty == D(-1000)
    buy, close = strat.fills[0], strat.fills[1]
    assert result.fills[1].realized_pnl == 1000 * (close.price - buy.price)
    assert [t.side for t in result.trades] == ["long", "short"]


# --- spot is unchanged --------------------------------------------------------------------------


def test_spot_ignores_the_perp_settings_and_still_refuses_a_short(xrp_1h: BarSeries) -> None:
    plan = {0: D(1000), 5: D(-1000)}
    _, plain, _ = run(xrp_1h, None, plan)
    _, tuned, _ = run(xrp_1h, None, plan, perp={"leverage": 20, "margin_mode": "cross"})
    assert plain.to_json() == tuned.to_json()
    assert plain.perp is None and "perp" not in json.loads(plain.to_json())
    assert plain.denial_counts() == {"no_borrow": 1}
    with pytest.raises(StrategyError, match="not a perpetual"):
        run(xrp_1h, None, {}, leverage=5)


# --- a property: the books balance --------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.dictionaries(
        st.integers(0, 98), st.integers(-20, 20).map(lambda k: D(k * 500)), max_size=6
    ),
    leverage=st.sampled_from([1, 3, 10, 25, 50]),
    mode=st.sampled_from(["isolated", "cross"]),
)
def test_equity_is_wallet_plus_unrealized_and_the_wallet_moves_by_realized_fees_and_funding(
    xrp_1h: BarSeries, inputs_1h: PerpInputs, plan: dict[int, Decimal], leverage: int, mode: str
) -> None:
    engine, result, _ = run(xrp_1h, inputs_1h, plan, leverage=leverage, mode=mode, cash="2000")
    acct = engine.perp_account
    assert acct is not None and result.perp is not None
    unrealized = sum(
        (p.qty * (acct.marks[s] - p.entry_price) for s, p in acct.positions.items()), D(0)
    )
    assert result.final_equity == acct.wallet + unrealized
    funding = sum((e.amount for e in acct.funding), D(0))
    realized = sum((r.realized_pnl for r in result.fills), D(0))
    fees = sum((r.fill.fee for r in result.fills), D(0))
    # exact but for the last of Decimal's 28 digits (averaged entry prices are divisions)
    assert abs((acct.wallet - D(2000)) - (realized - fees + funding)) < D("1e-18")
    assert float(result.final_equity) == pytest.approx(result.equity[-1], rel=1e-9)
    for liq in result.perp.liquidations:  # closed at a price the bar's mark range reached
        assert (liq.price >= liq.mark_extreme) if liq.qty > 0 else (liq.price <= liq.mark_extreme)


# --- the account alone ----------------------------------------------------------------------------


def _account(mode: MarginMode = MarginMode.ISOLATED, leverage: int = 1) -> PerpAccount:
    from tessera.backtest.perp_inputs import load_brackets

    return PerpAccount(
        "USDT", D(10000), {SYM: load_brackets()[SYM]}, FeeSchedule(D(2), D(4)), mode, leverage
    )


def _fill(side: OrderSide, qty: Decimal, price: Decimal, fee: Decimal) -> Fill:
    from tessera.execution.orders import Liquidity

    return Fill("1", "c", SYM, side, price, qty, fee, "USDT", Liquidity.TAKER, 0, "s")


def test_the_account_liquidation_price_is_the_domain_formula() -> None:
    acct = _account(leverage=20)
    acct.apply_fill(_fill(OrderSide.SELL, D(5000), D("1.2"), D(0)))
    pos = acct.positions[SYM]
    assert pos.isolated_margin == D(300)  # 5,000 x 1.2 / 20
    assert acct.liquidation_price(SYM) == liquidation_price(pos, acct.brackets[SYM])


# --- the command line -----------------------------------------------------------------------------


def test_the_backtest_command_runs_the_bundled_xrp_perpetual_and_prints_funding_and_the_mark_source(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "backtest",
            "--no-baselines",
            "--symbol",
            "binance-usdm:XRPUSDT",
            "--bars",
            str(BARS_1H),
            "--strategy",
            "sma_cross",
            "-p",
            "fast=5",
            "-p",
            "slow=20",
            "--out",
            str(tmp_path / "out"),
            "--report",
            str(tmp_path / "r.html"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    text = " ".join(res.stdout.split())
    assert "perpetual: leverage 1x isolated; funding paid" in text
    assert "XRPUSDT mark: " in text and "XRP_USDT_USDT-1h-mark.feather for 57 of 100 bars" in text
    assert "the trade price for 43" in text
    assert "XRPUSDT funding: " in text and "10 funding times applied" in text
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert (doc["perp"]["margin_mode"], doc["perp"]["liquidation_count"]) == ("isolated", 0)
    assert doc["perp"]["funding_total"] == doc["perp"]["funding_by_symbol"]["XRPUSDT"]
    assert "Perpetual: funding, margin, liquidation" in (tmp_path / "r.html").read_text()
    # no funding file for a non-sample perpetual: refused in one paragraph, exit 2
    other = tmp_path / "XRPUSDT-1h.feather"
    other.write_bytes(BARS_1H.read_bytes())
    res = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "backtest", "--no-baselines",
         "--symbol", "binance-usdm:XRPUSDT", "--bars", str(other), "--out", str(tmp_path / "o2")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2
    assert "--no-funding" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr


def test_a_drawdown_halt_on_a_perpetual_snapshots_equity_at_the_mark(
    xrp_1h: BarSeries, inputs_1h: PerpInputs
) -> None:
    from tessera.config.models import RiskConfig

    # a 10x long of 9,000 XRP (~9,700 USDT) loses 1 % of 10,000 on a ~1 % move
    risk = RiskConfig(max_drawdown_pct=1.0, max_order_notional="100%", max_position_notional="100%")
    config = BacktestConfig.model_validate({"perp": {"leverage": 10}})
    engine = BacktestEngine(config, risk, perp=inputs_1h)
    result = engine.run([xrp_1h], [Targets([SYM], {0: D(9000)})])
    halt = engine.halt
    assert halt is not None and result.risk.halted_at_ns == halt.ts
    # the snapshot's cash is wallet - qty x entry, so cash + qty x mark is the equity there
    [(sym, qty)] = halt.positions.items()
    i = int(result.risk.halt_bar or 0)
    mark = D(repr(float(inputs_1h.symbols[sym].mark_close[i])))
    assert float(halt.cash + qty * mark) == pytest.approx(float(halt.equity), rel=1e-9)


def test_the_sweep_refuses_a_perpetual_rather_than_running_it_as_spot(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATA_DIR"] = str(tmp_path / "data")
    res = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "sweep", "--workers", "1",
         "--symbol", "binance-usdm:XRPUSDT", "--bars", str(BARS_1H)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2
    assert "does not run perpetuals yet" in res.stderr + res.stdout


@pytest.mark.parametrize(
    ("plan", "leverage"), [({0: D(1000), 5: D(-1000), 60: D(500)}, 1), ({0: D(9000)}, 50)]
)
def test_the_per_symbol_attribution_of_a_perpetual_adds_up_to_the_account(
    xrp_1h: BarSeries, inputs_1h: PerpInputs, plan: dict[int, Decimal], leverage: int
) -> None:
    from tessera.backtest.attribution import attribution_rows

    _, result, _ = run(xrp_1h, inputs_1h, plan, leverage=leverage)
    assert result.perp is not None
    symbol, total = attribution_rows(result, [xrp_1h])
    assert total.initial_cash == D(10000)  # the wallet it started with, not a spot cash flow
    assert abs(symbol.pnl - total.pnl) < D("1e-18")
    assert total.pnl == result.final_equity - D(10000)
    # the first run pays funding (in the symbol's realized PnL), the second is liquidated
    assert (result.perp.funding_total != 0) != bool(result.perp.liquidations)
