"""The report of a month of 1-minute bars: under 1.5 MB, plotly.js embedded once, curves
downsampled for display while every number shown is the full data's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import plotly
import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.backtest.report import PLOTLY_JS, write_report
from tessera.backtest.report_data import minmax_indices, symbol_pnl, trade_rows
from tessera.backtest.report_figures import MAX_POINTS, equity_figure, symbol_figure
from tessera.backtest.results import BacktestResult
from tessera.config import BacktestConfig, RiskConfig
from tessera.strategies import BuyAndHold, SmaCross

MB = 1_000_000
BUNDLE_HEADER = "plotly.js (basic - minified) v"


@pytest.fixture(scope="module")
def perp() -> BarSeries:
    """The bundled sample as the data names it: BTC-PERP (FTX), 45,031 one-minute bars."""
    return BarSeries.from_frame("BTC-PERP", read_bar_file(SAMPLE_BARS))


@pytest.fixture(scope="module")
def runs(perp: BarSeries) -> dict[str, BacktestResult]:
    cfg = BacktestConfig()  # sma_cross 10/30, the defaults of configs/backtest.yaml
    return {
        # as `tessera backtest` runs it: the default risk limits (the kill-switch halts it)
        "with risk": BacktestEngine(cfg, RiskConfig()).run([perp], [SmaCross(["BTC-PERP"])]),
        # the busiest report: no limits, 931 trades, 1,862 fills
        "no risk": BacktestEngine(cfg).run([perp], [SmaCross(["BTC-PERP"])]),
        "buy & hold": BacktestEngine(cfg, RiskConfig()).run([perp], [BuyAndHold(["BTC-PERP"])]),
    }


@pytest.mark.parametrize("run", ["with risk", "no risk"])
def test_a_one_month_1m_report_is_under_one_and_a_half_megabytes_with_plotly_once(
    perp: BarSeries, runs: dict[str, BacktestResult], run: str, tmp_path: Path
) -> None:
    res = runs[run]
    assert len(res.equity) == 45_031
    path = write_report(
        res,
        perp,
        tmp_path / "r.html",
        title="sma_cross",
        baselines={"buy & hold": runs["buy & hold"]},
        venue="FTX",
    )
    text = path.read_text()
    assert path.stat().st_size < 1.5 * MB, path.stat().st_size
    assert text.count(BUNDLE_HEADER) == 1  # plotly.js inlined once, every figure uses it
    assert "<script src=" not in text  # nothing fetched: the file opens offline
    # one <script> for plotly.js, one per figure (equity, the symbol's panel, PnL histogram)
    assert text.count('class="plotly-graph-div"') == 3
    assert text.count("<script") == 1 + 3


def test_the_embedded_plotly_bundle_is_the_version_plotly_py_draws_for() -> None:
    """plotly.py writes figures for the plotly.js it ships; the basic bundle must match it."""
    full = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()[:200]
    basic = PLOTLY_JS.read_text()[:200]
    version = re.search(r"plotly\.js v(\S+)", full)
    assert version is not None
    assert f"{BUNDLE_HEADER}{version.group(1)}\n" in basic


def test_downsampling_keeps_every_extreme_and_both_ends() -> None:
    values = np.sin(np.linspace(0, 40, 45_031)) + np.linspace(0, 1, 45_031)  # synthetic shape
    idx = minmax_indices(values, 2_000)
    assert len(idx) <= 2_000
    assert idx[0] == 0 and idx[-1] == len(values) - 1
    assert values[idx].max() == values.max() and values[idx].min() == values.min()
    assert np.all(np.diff(idx) > 0)  # still in time order


def test_figures_shown_are_downsampled_but_equal_the_results_metrics(
    perp: BarSeries, runs: dict[str, BacktestResult], tmp_path: Path
) -> None:
    res = runs["buy & hold"]  # a long drawdown and an open position: both figures matter
    eq = equity_figure(res, {})
    equity, drawdown = eq.data[0], eq.data[1]
    assert len(equity.y) <= MAX_POINTS < len(res.equity)
    # the deepest drawdown drawn is the metric (float32 display precision)
    assert float(np.min(drawdown.y)) == pytest.approx(-res.metrics["max_drawdown"] * 100, 1e-6)
    assert float(equity.y[-1]) == pytest.approx(res.metrics["final_equity"], 1e-7)
    rows = trade_rows(res, [perp])
    pnl = symbol_pnl(res, perp, rows)
    panel = symbol_figure(res, perp, pnl, "BTC-PERP (FTX)")
    assert float(panel.data[-1].y[-1]) == pytest.approx(float(res.final_equity) - 10_000, 1e-6)
    # and the numbers in the HTML tables are the full data's, to the cent
    text = write_report(res, perp, tmp_path / "r.html", title="hold", venue="FTX").read_text()
    final = f"{res.metrics['final_equity']:,.2f}"
    assert f"<td data-metric='final_equity'>{final}</td>" in text
    mdd = f"{res.metrics['max_drawdown'] * 100:,.2f}%"
    assert f"<td data-metric='max_drawdown'>{mdd}</td>" in text
    total = f"{float(res.final_equity) - 10_000:,.2f}"
    assert f"data-symbol-pnl='BTC-PERP'>{total}</td>" in text
