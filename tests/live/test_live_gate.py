"""The live gate: no run signs requests with the configured keys against an endpoint that is
not a Tessera simulator unless it passed ``--i-understand-live-trading``.

Dev mode used to take ``exchange.rest_url`` at its word and send signed orders with the real
keys to whatever answered there. The stand-in for "a real exchange" here is a transparent proxy
in front of the simulator that removes the simulator's ``X-Tessera-Simulator`` header: it
answers exactly like Binance (every endpoint works, so the old code would have traded through
it) and records every request it gets, so the test can say whether any carried the API key or
a signature.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from inprocess_bot import running_simulator
from live_bot_helpers import TESSERA, bot_env

from tessera.sim.server import SIMULATOR_HEADER, ExchangeSimulator
from tessera.sim.trading import TradingEngine

pytestmark = pytest.mark.slow


@dataclass
class Seen:
    method: str
    path: str
    query: str
    api_key: str | None

    @property
    def signed(self) -> bool:
        return self.api_key is not None or "signature=" in self.query


@dataclass
class Impostor:
    """A Binance-like REST endpoint (the simulator behind a proxy, without its header)."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: Callable[[], None] = lambda: None


def _serve_impostor(target: str, impostor: Impostor) -> None:
    async def main() -> None:
        session = aiohttp.ClientSession()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        impostor.stop = lambda: loop.call_soon_threadsafe(stop.set)

        async def forward(request: web.Request) -> web.StreamResponse:
            impostor.requests.append(
                Seen(
                    request.method,
                    request.path,
                    request.query_string,
                    request.headers.get("X-MBX-APIKEY"),
                )
            )
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            async with session.request(
                request.method, target + request.path_qs, data=body, headers=headers
            ) as upstream:
                payload = await upstream.read()
                kept = {
                    k: v
                    for k, v in upstream.headers.items()
                    if k.lower() not in (SIMULATOR_HEADER.lower(), "content-length",
                                         "transfer-encoding", "content-encoding")
                }  # fmt: skip
                return web.Response(body=payload, status=upstream.status, headers=kept)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        impostor.url = f"http://127.0.0.1:{port}"
        impostor.ready.set()
        await stop.wait()
        await session.close()
        await runner.cleanup()

    asyncio.run(main())


@pytest.fixture
def sim() -> Iterator[tuple[ExchangeSimulator, TradingEngine]]:
    with running_simulator(speed=10.0) as pair:
        yield pair


@pytest.fixture
def impostor(sim: tuple[ExchangeSimulator, TradingEngine]) -> Iterator[Impostor]:
    found = Impostor()
    thread = threading.Thread(target=_serve_impostor, args=(sim[0].rest_url, found), daemon=True)
    thread.start()
    assert found.ready.wait(10), "the proxy did not start"
    try:
        yield found
    finally:
        found.stop()
        thread.join(10)


def run_bot(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**env, "COLUMNS": "200"}
    return subprocess.run(
        [TESSERA, "--metrics-port", "0", "run", "--interval", "1s", "--no-ingest",
         "--strategy", "sma_cross:fast=2,slow=5,qty=0.001", *args],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_every_simulator_answer_names_the_simulator(
    sim: tuple[ExchangeSimulator, TradingEngine],
) -> None:
    simulator, _ = sim
    for path in ("/api/v3/ping", "/api/v3/exchangeInfo", "/api/v3/account", "/nothing-here"):
        try:
            with urllib.request.urlopen(simulator.rest_url + path, timeout=10) as resp:
                headers = resp.headers
        except urllib.error.HTTPError as exc:  # unsigned /account: 400, unknown path: 404
            headers = exc.headers
        assert headers.get(SIMULATOR_HEADER), path


@pytest.mark.parametrize("flags", [(), ("--i-understand-live-trading",)], ids=["", "with-flag"])
def test_dev_mode_refuses_an_endpoint_that_is_not_a_simulator_and_sends_it_no_key(
    tmp_path: Path,
    sim: tuple[ExchangeSimulator, TradingEngine],
    impostor: Impostor,
    flags: tuple[str, ...],
) -> None:
    simulator, engine = sim
    env = bot_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'tessera.db'}",
        simulator,
        TESSERA_EXCHANGE__REST_URL=impostor.url,
        TESSERA_DATA__REST_URL=impostor.url,
    )
    res = run_bot(tmp_path, env, "--mode", "dev", *flags, "--duration", "10")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-3000:]
    assert "Traceback" not in out
    assert "not one" in out and "--mode live --i-understand-live-trading" in out
    assert [r for r in impostor.requests if r.signed] == [], "the configured key was sent"
    assert not engine.orders


def test_live_mode_without_the_gate_sends_nothing_anywhere(
    tmp_path: Path, sim: tuple[ExchangeSimulator, TradingEngine], impostor: Impostor
) -> None:
    simulator, engine = sim
    env = bot_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'tessera.db'}",
        simulator,
        TESSERA_EXCHANGE__REST_URL=impostor.url,
        TESSERA_DATA__REST_URL=impostor.url,
    )
    res = run_bot(tmp_path, env, "--mode", "live", "--duration", "10")
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "--i-understand-live-trading" in out, out[-3000:]
    assert "Traceback" not in out
    assert impostor.requests == []
    assert not engine.orders


def test_dev_mode_against_a_simulator_that_identifies_itself_trades_as_before(
    tmp_path: Path, sim: tuple[ExchangeSimulator, TradingEngine]
) -> None:
    simulator, engine = sim
    env = bot_env(tmp_path, f"sqlite:///{tmp_path / 'tessera.db'}", simulator)
    res = run_bot(tmp_path, env, "--mode", "dev", "--duration", "15")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert engine.orders, "the bot placed no order on the simulator"


def test_paper_mode_never_sends_the_configured_credentials(
    tmp_path: Path, sim: tuple[ExchangeSimulator, TradingEngine], impostor: Impostor
) -> None:
    simulator, engine = sim
    env = bot_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'tessera.db'}",
        simulator,
        TESSERA_EXCHANGE__REST_URL=impostor.url,
        TESSERA_DATA__REST_URL=impostor.url,
    )
    res = run_bot(tmp_path, env, "--mode", "paper", "--duration", "12")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert impostor.requests, "the paper bot fetched nothing over REST"
    assert [r for r in impostor.requests if r.signed] == []
    assert not engine.orders
