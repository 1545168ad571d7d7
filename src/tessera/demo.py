"""`make demo`: the main job end to end on the bundled real data, with embedded defaults only.

Each stage is a function that returns what it produced; the run ends with a summary table. The
demo grows with the project: every stage that exists is real (no stage only prints).
Everything it writes goes under ``--out`` (default ``data/demo``); re-running replaces it, and
every file is written atomically, so Ctrl-C at any point leaves nothing half-written behind
(the paper bot's SQLite ledger is transactional; Ctrl-C there stops the bot gracefully and the
summary still shows what it did). The log goes to ``<out>/demo.log``; warnings also show here.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from rich.console import RenderableType
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from tessera import __version__
from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.backtest.report import write_report
from tessera.backtest.results import BacktestResult
from tessera.backtest.vectorized import sweep_sma_cross
from tessera.bootstrap import AppContext, bootstrap
from tessera.config import load_settings
from tessera.console import make_console
from tessera.logging import configure_logging
from tessera.strategies import BollingerMeanReversion, BuyAndHold, ModelSignalStrategy, SmaCross

console = make_console()


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
    windows: list[Any] = field(default_factory=list)  # walk-forward windows (their models)
    paper_seconds: float = 60.0
    paper_speed: float = 3000.0  # replay speed of the paper stage: 3000x = 50 one-minute bars/s
    interrupted: bool = False
    files: dict[str, Path] = field(default_factory=dict)

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
    state.windows = windows
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
    state.files["report"] = report


PAPER_SYMBOL = "BTCUSDT"  # the simulator's exchangeInfo lists spot symbols; the bars are BTC-PERP
PAPER_CASH = Decimal("10000")


def _kline_table(frame: Any) -> Any:
    from tessera.sim.bars import kline_table

    return kline_table(frame)


class _StatsProgress(Progress):
    """A progress bar with a live line of figures under it."""

    stats = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.stats:
            yield Text(self.stats, style="dim")


def _remove_db(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


def stage_paper(state: DemoState) -> None:
    """The trading bot in paper mode against the local exchange replaying held-out bars.

    The bars come after the last walk-forward window's training data, so the model that trades
    them never saw them. The first bars before that point are released up front, so that the
    bot's REST warm-up (features, model, strategies) finds history; the replay starts once the
    bot is warmed up. The bot runs as `tessera run --mode paper` would: SQLite ledger in the
    output folder, in-process signal queue, the metrics endpoint live.

    Time: the bot stamps bars with their own (2022) close times and everything else with the
    wall clock; the one wall-clock limit that the compressed replay would trip is the order
    rate (an hour of market in about a second), so it is scaled by the replay speed.
    """
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from tessera.config.models import StrategyRef
    from tessera.execution.persistence import ExecutionStore
    from tessera.features.engine import IncrementalFeatures
    from tessera.live.assembly import bot_options
    from tessera.live.bot import TradingBot
    from tessera.models import load_artifact
    from tessera.models.featureset import spec_from_document
    from tessera.models.registry import ModelRegistry
    from tessera.sim import ExchangeSimulator
    from tessera.sim.market import SimMarket
    from tessera.strategies.base import strategy_class

    assert state.windows, "the model stage comes first"
    settings = state.app.settings
    frame = state.frame
    window = state.windows[-1]
    registry = state.out / "models"
    fast, slow = state.best
    refs = [
        # half the account each: they share one paper account and its risk limits
        StrategyRef(name="model_signal", params={"long_threshold": 0.002, "size": 0.45}),
        StrategyRef(name="sma_cross", params={"fast": fast, "slow": slow, "size": 0.45}),
    ]
    # What the bot fetches over REST at start: max(strategy warm-up, model warm-up + 1) + 5
    # closed bars; it drops the newest row (on a real exchange it is still open).
    artifact = load_artifact(ModelRegistry(registry).resolve_ref(window.model))
    spec = spec_from_document(artifact.manifest["features"]["spec"])
    strategy_warmups = [
        strategy_class(r.name)([PAPER_SYMBOL], strategy_id=r.name, **r.params).warmup_bars
        for r in refs
    ]
    need = max([*strategy_warmups, IncrementalFeatures(spec).warmup + 1])
    pre = min(max(need + 5, 10), 1000) + 1
    lo = max(0, window.test_start - pre)
    pre = window.test_start - lo
    # the order-rate limit counts market time: stretch it by the speed of the replay
    risk = settings.risk.model_copy(
        update={"max_orders_per_second": settings.risk.max_orders_per_second * state.paper_speed}
    )
    market = SimMarket.from_tables(klines={PAPER_SYMBOL: _kline_table(frame.slice(lo))})
    held_out = len(frame) - window.test_start
    bars_per_s = state.paper_speed / 60.0
    expected = min(held_out, round(state.paper_seconds * bars_per_s))

    db = state.out / "paper.db"
    _remove_db(db)  # a fresh paper account each run (the bot restores balances from its ledger)
    db_url = f"sqlite:///{db.resolve()}"
    server = state.app.start_metrics()
    console.print(
        f"  paper bot: {held_out:,} held-out bars after {window.model}'s training data, "
        f"replayed at {bars_per_s:.0f} bars/s by the local exchange as {PAPER_SYMBOL} "
        f"(the bundled BTC-PERP bars under a spot symbol its exchangeInfo lists)\n"
        f"  live metrics: [link={server.url}]{server.url}[/link] · ledger: {db}"
    )

    async def run() -> tuple[TradingBot, int, float, bool]:
        sim = ExchangeSimulator(market, speed=state.paper_speed, autostart=False)
        async with sim:
            sim.release(pre)  # history for the warm-up; the replay waits for the bot
            bot = TradingBot(
                bot_options(
                    settings,
                    mode="paper",
                    strategies=refs,
                    symbols=[PAPER_SYMBOL],
                    rest_url=sim.rest_url,
                    ws_url=sim.ws_url,
                    database_url=db_url,
                    run_id=state.app.run_id,
                    # the demo is self-contained: its own ledger and queue, whatever the
                    # configuration names, on the bundled 1m bars
                    redis_url=None,
                    interval="1m",
                    risk=risk,
                    model_ref=window.model,
                    registry_dir=registry,
                    paper_balances={"USDT": str(PAPER_CASH)},
                    duration_s=state.paper_seconds,
                    consumer=f"demo-{state.app.run_id}",
                )
            )
            bot.health = server.health  # /readyz reports the bot
            task = asyncio.create_task(bot.run(), name="paper-bot")
            t0: float | None = None
            replay_over = False
            columns = (
                TextColumn("  [progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with _StatsProgress(*columns, console=console, transient=False) as progress:
                bar = progress.add_task("warming up", total=expected)
                while not task.done():
                    if t0 is None and bot.health.ready and not bot.warming:
                        sim.start_replay()
                        t0 = time.perf_counter()
                    if t0 is not None and sim.stats.replay_done and not replay_over:
                        replay_over = True  # every held-out bar was replayed: stop early
                        await asyncio.sleep(0.5)  # the last bars on their way
                        bot.stopping.set()
                    replayed = sim.head - pre
                    if hasattr(bot, "account") and bot.paper is not None:
                        progress.stats = (
                            f"  signals {bot.signals_published} · orders {bot.orders_sent} · "
                            f"fills {len(bot.paper.trades)} · paper equity "
                            f"{bot.equity():,.2f} USDT"
                        )
                    progress.update(
                        bar,
                        completed=min(replayed, expected),
                        description="bars replayed" if t0 is not None else "warming up",
                    )
                    await asyncio.wait({task}, timeout=0.1)
                progress.update(bar, completed=min(sim.head - pre, expected))
            await task  # the bot's own failure surfaces here
            elapsed = time.perf_counter() - t0 if t0 is not None else 0.0
            # stopped before its time with bars left: Ctrl-C (the bot's SIGINT handler)
            early = not replay_over and elapsed < state.paper_seconds - 0.5
            return bot, sim.head - pre, elapsed, early

    bot, replayed, elapsed, early = asyncio.run(run())
    state.interrupted = early

    store = ExecutionStore(db_url)
    try:
        orders = store.list_orders(limit=1_000_000)
        fills = store.all_fills()
        positions = store.positions()
        balances = store.latest_balances("paper")
    finally:
        store.close()
    by_status: dict[str, int] = {}
    for o in orders:
        by_status[o.status.value.lower()] = by_status.get(o.status.value.lower(), 0) + 1
    last = bot.last_prices.get(PAPER_SYMBOL)
    held = {asset: free + locked for asset, (free, locked) in balances.items()}
    equity = held.get("USDT", Decimal(0)) + held.get("BTC", Decimal(0)) * (last or Decimal(0))
    fees = sum((f.fee for f in fills), Decimal(0))
    times = frame["open_time"]
    upto = times[min(window.test_start + max(replayed, 1), len(frame)) - 1]
    state.note(
        "paper trading",
        f"{replayed:,} held-out bars ({times[window.test_start]:%Y-%m-%d %H:%M} → "
        f"{upto:%Y-%m-%d %H:%M} UTC) replayed by the local exchange as {PAPER_SYMBOL} "
        f"(bundled BTC-PERP bars) in {elapsed:.0f} s; TradingBot in paper mode with "
        f"model_signal ({window.model}) and sma_cross {fast}/{slow}: "
        f"{bot.signals_published} signals; metrics were at {server.url}"
        + (" [interrupted by Ctrl-C: stopped gracefully]" if early else ""),
    )
    state.note(
        "paper orders",
        f"{len(orders)} orders ("
        + ", ".join(f"{n} {k}" for k, n in sorted(by_status.items()))
        + f"), {len(fills)} fills, fees {fees:,.2f} USDT",
    )
    fees_of: dict[str, Decimal] = {}
    for f in fills:  # from the fills: the stored positions do not carry fees yet
        fees_of[f.strategy] = fees_of.get(f.strategy, Decimal(0)) + f.fee
    by_strategy = {p.strategy: p for p in positions}
    for strat in bot.strategies:
        p = by_strategy.get(strat.strategy_id)
        if p is None:
            state.note(f"paper {strat.strategy_id}", "no trades")
            continue
        state.note(
            f"paper {p.strategy}",
            f"position {p.qty.normalize():f} {p.symbol.removesuffix('USDT')} ("
            f"{p.qty * (last or Decimal(0)):,.2f} USDT), realized PnL {p.realized_pnl:+,.2f} "
            f"USDT before fees of {fees_of.get(p.strategy, Decimal(0)):,.2f} USDT",
        )
    state.note(
        "paper equity",
        f"{equity:,.2f} USDT at the last close {last} (started with {PAPER_CASH:,.2f}: "
        f"{equity / PAPER_CASH - 1:+.2%})",
    )
    state.files["database"] = db


STAGES: list[tuple[str, Callable[[DemoState], None]]] = [
    ("Import the bundled real market data into the Parquet store", stage_import),
    ("Replay real Binance streams through the local exchange; ingest them live", stage_live_ingest),
    ("Load the real 1-minute BTC bars", stage_data),
    ("Sweep SmaCross windows (vectorized path)", stage_sweep),
    ("Train LightGBM walk-forward (every score from a model of the past)", stage_model),
    ("Backtest on held-out data vs baselines, write the HTML report", stage_backtest),
    (
        "Paper-trade the model and SmaCross on held-out bars replayed by the local exchange",
        stage_paper,
    ),
]
OWN_PROGRESS = (stage_paper,)  # stages that draw their own progress bar (no spinner around)


class _ConsoleWarnings(logging.Handler):
    """Warnings and errors on the demo's console (above any progress bar); the rest goes to
    the log file."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            console.print(self.format(record), style="yellow", markup=False, highlight=False)
        except Exception:
            self.handleError(record)


def _log_to(path: Path, level: str) -> IO[str]:
    fh = path.open("w", encoding="utf-8", buffering=1)
    configure_logging(level, json=False, stream=fh)
    root = logging.getLogger()
    to_file = next(h for h in root.handlers if h.get_name() == "tessera")
    warn = _ConsoleWarnings(logging.WARNING)
    warn.setFormatter(to_file.formatter)
    root.addHandler(warn)
    return fh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tessera-demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    parser.add_argument(
        "--paper-seconds",
        type=float,
        default=60.0,
        help="how long the paper bot trades the replayed held-out bars (default 60)",
    )
    parser.add_argument(
        "--paper-speed",
        type=float,
        default=3000.0,
        help="replay speed of the paper stage (default 3000: 50 one-minute bars per second)",
    )
    args = parser.parse_args(argv)
    if args.paper_seconds <= 0 or args.paper_speed <= 0:
        parser.error("--paper-seconds and --paper-speed must be positive")
    settings = load_settings(metrics_port=0)  # any free port: the demo never collides
    app = bootstrap(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "demo.log"
    log_file = _log_to(log_path, settings.log_level)
    state = DemoState(
        app=app, out=args.out, paper_seconds=args.paper_seconds, paper_speed=args.paper_speed
    )
    console.print(Panel.fit(f"Tessera {__version__} demo · run {app.run_id}", style="bold cyan"))
    t_all = time.perf_counter()
    code = 0
    try:
        for i, (title, fn) in enumerate(STAGES, 1):
            t0 = time.perf_counter()
            if fn in OWN_PROGRESS:
                console.print(f"[bold]→[/] [{i}/{len(STAGES)}] {title}")
                fn(state)
            else:
                with console.status(f"[{i}/{len(STAGES)}] {title} …"):
                    fn(state)
            if state.interrupted:
                raise KeyboardInterrupt
            console.print(
                f"[green]✓[/] [{i}/{len(STAGES)}] {title} "
                f"[dim]({time.perf_counter() - t0:.1f} s)[/]"
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every file written so far is complete[/]")
        code = 130
    table = Table(
        title=f"Demo summary ({time.perf_counter() - t_all:.0f} s)"
        + (" · interrupted" if code else ""),
        show_lines=False,
    )
    table.add_column("what", style="cyan", no_wrap=True)
    table.add_column("result")
    for key, value in state.rows:
        table.add_row(key, Text(value))  # plain text: "[...]" in a value is not markup
    if "database" in state.files:
        table.add_row("database", Text(f"{state.files['database']} (paper orders and fills)"))
    table.add_row("logs", Text(str(log_path)))
    console.print(table)
    log_file.flush()
    return code


def _run() -> Any:
    sys.exit(main())


if __name__ == "__main__":
    _run()
