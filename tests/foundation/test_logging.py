from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import datetime

import pytest
from pydantic import SecretStr

from tessera.logging import (
    REDACTED,
    bind_context,
    clear_context,
    configure_logging,
    get_logger,
    register_secret,
)


@pytest.fixture
def json_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    clear_context()
    yield stream
    clear_context()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_have_the_required_fields(json_stream: io.StringIO) -> None:
    bind_context(run_id="run-1", strategy="sma_cross", symbol="BTCUSDT")
    get_logger("tessera.test").info("order sent", qty="0.5")
    (rec,) = lines(json_stream)
    assert rec["event"] == "order sent"
    assert rec["level"] == "info"
    assert rec["logger"] == "tessera.test"
    assert rec["run_id"] == "run-1"
    assert rec["strategy"] == "sma_cross"
    assert rec["symbol"] == "BTCUSDT"
    assert rec["qty"] == "0.5"
    ts = datetime.fromisoformat(str(rec["timestamp"]).replace("Z", "+00:00"))
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_stdlib_loggers_come_out_in_the_same_format(json_stream: io.StringIO) -> None:
    bind_context(run_id="run-2")
    logging.getLogger("sqlalchemy.engine").warning("pool %s exhausted", "main")
    (rec,) = lines(json_stream)
    assert rec["event"] == "pool main exhausted"
    assert rec["logger"] == "sqlalchemy.engine"
    assert rec["level"] == "warning"
    assert rec["run_id"] == "run-2"
    assert "timestamp" in rec


def test_context_is_inherited_by_asyncio_tasks(json_stream: io.StringIO) -> None:
    async def main() -> None:
        bind_context(run_id="run-3")

        async def worker(sym: str) -> None:
            bind_context(symbol=sym)  # task-local: does not leak into the sibling task
            await asyncio.sleep(0)
            get_logger("tessera.worker").info("tick")

        await asyncio.gather(worker("BTCUSDT"), worker("ETHUSDT"))

    asyncio.run(main())
    recs = lines(json_stream)
    assert {r["symbol"] for r in recs} == {"BTCUSDT", "ETHUSDT"}
    assert all(r["run_id"] == "run-3" for r in recs)


def test_level_filtering(json_stream: io.StringIO) -> None:
    configure_logging("WARNING", json=True, stream=json_stream)
    log = get_logger("tessera.test")
    log.info("hidden")
    log.warning("shown")
    assert [r["event"] for r in lines(json_stream)] == ["shown"]


def test_no_secret_reaches_a_log_line(json_stream: io.StringIO) -> None:
    secret = "S3cr3t-value-xyz"
    register_secret(secret, SecretStr("another-secret-123"))
    log = get_logger("tessera.test")
    log.info("by key", api_key="visible-only-if-broken", password="pw-123", listen_key="lk-1")
    log.info("secretstr value", value=SecretStr("whatever-123"))
    log.info(f"in the message {secret}")
    log.info("nested", payload={"headers": {"X-MBX-APIKEY": "k-987", "note": secret}})
    log.info("url", dsn="postgresql://bot:db-pass-1@localhost/tessera")
    log.info("query", url="https://x/api/v3/order?symbol=BTCUSDT&signature=abcdef123&apiKey=k1")
    logging.getLogger("ccxt.base").error("request failed with key %s", "another-secret-123")
    try:
        raise RuntimeError(f"boom {secret}")
    except RuntimeError:
        log.exception("crashed")
    out = json_stream.getvalue()
    for leaked in (
        secret,
        "another-secret-123",
        "visible-only-if-broken",
        "pw-123",
        "lk-1",
        "whatever-123",
        "k-987",
        "db-pass-1",
        "abcdef123",
    ):
        assert leaked not in out, leaked
    assert out.count(REDACTED) >= 9
    assert "RuntimeError" in out  # the traceback itself is kept


def test_console_renderer_for_dev() -> None:
    stream = io.StringIO()
    configure_logging("INFO", json=False, stream=stream)
    bind_context(run_id="run-4")
    get_logger("tessera.test").info("hello", symbol="BTCUSDT")
    text = stream.getvalue()
    assert "hello" in text and "run_id=run-4" in text and "symbol=BTCUSDT" in text
    assert "\x1b[" not in text  # no colour codes when the stream is not a terminal
    clear_context()


def test_bind_context_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown context keys"):
        bind_context(user="x")


def test_a_url_password_with_an_empty_user_is_masked_too() -> None:
    from tessera.logging import scrub

    for url in ("redis://:s3cret-pw@h:6379/0", "postgresql://u:hunter2@h/db"):
        masked = scrub(f"connecting to {url}")
        assert "s3cret-pw" not in masked and "hunter2" not in masked, masked
        assert "@h" in masked
