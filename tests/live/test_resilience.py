"""The bot through a bad day: websocket drops, REST 5xx/429 storms, Redis restarting,
PostgreSQL unreachable. Each run ends with the ledger check of the end-to-end tests: nothing
lost, nothing doubled, our books equal to the simulator's."""

from __future__ import annotations

import contextlib
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_bot_helpers import KEY, SECRET, TESSERA, assert_ledger_matches, bot_env, free_port

from tessera.execution.persistence import ExecutionStore
from tessera.sim.faults import FaultPlan
from tessera.sim.server import ExchangeSimulator, SimulatorThread
from tessera.sim.trading import TradingConfig, TradingEngine

pytestmark = pytest.mark.slow

FAST = ("--strategy", "sma_cross:fast=2,slow=5,qty=0.001")


@pytest.fixture
def sim_thread() -> Iterator[tuple[SimulatorThread, ExchangeSimulator, TradingEngine]]:
    simulator = ExchangeSimulator(speed=10.0, loop_replay=True)
    engine = TradingEngine(simulator, TradingConfig(api_key=KEY, api_secret=SECRET))
    thread = SimulatorThread(simulator)
    thread.start()
    try:
        yield thread, simulator, engine
    finally:
        thread.stop()


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_orphan_bots() -> Iterator[None]:
    """A failed assertion must not leave its bot running after the test."""
    yield
    for proc in _started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _started.clear()


def start_bot(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    log = (tmp_path / "bot.log").open("a")
    proc = subprocess.Popen(
        [TESSERA, "--metrics-port", "0", "run", "--mode", "live", "--i-understand-live-trading",
         "--interval", "1s", "--no-ingest", *FAST, *args],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    _started.append(proc)
    return proc


def wait_orders(engine: TradingEngine, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(engine.orders) < n:
        assert time.monotonic() < deadline, f"fewer than {n} orders after {timeout} s"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[str], tmp_path: Path) -> str:
    proc.terminate()
    proc.wait(timeout=40)
    out = (tmp_path / "bot.log").read_text()
    assert proc.returncode == 0, out[-4000:]
    return out


def check(url: str, engine: TradingEngine) -> None:
    store = ExecutionStore(url)
    try:
        assert_ledger_matches(store, engine)
        assert store.load_halt("main") is None
    finally:
        store.close()


def test_websocket_drops_and_rest_storms(
    tmp_path: Path,
    fresh_postgres_url: str,
    sim_thread: tuple[SimulatorThread, ExchangeSimulator, TradingEngine],
) -> None:
    thread, simulator, engine = sim_thread
    proc = start_bot(tmp_path, bot_env(tmp_path, fresh_postgres_url, simulator))
    wait_orders(engine, 2)
    for _ in range(2):  # market feed and user-data stream both cut
        thread.call(simulator.drop_connections())
        time.sleep(1.5)
    n = len(engine.orders)
    simulator.faults = FaultPlan(rest_5xx=4, malformed_at=5)
    wait_orders(engine, n + 2)
    simulator.faults = FaultPlan(rest_429=3, retry_after_s=1)
    wait_orders(engine, n + 4)
    simulator.faults = FaultPlan()
    out = stop(proc, tmp_path)
    assert "market feed reconnected" in out
    check(fresh_postgres_url, engine)


def test_redis_restart_loses_and_doubles_no_signal(
    tmp_path: Path,
    fresh_postgres_url: str,
    sim_thread: tuple[SimulatorThread, ExchangeSimulator, TradingEngine],
) -> None:
    """A Redis of our own (append-only file, fsync always, as a production Redis holding a
    signal queue should run), killed with SIGKILL mid-run and restarted."""
    _, simulator, engine = sim_thread
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (make services installs it)"
    port = free_port()
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
           "--appendonly", "yes", "--appendfsync", "always", "--save", ""]  # fmt: skip
    redis = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        env = bot_env(
            tmp_path, fresh_postgres_url, simulator, TESSERA_REDIS_URL=f"redis://127.0.0.1:{port}/0"
        )
        time.sleep(0.5)
        proc = start_bot(tmp_path, env)
        wait_orders(engine, 2)
        redis.kill()
        redis.wait()
        time.sleep(2.0)
        redis = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        n = len(engine.orders)
        wait_orders(engine, n + 3)  # signals flow again through the restarted Redis
        out = stop(proc, tmp_path)
        assert "signal publish failed" in out or "signal queue unavailable" in out
        check(fresh_postgres_url, engine)
    finally:
        redis.kill()
        redis.wait()


class CuttableProxy:
    """A TCP proxy in front of PostgreSQL whose link can be cut (established connections
    reset, new ones refused) and restored: the database "goes away" for the bot only."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.up = True
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self.up = False
        for a, b in self.pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
        self.pairs.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self._stop = True
        self.cut()
        self.listener.close()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop:
            for key, _ in sel.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    with contextlib.suppress(OSError):
                        client, _ = self.listener.accept()
                        if not self.up:
                            client.close()
                            continue
                        upstream = socket.create_connection(self.target)
                        peers[client], peers[upstream] = upstream, client
                        self.pairs.append((client, upstream))
                        sel.register(client, selectors.EVENT_READ)
                        sel.register(upstream, selectors.EVENT_READ)
                    continue
                other = peers.get(sock)
                try:
                    data = sock.recv(65536)
                    if data and other is not None:
                        other.sendall(data)
                        continue
                except OSError:
                    pass
                for s in (sock, other):
                    if s is not None:
                        with contextlib.suppress(KeyError, ValueError):
                            sel.unregister(s)
                        peers.pop(s, None)
                        with contextlib.suppress(OSError):
                            s.close()
            for s in list(peers):  # sockets closed by cut()
                if s.fileno() == -1:
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(s)
                    peers.pop(s, None)


def test_postgres_outage_sends_no_unrecorded_order_and_resumes(
    tmp_path: Path,
    fresh_postgres_url: str,
    sim_thread: tuple[SimulatorThread, ExchangeSimulator, TradingEngine],
) -> None:
    _, simulator, engine = sim_thread
    proxy = CuttableProxy(("127.0.0.1", 5432))
    try:
        proxied = fresh_postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        proc = start_bot(tmp_path, bot_env(tmp_path, proxied, simulator))
        wait_orders(engine, 2)
        proxy.cut()
        time.sleep(5.0)
        during = len(engine.orders)
        proxy.restore()
        wait_orders(engine, during + 3)
        out = stop(proc, tmp_path)
        assert "the database answers again" in out
        # every order the exchange has is in our database: none was sent without its intent
        check(fresh_postgres_url, engine)
    finally:
        proxy.close()
