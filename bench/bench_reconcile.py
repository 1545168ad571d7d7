"""How long one reconciliation pass takes — the time a live bot's orders wait for it.

    .venv/bin/python bench/bench_reconcile.py [--fills 150] [--rounds 3] [--sqlite]

A fresh PostgreSQL database (dropped at the end; ``--sqlite`` for a file in a temporary
directory), the simulator in this process over real sockets (ccxt, signed REST), and an order
manager. Each round: ``--fills`` market orders are filled, then one pass reconciles them (the
trades since the last pass, as a running bot's periodic pass does every 60 s), then a pass with
nothing new. It prints each pass's wall time as it goes and the median of each kind at the end.
To compare two checkouts, run it with ``PYTHONPATH=<other>/src``. The simulator holds a client
to Binance's 1,200 request weight a minute (an order weighs 1, a pass about 50): the defaults
stay under it, and ccxt's limiter would make larger runs wait, which would be measured too.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import secrets
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psycopg

from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import Reconciler
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.venues.binance_spot.exchange import CcxtExchange

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
KEY, SECRET = "bench-key", "bench-secret"


async def run(url: str, fills: int, rounds: int) -> None:
    sim = ExchangeSimulator(SimMarket.from_recording([RECORDING]), speed=None, autostart=False)
    engine = TradingEngine(
        sim, TradingConfig(api_key=KEY, api_secret=SECRET, max_orders_10s=1_000_000)
    )
    async with sim:
        sim.release(4000)
        store = ExecutionStore(url)
        ex = CcxtExchange(sim.rest_url, KEY, SECRET)
        om = OrderManager(store, ex, "bench-rec")
        # a bot's cursor across passes, where this tree has one (older trees read the newest
        # 1,000 trades every pass)
        keeps = "trade_cursor" in inspect.signature(Reconciler).parameters
        extra: dict[str, dict[str, int]] = {"trade_cursor": {}} if keeps else {}
        rec = Reconciler(om, engine.filters, ["BTCUSDT"], "acct", **extra)
        try:
            assert (await rec.run()).ok  # the baseline
            new, none = [], []
            seq = 0
            for r in range(rounds):
                for _ in range(fills):
                    seq += 1
                    side = OrderSide.BUY if seq % 2 else OrderSide.SELL
                    await om.submit(
                        Order(f"b-{seq}", "BTCUSDT", side, OrderType.MARKET, Decimal("0.001"))
                    )
                t0 = time.perf_counter()
                report = await rec.run()
                new.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                assert (await rec.run()).ok
                none.append((time.perf_counter() - t0) * 1e3)
                print(
                    f"round {r + 1}: {store.fill_count():,} fills stored; a pass over {fills} new"
                    f" trades {new[-1]:.1f} ms (ok={report.ok}), with none new {none[-1]:.1f} ms",
                    flush=True,
                )
            print(
                f"median of {rounds}: {statistics.median(new):.1f} ms with {fills} new trades, "
                f"{statistics.median(none):.1f} ms with none (trade cursor: {keeps})"
            )
        finally:
            await ex.close()
            store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fills", type=int, default=150, help="orders filled between passes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    args = ap.parse_args()
    from tessera.logging import configure_logging

    configure_logging("WARNING")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} UTC, load average {os.getloadavg()[0]:.2f}")
    try:
        _run(args)
    finally:
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


def _run(args: argparse.Namespace) -> None:
    if args.sqlite:
        with tempfile.TemporaryDirectory(prefix="tessera-bench-rec-") as work:
            asyncio.run(run(f"sqlite:///{work}/bench.db", args.fills, args.rounds))
        return
    name = f"tessera_bench_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        asyncio.run(run(f"postgresql://postgres@127.0.0.1:5432/{name}", args.fills, args.rounds))
    finally:  # leave no tessera_bench_* database behind
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
