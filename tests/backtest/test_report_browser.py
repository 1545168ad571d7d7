"""The HTML report, opened in a real headless Chromium: every plot renders (no network needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.report import write_report
from tessera.config import BacktestConfig
from tessera.strategies import BuyAndHold, SmaCross

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make tools installs it)")
def test_report_renders_every_plot_in_chromium(btc_series: BarSeries, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    cfg = BacktestConfig()
    res = BacktestEngine(cfg).run([btc_series], [SmaCross(["BTCUSDT"], fast=20, slow=120)])
    hold = BacktestEngine(cfg).run([btc_series], [BuyAndHold(["BTCUSDT"])])
    report = write_report(res, btc_series, tmp_path / "r.html", baselines={"buy & hold": hold})
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    dom = subprocess.run(
        [*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    # plotly.js (the embedded basic bundle) ran: each of the three figures became an SVG plot
    # with drawn traces: lines for equity, drawdown, price and PnL, markers, histogram bars
    assert dom.count('class="plot-container plotly"') == 3
    assert dom.count('class="main-svg"') >= 3
    assert dom.count('class="scatterlayer mlayer"') >= 3
    assert dom.count('class="js-line"') >= 5
    assert dom.count('class="point plotly-customdata"') == len(res.fills)  # a marker per fill
    assert dom.count('class="point"') >= 5  # histogram bars
    assert "Trade PnL distribution" in dom and "Daily returns" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1400,2400", report.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 50_000  # a page of charts, not a blank one
