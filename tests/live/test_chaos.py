"""Chaos: `tessera run` killed with SIGKILL at random moments, restarted each time.

One simulator process (the bundled real BTCUSDT/ETHUSDT recordings at 10x, signed trading
endpoints) keeps running while the bot is killed ``CYCLES`` times at seeded random delays after
its start — during start-up recovery, warm-up, or between an order's durable intent and the
exchange's answer — and restarted each time: a new process and a new run id, on the same
PostgreSQL database. A fast SMA cross on 1s bars trades every few seconds on both symbols. The
venue answers orders 0.3 s late (REST and user-data stream, see `chaos_procs`), so that about
half the kills leave an order on the exchange that our database still has as SUBMITTED; the
periodic reconciliation runs every 1.5 s, so that it also meets orders in flight. Every other
run commits with ``database_sync=normal`` (no fsync: a kill of the bot must lose nothing
either way; only the machine going down may lose the last commits). A final run
is stopped with SIGTERM and must exit 0. ``TESSERA_CHAOS_SEED`` picks another sequence of kills.

Then our database is held against the simulator's own ledger, read over its signed REST API:

* no lost order: every order the exchange has (by client order id) is ours, with the same
  status and filled quantity; no duplicate: one exchange order per client id and per signal;
* every order of ours that never reached the exchange is closed ("never reached the
  exchange", or refused by it), none left open;
* the exchange's trade ids for our account are exactly our fills, once each, same numbers;
* the positions are the exchange's: per symbol, the base balance change — the net traded
  quantity less the commissions charged in the base asset;
* reconciliation never halted trading (`tessera risk status`: ACTIVE).

The races this test found are pinned by the deterministic tests at the end of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chaos_procs import SIM_KEY, SIM_SECRET, SimLedger, free_port, start_simulator, stop
from sqlalchemy import select

from tessera.execution.exchange import BINANCE_STATUS, Balance, ExchangeOrder, ExchangeTrade
from tessera.execution.manager import OrderManager
from tessera.execution.orders import (
    Fill,
    Liquidity,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
)
from tessera.execution.persistence import ExecutionStore
from tessera.execution.schema import order_events

SEED = int(os.environ.get("TESSERA_CHAOS_SEED", "20261130"))
CYCLES = 24
KILL_AFTER_S = (0.5, 4.5)  # after the process starts; it is trading ~1.5 s in
DOWN_S = (0.0, 0.5)  # the market moves on while the bot is down
FINAL_RUN_S = 6.0
ANSWER_DELAY_S = 0.3  # the exchange answers orders late: kills land mid-order
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
BASE = {"BTCUSDT": "BTC", "ETHUSDT": "ETH"}
QTY = Decimal("0.01")
STRATEGY = f"sma_cross:fast=2,slow=5,qty={QTY}"  # long QTY or flat; crosses every few 1s bars
NEVER_SENT = "never reached the exchange"
IN_FLIGHT_QUERY = "SELECT 1 FROM orders WHERE status IN ('INITIALIZED', 'SUBMITTED') LIMIT 1"


def _bot(cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tessera.cli", "--metrics-port", "0", "run", "--mode", "dev"]
    cmd += ["--strategy", STRATEGY, "--interval", "1s", "--no-ingest"]
    for sym in SYMBOLS:
        cmd += ["--symbol", sym]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:]


def _rows(url: str, query: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query)
        return list(cur.fetchall())


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    rng = random.Random(SEED)
    port = free_port()
    rest_url = f"http://127.0.0.1:{port}"
    sim = start_simulator(port, tmp_path / "sim.log", ANSWER_DELAY_S)
    db = fresh_postgres_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        TESSERA_DATABASE_URL=db,
        TESSERA_EXCHANGE__REST_URL=rest_url,
        TESSERA_EXCHANGE__WS_URL=f"ws://127.0.0.1:{port}",
        TESSERA_EXCHANGE__API_KEY=SIM_KEY,
        TESSERA_EXCHANGE__API_SECRET=SIM_SECRET,
        TESSERA_DATA_DIR=str(tmp_path / "data"),
        TESSERA_LIVE__RECONCILE_INTERVAL_S="1.5",
    )
    logs: list[Path] = []
    bots: list[subprocess.Popen[bytes]] = []
    in_flight = 0  # kills that left an order between durable intent and known outcome
    t0 = time.monotonic()
    try:
        ledger = SimLedger(rest_url)
        start_balances = ledger.balances()

        for cycle in range(CYCLES):
            log = tmp_path / f"bot-{cycle:02d}.log"
            logs.append(log)
            env["TESSERA_DATABASE_SYNC"] = "normal" if cycle % 2 else "full"
            bot = _bot(tmp_path, env, log)
            bots.append(bot)
            time.sleep(rng.uniform(*KILL_AFTER_S))
            assert bot.poll() is None, f"run {cycle} exited by itself: {_tail(log)}"
            os.kill(bot.pid, signal.SIGKILL)
            bot.wait(10)
            assert bot.returncode == -signal.SIGKILL
            assert sim.poll() is None, "the simulator died"
            with contextlib.suppress(psycopg.errors.UndefinedTable):  # killed before migrating
                in_flight += bool(_rows(db, IN_FLIGHT_QUERY))
            time.sleep(rng.uniform(*DOWN_S))

        log = tmp_path / "bot-final.log"
        logs.append(log)
        bot = _bot(tmp_path, env, log)
        bots.append(bot)
        try:
            deadline = time.monotonic() + 30
            while "bot running" not in log.read_text() and time.monotonic() < deadline:
                assert bot.poll() is None, f"the final run exited: {_tail(log)}"
                time.sleep(0.1)
            assert "bot running" in log.read_text(), _tail(log)
            time.sleep(FINAL_RUN_S)
        finally:
            bot.send_signal(signal.SIGTERM)
            try:
                bot.wait(30)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.wait(10)
        assert bot.returncode == 0, _tail(log)
        assert sim.poll() is None, "the simulator died"

        sim_orders = ledger.orders(SYMBOLS)
        sim_trades = {sym: ledger.trades(sym) for sym in SYMBOLS}
        sim_open = {sym: ledger.open_orders(sym) for sym in SYMBOLS}
        end_balances = ledger.balances()
    finally:
        for proc in bots:  # a failed assertion must not leave a bot trading
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        stop(sim)
    elapsed = time.monotonic() - t0

    db_orders = {r["client_order_id"]: r for r in _rows(db, "SELECT * FROM orders")}
    db_fills = _rows(db, "SELECT * FROM fills")
    db_positions = _rows(db, "SELECT * FROM positions")
    never_sent = {
        r["client_order_id"]
        for r in _rows(
            db, f"SELECT client_order_id FROM order_events WHERE reason = '{NEVER_SENT}'"
        )
    }
    every_log = "\n".join(_tail(p, 10**9) for p in logs)

    # --- orders: none lost, none doubled ---------------------------------------------------------
    assert sim_orders, "the bot placed no order at all"
    by_cid = Counter(o.client_order_id for o in sim_orders)
    assert not [c for c, n in by_cid.items() if n > 1], (
        f"client ids on the exchange twice: {by_cid}"
    )
    lost = [o for o in sim_orders if o.client_order_id not in db_orders]
    assert not lost, f"orders on the exchange that our database lacks: {lost}"
    signals = Counter(db_orders[o.client_order_id]["signal_id"] for o in sim_orders)
    assert not [s for s, n in signals.items() if n > 1], f"a signal traded twice: {signals}"
    for o in sim_orders:
        row = db_orders[o.client_order_id]
        assert (row["symbol"], row["side"], row["exchange_order_id"]) == (
            o.symbol,
            o.side,
            str(o.order_id),
        ), (o, row)
        assert row["status"] == BINANCE_STATUS[o.status].value, (o, row)
        assert row["filled_qty"] == o.executed_qty, (o, row)
        assert row["qty"] == o.qty, (o, row)
    on_exchange = {o.client_order_id for o in sim_orders}
    open_states = {s.value for s in OrderStatus if s.is_open} | {OrderStatus.INITIALIZED.value}
    for cid, row in db_orders.items():
        assert row["status"] not in open_states, f"left open: {row}"
        if cid in on_exchange:
            continue
        # never on the exchange: closed as unsent, or refused by the exchange (no order made)
        assert row["exchange_order_id"] is None, row
        assert row["filled_qty"] == 0, row
        assert (row["status"] == "CANCELED" and cid in never_sent) or (
            row["status"] == "REJECTED" and row["reject_reason"]
        ), row
    assert not any(sim_open.values()), f"orders still open on the exchange: {sim_open}"

    # --- fills: the exchange's trades, each once -------------------------------------------------
    cid_of_order = {str(o.order_id): o.client_order_id for o in sim_orders}
    want_fills = {
        (t.symbol, str(t.trade_id)): (
            cid_of_order[str(t.order_id)],
            "BUY" if t.is_buyer else "SELL",
            t.qty,
            t.price,
            t.commission,
            t.commission_asset,
        )
        for trades in sim_trades.values()
        for t in trades
    }
    keys = Counter((f["symbol"], f["trade_id"]) for f in db_fills)
    assert not [k for k, n in keys.items() if n > 1], "a fill recorded twice"
    got_fills = {
        (f["symbol"], f["trade_id"]): (
            f["client_order_id"],
            f["side"],
            f["qty"],
            f["price"],
            f["fee"],
            f["fee_asset"],
        )
        for f in db_fills
    }
    assert set(got_fills) - set(want_fills) == set(), "fills the exchange does not have"
    assert set(want_fills) - set(got_fills) == set(), "trades of ours missing from our fills"
    assert got_fills == want_fills
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for f in db_fills:
        filled[f["client_order_id"]] += f["qty"]
    for cid, row in db_orders.items():
        assert row["filled_qty"] == filled.get(cid, Decimal(0)), row

    # --- positions and balances: the exchange's --------------------------------------------------
    position: dict[str, Decimal] = defaultdict(Decimal)
    for p in db_positions:
        position[p["symbol"]] += p["qty"]
    for sym in SYMBOLS:
        trades = sim_trades[sym]
        net = sum((t.qty if t.is_buyer else -t.qty for t in trades), Decimal(0))
        base = BASE[sym]
        base_fees = sum((t.commission for t in trades if t.commission_asset == base), Decimal(0))
        change = end_balances.get(base, Decimal(0)) - start_balances.get(base, Decimal(0))
        # the position is what the account holds: traded quantity less base-asset commissions
        assert position[sym] == net - base_fees, (sym, position[sym], net, base_fees)
        # the strategy is long QTY or flat: no intent traded twice, not even across processes
        # (held: what the account holds, base-asset commissions taken out)
        held = Decimal(0)
        for t in sorted(trades, key=lambda t: t.trade_id):
            held += t.qty if t.is_buyer else -t.qty
            held -= t.commission if t.commission_asset == base else Decimal(0)
            assert 0 <= held <= QTY, f"{sym}: position {held} after trade {t.trade_id}"
        assert change == position[sym], (sym, change, position[sym])
    quote_change = end_balances["USDT"] - start_balances["USDT"]
    quote_flow = sum(
        (
            (-t.qty * t.price if t.is_buyer else t.qty * t.price)
            - (t.commission if t.commission_asset == "USDT" else 0)
            for trades in sim_trades.values()
            for t in trades
        ),
        Decimal(0),
    )
    assert quote_change == quote_flow

    # --- reconciliation never found our ledger wrong ---------------------------------------------
    assert "reconciliation mismatch" not in every_log
    halts = _rows(db, "SELECT reason FROM risk_events WHERE kind = 'halt'")
    assert not halts, halts
    status = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "risk", "status"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert "ACTIVE" in status.stdout and "HALTED" not in status.stdout, status.stdout

    runs = _rows(db, "SELECT run_id, status FROM runs")
    late = [f for f in db_fills if f["ts_recorded"] - f["ts_event"] > 1_000_000_000]
    print(
        f"\nchaos: seed={SEED} kills={CYCLES} (with an order in flight: {in_flight}) "
        f"runs={len(runs)} in {elapsed:.0f} s; "
        f"exchange orders={len(sim_orders)} "
        f"statuses={dict(Counter(o.status for o in sim_orders))}; "
        f"db orders={len(db_orders)} never sent={len(never_sent)} "
        f"rejected={sum(r['status'] == 'REJECTED' for r in db_orders.values())}; "
        f"fills={len(db_fills)} (recorded >1 s late, i.e. recovered after a kill: {len(late)})"
    )


# --- the races the chaos test found, pinned ------------------------------------------------------


class SlowVenue:
    """An exchange whose answer to an order comes only when the test says so. ``place_first``:
    the order is placed (and filled) at once and only the answer waits — a slow venue; else
    the request itself waits (a rate-limiter queue) and the order exists only once released."""

    def __init__(self, place_first: bool) -> None:
        self.place_first = place_first
        self.orders: dict[str, ExchangeOrder] = {}
        self.trades: list[ExchangeTrade] = []
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    def _place(self, order: Order) -> ExchangeOrder:
        fill = Fill(
            "77", order.client_order_id, order.symbol, order.side, Decimal(100), order.qty,
            Decimal(0), "USDT", Liquidity.TAKER, 1,
        )  # fmt: skip
        done = ExchangeOrder(
            order.client_order_id, "9", order.symbol, OrderStatus.FILLED, order.qty,
            order.qty, order.qty * 100, fills=[fill],
        )  # fmt: skip
        self.orders[order.client_order_id] = done
        self.trades.append(ExchangeTrade("9", fill))
        return done

    async def submit(self, order: Order) -> ExchangeOrder:
        if self.place_first:
            self._place(order)
        self.waiting.set()
        await self.release.wait()
        return self.orders.get(order.client_order_id) or self._place(order)

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        return self.orders.get(client_order_id)

    async def my_trades(self, symbol: str, from_id: int | None = None) -> list[ExchangeTrade]:
        return list(self.trades)

    async def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        raise NotImplementedError

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return []

    async def balances(self) -> dict[str, Balance]:
        return {}

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("place_first", [True, False], ids=["answer-late", "request-queued"])
async def test_recovery_while_an_order_awaits_its_answer(tmp_path: Path, place_first: bool) -> None:
    """Recovery (periodic reconciliation, a stream reconnect, the unknown-outcome sweep) runs
    while a submit awaits its answer. It must neither close the order as "never reached the
    exchange" (the request may still go out) nor update a second copy of it that the answer
    then overwrites (the order stuck ACCEPTED although FILLED on the exchange)."""
    store = ExecutionStore(f"sqlite:///{tmp_path / 'x.db'}")
    venue = SlowVenue(place_first)
    manager = OrderManager(store, venue, "run-1", "s")
    order = Order("trun1-1", "BTCUSDT", OrderSide.BUY, OrderType.MARKET, Decimal("0.01"))
    order.strategy, order.signal_id = "s", "sig-1"
    submit = asyncio.create_task(manager.submit(order))
    await asyncio.wait_for(venue.waiting.wait(), 5)
    await manager.recover()
    venue.release.set()
    await asyncio.wait_for(submit, 5)
    await manager.recover()

    stored = store.get_order("trun1-1")
    assert stored is not None
    assert (stored.status, stored.filled_qty) == (OrderStatus.FILLED, Decimal("0.01"))
    assert (order.status, order.filled_qty) == (OrderStatus.FILLED, Decimal("0.01"))
    assert [f.trade_id for f in store.all_fills()] == ["77"]
    assert manager.positions[("BTCUSDT", "s")].qty == Decimal("0.01")
    assert store.open_orders() == []
    with store.tx() as c:
        reasons = c.execute(select(order_events.c.reason)).scalars().all()
    assert NEVER_SENT not in reasons
    store.close()
