"""`make demo`: the main job end to end on the bundled real data, with embedded defaults only.

Each stage is a function that returns what it produced; the run ends with a summary table. The
demo grows with the project: every stage that exists is real (no stage only prints).
Everything it writes goes under ``--out`` (default ``data/demo``); re-running replaces it, and
every file is written atomically, so Ctrl-C at any point leaves nothing half-written behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from tessera import __version__
from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.backtest.report import write_report
from tessera.backtest.results import BacktestResult
from tessera.backtest.vectorized import sweep_sma_cross
from tessera.bootstrap import AppContext, bootstrap
from tessera.config import load_settings
from tessera.strategies import BollingerMeanReversion, BuyAndHold, ModelSignalStrategy, SmaCross

console = Console()


@dataclass
class DemoState:
    app: AppContext
    out: Path
    rows: list[tuple[str, str]] = field(default_factory=list)
    series: BarSeries | None = None
    results: dict[str, BacktestResult] = field(default_factory=dict)
    best: tuple[int, int] = (20, 120)
    frame: Any = None  # the bars as read (polars), for the stages that need columns
    scores: Any = None  # walk-forward model scores, one per bar (NaN before the held-out part)

    def note(self, key: str, value: str) -> None:
        self.rows.append((key, value))


def stage_data(state: DemoState) -> None:
    frame = read_bar_file(SAMPLE_BARS)
    state.frame = frame
    state.series = BarSeries.from_frame("BTCUSDT", frame)
    first, last = frame["open_time"][0], frame["open_time"][-1]
    state.note(
        "data",
        f"{len(frame):,} real 1-minute BTC bars, {first:%Y-%m-%d %H:%M} → "
        f"{last:%Y-%m-%d %H:%M} UTC ({SAMPLE_BARS.name})",
    )


def stage_import(state: DemoState) -> None:
    from tessera.data.importers import import_bundled
    from tessera.data.store import ParquetStore

    settings = state.app.settings
    store = ParquetStore(settings.data.store_dir or settings.data_dir / "store")
    written = import_bundled(store)
    cov = store.coverage()
    by: dict[str, int] = {}
    for c in cov:
        key = f"{c.exchange}/{c.dataset}"
        by[key] = by.get(key, 0) + c.rows
    state.note(
        "store",
        f"{store.root}: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(by.items()))
        + (" (already imported)" if not any(written.values()) else ""),
    )


def stage_live_ingest(state: DemoState) -> None:
    import asyncio

    from tessera.data.ingest import IngestService
    from tessera.data.store import ParquetStore
    from tessera.sim import ExchangeSimulator
    from tessera.sim.recording import BUNDLED_RECORDINGS, load_recording

    server = state.app.start_metrics()
    paths = [p for p in BUNDLED_RECORDINGS if p.name.startswith("btcusdt")]
    live_store = ParquetStore(state.out / "live-store")

    async def run() -> IngestService:
        sim = ExchangeSimulator(load_recording(paths), speed=30.0)
        async with sim:
            svc = IngestService(
                live_store,
                sim.ws_url,
                sim.rest_url,
                ["BTCUSDT"],
                kinds=("trade", "depth", "bookTicker", "kline"),
                flush_interval_s=1.0,
            )
            await svc.run(duration_s=20.0)
            return svc

    svc = asyncio.run(run())
    st = svc.stats
    book = svc.books["BTCUSDT"]
    bids, asks = book.top(1)
    spread = f"best bid {bids[0][0]} / ask {asks[0][0]}" if bids and asks else "book not synced"
    state.note(
        "live ingest",
        f"20 s of real BTCUSDT frames replayed at 30x by the local exchange: "
        f"{st.messages:,} messages, {sum(st.rows_written.values()):,} rows "
        f"written, book {book.state.value} ({spread}), metrics at "
        f"{server.url}",
    )


def stage_sweep(state: DemoState) -> None:
    assert state.series is not None
    cfg = state.app.settings.backtest
    grid = [(f, s) for f in range(5, 60, 5) for s in range(30, 300, 30) if f < s]
    # Tune on the first 70% only; the rest is held out for the backtest below.
    cut = int(len(state.series) * 0.7)
    t0 = time.perf_counter()
    table = sweep_sma_cross(state.series.slice(0, cut), grid, cfg, workers=2)
    best = table.row(0, named=True)
    state.best = (int(best["fast"]), int(best["slow"]))
    state.note(
        "sweep",
        f"{len(grid)} SmaCross windows on the first 70% in {time.perf_counter() - t0:.1f} s "
        f"(vectorized); best {state.best[0]}/{state.best[1]}: {best['total_return']:+.2%}",
    )


def stage_model(state: DemoState) -> None:
    """LightGBM, walk-forward over the held-out 30%: each window's model saw only the past."""
    from tessera.backtest.walkforward import walk_forward_scores
    from tessera.config.models import (
        FeatureConfig,
        LightGBMParams,
        ModelConfig,
        ValidationConfig,
    )

    frame = state.frame
    cut = int(len(frame) * 0.7)
    config = ModelConfig(
        name="demo-lightgbm",
        lightgbm=LightGBMParams(n_estimators=150, num_leaves=15),
        validation=ValidationConfig(n_splits=3, min_train_bars=10_000),
    )
    scores, windows = walk_forward_scores(
        frame,
        config,
        FeatureConfig(),
        state.out / "models",
        windows=2,
        min_train_bars=cut,
        seed=state.app.settings.seed,
    )
    state.scores = scores
    ics = ", ".join(f"{w.oos_ic:+.3f}" for w in windows)
    state.note(
        "model",
        f"LightGBM on 16 features, retrained for each of {len(windows)} held-out windows on the "
        f"bars before it (models {', '.join(w.model for w in windows)} in "
        f"{state.out / 'models'}; training CV IC {ics})",
    )


def stage_backtest(state: DemoState) -> None:
    assert state.series is not None
    settings = state.app.settings
    cut = int(len(state.series) * 0.7)
    test = state.series.slice(cut, len(state.series))
    fast, slow = state.best
    strategies = {
        f"sma_cross {fast}/{slow}": SmaCross(["BTCUSDT"], fast=fast, slow=slow),
        "mean_reversion": BollingerMeanReversion(["BTCUSDT"], window=120, entry_z=2.5),
        "buy & hold": BuyAndHold(["BTCUSDT"]),
    }
    series_of = dict.fromkeys(strategies, test)
    if state.scores is not None:
        name = "model_signal (walk-forward LightGBM)"
        # long while the model expects the next 15 minutes to beat a round trip's fees
        strategies = {
            name: ModelSignalStrategy(["BTCUSDT"], long_threshold=0.002),
            **strategies,
        }
        scored = state.series.with_predictions(state.scores)
        series_of[name] = scored.slice(cut, len(scored))
    for name, strat in strategies.items():
        t0 = time.perf_counter()
        res = BacktestEngine(settings.backtest, settings.risk).run([series_of[name]], [strat])
        state.results[name] = res
        speed = len(test) / (time.perf_counter() - t0)
        state.note(
            f"backtest {name}",
            f"return {res.metrics['total_return']:+.2%}, "
            f"max DD {res.metrics['max_drawdown']:.1%}, {res.metrics['trades']:.0f} "
            f"trades, fees {res.metrics['fees_paid']:,.0f} ({speed:,.0f} bars/s)",
        )
    main = next(iter(state.results))
    report = write_report(
        state.results[main],
        test,
        state.out / "backtest_report.html",
        title=f"Tessera demo: {main} on held-out real BTC bars",
        baselines={k: v for k, v in state.results.items() if k != main},
        notes={
            "data": SAMPLE_BARS.name,
            "held out": "last 30% (tuned on the first 70%)",
            "run_id": state.app.run_id,
        },
    )
    state.results[main].save(state.out / "backtest")
    state.note("report", str(report))


STAGES: list[tuple[str, Callable[[DemoState], None]]] = [
    ("Import the bundled real market data into the Parquet store", stage_import),
    ("Replay real Binance streams through the local exchange; ingest them live", stage_live_ingest),
    ("Load the real 1-minute BTC bars", stage_data),
    ("Sweep SmaCross windows (vectorized path)", stage_sweep),
    ("Train LightGBM walk-forward (every score from a model of the past)", stage_model),
    ("Backtest on held-out data vs baselines, write the HTML report", stage_backtest),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tessera-demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    args = parser.parse_args(argv)
    settings = load_settings(metrics_port=0)  # any free port: the demo never collides
    app = bootstrap(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    state = DemoState(app=app, out=args.out)
    console.print(Panel.fit(f"Tessera {__version__} demo · run {app.run_id}", style="bold cyan"))
    t_all = time.perf_counter()
    try:
        for i, (title, fn) in enumerate(STAGES, 1):
            with console.status(f"[{i}/{len(STAGES)}] {title} …"):
                t0 = time.perf_counter()
                fn(state)
            console.print(
                f"[green]✓[/] [{i}/{len(STAGES)}] {title} "
                f"[dim]({time.perf_counter() - t0:.1f} s)[/]"
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every file written so far is complete[/]")
        return 130
    table = Table(title=f"Demo summary ({time.perf_counter() - t_all:.0f} s)", show_lines=False)
    table.add_column("what", style="cyan", no_wrap=True)
    table.add_column("result")
    for key, value in state.rows:
        table.add_row(key, value)
    console.print(table)
    return 0


def _run() -> Any:
    sys.exit(main())


if __name__ == "__main__":
    _run()
