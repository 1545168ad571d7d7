"""The control API under attack, over real sockets: missing and wrong credentials, the wrong
role, log-in brute force, user-name probing, CSRF (missing, wrong, from another session, after
log-out), cross-origin requests with a session and in local mode, DNS rebinding, path tricks,
huge and endless bodies, and a scan of every response and log line for the secrets used.

Raw requests go through `raw_http` (a socket, no client library in between), so paths such as
``..%2f`` and bodies that lie about their size reach the server exactly as an attacker sends
them."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from port_double import (
    OPERATE_TOKEN,
    OPERATOR,
    READ_TOKEN,
    READER,
    PortDouble,
    auth_config,
    bearer,
    running_api,
)
from pydantic import ValidationError
from structlog.testing import capture_logs

from tessera.config.models import ControlConfig
from tessera.control.app import STRATEGY_ID, create_app
from tessera.control.events import EventHub
from tessera.control.server import start_control_server

pytestmark = pytest.mark.timeout(60)

HALT = "/api/v1/risk/halt"
REASON = {"reason": "attack"}


def _client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=10.0, **kwargs)


async def raw_http(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers, CRLF added) and ``body`` as they are; return the
    status, headers and body of the answer (the connection is closed by ``Connection: close``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return _parse(data)


def _parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers, rest


async def _login(client: httpx.AsyncClient, url: str, user: tuple[str, str]) -> httpx.Response:
    return await client.post(
        "/login",
        data={"username": user[0], "password": user[1], "next": "/"},
        headers={"Origin": url},
    )


def _csrf(api: Any, client: httpx.AsyncClient) -> str:
    session = api.app.state.auth.sessions.get(client.cookies.get("tessera_session"))
    assert session is not None
    return str(session.csrf)


# --- credentials ---------------------------------------------------------------------------------


async def test_a_request_without_credentials_is_told_how_to_authenticate() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        for method, path in [("GET", "/api/v1/status"), ("POST", HALT), ("GET", "/api/docs")]:
            response = await client.request(method, path, json=REASON if method == "POST" else None)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == 'Bearer realm="tessera"'
            assert "Authorization: Bearer <token>" in response.json()["detail"]
        assert api.port.read_calls == [] and api.port.recorded == []


async def test_a_wrong_token_or_scheme_is_refused() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        for headers in [
            bearer(OPERATE_TOKEN[:-1] + "C"),
            bearer(OPERATE_TOKEN.lower()),
            {"Authorization": f"Basic {OPERATE_TOKEN}"},
            bearer("x" * 5000),
        ]:
            response = await client.get("/api/v1/status", headers=headers)
            assert response.status_code == 401, headers["Authorization"][:20]
            assert "invalid_token" in response.headers["www-authenticate"]
        response = await client.post(HALT, json=REASON, headers=bearer("not-a-token"))
        assert response.status_code == 401
        assert api.port.recorded == []


async def test_a_token_of_the_read_role_cannot_halt_the_bot() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        response = await client.post(HALT, json=REASON, headers=bearer(READ_TOKEN))
        assert response.status_code == 403
        assert api.port.trading == "trading" and api.port.recorded == []


async def test_a_user_of_the_read_role_cannot_act_even_with_a_valid_csrf_token() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        assert (await _login(client, api.url, READER)).status_code == 303
        response = await client.post(
            HALT, json=REASON, headers={"Origin": api.url, "X-CSRF-Token": _csrf(api, client)}
        )
        assert response.status_code == 403
        assert api.port.recorded == []


# --- log-in --------------------------------------------------------------------------------------


async def test_login_brute_force_from_one_address_is_stopped_with_429_and_retry_after() -> None:
    config = auth_config(login_attempts_per_minute=3)
    async with running_api(config) as api, _client(api.url) as client:
        for i in range(3):
            response = await _login(client, api.url, (OPERATOR[0], f"guess {i}"))
            assert response.status_code == 401
        # another user name from the same address: the address is limited
        limited = await _login(client, api.url, (READER[0], "guess"))
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # even the right password is not checked while limited
        right = await _login(client, api.url, OPERATOR)
        assert right.status_code == 429
        assert "tessera_session" not in client.cookies


async def test_login_brute_force_on_one_user_from_many_addresses_is_stopped() -> None:
    config = auth_config(login_attempts_per_minute=3)
    async with running_api(config) as api:
        for i in range(3):
            transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{10 + i}")
            async with _client(api.url, transport=transport) as client:
                response = await _login(client, api.url, (OPERATOR[0], f"guess {i}"))
                assert response.status_code == 401
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.20")
        async with _client(api.url, transport=transport) as client:
            assert (await _login(client, api.url, OPERATOR)).status_code == 429
            # the other user, from a fresh address, is not affected
            assert (await _login(client, api.url, READER)).status_code == 303


async def test_a_wrong_password_and_an_unknown_user_get_the_same_answer_in_similar_time() -> None:
    config = auth_config(login_attempts_per_minute=100)
    async with running_api(config) as api, _client(api.url) as client:
        answers: dict[str, list[httpx.Response]] = {"known": [], "unknown": []}
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        for _ in range(3):
            for kind, name in (("known", OPERATOR[0]), ("unknown", "mallory")):
                started = time.perf_counter()
                answers[kind].append(await _login(client, api.url, (name, "wrong password")))
                times[kind].append(time.perf_counter() - started)
        known, unknown = answers["known"][0], answers["unknown"][0]
        assert known.status_code == unknown.status_code == 401
        assert known.text == unknown.text
        assert "wrong user name or password" in known.text
        ratio = statistics.median(times["unknown"]) / statistics.median(times["known"])
        assert 0.4 < ratio < 2.5, times  # both verify an argon2 hash (no shortcut for unknowns)


async def test_the_session_cookie_is_httponly_samesite_strict_and_secure_over_https() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        response = await _login(client, api.url, OPERATOR)
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("tessera_session=")
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path", "max-age", "samesite"} <= flags
        assert "samesite=strict" in cookie.lower()
        assert "secure" not in flags  # plain http on loopback
        # behind a TLS proxy on this machine (X-Forwarded-Proto from 127.0.0.1 is trusted)
        https_origin = api.url.replace("http://", "https://")
        async with _client(api.url) as tls:
            response = await tls.post(
                "/login",
                data={"username": OPERATOR[0], "password": OPERATOR[1]},
                headers={"Origin": https_origin, "X-Forwarded-Proto": "https"},
            )
        assert response.status_code == 303
        flags = {p.strip().lower() for p in response.headers["set-cookie"].split(";")}
        assert "secure" in flags


async def test_login_redirects_only_to_paths_of_this_site() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        for target in [
            "//evil.example/x",
            "https://evil.example",
            "/\\evil.example",
            "javascript:x",
        ]:
            response = await client.post(
                "/login",
                data={"username": OPERATOR[0], "password": OPERATOR[1], "next": target},
                headers={"Origin": api.url},
            )
            assert response.status_code == 303
            assert response.headers["location"] == "/", target


async def test_a_cross_origin_login_form_is_refused() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        response = await client.post(
            "/login",
            data={"username": OPERATOR[0], "password": OPERATOR[1]},
            headers={"Origin": "http://evil.example"},
        )
        assert response.status_code == 403
        assert "tessera_session" not in client.cookies


# --- CSRF ----------------------------------------------------------------------------------------


async def test_a_session_post_without_or_with_a_wrong_csrf_token_is_refused() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        await _login(client, api.url, OPERATOR)
        token = _csrf(api, client)
        missing = await client.post(HALT, json=REASON, headers={"Origin": api.url})
        assert missing.status_code == 403
        assert "X-CSRF-Token" in missing.json()["detail"]
        wrong = await client.post(
            HALT, json=REASON, headers={"Origin": api.url, "X-CSRF-Token": token[:-2] + "zz"}
        )
        assert wrong.status_code == 403
        assert api.port.recorded == []
        right = await client.post(
            HALT, json=REASON, headers={"Origin": api.url, "X-CSRF-Token": token}
        )
        assert right.status_code == 200


async def test_a_csrf_token_replayed_from_another_session_is_refused() -> None:
    async with (
        running_api(auth_config()) as api,
        _client(api.url) as alice,
        _client(api.url) as bob,
    ):
        await _login(alice, api.url, OPERATOR)
        await _login(bob, api.url, OPERATOR)  # the same user, a second session
        response = await alice.post(
            HALT, json=REASON, headers={"Origin": api.url, "X-CSRF-Token": _csrf(api, bob)}
        )
        assert response.status_code == 403
        assert api.port.recorded == []


async def test_after_logout_the_session_and_its_csrf_token_are_dead() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        await _login(client, api.url, OPERATOR)
        cookie, token = client.cookies["tessera_session"], _csrf(api, client)
        no_csrf = await client.post("/logout", headers={"Origin": api.url})
        assert no_csrf.status_code == 403  # logging out needs the token too
        out = await client.post("/logout", data={"csrf_token": token}, headers={"Origin": api.url})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        client.cookies.set("tessera_session", cookie)
        replay = await client.post(
            HALT, json=REASON, headers={"Origin": api.url, "X-CSRF-Token": token}
        )
        assert replay.status_code == 401
        assert api.port.recorded == []


# --- cross-origin --------------------------------------------------------------------------------


async def test_a_cross_origin_post_with_a_session_is_refused() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        await _login(client, api.url, OPERATOR)
        token = _csrf(api, client)
        for headers in [
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Referer": "http://evil.example/page"},
            {},  # neither Origin nor Referer: a cookie request must say where it comes from
            {"Origin": api.url.replace("127.0.0.1", "localhost")},  # another origin, same box
        ]:
            response = await client.post(
                HALT, json=REASON, headers={**headers, "X-CSRF-Token": token}
            )
            assert response.status_code == 403, headers
        assert api.port.recorded == []
        same_site_referer = await client.post(
            HALT, json=REASON, headers={"Referer": f"{api.url}/risk", "X-CSRF-Token": token}
        )
        assert same_site_referer.status_code == 200


async def test_an_origin_in_allowed_origins_may_post() -> None:
    config = auth_config(allowed_origins=["https://bot.example.com"])
    async with running_api(config) as api, _client(api.url) as client:
        await _login(client, api.url, OPERATOR)
        response = await client.post(
            HALT,
            json=REASON,
            headers={"Origin": "https://bot.example.com", "X-CSRF-Token": _csrf(api, client)},
        )
        assert response.status_code == 200


async def test_a_cross_origin_post_in_local_mode_is_refused_even_with_the_custom_header() -> None:
    async with running_api() as api, _client(api.url) as client:
        response = await client.post(
            HALT,
            json=REASON,
            headers={"Origin": "http://evil.example", "X-Tessera-Request": "1"},
        )
        assert response.status_code == 403
        assert api.port.recorded == []


async def test_a_simple_form_post_without_the_custom_header_is_refused_in_local_mode() -> None:
    async with running_api() as api:
        port = api.server.port
        for origin in ["http://evil.example", f"http://127.0.0.1:{port}", None]:
            head = (
                f"POST {HALT} HTTP/1.1\nHost: 127.0.0.1:{port}\nConnection: close\n"
                "Content-Type: text/plain\nContent-Length: 18"
            )
            if origin:
                head += f"\nOrigin: {origin}"
            status, _, body = await raw_http(port, head, b'{"reason":"form"}\n')
            assert status == 403, (origin, body)
        assert api.port.recorded == []


async def test_a_rebound_host_name_is_refused_on_a_loopback_bind() -> None:
    async with running_api() as api:
        port = api.server.port
        head = f"GET /api/v1/status HTTP/1.1\nHost: evil.example:{port}\nConnection: close"
        status, _, body = await raw_http(port, head)
        assert status == 403
        assert b"allowed_origins" in body
        assert api.port.read_calls == []


async def test_a_non_json_body_on_the_api_is_refused_with_415() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        response = await client.post(
            HALT,
            content=b"reason=x",
            headers={**bearer(OPERATE_TOKEN), "Content-Type": "text/plain"},
        )
        assert response.status_code == 415
        assert api.port.recorded == []


# --- paths and bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/strategies/..%2f..%2fetc/pause",
        "/api/v1/strategies/%2e%2e/pause",
        "/api/v1/strategies/%2E%2E%2F%2E%2E/pause",
        "/api/v1/strategies/trend%00btc/pause",
        "/api/v1/strategies/trend_btc%0d%0aX-Injected:%201/pause",
        "/api/v1/strategies/..%5c..%5cwindows/pause",
        "/api/v1/strategies/" + "a" * 5000 + "/pause",
        "/api/v1/orders/" + "b" * 37 + "/cancel",
        "/api/v1/orders/.hidden/cancel",
        "/api/v1/positions/btc%2fusdt/close?strategy=trend_btc",
        "/api/v1/positions/BTCUSDT/close?strategy=..%2f..",
        "/api/v1/../../../etc/passwd",
    ],
)
async def test_path_tricks_never_reach_the_bot(path: str) -> None:
    async with running_api(auth_config(max_body_bytes=16_384)) as api:
        port = api.server.port
        head = (
            f"POST {path} HTTP/1.1\nHost: 127.0.0.1:{port}\nConnection: close\n"
            f"Authorization: Bearer {OPERATE_TOKEN}\nContent-Type: application/json\n"
            "Content-Length: 17"
        )
        status, headers, _ = await raw_http(port, head, b'{"reason":"path"}')
        assert status in (400, 404, 414, 422, 431), status
        assert "x-injected" not in headers
        assert api.port.recorded == []


async def test_a_content_length_over_the_limit_is_refused_before_reading_the_body() -> None:
    async with running_api(auth_config(max_body_bytes=2048)) as api:
        port = api.server.port
        head = (
            f"POST {HALT} HTTP/1.1\nHost: 127.0.0.1:{port}\nConnection: close\n"
            f"Authorization: Bearer {OPERATE_TOKEN}\nContent-Type: application/json\n"
            "Content-Length: 1000000000"
        )
        status, _, body = await raw_http(port, head)  # no body sent at all: not waited for
        assert status == 413
        assert b"2048 bytes" in body and b"control.max_body_bytes" in body
        assert api.port.recorded == []


async def test_a_chunked_body_growing_past_the_limit_is_cut_off_with_413() -> None:
    async with running_api(auth_config(max_body_bytes=2048)) as api:
        port = api.server.port
        head = (
            f"POST {HALT} HTTP/1.1\nHost: 127.0.0.1:{port}\nConnection: close\n"
            f"Authorization: Bearer {OPERATE_TOKEN}\nContent-Type: application/json\n"
            "Transfer-Encoding: chunked"
        )
        piece = b'{"reason":"' + b"x" * 500
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(5))  # 2.5 kB
        status, _, _ = await raw_http(port, head, chunks)  # never terminated: endless
        assert status == 413
        assert api.port.recorded == []


async def test_a_huge_json_body_with_a_valid_token_is_refused() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        response = await client.post(
            HALT, json={"reason": "x" * 100_000}, headers=bearer(OPERATE_TOKEN)
        )
        assert response.status_code == 413
        assert api.port.recorded == []


# --- secrets never leave -------------------------------------------------------------------------


async def test_no_token_password_session_id_or_csrf_token_appears_in_responses_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_token = "wrong-" + "Z" * 40
    wrong_password = "a wrong password 8327"
    texts: list[str] = []

    def keep(response: httpx.Response, *, cookie_ok: bool = False) -> None:
        headers = {
            k: v for k, v in response.headers.items() if not (cookie_ok and k == "set-cookie")
        }
        texts.append(response.text)
        texts.append(repr(headers))

    with capture_logs() as events:
        async with running_api(auth_config()) as api, _client(api.url) as client:
            keep(await client.get("/api/v1/status", headers=bearer(OPERATE_TOKEN)))
            keep(await client.get("/api/v1/status", headers=bearer(wrong_token)))
            keep(await client.post(HALT, json=REASON, headers=bearer(READ_TOKEN)))
            keep(await _login(client, api.url, (OPERATOR[0], wrong_password)))
            keep(await _login(client, api.url, ("nobody", wrong_password)))
            keep(await _login(client, api.url, OPERATOR), cookie_ok=True)
            session_id = client.cookies["tessera_session"]
            csrf = _csrf(api, client)
            keep(await client.post(HALT, json=REASON, headers={"Origin": api.url}))
            keep(
                await client.post(
                    HALT, json=REASON, headers={"Origin": api.url, "X-CSRF-Token": "bad"}
                )
            )
            keep(
                await client.post(
                    HALT, json=REASON, headers={"Origin": api.url, "X-CSRF-Token": csrf}
                )
            )
            keep(await client.get("/api/v1/whoami"))
            keep(await client.get("/api/v1/actions"))
            api.port.fail_next_read = RuntimeError("boom")
            keep(await client.get("/api/v1/risk", headers=bearer(OPERATE_TOKEN)))
            keep(
                await client.post("/logout", data={"csrf_token": csrf}, headers={"Origin": api.url})
            )
            client.cookies.set("tessera_session", session_id)  # replay the dead session
            keep(await client.get("/api/v1/status"))
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = [repr(e) for e in events] + [r.getMessage() + repr(r.__dict__) for r in server_records]
    assert any("control login failed" in line for line in logged)  # the scan sees the logs
    assert any("control API request failed" in line for line in logged)
    secrets = {
        "operate token": OPERATE_TOKEN,
        "read token": READ_TOKEN,
        "wrong token": wrong_token,
        "password": OPERATOR[1],
        "wrong password": wrong_password,
        "session id": session_id,
        "csrf token": csrf,
    }
    for where, haystack in (("responses", texts), ("logs", logged)):
        for name, secret in secrets.items():
            assert not any(secret in text for text in haystack), f"{name} found in {where}"


# --- settings ------------------------------------------------------------------------------------


def test_a_non_loopback_bind_without_auth_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValidationError) as info:
        ControlConfig(enabled=True, host="0.0.0.0")
    message = str(info.value)
    assert "not a loopback address" in message
    assert "control.tokens or control.users" in message
    assert "reverse proxy" in message
    # with a token it is allowed
    ControlConfig.model_validate(
        {"enabled": True, "host": "0.0.0.0", "tokens": auth_config().model_dump()["tokens"]}
    )


# --- property: path segments ----------------------------------------------------------------------

_SAFE = re.compile(STRATEGY_ID)


@pytest.fixture(scope="module")
def segment_client() -> Iterator[tuple[httpx.Client, PortDouble]]:
    """One real server for all the examples, in a thread with its own event loop (hypothesis
    drives synchronous tests), and a synchronous client."""
    port = PortDouble()
    app = create_app(port, EventHub(), auth_config(users=[]), version="t")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        start_control_server(app, "127.0.0.1", 0), loop
    ).result(30)
    try:
        # TCP_NODELAY: without it each request waits ~40 ms on Nagle and a delayed ACK
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        transport = httpx.HTTPTransport(socket_options=nodelay)
        with httpx.Client(base_url=server.url, timeout=10.0, transport=transport) as client:
            yield client, port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(segment=st.text(min_size=1, max_size=80))
def test_any_strategy_segment_is_refused_or_reaches_the_bot_verbatim_and_safe(
    segment_client: tuple[httpx.Client, PortDouble], segment: str
) -> None:
    client, port = segment_client
    port.strategies = (segment,)  # the bot knows this strategy: only the API may refuse it
    port.recorded.clear()
    response = client.post(
        f"/api/v1/strategies/{quote(segment, safe='')}/pause",
        json=REASON,
        headers=bearer(OPERATE_TOKEN),
    )
    reached = [r.target for r in port.recorded]
    if _SAFE.fullmatch(segment):
        assert response.status_code == 200, response.text
        assert reached == [segment]
        assert not segment.startswith(".") and len(segment) <= 64
        assert not any(c in segment for c in "/\\\x00\r\n%")
    else:
        assert response.status_code in (404, 422), response.text
        assert reached == []
