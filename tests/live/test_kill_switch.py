"""The kill-switch and manual halts, end to end: `tessera run` processes against the simulator
(over sockets, in this process's background thread), real PostgreSQL and Redis, and the
`tessera risk status|halt|reset` commands.

The simulator account holds only USDT, so every loss is the bot's own: after a 0.1 BTC buy
(about 6 % of the equity) the fee, the spread and any dip of the market soon breach a
0.001 % drawdown limit (one dollar).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from live_bot_helpers import free_port, wait_for

from tessera.execution.persistence import ExecutionStore
from tessera.sim.market import SimMarket
from tessera.sim.recording import BUNDLED_RECORDINGS
from tessera.sim.server import ExchangeSimulator, SimulatorThread
from tessera.sim.trading import TradingConfig, TradingEngine

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
TESSERA = [sys.executable, "-m", "tessera.cli"]
# the rate limiter's Redis keys derive from the API key: a key of this process's own, so that
# a concurrent run (another xdist worker, another person's pytest) shares no budget with it
KEY, SECRET = f"ks-test-key-{secrets.token_hex(4)}", "ks-test-secret"
BUY_AND_HOLD = "buy_and_hold:qty=0.1"
BUSY = "sma_cross:fast=1,slow=2,qty=0.01"  # trades on nearly every turn of the price


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, labels: str = "") -> float | None:
    """A sample's value in Prometheus text, e.g. ``metric(t, "tessera_signals_total",
    'strategy="sma_cross"')``."""
    sel = r"\{" + re.escape(labels) + r"\}" if labels else ""
    m = re.search(rf"^{re.escape(name)}{sel} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


@dataclass
class Venue:
    thread: SimulatorThread
    sim: ExchangeSimulator
    engine: TradingEngine

    def orders(self) -> list[Any]:
        return list(self.engine.orders.values())

    def open_orders(self) -> list[Any]:
        return [o for o in self.orders() if o.is_open]


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket.from_recording(BUNDLED_RECORDINGS)


@pytest.fixture
def venue(market: SimMarket) -> Iterator[Venue]:
    """A fresh exchange account (USDT only) on the replayed market, 10x speed."""
    sim = ExchangeSimulator(market, speed=10.0, loop_replay=True)
    engine = TradingEngine(
        sim, TradingConfig(api_key=KEY, api_secret=SECRET, balances={"USDT": "100000"})
    )
    thread = SimulatorThread(sim)
    thread.start()
    yield Venue(thread, sim, engine)
    thread.stop()


@pytest.fixture
async def redis_ns(redis_client: Any) -> Any:
    """A private signal stream; removed afterwards (with the limiter's keys of ``KEY``)."""
    from tessera.live.ratelimit import key_prefix

    stream = f"tessera:test:{secrets.token_hex(4)}:signals"
    yield stream
    await redis_client.delete(stream)
    async for k in redis_client.scan_iter(match=f"{key_prefix(KEY)}:*"):
        await redis_client.delete(k)


class Bot:
    """One `tessera run` process (console logs to a file), its /metrics and /readyz."""

    def __init__(self, env: dict[str, str], strategy: str, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("w")
        argv = [*TESSERA, "--metrics-port", str(self.port), "run", "--mode", "dev"]
        argv += ["--strategy", strategy, "--symbol", "BTCUSDT", "--interval", "1s", "--no-ingest"]
        self.proc = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    def logs(self) -> str:
        return self.log_path.read_text()

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.port}/metrics")[1]

    def readyz(self) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.port}/readyz")

    def wait_running(self) -> None:
        def running() -> bool:
            assert self.proc.poll() is None, f"the bot exited:\n{self.logs()[-3000:]}"
            return "bot running" in self.logs()

        wait_for("the bot to run", running, 40)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(45)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no stop on SIGTERM:\n{self.logs()[-3000:]}") from exc
        finally:
            self._log.close()
        return code


@pytest.fixture
def launch(
    venue: Venue, fresh_postgres_url: str, redis_ns: str, tmp_path: Path
) -> Iterator[Callable[..., Bot]]:
    bots: list[Bot] = []

    def start(strategy: str, **risk: str) -> Bot:
        env = bot_env(venue, fresh_postgres_url, redis_ns, tmp_path, risk)
        bot = Bot(env, strategy, tmp_path / f"bot{len(bots)}.log")
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        if bot.proc.poll() is None:
            bot.proc.kill()
            bot.proc.wait()


def bot_env(
    venue: Venue, db_url: str, stream: str, tmp_path: Path, risk: dict[str, str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
    env.update(
        TESSERA_DATABASE_URL=db_url,
        TESSERA_REDIS_URL="redis://127.0.0.1:6379/0",
        TESSERA_LIVE__SIGNAL_STREAM=stream,
        TESSERA_EXCHANGE__REST_URL=venue.sim.rest_url,
        TESSERA_EXCHANGE__WS_URL=venue.sim.ws_url,
        TESSERA_EXCHANGE__API_KEY=KEY,
        TESSERA_EXCHANGE__API_SECRET=SECRET,
        TESSERA_DATA_DIR=str(tmp_path / "data"),
    )
    for name, value in risk.items():
        env[f"TESSERA_RISK__{name.upper()}"] = value
    return env


def risk_cli(db_url: str, *args: str, code: int = 0) -> str:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
    env.update(TESSERA_DATABASE_URL=db_url, COLUMNS="200")
    done = subprocess.run(
        [*TESSERA, "--metrics-port", "0", "risk", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def engaged(bot: Bot) -> bool:
    assert bot.proc.poll() is None, f"the bot exited:\n{bot.logs()[-3000:]}"
    return metric(bot.metrics(), "tessera_kill_switch_engaged") == 1.0


def signals(bot: Bot) -> float:
    return metric(bot.metrics(), "tessera_signals_total", 'strategy="sma_cross"') or 0.0


def test_kill_switch_halts_persists_and_survives_a_restart_until_reset(
    venue: Venue, launch: Callable[..., Bot], fresh_postgres_url: str
) -> None:
    bot = launch(BUY_AND_HOLD, max_drawdown_pct="0.001")
    bot.wait_running()
    wait_for("the kill-switch", lambda: engaged(bot), 30)
    assert any(o.side == "BUY" and o.status == "FILLED" for o in venue.orders())
    assert venue.open_orders() == []  # nothing left resting on the exchange
    assert "kill-switch engaged" in wait_for(
        "the halt in the log", lambda: "kill-switch engaged" in bot.logs() and bot.logs()
    )
    status = risk_cli(fresh_postgres_url, "status", code=3)  # 3: halted
    assert "HALTED" in status and "kill_switch" in status, status
    assert "halt cleared" not in bot.logs()  # nobody reset it; the halt watch must agree
    assert bot.stop() == 0

    # A restart, even with a relaxed limit and a strategy that trades all the time, stays halted.
    sent_before = len(venue.orders())
    bot2 = launch(BUSY, max_drawdown_pct="5")
    bot2.wait_running()
    assert "trading is halted (persisted)" in bot2.logs()
    wait_for("the strategy to want trades", lambda: signals(bot2) >= 3, 30)
    time.sleep(1.0)  # an executor that ignored the halt would have sent by now
    assert len(venue.orders()) == sent_before
    code, body = bot2.readyz()
    assert code == 503 and "halted" in body, body
    text = bot2.metrics()
    assert metric(text, "tessera_kill_switch_engaged") == 1.0
    assert (metric(text, "tessera_risk_denials_total", 'reason="kill_switch"') or 0) >= 1

    # A person resets: the running bot notices (halt watch) and trades again.
    out = risk_cli(fresh_postgres_url, "reset", "--by", "test")
    assert "re-enabled by test" in out
    wait_for("orders after the reset", lambda: len(venue.orders()) > sent_before, 20)
    assert "ACTIVE" in risk_cli(fresh_postgres_url, "status")
    assert "halt cleared" in bot2.logs()
    assert bot2.stop() == 0


def test_flatten_on_halt_closes_the_position(
    venue: Venue, launch: Callable[..., Bot], fresh_postgres_url: str
) -> None:
    bot = launch(BUY_AND_HOLD, max_drawdown_pct="0.001", flatten_on_halt="true")
    bot.wait_running()
    wait_for("the kill-switch", lambda: engaged(bot), 30)

    def sold() -> list[Any]:
        return [o for o in venue.orders() if o.side == "SELL" and o.status == "FILLED"]

    wait_for("the flattening sell", sold, 15, lambda: (venue.orders(), bot.logs()[-2000:]))
    buy = next(o for o in venue.orders() if o.side == "BUY")
    assert [o.client_order_id for o in venue.orders()] == [
        buy.client_order_id,
        sold()[0].client_order_id,
    ]
    # the exchange account holds no BTC any more (the sell took what the buy delivered)
    assert venue.engine.free["BTC"] + venue.engine.locked["BTC"] == 0
    assert "flatten failed" not in bot.logs()
    assert "halt cleared" not in bot.logs()

    store = ExecutionStore(fresh_postgres_url)
    try:
        flatten = store.get_order(sold()[0].client_order_id)
        assert flatten is not None and flatten.signal_id.startswith("flatten:buy_and_hold:BTCUSDT")
        position = wait_for(
            "the sell in the ledger",
            lambda: [p for p in store.positions() if p.symbol == "BTCUSDT" and p.qty == 0],
            10,
            store.positions,
        )
        # The buy paid its commission in BTC: the position booked it, so the flatten sold
        # exactly what the account held and the ledger is flat like the exchange.
        commission = sum(f.commission for f in venue.engine.fills if f.order is buy)
        assert commission > 0
        assert position[0].qty == 0, position
    finally:
        store.close()
    assert bot.stop() == 0


def test_manual_halt_stops_a_running_bot_within_two_seconds(
    venue: Venue, launch: Callable[..., Bot], fresh_postgres_url: str
) -> None:
    bot = launch(BUSY)
    bot.wait_running()
    wait_for(
        "the bot to trade",
        lambda: len(venue.orders()) >= 2,
        30,
        lambda: (venue.orders(), bot.metrics(), bot.logs()[-3000:]),
    )

    risk_cli(fresh_postgres_url, "halt", "--reason", "x")
    halted_at = time.time()
    signals_then = signals(bot)
    time.sleep(4.0)
    late = [o for o in venue.orders() if o.time_ms / 1000 > halted_at + 2.0]
    assert late == [], [(o.client_order_id, o.time_ms / 1000 - halted_at) for o in late]
    assert signals(bot) > signals_then  # the strategy went on wanting trades
    assert metric(bot.metrics(), "tessera_trading_state", 'state="HALTED"') == 1.0
    code, body = bot.readyz()
    assert code == 503 and "halted" in body, body
    assert "HALTED" in risk_cli(fresh_postgres_url, "status", code=3)
    assert bot.stop() == 0
