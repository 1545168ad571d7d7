"""The exchange credentials never leave the bot: a `tessera run` process with a distinctive API
key and secret, JSON logs at DEBUG level, trading against the simulator (in this process's
background thread, over sockets): neither string appears in any log line, on /metrics, in any
row of any table of its PostgreSQL database, or in what it keeps in Redis."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_bot_helpers import free_port
from sqlalchemy import MetaData, select

from tessera.execution.persistence import make_engine
from tessera.sim.server import ExchangeSimulator, SimulatorThread
from tessera.sim.trading import TradingConfig, TradingEngine

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
TESSERA = [sys.executable, "-m", "tessera.cli"]
KEY = f"KeyTessera{secrets.token_hex(16)}"
SECRET = f"SecretTessera{secrets.token_hex(24)}"


@pytest.fixture
def venue() -> Iterator[tuple[ExchangeSimulator, TradingEngine]]:
    sim = ExchangeSimulator(speed=10.0, loop_replay=True)  # the bundled BTCUSDT/ETHUSDT data
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    thread = SimulatorThread(sim)
    thread.start()
    yield sim, engine
    thread.stop()


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:  # /readyz answers 503 until ready
        return str(exc.read().decode())


def leaks(text: str) -> list[str]:
    return [name for name, s in (("api key", KEY), ("api secret", SECRET)) if s in text]


def test_credentials_appear_in_no_log_metric_row_or_redis_entry(
    venue: tuple[ExchangeSimulator, TradingEngine],
    fresh_postgres_url: str,
    tmp_path: Path,
) -> None:
    import redis

    from tessera.live.ratelimit import key_prefix

    sim, engine = venue
    stream = f"tessera:test:{secrets.token_hex(4)}:signals"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
    env.update(
        TESSERA_DATABASE_URL=fresh_postgres_url,
        TESSERA_REDIS_URL="redis://127.0.0.1:6379/0",
        TESSERA_LIVE__SIGNAL_STREAM=stream,
        TESSERA_EXCHANGE__REST_URL=sim.rest_url,
        TESSERA_EXCHANGE__WS_URL=sim.ws_url,
        TESSERA_EXCHANGE__API_KEY=KEY,
        TESSERA_EXCHANGE__API_SECRET=SECRET,
        TESSERA_DATA_DIR=str(tmp_path / "data"),
    )
    port = free_port()
    argv = [*TESSERA, "--json", "--log-level", "DEBUG", "--metrics-port", str(port), "run"]
    argv += ["--mode", "dev", "--strategy", "sma_cross:fast=1,slow=2,qty=0.01"]
    argv += ["--symbol", "BTCUSDT", "--interval", "1s", "--no-ingest"]
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    pages: list[str] = []
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + 40
            while len(engine.orders) < 5:  # trading: orders signed with the secret went out
                assert proc.poll() is None, err_path.read_text()[-3000:]
                assert time.monotonic() < deadline, err_path.read_text()[-3000:]
                time.sleep(0.2)
            for path in ("/metrics", "/readyz", "/healthz"):
                pages.append(get(f"http://127.0.0.1:{port}{path}"))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    stdout, stderr = out_path.read_text(), err_path.read_text()
    assert code == 0, stderr[-3000:]

    # the logs: JSON lines at DEBUG, the whole run (start-up, orders, fills, shutdown)
    lines = (stdout + stderr).splitlines()
    assert any('"level": "debug"' in line for line in lines)  # DEBUG is on
    assert any('"event": "bot stopped"' in line for line in lines)
    assert [(i, leaks(line)) for i, line in enumerate(lines) if leaks(line)] == []

    # /metrics (every label and value), /readyz, /healthz
    assert "tessera_orders_submitted_total" in pages[0]
    assert [leaks(page) for page in pages] == [[], [], []]

    # every row of every table of the execution database
    engine_db = make_engine(fresh_postgres_url)
    try:
        meta = MetaData()
        meta.reflect(engine_db)
        rows = 0
        with engine_db.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)):
                    rows += 1
                    text = repr(tuple(row))
                    assert leaks(text) == [], (table.name, text[:500])
    finally:
        engine_db.dispose()
    assert {"orders", "fills"} <= set(meta.tables) and rows > 10

    # Redis: the signal stream and the limiter's keys (named by a hash of the key)
    sync = redis.Redis(host="127.0.0.1", port=6379)
    try:
        entries = sync.xrange(stream)
        assert entries and leaks(repr(entries)) == []
        limiter = [k for k in sync.scan_iter(match=f"{key_prefix(KEY)}:*")]
        assert limiter and leaks(repr(limiter)) == []
        for k in limiter:
            assert leaks(repr(sync.get(k))) == []
    finally:
        sync.delete(stream)
        for k in sync.scan_iter(match=f"{key_prefix(KEY)}:*"):
            sync.delete(k)
        sync.close()
