"""How long one reconciliation pass takes — the time a live bot's orders wait for it.

    .venv/bin/python bench/bench_reconcile.py [--fills 150] [--rounds 3] [--sqlite]
    .venv/bin/python bench/bench_reconcile.py --ledger 50000 [--sqlite]

A fresh PostgreSQL database (dropped at the end; ``--sqlite`` for a file in a temporary
directory), the simulator in this process over real sockets (ccxt, signed REST), and an order
manager. Each round: ``--fills`` market orders are filled, then one pass reconciles them (the
trades since the last pass, as a running bot's periodic pass does every 60 s), then a pass with
nothing new. It prints each pass's wall time as it goes and the median of each kind at the end.
To compare two checkouts, run it with ``PYTHONPATH=<other>/src``. The simulator holds a client
to Binance's 1,200 request weight a minute (an order weighs 1, a pass about 50): the defaults
stay under it, and ccxt's limiter would make larger runs wait, which would be measured too.

``--ledger N``: the ledger side alone, as a bot's history grows. N filled orders are written
straight into the store (no exchange; ``database_sync=normal`` to seed quickly), then: reading
every fill (what a pass did for the balances before `FillTotals`, twice on a perpetual), the
running totals' first read (a bot's start-up pass) and a later read with nothing new (every
periodic pass after). Medians of 3 / 5 reads.
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
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import Reconciler
from tessera.execution.state import OrderEvent, OrderEventKind, OrderStateMachine
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


def ledger(url: str, n: int) -> None:
    """See the module docstring (``--ledger``)."""
    from tessera.execution.reconcile import FillTotals
    from tessera.sim.exchange_info import recorded_exchange_info
    from tessera.venues.binance_spot.instruments import filters_by_symbol

    filters = filters_by_symbol(recorded_exchange_info())
    machine = OrderStateMachine()
    store = ExecutionStore(url, sync="normal")
    try:
        store.start_run("bench-ledger", "paper", "0", ["s"])
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            side = OrderSide.BUY if i % 2 else OrderSide.SELL
            order = Order(
                f"l-{i}", "BTCUSDT", side, OrderType.MARKET, Decimal("0.001"), strategy="s"
            )
            store.record_intent(order, "bench-ledger", i)
            machine.apply(order, OrderEvent(OrderEventKind.SUBMITTED, 2))
            price, qty, fee = Decimal("60000.5"), Decimal("0.001"), Decimal("0.01")
            fill = Fill(str(i), order.client_order_id, "BTCUSDT", side, price, qty, fee, "USDT",
                        Liquidity.TAKER, 3, "s")  # fmt: skip
            event = OrderEvent(OrderEventKind.FILLED, 3, fill=fill)
            machine.apply(order, event)
            store.record_fill(order, event)
            if i % 10_000 == 0:
                print(f"  {i:,} fills stored", flush=True)
        print(f"{n:,} fills stored in {time.perf_counter() - t0:.0f} s", flush=True)
        every = []
        for _ in range(3):
            t0 = time.perf_counter()
            store.all_fills()
            store.fill_count()
            every.append((time.perf_counter() - t0) * 1e3)
        print(f"reading every fill (a pass before FillTotals): {statistics.median(every):.1f} ms",
              flush=True)  # fmt: skip
        totals = FillTotals()
        t0 = time.perf_counter()
        totals.read(store, filters)
        print(f"FillTotals, first read (start-up): {(time.perf_counter() - t0) * 1e3:.1f} ms",
              flush=True)  # fmt: skip
        later = []
        for _ in range(5):
            t0 = time.perf_counter()
            totals.read(store, filters)
            later.append((time.perf_counter() - t0) * 1e3)
        print(f"FillTotals, a later read with nothing new: {statistics.median(later):.2f} ms")
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fills", type=int, default=150, help="orders filled between passes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    ap.add_argument("--ledger", type=int, help="the ledger side alone with this many fills")
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
            if args.ledger:
                ledger(f"sqlite:///{work}/bench.db", args.ledger)
            else:
                asyncio.run(run(f"sqlite:///{work}/bench.db", args.fills, args.rounds))
        return
    name = f"tessera_bench_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        if args.ledger:
            ledger(url, args.ledger)
        else:
            asyncio.run(run(url, args.fills, args.rounds))
    finally:  # leave no tessera_bench_* database behind
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
