"""The bot end to end: `tessera run` in its own process against the simulator over sockets.

The simulator replays the bundled real Binance recordings and keeps its own ledger (orders,
trades, balances). After the bot stops, our database must agree with that ledger to the last
unit: every order, every fill (by trade id), every position, every balance change.

A small LightGBM model, trained here on the bundled real 1m bars, scores the bot's 1s bars:
the test checks the plumbing (model -> strategy -> signal -> risk -> order), not an edge.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from inprocess_bot import running_simulator
from live_bot_helpers import (
    KEY,
    SECRET,
    TESSERA,
    assert_ledger_matches,
    bot_env,
    register_small_model,
)

from tessera.execution.orders import OrderSide
from tessera.execution.persistence import ExecutionStore
from tessera.sim.server import ExchangeSimulator
from tessera.sim.trading import TradingEngine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registered LightGBM model on short-warm-up features of the real 1m bars."""
    return register_small_model(tmp_path_factory.mktemp("registry"), "e2e")


@pytest.fixture
def sim() -> Iterator[tuple[ExchangeSimulator, TradingEngine]]:
    with running_simulator(speed=10.0) as pair:
        yield pair


def run_bot(
    tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TESSERA, "--metrics-port", "0", "run", "--interval", "1s", "--no-ingest", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


STRATEGIES = (
    "--strategy",
    "model_signal:qty=0.002",
    "--strategy",
    "sma_cross:fast=3,slow=8,qty=0.001",
)


@pytest.mark.parametrize("mode", ["live"])  # dev against a given simulator: the same path
def test_live_and_dev_against_the_simulator_agree_with_its_ledger(
    mode: str,
    tmp_path: Path,
    registry: Path,
    fresh_postgres_url: str,
    sim: tuple[ExchangeSimulator, TradingEngine],
) -> None:
    simulator, engine = sim
    env = bot_env(
        tmp_path, fresh_postgres_url, simulator, TESSERA_MODEL__REGISTRY_DIR=str(registry)
    )
    flags = ["--i-understand-live-trading"] if mode == "live" else []
    res = run_bot(
        tmp_path, env, "--mode", mode, *flags, *STRATEGIES, "--model", "e2e", "--duration", "18"
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    store = ExecutionStore(fresh_postgres_url)
    try:
        summary = assert_ledger_matches(store, engine)
        assert summary["by_strategy"].get("sma_cross", 0) >= 1, summary
        assert summary["by_strategy"].get("model_signal", 0) >= 1, summary
        assert store.load_halt("main") is None, "reconciliation or the kill-switch halted"
    finally:
        store.close()


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_paper_mode_books_every_fill_once_and_balances_follow(
    tmp_path: Path,
    registry: Path,
    database_url: str,
    sim: tuple[ExchangeSimulator, TradingEngine],
) -> None:
    simulator, engine = sim
    env = bot_env(tmp_path, database_url, simulator, TESSERA_MODEL__REGISTRY_DIR=str(registry))
    res = run_bot(
        tmp_path, env, "--mode", "paper", *STRATEGIES, "--model", "e2e", "--duration", "15"
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not engine.orders, "paper mode must not send orders to the exchange"
    store = ExecutionStore(database_url)
    try:
        orders = store.list_orders(limit=100_000)
        fills = store.all_fills()
        assert orders and fills
        by_order: dict[str, Decimal] = defaultdict(Decimal)
        for f in fills:
            by_order[f.client_order_id] += f.qty
        for o in orders:
            assert by_order.get(o.client_order_id, Decimal(0)) == o.filled_qty, o.client_order_id
            assert not o.status.is_open, (o.client_order_id, o.status)
        per_strategy: dict[str, Decimal] = defaultdict(Decimal)
        cash = Decimal(10_000)
        for f in fills:
            sign = 1 if f.side is OrderSide.BUY else -1
            per_strategy[f.strategy] += sign * f.qty
            assert f.fee_asset == "USDT"
            cash -= sign * f.qty * f.price + f.fee
        for p in store.positions():
            assert p.qty == per_strategy[p.strategy], p
        balances = store.latest_balances("paper")
        assert balances["USDT"][0] + balances["USDT"][1] == cash
        assert sum(balances["BTC"]) == sum(per_strategy.values())
    finally:
        store.close()


def test_live_mode_refuses_without_flag_credentials_or_clean_reconciliation(
    tmp_path: Path, fresh_postgres_url: str, sim: tuple[ExchangeSimulator, TradingEngine]
) -> None:
    simulator, engine = sim
    env = bot_env(tmp_path, fresh_postgres_url, simulator)
    res = run_bot(tmp_path, env, "--mode", "live", "--strategy", "sma_cross", timeout=60)
    assert res.returncode == 2 and "--i-understand-live-trading" in res.stderr + res.stdout

    no_keys = {k: v for k, v in env.items() if "API_" not in k}
    res = run_bot(
        tmp_path,
        no_keys,
        "--mode",
        "live",
        "--i-understand-live-trading",
        "--strategy",
        "sma_cross",
    )
    assert res.returncode == 3 and "credentials" in res.stderr + res.stdout

    # an order on the account that is not ours: reconciliation cannot explain it
    import asyncio

    from tessera.execution.orders import Order, OrderType
    from tessera.venues.binance_spot.exchange import CcxtExchange

    async def foreign_order() -> None:
        ex = CcxtExchange(simulator.rest_url, KEY, SECRET)
        try:
            await ex.submit(
                Order("manual-1", "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, Decimal("0.001"),
                      price=Decimal("30000"))
            )  # fmt: skip
        finally:
            await ex.close()

    asyncio.run(foreign_order())
    res = run_bot(
        tmp_path, env, "--mode", "live", "--i-understand-live-trading", "--strategy", "sma_cross"
    )
    out = res.stderr + res.stdout
    assert res.returncode == 3 and "reconciliation failed" in out, out[-2000:]
    assert "not ours" in out
    assert all(o.client_order_id == "manual-1" for o in engine.orders.values())


def test_sigterm_stops_gracefully_with_nothing_in_flight(
    tmp_path: Path, fresh_postgres_url: str, sim: tuple[ExchangeSimulator, TradingEngine]
) -> None:
    simulator, engine = sim
    env = bot_env(tmp_path, fresh_postgres_url, simulator)
    proc = subprocess.Popen(
        [TESSERA, "--metrics-port", "0", "run", "--mode", "live", "--i-understand-live-trading",
         "--interval", "1s", "--no-ingest", "--strategy", "sma_cross:fast=2,slow=5,qty=0.001"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not engine.orders and time.monotonic() < deadline:
            time.sleep(0.2)
        assert engine.orders, "no order within 60 s"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a failed assertion must not leave the bot running
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "bot stopped" in out + err
    store = ExecutionStore(fresh_postgres_url)
    try:
        assert all(not o.status.is_open for o in store.list_orders(limit=100_000))
        assert_ledger_matches(store, engine)
    finally:
        store.close()
