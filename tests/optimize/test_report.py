"""The robustness report: every statistic's section, its verdict, self-contained, and every plot
drawn by a real headless Chromium without a JavaScript error.

The inputs are real: a small study of SmaCross on the first week of the bundled BTC 1-minute
bars, the chosen point's backtest, and each statistic computed from them as `tessera optimize`
does (the report must hold whatever those modules give it, not hand-made numbers).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tessera.backtest import BarSeries
from tessera.backtest.results import BacktestResult
from tessera.backtest.sweep import run_sweep
from tessera.config import BacktestConfig
from tessera.console import json_plain
from tessera.optimize.cli import pbo_splits, trade_returns
from tessera.optimize.montecarlo import MonteCarlo, block_bootstrap, resample_trades
from tessera.optimize.overfit import (
    DeflatedSharpe,
    Pbo,
    deflated_sharpe,
    pbo_cscv,
    sharpe_ratios,
)
from tessera.optimize.report import robustness_document, write_robustness_report
from tessera.optimize.sensitivity import Sensitivity, sensitivity, sensitivity_points
from tessera.optimize.space import IntRange
from tessera.optimize.study import OptimizationResult, backtest_point, optimize, period_returns
from tessera.optimize.wfo import WalkForward, walk_forward_optimize

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SPACE = (IntRange("fast", 5, 30), IntRange("slow", 40, 160, step=10))


@dataclass
class Inputs:
    result: OptimizationResult
    best_run: BacktestResult
    dsr: DeflatedSharpe
    pbo: Pbo
    monte_carlo: list[MonteCarlo]
    sensitivity: Sensitivity
    walk_forward: WalkForward

    def kwargs(self) -> dict[str, Any]:
        return dict(vars(self))


@pytest.fixture(scope="module")
def week() -> list[BarSeries]:
    """The first 10,000 real 1-minute BTC bars of the bundled month (about a week)."""
    frame = pl.read_csv(SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz", n_rows=10_000)
    frame = frame.with_columns(
        pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("open_time")
    )
    return [BarSeries.from_frame("BTCUSDT", frame)]


@pytest.fixture(scope="module")
def inputs(week: list[BarSeries]) -> Inputs:
    cfg = BacktestConfig()
    result = optimize(week, "sma_cross", SPACE, cfg, trials=12, seed=7, sampler="random")
    assert result.best is not None
    best_run = backtest_point(week, "sma_cross", result.best.params, cfg)
    returns = period_returns(best_run, result.period)
    matrix = result.returns_matrix()
    splits = pbo_splits(matrix.shape[0])
    assert splits is not None
    points = sensitivity_points(SPACE, result.best.params)
    frame = run_sweep(week, "sma_cross", points, cfg, workers=1)
    rows = [({"fast": r["fast"], "slow": r["slow"]}, r["sharpe"]) for r in frame.to_dicts()]
    return Inputs(
        result=result,
        best_run=best_run,
        dsr=deflated_sharpe(returns, sharpe_ratios(matrix).tolist(), result.periods_per_year),
        pbo=pbo_cscv(matrix, splits=splits),
        monte_carlo=[
            resample_trades(trade_returns(best_run), runs=200, seed=1),
            block_bootstrap(returns, runs=200, seed=1),
        ],
        sensitivity=sensitivity(rows, SPACE, result.best.params, result.best.values[0], "maximize"),
        walk_forward=walk_forward_optimize(
            week, "sma_cross", SPACE, cfg, windows=2, trials=4, seed=7
        ),
    )


@pytest.fixture(scope="module")
def report(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "robustness.html"
    return write_robustness_report(path, **inputs.kwargs())


def test_the_report_shows_the_chosen_parameters_and_every_verdict(
    inputs: Inputs, report: Path
) -> None:
    text = report.read_text(encoding="utf-8")
    assert inputs.result.best is not None
    for name, value in inputs.result.best.params.items():
        assert f"data-param='{name}'>{value}<" in text
    verdicts = [
        inputs.dsr.verdict(),
        inputs.pbo.verdict(),
        inputs.sensitivity.verdict(),
        *(mc.summary() for mc in inputs.monte_carlo),
    ]
    for verdict in verdicts:
        assert html.escape(verdict) in text, verdict
    # the verdicts come before the evidence: a trader reads them first
    assert text.index("Verdicts") < text.index("<h2>Deflated Sharpe Ratio</h2>")
    for heading in (
        "Chosen parameters",
        "Walk-forward out-of-sample",
        "Probability of Backtest Overfitting",
        "Monte Carlo",
        "Parameter sensitivity",
        "Trial history",
    ):
        assert f"<h2>{heading}</h2>" in text, heading
    # one heatmap table for the one pair of parameters, every trial in the table
    assert text.count("<table class='heat'") == 1
    assert text.count("<tr class='complete'>") + text.count("<tr class='chosen'>") == len(
        inputs.result.complete()
    )


def test_the_report_is_one_self_contained_file(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert not re.search(r"<link[^>]*\bhref=[\"']?https?:", text)
    assert not re.search(r"<img[^>]*\bsrc=[\"']?https?:", text)
    assert text.count("<script") == 1 + text.count(
        'class="plotly-graph-div"'
    )  # plotly + 1 per plot


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make tools installs it)")
def test_every_plot_renders_in_chromium_without_a_javascript_error(
    report: Path, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    text = report.read_text(encoding="utf-8")
    plots = text.count('class="plotly-graph-div"')
    assert plots == 7  # equity, walk-forward, logit histogram, degradation, 2 fans, history
    # an error anywhere (a script, a promise plotly rejects) is written into the DOM we dump
    trap = (
        "<script>function t(m){document.documentElement.setAttribute('data-js-error',m)}"
        "window.addEventListener('error',e=>t(String(e.message)));"
        "window.addEventListener('unhandledrejection',e=>t(String(e.reason)));</script>"
    )
    page = tmp_path / "trapped.html"
    page.write_text(text.replace("<head>", "<head>" + trap, 1), encoding="utf-8")
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    run = subprocess.run(
        [*base, "--enable-logging=stderr", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = run.stdout
    assert 'data-js-error="' not in dom, re.findall(r'data-js-error="([^"]*)"', dom)
    assert "Uncaught" not in run.stderr, run.stderr[-2000:]
    # plotly.js drew each figure, and in it every trace the figure declares: a trace type the
    # embedded basic bundle lacks (heatmap, histogram) would be skipped without an error
    assert dom.count('class="plot-container plotly"') == plots
    declared = [trace["type"] for trace in _declared_traces(text)]
    assert set(declared) == {"scatter", "bar"}
    assert dom.count('class="trace scatter') == declared.count("scatter")
    assert dom.count('class="trace bars"') == declared.count("bar") == 1  # the logit histogram
    assert dom.count('class="point"') >= 3  # its bars


def _declared_traces(page: str) -> list[dict[str, Any]]:
    """The traces of every ``Plotly.newPlot(id, data, ...)`` call of the page."""
    decoder = json.JSONDecoder()
    traces: list[dict[str, Any]] = []
    for call in re.finditer(r'Plotly\.newPlot\(\s*"[0-9a-f-]+",\s*', page):
        data, _ = decoder.raw_decode(page, call.end())
        traces += data
    return traces


def test_a_multi_objective_report_lists_the_pareto_front(
    week: list[BarSeries], inputs: Inputs, tmp_path: Path
) -> None:
    cfg = BacktestConfig()
    multi = optimize(
        week, "sma_cross", SPACE, cfg, objectives=("sharpe", "max_drawdown"), trials=8, seed=3
    )
    assert multi.best is not None and multi.pareto
    best_run = backtest_point(week, "sma_cross", multi.best.params, cfg)
    path = write_robustness_report(
        tmp_path / "multi.html",
        result=multi,
        best_run=best_run,
        dsr=inputs.dsr,
        pbo=None,
        monte_carlo=[],
        sensitivity=None,
        walk_forward=None,
        skipped={"pbo": "only 1 complete trial"},
    )
    text = path.read_text(encoding="utf-8")
    n = len(multi.pareto)
    assert f"Pareto front ({n} trial{'' if n == 1 else 's'})" in text
    assert "Trials on the first two objectives" in text
    assert "sharpe (maximize)" in text and "max_drawdown (minimize)" in text
    # a statistic that was not computed says why, where it would be
    assert "Not computed: only 1 complete trial" in text
    assert "Walk-forward out-of-sample" not in text


def test_the_json_document_holds_the_same_numbers_and_is_plain_json(inputs: Inputs) -> None:
    doc = json.loads(
        json.dumps(json_plain(robustness_document(**inputs.kwargs())), allow_nan=False)
    )
    assert inputs.result.best is not None
    assert doc["best"]["params"] == inputs.result.best.params
    assert doc["deflated_sharpe"]["dsr"] == inputs.dsr.dsr
    assert doc["deflated_sharpe"]["verdict"] == inputs.dsr.verdict()
    assert (
        doc["pbo"]["pbo"] == inputs.pbo.pbo and len(doc["pbo"]["logits"]) == inputs.pbo.combinations
    )
    assert doc["sensitivity"]["share"] == inputs.sensitivity.share
    assert [m["method"] for m in doc["monte_carlo"]] == [m.method for m in inputs.monte_carlo]
    assert doc["monte_carlo"][1]["final_return"]["p50"] == (
        inputs.monte_carlo[1].final_return.percentile(50)
    )
    assert len(doc["walk_forward"]["windows"]) == 2
    assert len(doc["trials"]["rows"]) == len(inputs.result.trials) == 12
