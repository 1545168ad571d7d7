"""freqtrade's spot backtesting and ours trade the benchmark's SmaCross alike, on real bars.

Why: bench/bench_backtest.py times freqtrade 2026.9's `freqtrade backtesting` against
`tessera backtest` (issue 20), and a speed ratio means something only if both engines do the same
work. Here both run the benchmark's own rules and configs — bench/peers/freqtrade_backtest/
(strategy, config.json, the markets from `tessera sim serve`) on freqtrade's side,
``CLI_BACKTEST_YAML`` and ``CLI_RISK_YAML`` of bench_backtest.py on ours — on the bundled real
month of 1m BTC bars (samples/bars, 45,031 bars), and every round trip must agree: entry and exit
times, entry and exit prices (the next bar's open), and the count. The sizes differ by design
(Tessera keeps 1 % of the equity back when it sizes an entry; freqtrade stakes the wallet), so
the final balances are compared only loosely.

freqtrade runs from ``bench/.venv-freqtrade`` (`make peers`): skipped without it, a failure in CI,
as tests/sim/test_freqtrade_client.py. About 30 s (freqtrade's start-up and its loop).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_required import missing
from tessera.backtest import BacktestEngine, BarSeries
from tessera.config import BacktestConfig, RiskConfig
from tessera.data.barfile import read_bar_file
from tessera.strategies import SmaCross

REPO = Path(__file__).resolve().parents[2]
BARS = REPO / "samples" / "bars" / "btc-perp-20211231-20220201_1m.csv.gz"
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "peers" / "freqtrade_backtest"))

from ft_backtest import FreqtradeBacktest, venv_python  # noqa: E402

from bench_backtest import CLI_BACKTEST_YAML, CLI_RISK_YAML, FAST, SLOW  # noqa: E402


@pytest.fixture(scope="module")
def bars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real month as the Parquet file the benchmark writes (open_time + OHLCV)."""
    path = tmp_path_factory.mktemp("bars") / "btc_1m.parquet"
    read_bar_file(BARS).select("open_time", "open", "high", "low", "close", "volume").write_parquet(
        path
    )
    return path


@pytest.fixture(scope="module")
def freqtrade_run(bars: Path) -> Iterator[dict[str, Any]]:
    if venv_python() is None:
        missing("bench/.venv-freqtrade missing: run `make peers` (creates freqtrade's venv, ~70 s)")
    with FreqtradeBacktest(bars) as ft:
        yield ft.run(timeout=240)  # within pytest's own 300 s, so freqtrade is killed first


def test_freqtrade_and_tessera_make_the_same_round_trips_on_the_benchmarks_rules(
    bars: Path, freqtrade_run: dict[str, Any]
) -> None:
    cfg = BacktestConfig.model_validate(yaml.safe_load(CLI_BACKTEST_YAML))
    risk = RiskConfig.model_validate(yaml.safe_load(CLI_RISK_YAML))
    assert cfg.strategy.params == {"fast": FAST, "slow": SLOW}
    series = BarSeries.from_frame("BTCUSDT", read_bar_file(bars))
    result = BacktestEngine(cfg, risk).run([series], [SmaCross(["BTCUSDT"], fast=FAST, slow=SLOW)])
    assert not result.denials and result.halted_at is None  # no risk limit bound
    ours = [
        (t.entry_time // 1_000_000, t.exit_time // 1_000_000, float(t.entry_price),
         float(t.exit_price))
        for t in result.trades
        if t.closed_by_order and t.exit_time is not None and t.exit_price is not None
    ]  # fmt: skip
    theirs = [tuple(t) for t in freqtrade_run["round_trips"]]
    # freqtrade closes a position still open at the end (force_exit); ours is marked, not closed
    forced = freqtrade_run["exit_reasons"].get("force_exit", 0)
    assert forced <= 1
    assert len(ours) > 500  # 931 round trips on the month: a real comparison
    assert freqtrade_run["trades"] == len(ours) + forced
    assert [t[:2] for t in theirs[: len(ours)]] == [t[:2] for t in ours]  # the times
    prices = [p for t in ours for p in t[2:]]
    assert [p for t in theirs[: len(ours)] for p in t[2:]] == pytest.approx(prices, rel=1e-12)
    assert int(result.metrics["trades"]) == len(ours)
    # sizes differ (see the module docstring), the outcome of the same trades hardly
    start = float(cfg.initial_cash)
    ours_pnl = float(result.final_equity) - start
    theirs_pnl = float(freqtrade_run["final_balance"]) - start
    assert ours_pnl == pytest.approx(theirs_pnl, rel=0.05, abs=0.01 * start)
