"""Execution figures: durable order/fill writes, submit-to-ack latency, simulator matching.

    .venv/bin/python bench/bench_execution.py [--orders 2000] [--latency-orders 300]

1. Persistence: each order goes through `OrderManager`'s durable path — intent and SUBMITTED
   committed together before the request is sent, then the answer (ACCEPTED, one fill with its
   position, FILLED) committed as one transaction — on SQLite (the embedded default, WAL,
   synchronous=FULL) and on the local PostgreSQL. The ceiling: a bare psycopg ``executemany``
   of the same order and fill rows into plain tables, in one transaction (no intermediate
   durability: the most a driver can do).
2. Submit-to-ack latency through `CcxtExchange` (ccxt, signed REST) against the simulator on
   loopback: market orders, median and p99.
3. The simulator's matching throughput: `TradingEngine.place` called directly (market and
   limit orders against the real recorded BTCUSDT book), orders per second.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psycopg

from tessera.execution.ccxt_exchange import CcxtExchange
from tessera.execution.exchange import ExchangeOrder
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.trading import TradingConfig, TradingEngine

ROOT = Path(__file__).resolve().parents[1]
BTC = ROOT / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


class _NullExchange:
    """Answers at once: isolates the cost of the records from any network."""

    async def submit(self, order: Order) -> ExchangeOrder:
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


async def persist(url: str, n: int) -> float:
    store = ExecutionStore(url)
    om = OrderManager(store, _NullExchange(), f"bench-{secrets.token_hex(3)}")  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for i in range(n):
        order = Order(f"b{i:06d}-{i + 1}", "BTCUSDT", OrderSide.BUY, OrderType.MARKET,
                      Decimal("0.001"))  # fmt: skip
        await om.submit(order)
    elapsed = time.perf_counter() - t0
    store.close()
    return n / elapsed


def bare_psycopg(url: str, n: int) -> float:
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE bo (cid text PRIMARY KEY, symbol text, side text, qty numeric, "
            "status text, ts bigint)"
        )
        conn.execute(
            "CREATE TABLE bf (trade_id text PRIMARY KEY, cid text, price numeric, qty numeric, "
            "fee numeric, ts bigint)"
        )
        conn.commit()
        orders = [(f"c{i}", "BTCUSDT", "BUY", Decimal("0.001"), "FILLED", i) for i in range(n)]
        fills = [(f"f{i}", f"c{i}", Decimal("61000.12"), Decimal("0.001"), Decimal("0"), i)
                 for i in range(n)]  # fmt: skip
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bo VALUES (%s, %s, %s, %s, %s, %s)", orders)
            cur.executemany("INSERT INTO bf VALUES (%s, %s, %s, %s, %s, %s)", fills)
        conn.commit()
        return n / (time.perf_counter() - t0)


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
    t0 = time.perf_counter()
    for i in range(n):
        price = f"{bid - Decimal(i % 500):.2f}"
        engine.place({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                      "quantity": "0.001", "price": price})  # fmt: skip
    limit_rate = n / (time.perf_counter() - t0)
    return market_rate, limit_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--latency-orders", type=int, default=300)
    args = ap.parse_args()
    n = args.orders

    print(f"\n1. Durable order+fill records, {n:,} orders (2 commits each)\n")
    print("| store | orders+fills/s |")
    print("|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        rate = asyncio.run(persist(f"sqlite:///{tmp}/bench.db", n))
        print(f"| tessera OrderManager -> SQLite | {rate:,.0f} |")
    name, url = pg_database()
    try:
        rate = asyncio.run(persist(url, n))
        print(f"| tessera OrderManager -> PostgreSQL | {rate:,.0f} |")
    finally:
        drop(name)
    name, url = pg_database()
    try:
        print(
            f"| bare psycopg executemany, one transaction (ceiling) | {bare_psycopg(url, n):,.0f} |"
        )
    finally:
        drop(name)

    med, p99, rate = asyncio.run(latency(args.latency_orders))
    print(f"\n2. Submit-to-ack through CcxtExchange -> simulator (loopback), "
          f"{args.latency_orders} market orders: median {med:.2f} ms, p99 {p99:.2f} ms "
          f"({rate:,.0f} orders/s sequential)")  # fmt: skip

    m, lim = matching(n)
    print(f"\n3. Simulator matching (TradingEngine.place, real book): market {m:,.0f} orders/s, "
          f"resting limit {lim:,.0f} orders/s")  # fmt: skip


if __name__ == "__main__":
    main()
