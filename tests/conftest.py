"""Shared fixtures. Tests read only the repo (samples/), never ../shared."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TESSERA_* variables from the developer's shell, and a cwd without a .env file."""
    for key in list(os.environ):
        if key.upper().startswith("TESSERA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_available() -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A brand-new PostgreSQL database on the local server, dropped afterwards."""
    import secrets

    import psycopg

    if not postgres_available():
        pytest.fail("PostgreSQL is not answering on 127.0.0.1:5432 (make services starts it)")
    name = f"tessera_t_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test against the embedded default (SQLite) and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tessera.db'}"
    else:
        yield request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
async def redis_client() -> Any:
    """A client of the real Redis on 127.0.0.1:6379, on a private key namespace."""
    import socket

    from redis.asyncio import Redis

    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex(("127.0.0.1", 6379)) != 0:
            pytest.fail("Redis is not answering on 127.0.0.1:6379 (make services starts it)")
    client = Redis(host="127.0.0.1", port=6379, decode_responses=False)
    yield client
    await client.aclose()
