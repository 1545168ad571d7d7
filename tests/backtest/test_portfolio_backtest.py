"""Portfolio backtests: several symbols, one account, on the bundled daily Bitstamp bars.

The engine runs one symbol on a path of its own (`_run_single`) and several on the merged
timeline, so a two-symbol run equal to the two single-symbol runs checks the merge, the
shared account and the per-symbol books against the simplest path. It holds only while the
symbols do not interact: small fixed quantities keep the shared cash from binding (and no risk
engine, whose limits are on the whole account). A binding cash constraint does make them
interact, which the second test shows. Attribution (`backtest.attribution`) splits a run's
result per symbol; its rows add up to the engine's whole.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.attribution import TOTAL, attribution_rows, symbol_attribution
from tessera.backtest.bars_io import read_bar_file
from tessera.backtest.results import BacktestResult
from tessera.config import BacktestConfig
from tessera.strategies import BollingerMeanReversion, SmaCross, Strategy
from tessera.strategies.cross_sectional import CrossSectional

BARS = Path(__file__).resolve().parents[2] / "samples" / "bars"
SYMBOLS = ("BTCUSD", "ETHUSD", "LTCUSD")
INITIAL = 100_000.0


def daily(symbol: str) -> BarSeries:
    return BarSeries.from_frame(
        symbol, read_bar_file(BARS / f"bitstamp_{symbol}_1d.csv.gz"), interval="1d"
    )


@pytest.fixture(scope="module")
def series() -> dict[str, BarSeries]:
    return {s: daily(s) for s in SYMBOLS}


def config(**kw: Any) -> BacktestConfig:
    base: dict[str, Any] = {
        "symbols": list(SYMBOLS),
        "interval": "1d",
        "quote_currency": "USD",
        "initial_cash": str(INITIAL),
    }
    return BacktestConfig.model_validate({**base, **kw})


def make(kind: str, symbols: list[str]) -> Strategy:
    if kind == "sma_cross":
        return SmaCross(symbols, fast=5, slow=20, qty=Decimal("0.01"))
    return BollingerMeanReversion(symbols, window=20, entry_z=1.5, exit_z=0.0, qty=Decimal("0.01"))


def fills_of(result: BacktestResult, symbol: str) -> list[tuple[Any, ...]]:
    return [
        (f.ts_event, f.side, f.qty, f.price, f.fee, rec.reason, rec.realized_pnl)
        for rec in result.fills
        if (f := rec.fill).symbol == symbol
    ]


def pnl_at(result: BacktestResult, times: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """The run's equity PnL at ``times``: its last point at or before each, 0 before its first."""
    i = np.searchsorted(result.times, times, side="right") - 1
    out: npt.NDArray[np.float64] = np.where(i >= 0, result.equity[np.maximum(i, 0)] - INITIAL, 0.0)
    return out


@pytest.mark.parametrize("kind", ["sma_cross", "mean_reversion"])
def test_a_two_symbol_run_equals_the_two_single_symbol_runs_when_cash_does_not_bind(
    series: dict[str, BarSeries], kind: str
) -> None:
    btc, eth = series["BTCUSD"], series["ETHUSD"]
    both = BacktestEngine(config()).run([btc, eth], [make(kind, ["BTCUSD", "ETHUSD"])])
    alone = {
        s.symbol: BacktestEngine(config()).run([s], [make(kind, [s.symbol])]) for s in (btc, eth)
    }
    assert not both.denials  # the cash never bound: the premise of the comparison
    for symbol, single in alone.items():
        assert len(fills_of(single, symbol)) > 10  # both symbols trade: nothing vacuous
        assert fills_of(both, symbol) == fills_of(single, symbol)
        assert [t for t in both.trades if t.symbol == symbol] == single.trades
    # the PnL adds up: exactly in the books, to float rounding along the equity curve
    gain = {s: r.final_equity - Decimal(str(INITIAL)) for s, r in alone.items()}
    assert both.final_equity - Decimal(str(INITIAL)) == gain["BTCUSD"] + gain["ETHUSD"]
    # the merged timeline is the union of the two (ETH's days are a subset of BTC's)
    assert np.array_equal(both.times, np.union1d(btc.close_time, eth.close_time))
    summed = pnl_at(alone["BTCUSD"], both.times) + pnl_at(alone["ETHUSD"], both.times)
    np.testing.assert_allclose(both.equity - INITIAL, summed, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        both.exposure,
        np.interp(both.times, alone["BTCUSD"].times, alone["BTCUSD"].exposure)
        + np.where(
            both.times >= eth.close_time[0],
            np.interp(both.times, alone["ETHUSD"].times, alone["ETHUSD"].exposure),
            0.0,
        ),
        rtol=1e-12,
    )


def test_a_binding_cash_constraint_makes_the_symbols_interact(
    series: dict[str, BarSeries],
) -> None:
    """The counter-case: cash each symbol alone never lacks, both together do."""
    eth = series["ETHUSD"]
    start = int(np.searchsorted(series["BTCUSD"].open_time, eth.open_time[0]))
    btc = series["BTCUSD"].slice(start, len(series["BTCUSD"]))
    qty = {"BTCUSD": Decimal("0.1"), "ETHUSD": Decimal("1")}

    def strategy(symbol: str) -> SmaCross:
        return SmaCross([symbol], fast=5, slow=20, qty=qty[symbol], strategy_id=symbol)

    cfg = config(initial_cash="2000")
    alone = {s.symbol: BacktestEngine(cfg).run([s], [strategy(s.symbol)]) for s in (btc, eth)}
    both = BacktestEngine(cfg).run([btc, eth], [strategy("BTCUSD"), strategy("ETHUSD")])
    assert not alone["BTCUSD"].denials and not alone["ETHUSD"].denials
    assert ("insufficient_balance" in {d[2] for d in both.denials}) is True
    assert len(both.fills) < len(alone["BTCUSD"].fills) + len(alone["ETHUSD"].fills)


@pytest.fixture(scope="module")
def portfolio_run(series: dict[str, BarSeries]) -> BacktestResult:
    """Three symbols, one cross-sectional strategy (momentum, top 1, turnover-limited)."""
    data = [series[s] for s in SYMBOLS]
    strategy = CrossSectional(list(SYMBOLS), lookback=20, k=1, max_turnover=0.5, min_trade=0.02)
    return BacktestEngine(config()).run(data, [strategy])


def test_attribution_rows_add_up_to_the_whole_exactly(
    series: dict[str, BarSeries], portfolio_run: BacktestResult
) -> None:
    result = portfolio_run
    rows = attribution_rows(result, [series[s] for s in SYMBOLS])
    *parts, total = rows
    assert [r.symbol for r in parts] == list(SYMBOLS) and total.symbol == TOTAL
    assert all(r.fills > 0 for r in parts)  # every symbol traded
    # the whole is the engine's: final equity over the cash it started with
    assert total.pnl == result.final_equity - Decimal(str(INITIAL))
    assert sum((r.pnl for r in parts), Decimal(0)) == total.pnl
    assert sum((r.realized_pnl for r in parts), Decimal(0)) == total.realized_pnl
    assert sum((r.unrealized_pnl for r in parts), Decimal(0)) == total.unrealized_pnl
    assert sum((r.fees for r in parts), Decimal(0)) == total.fees
    assert sum(r.fills for r in parts) == total.fills == len(result.fills)
    assert sum(r.trades for r in parts) == total.trades == result.metrics["trades"]
    assert total.win_rate == pytest.approx(result.metrics["win_rate"])
    assert float(total.fees) == pytest.approx(result.metrics["fees_paid"], rel=1e-12)
    assert sum(r.exposure_share for r in parts) == pytest.approx(1.0)
    assert total.time_in_market == result.metrics["exposure"]
    # only the last symbol held at the end has an open position to mark
    held = [r.symbol for r in parts if r.unrealized_pnl != 0]
    assert held == [
        s
        for s in SYMBOLS
        if any(t.symbol == s and t.exit_reason == "end_of_data" for t in result.trades)
    ]


def test_attribution_exposure_is_the_engines_exposure_split_by_symbol(
    series: dict[str, BarSeries], portfolio_run: BacktestResult
) -> None:
    """Each symbol's |position| x close, rebuilt from its fills and bars, sums to the
    exposure curve the engine recorded step by step."""
    from tessera.backtest.attribution import _gross_exposure

    result = portfolio_run
    gross = np.zeros(len(result.times))
    for s in SYMBOLS:
        fills = [r.fill for r in result.fills if r.fill.symbol == s]
        ts = np.asarray([f.ts_event for f in fills], dtype=np.int64)
        qty = np.asarray([float(f.qty * f.side.sign) for f in fills])
        gross += _gross_exposure(series[s], ts, qty, result.times)
    np.testing.assert_allclose(gross, result.exposure, rtol=1e-9, atol=1e-6)


def test_the_attribution_frame_has_one_row_per_symbol_and_the_total(
    series: dict[str, BarSeries], portfolio_run: BacktestResult
) -> None:
    frame = symbol_attribution(portfolio_run, [series[s] for s in SYMBOLS])
    assert frame["symbol"].to_list() == [*SYMBOLS, TOTAL]
    parts, total = frame.head(3), frame.row(3, named=True)
    assert parts["contribution"].sum() == pytest.approx(portfolio_run.metrics["total_return"])
    assert total["contribution"] == pytest.approx(portfolio_run.metrics["total_return"])
    assert parts["pnl"].sum() == pytest.approx(total["pnl"], rel=1e-12)


def test_attribution_refuses_a_result_with_fills_of_a_symbol_it_was_not_given(
    series: dict[str, BarSeries], portfolio_run: BacktestResult
) -> None:
    with pytest.raises(ValueError, match="LTCUSD"):
        attribution_rows(portfolio_run, [series["BTCUSD"], series["ETHUSD"]])


def test_the_bundled_daily_bars_are_what_docs_portfolio_md_says() -> None:
    """The facts docs/portfolio.md states about the data, read from the bar files."""
    import polars as pl

    frames = {s: read_bar_file(BARS / f"bitstamp_{s}_1d.csv.gz") for s in SYMBOLS}
    spans = {
        s: (len(f), str(f["open_time"][0].date()), str(f["open_time"][-1].date()))
        for s, f in frames.items()
    }
    assert spans == {
        "BTCUSD": (1865, "2014-11-28", "2020-01-17"),
        "ETHUSD": (788, "2017-11-09", "2020-01-17"),
        "LTCUSD": (925, "2017-06-25", "2020-01-17"),
    }
    breaks = {"2018-08-13", "2018-10-17", "2018-12-12", "2019-04-01", "2019-05-08"}
    for f in frames.values():
        days = f.with_columns(
            day=pl.col("open_time").dt.date().cast(pl.String),
            step=pl.col("open_time").diff(),
            same_open=pl.col("open") == pl.col("close").shift(1),
        )
        # one hole: nothing from 2019-03-20 to 2019-03-31
        gaps = days.filter(pl.col("step") > pl.duration(days=1))["day"].to_list()
        assert gaps == ["2019-04-01"]
        late = days.filter(pl.col("day") >= "2017-11-15")
        assert set(late.filter(~pl.col("same_open"))["day"].to_list()) == breaks
        # partly recorded days: 3 % to 11 % of the median volume of the 30 days before
        typical = f["volume"].rolling_median(30).shift(1)
        ratio = (f["volume"] / typical).to_list()
        for day in ("2019-03-19", "2020-01-17"):
            assert 0.02 < ratio[days["day"].to_list().index(day)] < 0.11
    zero = {
        s: f.filter(pl.col("volume") == 0)["open_time"].dt.date().cast(pl.String).to_list()
        for s, f in frames.items()
    }
    assert zero == {
        "BTCUSD": [
            "2014-12-15",
            *[f"2015-01-{d:02d}" for d in range(6, 12)],
            "2015-08-06",
            "2018-08-12",
        ],
        "ETHUSD": ["2018-08-12"],
        "LTCUSD": ["2018-08-12"],
    }
