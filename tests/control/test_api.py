"""The control API over real sockets: uvicorn on 127.0.0.1 (a free port) in the test's event loop,
httpx as the client, `PortDouble` as the bot. Every read route, every action with each role,
attribution, paging and filters, server-sent events, the published OpenAPI schema, and the
server's own lifecycle (port in use, stop with a stream open, no signal handlers taken)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
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
from pydantic import TypeAdapter

import tessera.control.app as app_module
from tessera.control.app import create_app, csrf_token_for, require_action, require_session
from tessera.control.events import EventHub
from tessera.control.openapi_doc import build_schema, render
from tessera.control.port import Actor
from tessera.control.schemas import (
    ActionOut,
    ActionRecord,
    Balances,
    EquityPoint,
    FillOut,
    LogLine,
    OrderOut,
    Page,
    PositionOut,
    RiskOut,
    Status,
    StrategyPnl,
    WhoAmI,
)
from tessera.control.server import ControlServerError, start_control_server

pytestmark = pytest.mark.timeout(60)

READS: list[tuple[str, Any]] = [
    ("/api/v1/status", Status),
    ("/api/v1/balances", Balances),
    ("/api/v1/positions", list[PositionOut]),
    ("/api/v1/orders/open", list[OrderOut]),
    ("/api/v1/orders", Page[OrderOut]),
    ("/api/v1/fills", Page[FillOut]),
    ("/api/v1/pnl", list[StrategyPnl]),
    ("/api/v1/equity", list[EquityPoint]),
    ("/api/v1/risk", RiskOut),
    ("/api/v1/logs", list[LogLine]),
    ("/api/v1/actions", Page[ActionRecord]),
    ("/api/v1/whoami", WhoAmI),
]

# (path, body reason, what the double records as (action, target)); in an order that is valid
# against the double's state (halt before reset, pause before resume)
ACTIONS: list[tuple[str, tuple[str, str | None]]] = [
    ("/api/v1/risk/halt", ("halt", None)),
    ("/api/v1/risk/reset", ("reset", None)),
    ("/api/v1/strategies/trend_btc/pause", ("pause", "trend_btc")),
    ("/api/v1/strategies/trend_btc/resume", ("resume", "trend_btc")),
    ("/api/v1/orders/tdemo-3/cancel", ("cancel", "tdemo-3")),
    ("/api/v1/positions/BTCUSDT/close?strategy=trend_btc", ("close_position", "BTCUSDT/trend_btc")),
]


def _client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=10.0, **kwargs)


async def test_every_read_route_answers_its_schema_to_a_read_token() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        for path, model in READS:
            response = await client.get(path, headers=bearer(READ_TOKEN))
            assert response.status_code == 200, (path, response.text)
            TypeAdapter(model).validate_python(response.json())
        assert {name for name, _ in api.port.read_calls} >= {
            "status",
            "balances",
            "positions",
            "open_orders",
            "orders",
            "fills",
            "pnl",
            "equity_history",
            "risk",
            "recent_logs",
            "actions",
        }
        who = (await client.get("/api/v1/whoami", headers=bearer(READ_TOKEN))).json()
        assert who == {"name": "grafana", "role": "read", "via": "token"}


async def test_every_action_with_an_operate_token_is_done_and_attributed_to_the_token() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        for n, (path, (action, target)) in enumerate(ACTIONS):
            reason = f"test step {n}"
            response = await client.post(
                path, json={"reason": reason}, headers=bearer(OPERATE_TOKEN)
            )
            assert response.status_code == 200, (path, response.text)
            out = ActionOut.model_validate(response.json())
            assert (out.action, out.target, out.actor, out.reason) == (
                action,
                target,
                "ops-bot",
                reason,
            )
        assert [(r.action, r.target) for r in api.port.recorded] == [a for _, a in ACTIONS]
        for record in api.port.recorded:
            assert record.actor.name == "ops-bot"
            assert record.actor.role == "operate"
            assert record.actor.via == "token"
            assert record.actor.address == "127.0.0.1"
        listed = (await client.get("/api/v1/actions", headers=bearer(READ_TOKEN))).json()
        assert listed["total"] == len(ACTIONS)
        assert listed["items"][0]["action"] == "close_position"  # newest first


async def test_a_read_only_token_cannot_take_any_action() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        for path, _ in ACTIONS:
            response = await client.post(path, json={"reason": "try"}, headers=bearer(READ_TOKEN))
            assert response.status_code == 403, path
            assert "operate role" in response.json()["detail"]
        assert api.port.recorded == []
        assert api.port.trading == "trading"


async def test_a_refused_action_answers_the_ports_status_and_sentence() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        headers = bearer(OPERATE_TOKEN)
        unknown = await client.post(
            "/api/v1/strategies/nope/pause", json={"reason": "x"}, headers=headers
        )
        assert unknown.status_code == 404
        assert unknown.json() == {"detail": "no strategy 'nope' in this bot"}
        conflict = await client.post("/api/v1/risk/reset", json={"reason": "x"}, headers=headers)
        assert conflict.status_code == 409
        assert conflict.json() == {"detail": "trading is not halted: nothing to reset"}
        no_order = await client.post(
            "/api/v1/orders/tdemo-404/cancel", json={"reason": "x"}, headers=headers
        )
        assert no_order.status_code == 404


async def test_an_action_needs_a_reason_and_no_other_field() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        headers = bearer(OPERATE_TOKEN)
        for body in ({}, {"reason": ""}, {"reason": "x" * 501}, {"reason": "x", "extra": 1}):
            response = await client.post("/api/v1/risk/halt", json=body, headers=headers)
            assert response.status_code == 422, body
        assert api.port.recorded == []


async def test_filters_and_paging_reach_the_port_and_out_of_range_values_are_refused() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        headers = bearer(READ_TOKEN)
        page = await client.get(
            "/api/v1/orders",
            params={
                "status": "NEW",
                "symbol": "BTCUSDT",
                "strategy": "trend_btc",
                "limit": 1,
                "offset": 0,
            },
            headers=headers,
        )
        assert page.status_code == 200
        body = page.json()
        assert [o["client_order_id"] for o in body["items"]] == ["tdemo-3"]
        assert (body["total"], body["limit"], body["offset"]) == (1, 1, 0)
        assert api.port.read_calls[-1] == (
            "orders",
            {
                "status": "NEW",
                "symbol": "BTCUSDT",
                "strategy": "trend_btc",
                "limit": 1,
                "offset": 0,
            },
        )
        fills = await client.get(
            "/api/v1/fills",
            params={"since_ns": 1_767_225_700_000_000_000, "limit": 5, "offset": 0},
            headers=headers,
        )
        assert [f["trade_id"] for f in fills.json()["items"]] == ["9002"]
        calls_before = len(api.port.read_calls)
        for path, params in [
            ("/api/v1/orders", {"limit": 0}),
            ("/api/v1/orders", {"limit": 1001}),
            ("/api/v1/orders", {"offset": -1}),
            ("/api/v1/orders", {"limit": "ten"}),
            ("/api/v1/orders", {"symbol": "btc/usdt"}),
            ("/api/v1/orders", {"strategy": "../x"}),
            ("/api/v1/fills", {"since_ns": -5}),
            ("/api/v1/equity", {"limit": 5000}),
            ("/api/v1/logs", {"level": "warn;drop"}),
            ("/api/v1/actions", {"offset": "-1"}),
        ]:
            response = await client.get(path, params=params, headers=headers)
            assert response.status_code == 422, (path, params)
            assert "input" not in json.dumps(response.json())  # the value is not echoed back
        assert len(api.port.read_calls) == calls_before


async def test_a_console_session_can_act_with_its_csrf_token_and_is_recorded_as_the_user() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        login = await client.post(
            "/login",
            data={"username": OPERATOR[0], "password": OPERATOR[1], "next": "/overview"},
            headers={"Origin": api.url},
        )
        assert login.status_code == 303
        assert login.headers["location"] == "/overview"
        session = api.app.state.auth.sessions.get(client.cookies["tessera_session"])
        response = await client.post(
            "/api/v1/risk/halt",
            json={"reason": "from the console"},
            headers={"Origin": api.url, "X-CSRF-Token": session.csrf},
        )
        assert response.status_code == 200, response.text
        actor = api.port.recorded[-1].actor
        assert (actor.name, actor.role, actor.via) == ("olga", "operate", "session")
        who = (await client.get("/api/v1/whoami")).json()
        assert who == {"name": "olga", "role": "operate", "via": "session"}


async def test_local_mode_acts_as_local_with_the_custom_header_from_a_script() -> None:
    async with running_api() as api, _client(api.url) as client:
        response = await client.post(
            "/api/v1/risk/halt", json={"reason": "local"}, headers={"X-Tessera-Request": "1"}
        )
        assert response.status_code == 200, response.text
        actor = api.port.recorded[-1].actor
        assert (actor.name, actor.role, actor.via) == ("local", "operate", "local")
        assert (await client.get("/api/v1/status")).status_code == 200


async def test_every_response_carries_the_security_headers_and_no_cors_header() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        responses = [
            await client.get("/healthz", headers={"Origin": "http://evil.example"}),
            await client.get("/api/v1/status", headers=bearer(READ_TOKEN)),
            await client.get("/api/v1/status"),  # 401
            await client.get("/login"),
            await client.get("/api/v1/nothing-here", headers=bearer(READ_TOKEN)),
            await client.options("/api/v1/risk/halt", headers={"Origin": "http://evil.example"}),
        ]
        for response in responses:
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "same-origin"
            csp = response.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
            assert "access-control-allow-origin" not in response.headers
        for response in responses[1:3]:
            assert response.headers["cache-control"] == "no-store"


async def test_health_answers_without_authentication() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "version": "0.0.0-test"}


async def test_an_unexpected_error_is_a_generic_500_and_the_server_keeps_serving() -> None:
    port = PortDouble(fail_next_read=RuntimeError("database password=hunter2 at db:5432"))
    async with running_api(auth_config(), port) as api, _client(api.url) as client:
        response = await client.get("/api/v1/status", headers=bearer(READ_TOKEN))
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error: the bot's log has the details"}
        assert "hunter2" not in response.text and "Traceback" not in response.text
        again = await client.get("/api/v1/status", headers=bearer(READ_TOKEN))
        assert again.status_code == 200


async def _read_events(response: httpx.Response, count: int) -> list[str]:
    frames: list[str] = []
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            frames.append(frame)
            if len(frames) >= count:
                return frames
    return frames


async def _until(predicate: Any, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_events_stream_published_events_and_the_subscription_ends_with_the_client() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        assert api.hub.subscribers == 0
        async with client.stream("GET", "/api/v1/events", headers=bearer(READ_TOKEN)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            await _until(lambda: api.hub.subscribers == 1)
            api.hub.publish("fill", {"symbol": "BTCUSDT", "qty": "0.01"}, ts=123)
            api.hub.publish("halt", {"reason": "test"}, ts=124)
            frames = await asyncio.wait_for(_read_events(response, 3), 10)
        assert frames[0] == ": connected"
        assert (
            frames[1]
            == 'event: fill\ndata: {"ts": 123, "data": {"symbol": "BTCUSDT", "qty": "0.01"}}'
        )
        assert frames[2].startswith("event: halt\ndata: ")
        assert json.loads(frames[2].split("data: ", 1)[1]) == {
            "ts": 124,
            "data": {"reason": "test"},
        }
        await _until(lambda: api.hub.subscribers == 0)


async def test_an_idle_event_stream_gets_keep_alive_comments() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        api.app.state.sse_keepalive_s = 0.1
        async with client.stream("GET", "/api/v1/events", headers=bearer(READ_TOKEN)) as response:
            frames = await asyncio.wait_for(_read_events(response, 3), 10)
        assert frames == [": connected", ": keep-alive", ": keep-alive"]


async def test_the_event_stream_needs_authentication() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        response = await client.get("/api/v1/events")
        assert response.status_code == 401
        assert api.hub.subscribers == 0


async def test_stopping_the_server_ends_open_event_streams_promptly() -> None:
    async with running_api(auth_config()) as api:
        client = _client(api.url)
        request = client.build_request("GET", "/api/v1/events", headers=bearer(READ_TOKEN))
        response = await client.send(request, stream=True)
        await _until(lambda: api.hub.subscribers == 1)
        started = time.monotonic()
        await asyncio.wait_for(api.server.stop(), 10)
        assert time.monotonic() - started < 3.0
        assert api.hub.subscribers == 0
        await response.aclose()
        await client.aclose()


def _paths(schema: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}


async def test_the_openapi_schema_lists_every_route_with_its_schemas_and_roles() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        assert (await client.get("/api/openapi.json")).status_code == 401
        schema = (await client.get("/api/openapi.json", headers=bearer(READ_TOKEN))).json()
    expected = {("GET", p) for p, _ in READS} | {
        ("GET", "/api/v1/events"),
        ("GET", "/healthz"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("POST", "/logout"),
    }
    expected |= {("POST", p.split("?")[0].replace("trend_btc", "{strategy}")) for p, _ in ACTIONS}
    expected = {
        (m, p.replace("tdemo-3", "{client_order_id}").replace("BTCUSDT", "{symbol}"))
        for m, p in expected
    }
    assert _paths(schema) == expected
    for path, _ in READS:
        op = schema["paths"][path]["get"]
        content = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in content or content.get("type") == "array", path
        assert op["x-tessera-role"] == "read"
        assert op["description"]  # the route's docstring
        assert {k for s in op["security"] for k in s} == {"HTTPBearer", "APIKeyCookie"}
    for path, ops in schema["paths"].items():
        if path.startswith("/api/v1/") and "post" in ops:
            op = ops["post"]
            body = op["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ActionRequest"}, path
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            assert ok == {"$ref": "#/components/schemas/ActionOut"}, path
            assert op["x-tessera-role"] == "operate"
    components = schema["components"]["schemas"]
    for name in ("Status", "Balances", "OrderOut", "FillOut", "RiskOut", "ActionRecord"):
        assert name in components
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyCookie"}


async def test_a_port_in_use_is_one_sentence_naming_the_address_and_the_setting() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    try:
        app = create_app(PortDouble(), EventHub(), auth_config(), version="t")
        with pytest.raises(ControlServerError) as info:
            await start_control_server(app, "127.0.0.1", taken)
        message = str(info.value)
        assert f"127.0.0.1:{taken}" in message
        assert "control.port" in message
        assert "\n" not in message
    finally:
        blocker.close()


async def test_the_server_takes_no_signal_handler_from_the_bot() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    async with running_api(auth_config()) as api, _client(api.url) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert {sig: signal.getsignal(sig) for sig in before} == before
        assert api.server.port != 0 and api.server.url == f"http://127.0.0.1:{api.server.port}"


def test_the_committed_api_reference_is_the_one_the_code_generates() -> None:
    schema = build_schema()
    page = render(schema)
    committed = (Path(__file__).resolve().parents[2] / "docs" / "control-api.md").read_text()
    assert committed == page, (
        "docs/control-api.md is stale: run "
        "`python -m tessera.control.openapi_doc > docs/control-api.md`"
    )
    for path, ops in schema["paths"].items():
        for method in ops:
            assert f"### `{method.upper()} {path}`" in page
    assert "Role: **operate**." in page and "decimal string" in page


class _MiniConsole:
    """A console the way helper C's mounts one: pages behind `require_session`, a form POST
    behind `require_action`, the page's CSRF token from `csrf_token_for`."""

    def mount(self, app: FastAPI) -> None:
        @app.get("/console/page", include_in_schema=False)
        def page(
            request: Request, actor: Annotated[Actor, Depends(require_session)]
        ) -> dict[str, str]:
            return {"actor": actor.name, "csrf": csrf_token_for(request)}

        @app.post("/console/halt", include_in_schema=False)
        async def halt(actor: Annotated[Actor, Depends(require_action)]) -> dict[str, str]:
            return {"by": actor.name}


async def test_console_helpers_redirect_to_login_check_csrf_from_a_form_and_need_operate() -> None:
    async with running_api(auth_config(), console=_MiniConsole()) as api:
        async with _client(api.url) as client:
            anonymous = await client.get("/console/page?tab=2")
            assert anonymous.status_code == 303
            assert anonymous.headers["location"] == "/login?next=/console/page%3Ftab%3D2"
            htmx = await client.get("/console/page", headers={"HX-Request": "true"})
            assert htmx.status_code == 401
            assert htmx.headers["hx-redirect"].startswith("/login?next=")
            await client.post(
                "/login",
                data={"username": OPERATOR[0], "password": OPERATOR[1]},
                headers={"Origin": api.url},
            )
            page = (await client.get("/console/page")).json()
            assert page["actor"] == "olga" and len(page["csrf"]) == 43
            form = {"csrf_token": page["csrf"], "reason": "x"}
            ok = await client.post("/console/halt", data=form, headers={"Origin": api.url})
            assert ok.status_code == 200 and ok.json() == {"by": "olga"}
            missing = await client.post(
                "/console/halt", data={"reason": "x"}, headers={"Origin": api.url}
            )
            assert missing.status_code == 403
            foreign = await client.post(
                "/console/halt", data=form, headers={"Origin": "http://evil.example"}
            )
            assert foreign.status_code == 403
        async with _client(api.url) as reader:
            await reader.post(
                "/login",
                data={"username": READER[0], "password": READER[1]},
                headers={"Origin": api.url},
            )
            csrf = (await reader.get("/console/page")).json()["csrf"]
            refused = await reader.post(
                "/console/halt", data={"csrf_token": csrf}, headers={"Origin": api.url}
            )
            assert refused.status_code == 403


async def test_the_swagger_page_is_served_to_an_authenticated_reader_with_its_own_policy() -> None:
    async with running_api(auth_config()) as api, _client(api.url) as client:
        response = await client.get("/api/docs", headers=bearer(READ_TOKEN))
        assert response.status_code == 200
        assert "/api/openapi.json" in response.text
        assert "cdn.jsdelivr.net" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"


async def test_accepted_connections_send_without_delay() -> None:
    """TCP_NODELAY on each connection: without it every answer waited ~40 ms (Nagle's algorithm
    against the client's delayed ACK), which the console's many small requests would feel."""
    async with running_api() as api, _client(api.url) as client:
        assert (await client.get("/healthz")).status_code == 200
        connections = list(api.server._server.server_state.connections)
        assert connections
        for connection in connections:
            sock = connection.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        started = time.perf_counter()
        for _ in range(20):
            await client.get("/healthz")
        assert time.perf_counter() - started < 0.8  # 20 x 40 ms would be 0.8 s


async def test_event_streams_are_bounded_and_a_closed_one_frees_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "MAX_EVENT_STREAMS", 2)
    async with running_api(auth_config()) as api, _client(api.url) as client:
        headers = bearer(READ_TOKEN)
        first = await client.send(
            client.build_request("GET", "/api/v1/events", headers=headers), stream=True
        )
        second = await client.send(
            client.build_request("GET", "/api/v1/events", headers=headers), stream=True
        )
        await _until(lambda: api.app.state.event_streams == 2)
        third = await client.get("/api/v1/events", headers=headers)
        assert third.status_code == 503
        assert "too many open event streams (2)" in third.json()["detail"]
        await first.aclose()
        await _until(lambda: api.app.state.event_streams == 1)
        fourth = await client.send(
            client.build_request("GET", "/api/v1/events", headers=headers), stream=True
        )
        assert fourth.status_code == 200
        await second.aclose()
        await fourth.aclose()
        await _until(lambda: api.app.state.event_streams == 0 and api.hub.subscribers == 0)
