"""Execution figures: durable order/fill writes, submit-to-ack latency, simulator matching.

    .venv/bin/python bench/bench_execution.py [--orders 2000] [--rounds 3] [--latency-orders 300]

1. Persistence: each order goes through `OrderManager`'s durable path — intent and SUBMITTED
   committed together before the request is sent, then the answer (ACCEPTED, one fill with its
   position, FILLED) committed as one transaction — on SQLite (the embedded default, WAL,
   synchronous=FULL) and on the local PostgreSQL (synchronous_commit=on). The ceiling beside
   each: the bare driver (`sqlite3`, psycopg) doing the same two commits per order on the same
   schema — the intent (the order row, its two events), then the answer (the fill's
   idempotency read, the ACCEPTED event and order update, the fill, its event, the order
   update, the position upsert) — with hand-written SQL and nothing else: no state machine, no
   checks, no object model. Runs alternate (tessera, bare, tessera, bare, ...) and the median
   of ``--rounds`` is printed with the min-max, and tessera's share of the bare rate.
2. Submit-to-ack latency through `CcxtExchange` (ccxt, signed REST) against the simulator on
   loopback: market orders, median and p99.
3. The simulator's matching throughput: `TradingEngine.place` called directly (market and
   limit orders against the real recorded BTCUSDT book), orders per second.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from tessera.execution.exchange import ExchangeOrder
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.venues.binance_spot.exchange import CcxtExchange

ROOT = Path(__file__).resolve().parents[1]
BTC = ROOT / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


class _NullExchange:
    """Answers at once: isolates the cost of the records from any network. Notes when each
    request reached it (``wire``: perf_counter seconds)."""

    def __init__(self) -> None:
        self.wire: list[float] = []

    async def submit(self, order: Order) -> ExchangeOrder:
        self.wire.append(time.perf_counter())
        fill = Fill(
            f"{order.client_order_id}-f",
            order.client_order_id,
            order.symbol,
            order.side,
            Decimal("61000.12"),
            order.qty,
            Decimal("0.0000001"),
            "BTC",
            Liquidity.TAKER,
            time.time_ns(),
        )
        return ExchangeOrder(
            order.client_order_id,
            order.client_order_id,
            order.symbol,
            OrderStatus.FILLED,
            order.qty,
            order.qty,
            fill.notional,
            fills=[fill],
        )


@dataclass
class Run:
    rate: float  # orders+fills per second
    intent_ms: list[float]  # submit called -> request on the wire (the intent's commit)
    # heartbeats (1 ms sleeps) the event loop completed while an intent was committing: 0 when
    # the commit blocks the loop
    beats: int = 0


async def persist(url: str, n: int) -> Run:
    store = ExecutionStore(url)
    exchange = _NullExchange()
    om = OrderManager(store, exchange, f"bench-{secrets.token_hex(3)}")  # type: ignore[arg-type]
    stop = False
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while not stop:
            await asyncio.sleep(0.001)
            if len(exchange.wire) < committing:  # an intent is between submit and the wire
                beats += 1

    committing = 0  # how many submits were called
    beat = asyncio.create_task(heartbeat())
    intent = []
    t0 = time.perf_counter()
    for i in range(n):
        order = Order(f"b{i:06d}-{i + 1}", "BTCUSDT", OrderSide.BUY, OrderType.MARKET,
                      Decimal("0.001"))  # fmt: skip
        t = time.perf_counter()
        committing = i + 1
        await om.submit(order)
        intent.append((exchange.wire[-1] - t) * 1e3)
    elapsed = time.perf_counter() - t0
    stop = True
    await beat
    store.close()
    return Run(n / elapsed, intent, beats)


_ORDER_COLS = (
    "client_order_id, run_id, seq, strategy, signal_id, exchange, symbol, side, type, "
    "time_in_force, qty, price, stop_price, status, exchange_order_id, filled_qty, "
    "filled_notional, overfilled, late_fill, ts_created, ts_last, reason, list_id, reduce_only"
)
_EVENT_COLS = "client_order_id, kind, status_after, ts, exchange_order_id, reason, trade_id"
_FILL_COLS = (
    "exchange, symbol, trade_id, client_order_id, strategy, side, price, qty, fee, fee_asset, "
    "liquidity, ts_event, ts_recorded"
)


def _bare_sql(ph: str) -> dict[str, str]:
    """The statements of the two commits, for a driver whose placeholder is ``ph``."""

    def marks(n: int) -> str:
        return ", ".join([ph] * n)

    return {
        "order": f"INSERT INTO orders ({_ORDER_COLS}) VALUES ({marks(24)})",
        "event": f"INSERT INTO order_events ({_EVENT_COLS}) VALUES ({marks(7)})",
        "fill_read": (
            f"SELECT id FROM fills WHERE exchange = {ph} AND symbol = {ph} AND trade_id = {ph}"
        ),
        "update": (
            f"UPDATE orders SET status = {ph}, exchange_order_id = {ph}, filled_qty = {ph}, "
            f"filled_notional = {ph}, ts_last = {ph} WHERE client_order_id = {ph}"
        ),
        "fill": f"INSERT INTO fills ({_FILL_COLS}) VALUES ({marks(13)})",
        "position": (
            "INSERT INTO positions (symbol, strategy, qty, cost, realized_pnl, fees_quote, "
            f"ts_last) VALUES ({marks(7)}) ON CONFLICT (symbol, strategy) DO UPDATE SET "
            "qty = excluded.qty, cost = excluded.cost, realized_pnl = excluded.realized_pnl, "
            "fees_quote = excluded.fees_quote, ts_last = excluded.ts_last"
        ),
    }


def _bare_orders(conn: Any, ph: str, n: int, run_id: str, money: Any) -> Run:
    """``n`` orders, two commits each, through the bare DB-API connection ``conn``."""
    sql = _bare_sql(ph)
    cur = conn.cursor()
    qty, price = Decimal("0.001"), Decimal("61000.12")
    intent = []
    t0 = time.perf_counter()
    for i in range(n):
        t1 = time.perf_counter()
        cid, ts = f"r{i:06d}-{i + 1}", time.time_ns()
        cur.execute(sql["order"], (cid, run_id, i + 1, "", None, "binance", "BTCUSDT", "BUY",
                                   "MARKET", "GTC", money(qty), None, None, "SUBMITTED", None,
                                   money(0), money(0), False, False, ts, ts, "signal", None,
                                   False))  # fmt: skip
        events = [(cid, "intent", "INITIALIZED", ts, None, None, None),
                  (cid, "submitted", "SUBMITTED", ts, None, None, None)]  # fmt: skip
        cur.executemany(sql["event"], events)
        conn.commit()  # the intent is durable: the request could go out now
        intent.append((time.perf_counter() - t1) * 1e3)
        tid, ts = f"{cid}-f", time.time_ns()
        cur.execute(sql["fill_read"], ("binance", "BTCUSDT", tid))
        cur.fetchall()
        cur.execute(sql["event"], (cid, "accepted", "ACCEPTED", ts, cid, None, None))
        cur.execute(sql["update"], ("ACCEPTED", cid, money(0), money(0), ts, cid))
        cur.execute(sql["fill"], ("binance", "BTCUSDT", tid, cid, "", "BUY", money(price),
                                  money(qty), money(Decimal("0.0000001")), "BTC", "TAKER", ts,
                                  ts))  # fmt: skip
        cur.execute(sql["event"], (cid, "filled", "FILLED", ts, None, None, tid))
        cur.execute(sql["update"], ("FILLED", cid, money(qty), money(qty * price), ts, cid))
        cur.execute(sql["position"], ("BTCUSDT", "", money(qty * (i + 1)), money(price * qty),
                                      money(0), money(0), ts))  # fmt: skip
        conn.commit()
    return Run(n / (time.perf_counter() - t0), intent)


def _new_run(url: str) -> str:
    """The schema (migrated by the store) and a run the bare orders belong to."""
    store = ExecutionStore(url)
    run_id = f"bare-{secrets.token_hex(3)}"
    store.start_run(run_id, "live", "bench", [""])
    store.close()
    return run_id


def bare_sqlite(path: Path, n: int) -> Run:
    """Bare `sqlite3`, the store's pragmas (WAL, synchronous=FULL, foreign keys)."""
    run_id = _new_run(f"sqlite:///{path}")
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return _bare_orders(conn, "?", n, run_id, lambda d: format(Decimal(d), "f"))
    finally:
        conn.close()


def bare_psycopg(url: str, n: int) -> Run:
    """Bare psycopg (synchronous_commit=on, the server's default), no pool."""
    run_id = _new_run(url)
    with psycopg.connect(url) as conn:
        return _bare_orders(conn, "%s", n, run_id, Decimal)


def pg_database() -> tuple[str, str]:
    name = f"bench_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def latency(n: int) -> tuple[float, float, float]:
    market = SimMarket.from_recording([BTC])
    sim = ExchangeSimulator(market, speed=None, autostart=False, weight_limit=None)
    engine = TradingEngine(
        sim, TradingConfig(balances={"USDT": "10000000", "BTC": "1000"}, max_orders_10s=10**9)
    )
    async with sim:
        sim.release(4000)
        ex = CcxtExchange(sim.rest_url, engine.config.api_key, engine.config.api_secret)
        try:
            await ex.balances()  # load markets, warm the connection
            lat = []
            for i in range(n):
                side = OrderSide.BUY if i % 2 == 0 else OrderSide.SELL
                order = Order(f"lat-{i + 1}", "BTCUSDT", side, OrderType.MARKET, Decimal("0.001"))
                t0 = time.perf_counter()
                ack = await ex.submit(order)
                lat.append(time.perf_counter() - t0)
                assert ack.status is OrderStatus.FILLED
        finally:
            await ex.close()
    lat_ms = sorted(x * 1000 for x in lat)
    p99 = lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))]
    return statistics.median(lat_ms), p99, n / sum(lat)


def matching(n: int) -> tuple[float, float]:
    market = SimMarket.from_recording([BTC])
    sim = ExchangeSimulator(market, speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(balances={"USDT": "1e12", "BTC": "1e6"}))
    sim.release(4000)
    sim.state.advance_to(sim.head)
    bid = max(sim.state.books["BTCUSDT"].bids)
    t0 = time.perf_counter()
    for i in range(n):
        side = "BUY" if i % 2 == 0 else "SELL"
        engine.place({"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": "0.01"})
    market_rate = n / (time.perf_counter() - t0)
    # resting orders stop at the symbol's MAX_NUM_ORDERS filter (Binance: 200 open per symbol)
    n_limit = min(n, 200)
    t0 = time.perf_counter()
    for i in range(n_limit):
        price = f"{bid - Decimal(i % 500):.2f}"
        engine.place({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                      "quantity": "0.001", "price": price})  # fmt: skip
    limit_rate = n_limit / (time.perf_counter() - t0)
    return market_rate, limit_rate


async def intent_with_busy_loop(url: str, n: int) -> list[float]:
    """The intent's commit (submit called -> request on the wire) while another task keeps the
    event loop busy with Python (0.5 ms per step, as a burst of market frames would). Written to
    measure a writer thread, which had to win the GIL back from the loop after each blocking
    call (CPython's switch interval: 5 ms); the commit is on the loop's thread again."""
    store = ExecutionStore(url)
    exchange = _NullExchange()
    om = OrderManager(store, exchange, f"busy-{secrets.token_hex(3)}")  # type: ignore[arg-type]
    stop = False

    async def busy() -> None:
        while not stop:
            t = time.perf_counter()
            while time.perf_counter() - t < 0.0005:
                pass
            await asyncio.sleep(0)

    task = asyncio.create_task(busy())
    intent = []
    for i in range(n):
        order = Order(f"u{i:06d}-{i + 1}", "BTCUSDT", OrderSide.BUY, OrderType.MARKET,
                      Decimal("0.001"))  # fmt: skip
        t = time.perf_counter()
        await om.submit(order)
        intent.append((exchange.wire[-1] - t) * 1e3)
        await asyncio.sleep(0.002)
    stop = True
    await task
    store.close()
    return intent


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _spread(rates: list[float]) -> str:
    return f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each store")
    ap.add_argument("--latency-orders", type=int, default=300)
    args = ap.parse_args()
    n = args.orders

    print(f"\n1. Durable order+fill records, {n:,} orders (2 commits each), "
          f"{args.rounds} alternating rounds: median (min-max)\n")  # fmt: skip
    print("| store | tessera OrderManager, orders+fills/s | bare driver, same commits | share |")
    print("|---|---:|---:|---:|")
    details = []
    for label in ("SQLite (WAL, synchronous=FULL)", "PostgreSQL (synchronous_commit=on)"):
        ours: list[Run] = []
        bare: list[Run] = []
        for _ in range(args.rounds):
            for kind in ("tessera", "bare"):
                runs = ours if kind == "tessera" else bare
                if label.startswith("SQLite"):
                    with tempfile.TemporaryDirectory() as tmp:
                        db = Path(tmp) / "bench.db"
                        runs.append(
                            asyncio.run(persist(f"sqlite:///{db}", n))
                            if kind == "tessera"
                            else bare_sqlite(db, n)
                        )
                else:
                    name, url = pg_database()
                    try:
                        runs.append(
                            asyncio.run(persist(url, n)) if kind == "tessera"
                            else bare_psycopg(url, n)
                        )  # fmt: skip
                    finally:
                        drop(name)
        share = statistics.median(r.rate for r in ours) / statistics.median(r.rate for r in bare)
        print(f"| {label} | {_spread([r.rate for r in ours])} | "
              f"{_spread([r.rate for r in bare])} | {share * 100:.0f}% |", flush=True)  # fmt: skip
        details.append((label, ours, bare))
    print(
        "\nThe intent's commit (submit called -> request on the wire; bare: the first commit) "
        "over all rounds' orders, and how many 1 ms heartbeats the event loop completed while "
        "tessera's intents were committing (0: the commit blocks the loop):\n"
    )
    print(
        "| store | tessera intent median / p99 ms | bare first commit median / p99 ms "
        "| loop heartbeats during the intents (per round) |"
    )
    print("|---|---:|---:|---:|")
    for label, ours, bare in details:
        mine = [x for r in ours for x in r.intent_ms]
        theirs = [x for r in bare for x in r.intent_ms]
        stalls = ", ".join(f"{r.beats:,}" for r in ours)
        print(f"| {label} | {statistics.median(mine):.2f} / {_p99(mine):.2f} | "
              f"{statistics.median(theirs):.2f} / {_p99(theirs):.2f} | {stalls} |")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        busy = asyncio.run(intent_with_busy_loop(f"sqlite:///{tmp}/busy.db", 300))
    print(f"\nThe intent's commit on SQLite while another task keeps the loop busy (300 orders): "
          f"median {statistics.median(busy):.2f} ms, p99 {_p99(busy):.2f} ms")  # fmt: skip

    med, p99, rate = asyncio.run(latency(args.latency_orders))
    print(f"\n2. Submit-to-ack through CcxtExchange -> simulator (loopback), "
          f"{args.latency_orders} market orders: median {med:.2f} ms, p99 {p99:.2f} ms "
          f"({rate:,.0f} orders/s sequential)")  # fmt: skip

    m, lim = matching(n)
    print(f"\n3. Simulator matching (TradingEngine.place, real book): market {m:,.0f} orders/s, "
          f"resting limit {lim:,.0f} orders/s")  # fmt: skip


if __name__ == "__main__":
    main()
