"""Tick-to-order latency of the live bot, with the in-process queue and through Redis.

    .venv/bin/python bench/bench_live.py [--seconds 225] [--speed 5] [--sync full normal]
        [--stack embedded production]

The defaults give each configuration >= 1,000 orders (one per scored 1-second bar; the
simulator loops its ~6-minute recording), so that the p99 is over a thousand samples: the
order count is printed with each configuration's figures, and a warning when it is short.

Tick-to-order: a closed-kline websocket frame received by the bot -> the order request on the
wire to the exchange. In between: JSON decode, incremental features, the default LightGBM
model (300 trees, the default feature set, trained here on the bundled real 1m bars), the
strategy, the signal queue, the pre-trade risk checks and exchange filters, and the durable
order intent (the order manager commits it before sending). The exchange's answer (ack) is
reported separately.

The exchange is the simulator in its own process (`tessera sim serve`) replaying the bundled
real Binance recordings; the bot trades it in live mode through ccxt and the signed REST API.
The bench strategy alternates its target on every bar the model has scored, so that every bar
yields an order to time: a latency sample, not a strategy.

The simulator advertises (and enforces) 1000 orders per 10 s, so that the shared rate
limiter, which would rightly hold orders back at Binance's 50, does not enter the figures.

Configurations: (1) embedded: in-process queue, SQLite; (2) production stack: Redis Streams
queue and shared rate limiter, PostgreSQL; each with ``database_sync=full`` (the intent's commit
is fsynced: it survives a power loss) and ``normal`` (it survives a kill of the bot, not the
machine going down). The share of each stage is reported from the bot's own per-signal traces
(`TradingBot.traces`).

Peers, for scale: freqtrade decides once per candle loop (seconds), hummingbot once per 1 s
clock tick.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, get_args

import psycopg

from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.config.models import ModelConfig, RiskConfig, StrategyRef
from tessera.config.settings import DatabaseSync
from tessera.live.bot import BotOptions, TradingBot
from tessera.strategies.base import Bar, Strategy, StrategyContext, register_strategy

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
KEY, SECRET = "bench-key", "bench-secret"
MIN_ORDERS = 1_000


@register_strategy
class FlipOnScore(Strategy):
    """Alternates long/flat on every bar the model has scored: every bar becomes an order to
    time (the model is still evaluated on every bar, its cost is in the figures)."""

    name = "bench_flip_on_score"
    known_params: ClassVar[frozenset[str] | None] = frozenset()

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        self.long = False

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        score = ctx.prediction(bar.symbol)
        if score is None:
            return
        self.long = not self.long
        ctx.target_position(bar.symbol, Decimal("0.001") if self.long else Decimal(0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim(port: int, speed: float) -> subprocess.Popen[bytes]:
    tessera = str(Path(sys.executable).with_name("tessera"))
    proc = subprocess.Popen(
        [tessera, "--metrics-port", "0", "sim", "serve", "--port", str(port), "--speed",
         f"{speed}x", "--api-key", KEY, "--api-secret", SECRET, "--start-now",
         "--max-orders-10s", "1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    raise RuntimeError("the simulator did not start")


def train_default_model(registry: Path) -> None:
    from tessera.models import train

    bars = read_bar_file(SAMPLE_BARS)
    print(f"training the default LightGBM model on {len(bars):,} real 1m bars ...", flush=True)
    train(bars, ModelConfig(name="default"), registry_dir=registry)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_config(
    label: str,
    db: str,
    redis_url: str | None,
    port: int,
    registry: Path,
    seconds: float,
    sync: DatabaseSync,
    gc_probe: bool = False,
) -> dict[str, list[float]]:
    options = BotOptions(
        mode="live",
        strategies=[StrategyRef(name="bench_flip_on_score")],
        symbols=["BTCUSDT"],
        interval="1s",
        rest_url=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}",
        database_url=db,
        run_id=f"bench{secrets.token_hex(3)}",
        risk=RiskConfig(max_orders_per_second=100),
        redis_url=redis_url,
        database_sync=sync,
        api_key=KEY,
        api_secret=SECRET,
        model_ref="default",
        registry_dir=registry,
        signal_stream=f"tessera:bench:{secrets.token_hex(3)}",
        duration_s=seconds,
    )
    bot = TradingBot(options)
    print(f"[{label}] running the bot for {seconds:.0f} s ...", flush=True)
    pauses = GcPauses(lambda: bot.health.ready)
    before_passes = reconcile_totals()
    gc.callbacks.append(pauses)
    probe: list[float] = []

    async def trade() -> None:
        task = asyncio.create_task(bot.run())
        if gc_probe:
            # one full collection on the event loop a minute into trading: what the interpreter
            # does now and then by itself (rarely within a bench's few minutes)
            for _ in range(1200):  # ready within two minutes, or no probe
                if bot.health.ready or task.done():
                    break
                await asyncio.sleep(0.1)
            await asyncio.wait([task], timeout=min(60.0, seconds / 2))
            if not task.done():
                t0 = time.perf_counter()
                gc.collect()
                probe.append((time.perf_counter() - t0) * 1e3)
        await task

    try:
        asyncio.run(trade())
    finally:
        gc.callbacks.remove(pauses)
    stages: dict[str, list[float]] = {}
    if probe:
        stages["full_gc_probe_ms"] = probe
    lag = getattr(bot, "loop_lag", None)  # tessera.live.looplag (absent in older trees)
    for trace in bot.traces:
        for name, us in trace.stages_us().items():
            stages.setdefault(name, []).append(us)
        if lag is not None:  # the longest stall of the event loop on this order's way
            stages.setdefault("loop_stall_ms", []).append(
                lag.stall_within(trace.recv, trace.sent) * 1e3
            )
    after_passes = reconcile_totals()
    if before_passes and after_passes and after_passes[0] > before_passes[0]:
        # the bot's reconciliation passes (start-up and every 60 s) hold the executor
        count = after_passes[0] - before_passes[0]
        stages["reconcile_mean_ms"] = [(after_passes[1] - before_passes[1]) / count * 1e3]
    if lag is not None:
        stages["loop_lag_ms"] = [s * 1e3 for _, s in lag.samples]
        if lag.samples:  # the long stalls, and when: seconds into trading
            t0 = lag.samples[0][0]
            stalls = [(ns, s) for ns, s in lag.samples if s > 0.05]
            stages["loop_stall_at_s"] = [(ns - t0) / 1e9 for ns, _ in stalls]
            stages["loop_stall_of_ms"] = [s * 1e3 for _, s in stalls]
    for gen, ms in pauses.by_gen.items():
        stages[f"gc{gen}_ms"] = ms
    return stages


def reconcile_totals() -> tuple[float, float] | None:
    """(passes, seconds) of the bot's reconciliations so far (None: a tree without them)."""
    from tessera import metrics

    histogram = getattr(metrics, "RECONCILIATION_SECONDS", None)
    if histogram is None:
        return None
    got = {x.name: x.value for m in histogram.collect() for x in m.samples}
    return (
        got["tessera_reconciliation_seconds_count"],
        got["tessera_reconciliation_seconds_sum"],
    )


class GcPauses:
    """The interpreter's garbage-collector pauses while the bot runs (a `gc.callbacks` entry):
    a collection of the oldest generation walks every tracked object of the process — the
    imported libraries and the loaded model included — and holds the event loop meanwhile."""

    def __init__(self, trading: Callable[[], bool]) -> None:
        self.by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._trading = trading  # only the pauses while the bot trades: start-up's are not timed
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        elif self._trading():
            self.by_gen[info["generation"]].append((time.perf_counter() - self._t0) * 1e3)


def report(label: str, stages: dict[str, list[float]]) -> None:
    n = len(stages.get("tick_to_order", []))
    print(f"\n{label}: {n} orders")
    if n < MIN_ORDERS:
        print(f"  (fewer than {MIN_ORDERS:,} orders: the p99 is not over enough samples)")
    total = statistics.median(stages["tick_to_order"]) if n else 0.0
    print(f"  {'stage':<18}{'median µs':>11}{'p99 µs':>11}{'share of median':>17}")
    for name in (
        "features_model",
        "strategy",
        "queue",
        "risk_filters",
        "persist_intent",
        "tick_to_decision",
        "tick_to_order",
        "exchange_ack",
    ):
        v = stages.get(name, [])
        if not v:
            continue
        med = statistics.median(v)
        share = (
            f"{med / total * 100:5.1f}%" if name not in ("tick_to_order", "exchange_ack") else ""
        )
        print(f"  {name:<18}{med:>11.0f}{pct(v, 0.99):>11.0f}{share:>17}")
    if n:
        t2o = stages["tick_to_order"]
        print(f"  tick_to_order p99.9 {pct(t2o, 0.999):,.0f} µs, max {max(t2o):,.0f} µs")
        # where the slowest orders spent their time (every trace has every stage)
        names = ("features_model", "strategy", "queue", "risk_filters", "persist_intent")
        for i in sorted(range(n), key=t2o.__getitem__)[-3:]:
            parts = ", ".join(f"{k} {stages[k][i]:,.0f}" for k in names if k in stages)
            if stall := stages.get("loop_stall_ms"):
                parts += f"; the event loop stalled {stall[i] * 1e3:,.0f} µs meanwhile"
            print(f"    slow order: {t2o[i]:,.0f} µs = {parts}")
    if lags := stages.get("loop_lag_ms"):
        print(
            f"  event-loop lag while trading ({len(lags):,} samples, every 50 ms): median "
            f"{statistics.median(lags):.2f} ms, p99 {pct(lags, 0.99):.2f} ms, "
            f"max {max(lags):.1f} ms"
        )
    if mean := stages.get("reconcile_mean_ms"):
        print(f"  reconciliation passes (orders wait for them): {mean[0]:,.0f} ms on average")
    if at := stages.get("loop_stall_at_s"):
        of = stages["loop_stall_of_ms"]
        listed = ", ".join(f"{ms:,.0f} ms at {t:,.1f} s" for t, ms in zip(at, of, strict=True))
        print(f"  event-loop stalls over 50 ms (seconds into trading): {listed}")
    gcs = [
        f"gen{g} {len(ms):,} (total {sum(ms):,.1f} ms, max {max(ms):.2f} ms)"
        for g in (0, 1, 2)
        if (ms := stages.get(f"gc{g}_ms"))
    ]
    print(f"  gc pauses while trading: {'; '.join(gcs) or 'none'}")
    if probe := stages.get("full_gc_probe_ms"):
        print(f"  the probe's full collection while trading: {probe[0]:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=225.0, help="bot run per configuration")
    ap.add_argument("--speed", type=float, default=5.0, help="replay speed (1s bars per second)")
    ap.add_argument(
        "--sync",
        nargs="+",
        choices=get_args(DatabaseSync),
        default=list(get_args(DatabaseSync)),
        help="database_sync values to run",
    )
    ap.add_argument(
        "--stack",
        nargs="+",
        choices=["embedded", "production"],
        default=["embedded", "production"],
        help="embedded: in-process queue + SQLite; production: Redis Streams + PostgreSQL",
    )
    ap.add_argument(
        "--full-gc-probe",
        action="store_true",
        help="run one full garbage collection on the event loop a minute into trading, timed",
    )
    args = ap.parse_args()
    syncs: list[DatabaseSync] = args.sync
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    from tessera.logging import configure_logging

    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-live-"))
    registry = work / "models"
    train_default_model(registry)
    results = {}
    configs = [
        (f"{name}, database_sync={sync}", use_redis, sync)
        for stack, name, use_redis in (
            ("embedded", "embedded (in-process queue, SQLite)", False),
            ("production", "production (Redis Streams, PostgreSQL)", True),
        )
        if stack in args.stack
        for sync in syncs
    ]
    try:
        for label, use_redis, sync in configs:
            port = free_port()
            sim = start_sim(port, args.speed)
            created: str | None = None
            try:
                if use_redis:
                    created = f"tessera_bench_{secrets.token_hex(3)}"
                    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                        conn.execute(f'CREATE DATABASE "{created}"')
                    db = f"postgresql://postgres@127.0.0.1:5432/{created}"
                    redis_url: str | None = "redis://127.0.0.1:6379/0"
                else:
                    db, redis_url = f"sqlite:///{work / f'bench-{sync}.db'}", None
                results[label] = run_config(
                    label, db, redis_url, port, registry, args.seconds, sync, args.full_gc_probe
                )
                report(label, results[label])  # as it goes: a later hang loses nothing
            finally:
                sim.terminate()
                sim.wait()
                if created is not None:  # leave no tessera_bench_* database behind
                    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
