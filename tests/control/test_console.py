"""The web console over the in-memory port double, through the real app over a real socket.

Every page and fragment needs a log-in; forms need the session's CSRF token and the operate
role; actions go through a confirmation with a reason and are attributed to the logged-in
person; whatever the bot or a person typed (strategy names, reasons, log fields) is text in the
page, never markup.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from port_double import OPERATOR, READER, PortDouble, auth_config

from tessera.config.models import ControlConfig
from tessera.control.app import create_app
from tessera.control.console import STATIC, Console, _event_summary, drawdown_bar, equity_curve
from tessera.control.events import EventHub
from tessera.control.schemas import EquityPoint, HaltOut, LogLine
from tessera.control.server import ControlServer, start_control_server

pytestmark = pytest.mark.timeout(60)

PAGES = ("/", "/positions", "/orders", "/strategies", "/risk", "/logs")
FRAGMENTS = (
    "state",
    "overview",
    "alerts",
    "positions",
    "open-orders",
    "orders",
    "fills",
    "strategies",
    "risk-state",
    "risk-numbers",
    "actions",
    "logs",
)
XSS = "<script>alert(1)</script>"


@dataclass
class ConsoleServer:
    server: ControlServer
    port: PortDouble
    hub: EventHub

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.asynccontextmanager
async def serving(
    port: PortDouble | None = None, config: ControlConfig | None = None
) -> AsyncIterator[ConsoleServer]:
    port = port or PortDouble()
    config = config or auth_config()
    hub = EventHub()
    app = create_app(port, hub, config, version="0.0.0-test", console=Console(port, hub, config))
    server = await start_control_server(app, "127.0.0.1", 0)
    try:
        yield ConsoleServer(server, port, hub)
    finally:
        await server.stop()


@pytest.fixture
async def console() -> AsyncIterator[ConsoleServer]:
    async with serving() as running:
        yield running


def browser(url: str) -> httpx.AsyncClient:
    """A client that behaves like the browser on the console's page: same-origin requests."""
    return httpx.AsyncClient(base_url=url, headers={"Origin": url}, timeout=10.0)


async def log_in(client: httpx.AsyncClient, user: tuple[str, str]) -> str:
    """Logs in and returns the CSRF token the console puts in its forms."""
    r = await client.post("/login", data={"username": user[0], "password": user[1], "next": "/"})
    assert r.status_code == 303, r.text
    page = await client.get("/risk")
    assert page.status_code == 200
    return csrf_of(page.text)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, "no CSRF token in the page"
    return m.group(1)


async def test_every_page_and_fragment_sends_a_visitor_without_a_session_to_the_log_in(
    console: ConsoleServer,
) -> None:
    async with browser(console.url) as client:
        for path in PAGES:
            r = await client.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/login?next="), path
        r = await client.get("/fragments/fills")
        assert r.status_code == 303
        # htmx asks for a full-page redirect instead of drawing the log-in form in a table
        r = await client.get("/fragments/fills", headers={"HX-Request": "true"})
        assert r.status_code == 401
        assert r.headers["HX-Redirect"] == "/login?next=/"
        # ... back to the page the fragment was polled from, never to the bare fragment
        page = {"HX-Request": "true", "HX-Current-URL": f"{console.url}/positions?x=1"}
        r = await client.get("/fragments/fills", headers=page)
        assert r.headers["HX-Redirect"] == "/login?next=/positions%3Fx%3D1"
        elsewhere = {"HX-Request": "true", "HX-Current-URL": "https://evil.example/steal"}
        r = await client.get("/fragments/fills", headers=elsewhere)
        assert r.headers["HX-Redirect"] == "/login?next=/"
        r = await client.post("/console/halt", data={"reason": "x", "confirm": "yes"})
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login")
    assert console.port.recorded == []


async def test_every_page_and_fragment_shows_the_bots_state_to_an_operator(
    console: ConsoleServer,
) -> None:
    async with browser(console.url) as client:
        await log_in(client, OPERATOR)
        pages = {path: await client.get(path) for path in PAGES}
        for path, r in pages.items():
            assert r.status_code == 200, (path, r.text)
            assert "text/html" in r.headers["content-type"]
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert 'sse-connect="/api/v1/events"' in r.text, path
            assert "olga" in r.text
        overview = pages["/"].text
        assert "10,005.10" in overview  # equity
        assert "<polyline points=" in overview  # the equity curve, drawn on the server
        assert "0.05 % of the 10.00 % kill-switch limit" in overview
        assert "9001" in overview  # a recent fill
        assert "trend_btc" in pages["/positions"].text
        assert 'value="BTCUSDT"' in pages["/positions"].text  # its close form
        orders = pages["/orders"].text
        for cid in ("tdemo-1", "tdemo-3", "tdemo-4", "tdemo-5"):
            assert cid in orders
        assert 'name="client_order_id" value="tdemo-3"' in orders  # open: cancellable
        assert 'name="client_order_id" value="tdemo-1"' not in orders  # filled: not
        strategies = pages["/strategies"].text
        assert "mr_eth" in strategies
        assert "-0.50" in strategies  # realized net of fees
        assert "max_order_notional" in pages["/risk"].text
        assert "order rejected" in pages["/logs"].text
        for name in FRAGMENTS:
            r = await client.get(f"/fragments/{name}", headers={"HX-Request": "true"})
            assert r.status_code == 200, (name, r.text)
            assert f'id="{name}"' in r.text, name
            assert "<html" not in r.text
        assert (await client.get("/fragments/nope")).status_code == 404


async def test_each_live_part_of_a_page_reloads_itself_on_the_events_that_change_it(
    console: ConsoleServer,
) -> None:
    async with browser(console.url) as client:
        await log_in(client, OPERATOR)
        orders = (await client.get("/orders")).text
        fills = re.search(r'<div id="fills" hx-get="([^"]+)" hx-trigger="([^"]+)"', orders)
        assert fills, orders
        assert fills.group(1).startswith("/fragments/fills")
        assert "sse:fill" in fills.group(2)
        assert 'hx-trigger="sse:order' in orders
        risk = (await client.get("/risk")).text
        assert re.search(r'id="risk-state" [^>]*hx-trigger="sse:halt, sse:reset', risk)
        # the scripts the pages load are served, and nothing is loaded from elsewhere
        for src in re.findall(r'<script src="([^"]+)"', orders):
            assert src.startswith("/static/"), src
            assert (await client.get(src)).status_code == 200
        assert "<script>" not in orders, "an inline script"
        assert not re.search(r"<[^>]+\son[a-z]+=", orders), "an inline event handler"
        assert not re.search(r"<[^>]+\sstyle=", orders), "an inline style"


async def test_a_halt_asks_for_confirmation_then_is_done_as_the_logged_in_person(
    console: ConsoleServer,
) -> None:
    async with browser(console.url) as client:
        csrf = await log_in(client, OPERATOR)
        r = await client.post(
            "/console/halt", data={"csrf_token": csrf, "reason": "exchange maintenance"}
        )
        assert r.status_code == 200
        assert "Halt trading?" in r.text
        assert 'value="exchange maintenance"' in r.text
        assert 'name="confirm" value="yes"' in r.text
        assert r.headers["HX-Push-Url"] == "false"  # the address bar stays on /risk
        assert console.port.recorded == [], "the first step must not act"
        # a reload of the form's address shows the page it belongs to and does nothing
        r = await client.get("/console/halt")
        assert (r.status_code, r.headers["location"]) == (303, "/risk")
        assert console.port.recorded == []

        # confirmed without a reason: asked again, still nothing done
        r = await client.post(
            "/console/halt", data={"csrf_token": csrf, "reason": "  ", "confirm": "yes"}
        )
        assert r.status_code == 422
        assert "Say why" in r.text
        assert console.port.recorded == []

        r = await client.post(
            "/console/halt",
            data={"csrf_token": csrf, "reason": "exchange maintenance", "confirm": "yes"},
        )
        assert r.status_code == 303
        assert r.headers["location"].startswith("/risk?flash=")
        [done] = console.port.recorded
        assert (done.action, done.actor.name, done.actor.via, done.reason) == (
            "halt",
            "olga",
            "session",
            "exchange maintenance",
        )
        page = await client.get(r.headers["location"])
        assert "Halt trading: done" in page.text
        assert 'id="risk-state-text">halted' in page.text
        assert "exchange maintenance" in page.text
        assert 'id="reset-form"' in page.text and 'id="halt-form"' not in page.text
        # the flash is shown once
        again = await client.get(r.headers["location"])
        assert "Halt trading: done" not in again.text

        # the reset names the person before they confirm
        r = await client.post("/console/reset", data={"csrf_token": csrf, "reason": "all clear"})
        assert r.status_code == 200
        assert 'id="acting-as">olga<' in r.text
        r = await client.post(
            "/console/reset", data={"csrf_token": csrf, "reason": "all clear", "confirm": "yes"}
        )
        assert r.status_code == 303
        assert [a.action for a in console.port.recorded] == ["halt", "reset"]
        assert console.port.trading == "trading"


async def test_the_other_actions_reach_the_port_with_their_target_and_reason(
    console: ConsoleServer,
) -> None:
    async with browser(console.url) as client:
        csrf = await log_in(client, OPERATOR)
        forms = [
            ("pause", {"strategy": "mr_eth"}, "/strategies"),
            ("resume", {"strategy": "mr_eth"}, "/strategies"),
            ("cancel", {"client_order_id": "tdemo-3"}, "/orders"),
            ("close", {"symbol": "BTCUSDT", "strategy": "trend_btc"}, "/positions"),
        ]
        for action, target, back in forms:
            data = {"csrf_token": csrf, "reason": f"why {action}", "confirm": "yes", **target}
            r = await client.post(f"/console/{action}", data=data)
            assert r.status_code == 303, (action, r.text)
            assert r.headers["location"].startswith(f"{back}?flash=")
            page = await client.get(r.headers["location"])
            assert ": done" in page.text
    got = [(a.action, a.target, a.reason) for a in console.port.recorded]
    assert got == [
        ("pause", "mr_eth", "why pause"),
        ("resume", "mr_eth", "why resume"),
        ("cancel", "tdemo-3", "why cancel"),
        ("close_position", "BTCUSDT/trend_btc", "why close"),
    ]


async def test_an_action_the_bot_refuses_shows_its_message(console: ConsoleServer) -> None:
    async with browser(console.url) as client:
        csrf = await log_in(client, OPERATOR)
        r = await client.post(
            "/console/reset", data={"csrf_token": csrf, "reason": "x", "confirm": "yes"}
        )
        assert r.status_code == 303
        page = await client.get(r.headers["location"])
        assert "Reset the halt: refused — trading is not halted: nothing to reset" in page.text
        r = await client.post(
            "/console/cancel",
            data={"csrf_token": csrf, "reason": "x", "confirm": "yes", "client_order_id": "nope"},
        )
        page = await client.get(r.headers["location"])
        assert "refused — no order &#39;nope&#39;" in page.text
    assert console.port.recorded == []


async def test_a_console_form_without_this_sessions_csrf_token_or_from_elsewhere_is_refused(
    console: ConsoleServer,
) -> None:
    async with browser(console.url) as client, browser(console.url) as other:
        csrf = await log_in(client, OPERATOR)
        other_csrf = await log_in(other, OPERATOR)
        assert other_csrf != csrf
        halt = {"reason": "x", "confirm": "yes"}
        for data in (halt, {**halt, "csrf_token": "forged"}, {**halt, "csrf_token": other_csrf}):
            r = await client.post("/console/halt", data=data)
            assert r.status_code == 403, data
            assert "CSRF" in r.text
        r = await client.post(
            "/console/halt",
            data={**halt, "csrf_token": csrf},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403
        # a replayed token after logging out is worth nothing
        await client.post("/logout", data={"csrf_token": csrf})
        r = await client.post("/console/halt", data={**halt, "csrf_token": csrf})
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login")
        assert (await client.get("/risk")).status_code == 303
    assert console.port.recorded == []


async def test_a_read_only_user_sees_no_action_buttons_and_is_refused_when_posting_anyway(
    console: ConsoleServer,
) -> None:
    async with browser(console.url) as client:
        csrf = await log_in(client, READER)  # the log-out form carries the token
        for path in PAGES:
            text = (await client.get(path)).text
            assert 'action="/console/' not in text, path
            assert "rudi" in text
        for name in ("open-orders", "positions", "strategies", "risk-state"):
            text = (await client.get(f"/fragments/{name}")).text
            assert 'action="/console/' not in text, name
        for action, target in (("halt", {}), ("pause", {"strategy": "mr_eth"})):
            data = {"csrf_token": csrf, "reason": "x", "confirm": "yes", **target}
            r = await client.post(f"/console/{action}", data=data)
            assert r.status_code == 403, r.text
            assert "read role" in r.text
            # and not even the confirmation page
            r = await client.post(f"/console/{action}", data={"csrf_token": csrf, **target})
            assert r.status_code == 403
    assert console.port.recorded == []


async def test_hostile_names_reasons_and_log_fields_are_shown_as_text() -> None:
    port = PortDouble(strategies=("trend_btc", f'x"><img src=x onerror=alert(2)>{XSS}'))

    def hostile_logs(limit: int = 200, level: str | None = None) -> list[LogLine]:
        return [LogLine(ts=1, level="error", event=XSS, logger="<u>x</u>", fields={"k": XSS})]

    port.recent_logs = hostile_logs  # type: ignore[method-assign]
    async with serving(port) as running, browser(running.url) as client:
        csrf = await log_in(client, OPERATOR)
        r = await client.post(
            "/console/halt", data={"csrf_token": csrf, "reason": XSS, "confirm": "yes"}
        )
        assert r.status_code == 303
        running.hub.publish("kill_switch", {"reason": XSS, "drawdown_pct": "12.5"})
        running.hub.publish("strategy_paused", {"strategy": XSS, "reason": "<b>errors</b>"})
        running.port.halt_info = HaltOut(reason=XSS, ts=1, by="<i>olga</i>")
        texts = [(await client.get(p)).text for p in ("/", "/risk", "/strategies", "/logs")]
        confirm = await client.post(
            "/console/pause", data={"csrf_token": csrf, "strategy": XSS, "reason": XSS}
        )
        texts.append(confirm.text)
        for text in texts:
            assert XSS not in text
            assert "<img src=x" not in text
            assert "<b>errors</b>" not in text and "<i>olga</i>" not in text
            assert "<u>x</u>" not in text
        assert html.escape(XSS, quote=True) in texts[1]  # the reason, as text
        assert "&lt;img src=x onerror=alert(2)&gt;" in texts[2]
        assert "&lt;b&gt;errors&lt;/b&gt;" in texts[0]  # the alert list
        assert "k=&lt;script&gt;alert(1)&lt;/script&gt;" in texts[3]  # a log line's field


async def test_logs_filter_by_level_and_pages_keep_the_other_lists_offset(
    console: ConsoleServer,
) -> None:
    console.port.orders_list *= 30  # 150 orders: three pages of 50
    async with browser(console.url) as client:
        await log_in(client, OPERATOR)
        text = (await client.get("/logs?level=warning")).text
        assert "order rejected" in text and "bot started" not in text
        assert ("recent_logs", {"limit": 200, "level": "warning"}) in console.port.read_calls
        assert 'hx-get="/fragments/logs?level=warning"' in text
        bogus = (await client.get("/logs?level=%3Cscript%3E")).text
        assert "bot started" in bogus  # an unknown level is no filter, not an error

        text = (await client.get("/orders?orders_offset=50&fills_offset=0")).text
        assert "51–100 of 150" in text
        assert "fills_offset=0&amp;orders_offset=0" in text  # newer page keeps the fills' offset
        assert "orders_offset=100" in text
        r = await client.get("/fragments/orders?orders_offset=100")
        assert "101–150 of 150" in r.text
        r = await client.get("/fragments/orders?orders_offset=-5")
        assert "1–50 of 150" in r.text


async def test_local_mode_actions_send_the_local_header_instead_of_a_csrf_token() -> None:
    config = ControlConfig(enabled=True, port=0)  # no users, no tokens: loopback only
    async with serving(config=config) as running, browser(running.url) as client:
        page = await client.get("/risk")
        assert page.status_code == 200
        assert 'hx-headers="{&#34;X-Tessera-Request&#34;: &#34;1&#34;}"' in page.text
        data = {"reason": "local halt", "confirm": "yes"}
        r = await client.post("/console/halt", data=data)
        assert r.status_code == 403  # a plain cross-site form cannot set the header
        r = await client.post("/console/halt", data=data, headers={"X-Tessera-Request": "1"})
        assert r.status_code == 303
        assert [(a.action, a.actor.name) for a in running.port.recorded] == [("halt", "local")]


async def test_the_console_stylesheet_is_the_log_in_pages_too(console: ConsoleServer) -> None:
    async with browser(console.url) as client:
        login = await client.get("/login")
        assert '<link rel="stylesheet" href="/static/console.css">' in login.text
        css = await client.get("/static/console.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]


def test_the_vendored_files_are_the_ones_the_provenance_file_names() -> None:
    table = (STATIC / "VENDORED.md").read_text("utf-8")
    rows = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", table, flags=re.M)
    assert {name for name, _ in rows} == {"htmx.min.js", "htmx-ext-sse.js"}
    for name, digest in rows:
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    assert "BSD Zero Clause" in table


def test_the_equity_curve_and_the_drawdown_bar_are_scaled_into_their_boxes() -> None:
    points = [
        EquityPoint(ts=i * 10**9, equity=str(100 + v), drawdown_pct=0.0)
        for i, v in enumerate([0, 10, 5, 20])
    ]
    curve = equity_curve(points, width=100, height=50)
    assert curve is not None
    xy = [tuple(map(float, p.split(","))) for p in curve.points.split()]
    assert xy[0] == (4.0, 46.0)  # the lowest value at the bottom left (4 px padding)
    assert xy[-1] == (96.0, 4.0)  # the highest at the top right
    assert (curve.low, curve.high) == ("100.00", "120.00")
    assert equity_curve(points[:1]) is None
    bar = drawdown_bar(5.0, 10.0, width=300)
    assert (bar.fill, bar.level) == (150.0, "warn")
    assert drawdown_bar(15.0, 10.0).level == "limit"
    assert drawdown_bar(15.0, 10.0, width=300).fill == 300.0
    assert drawdown_bar(1.0, None).limit_pct is None


def test_an_alert_is_one_short_line_led_by_its_reason_without_its_time() -> None:
    hub = EventHub()
    halt = hub.publish(
        "halt", {"reason": "manual: going home", "ts": 123, "drawdown_pct": 0.123456}
    )
    assert _event_summary(halt) == "manual: going home (drawdown_pct=0.1235)"
    mismatch = hub.publish("reconciliation", {"ok": False, "problems": ["x" * 100] * 20})
    line = _event_summary(mismatch)
    assert line.startswith("ok=False, problems=['xxx")
    assert len(line) == 300 and line.endswith("…")
