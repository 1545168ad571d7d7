"""The control API: a FastAPI application over a `ControlPort` and an `EventHub`.

Every route is typed with the models of `tessera.control.schemas`, so the published OpenAPI
schema (``/api/openapi.json``, rendered into docs/control-api.md) is complete. One ASGI
middleware (`_Guard`) runs before any route:

- bodies larger than ``max_body_bytes`` are refused with 413, by ``Content-Length`` and while
  reading a chunked body (a body is read into memory only up to the limit);
- on a loopback bind the ``Host`` must be a loopback name or an allowed origin's host;
- every ``/api/`` request is authenticated (401 with ``WWW-Authenticate``), and a state-changing
  one passes the Origin/CSRF/local-header checks of `tessera.control.auth` and must be JSON (415);
- every response gets the security headers (nosniff, ``DENY`` framing, same-origin referrer, a
  Content-Security-Policy allowing only this origin's scripts and styles, ``no-store``) and never
  an ``Access-Control-Allow-Origin`` (no CORS: browsers keep other sites' scripts out);
- an unexpected exception is logged and answered with a generic 500, never a traceback.

The role check (``operate`` for actions) is a route dependency, so the schema states it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import Enum
from importlib.resources import files
from typing import Annotated, Any, Protocol
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import Depends, FastAPI, Form, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import APIKeyCookie, HTTPBearer
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.config.models import ControlConfig
from tessera.control.auth import (
    CSRF_FIELD,
    LOCAL_HEADER,
    SESSION_COOKIE,
    STATE_CHANGING,
    Authenticator,
    AuthError,
    client_address,
)
from tessera.control.events import EventHub
from tessera.control.port import Actor, ControlError, ControlPort
from tessera.control.schemas import (
    ActionOut,
    ActionRecord,
    ActionRequest,
    Balances,
    EquityPoint,
    FillOut,
    Health,
    LogLine,
    OrderOut,
    Page,
    PositionOut,
    RiskOut,
    Status,
    StrategyPnl,
    WhoAmI,
)
from tessera.logging import get_logger

log = get_logger(__name__)

API = "/api/v1"
SSE_KEEPALIVE_S = 15.0
MAX_EVENT_STREAMS = 32  # a stream holds a subscription and a connection: bounded

# Path and query values: conservative patterns, so `..`, `/`, NUL and friends never reach the
# bot (which touches no files with them anyway) and over-long values stop here.
STRATEGY_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
SYMBOL = r"^[A-Z0-9]{2,20}$"
CLIENT_ORDER_ID = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,35}$"
ORDER_STATUS = r"^[A-Za-z_]{1,32}$"
LOG_LEVEL = r"^[A-Za-z]{1,16}$"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI (/api/docs) loads its script and style from jsDelivr and starts with an inline
# script: that one page gets a policy allowing both (it shows no user-supplied content).
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
DOCS_PATH = "/api/docs"
OPENAPI_PATH = "/api/openapi.json"

# the role a route needs, published in the schema as the extension ``x-tessera-role``
_ROLE_READ: dict[str, Any] = {"x-tessera-role": "read"}
_ROLE_OPERATE: dict[str, Any] = {"x-tessera-role": "operate"}


class ConsoleMount(Protocol):
    """The web console: adds its routes (and static files) to the app."""

    def mount(self, app: FastAPI) -> None: ...


class LoginRequiredError(Exception):
    """Raised by `require_session` for a console page without a log-in: redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


# --- helpers for the console (and the routes) -------------------------------------------------


def _auth(conn: HTTPConnection) -> Authenticator:
    auth = conn.app.state.auth
    assert isinstance(auth, Authenticator)
    return auth


def current_actor(request: Request) -> Actor:
    """The request's actor (token, session or local), or `AuthError` 401."""
    return _auth(request).authenticate(request)


def require_session(request: Request) -> Actor:
    """For console pages: the actor, or a redirect to /login (`LoginRequiredError`) when the request
    proves nobody. Use as a FastAPI dependency: ``actor: Actor = Depends(require_session)``."""
    actor = _auth(request).actor_for(request)
    if actor is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(path)
    return actor


def _page_of(request: Request) -> str:
    """The path (and query) of the page an htmx request came from (its ``HX-Current-URL``
    header), or ``/``: only a path of this server is kept, never another host's address."""
    current = urlsplit(request.headers.get("hx-current-url", ""))
    if current.netloc and current.netloc != request.url.netloc:
        return "/"
    if not current.path.startswith("/") or current.path.startswith("//"):
        return "/"
    return current.path + (f"?{current.query}" if current.query else "")


def csrf_token_for(request: Request) -> str:
    """The CSRF token to put in a console page (``X-CSRF-Token`` header / ``csrf_token`` field);
    empty in local mode, where the page sends ``X-Tessera-Request: 1`` instead."""
    session = _auth(request).session_of(request)
    return session.csrf if session is not None else ""


async def require_action(request: Request) -> Actor:
    """For the console's state-changing routes: the actor after the Origin, CSRF (header or
    form field) or local-header checks and the operate role; `AuthError` 401/403 otherwise."""
    auth = _auth(request)
    actor = auth.authenticate(request)
    form_token: str | None = None
    if request.method in STATE_CHANGING:
        if request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            value = (await request.form()).get(CSRF_FIELD)
            form_token = value if isinstance(value, str) else None
        auth.check_state_change(request, actor, form_token)
    auth.require_operate(actor)
    return actor


# --- dependencies of the API routes ------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="An API token: `tessera control token new`")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="The console session (POST /login)"
)


def _reader(
    request: Request,
    _b: Annotated[Any, Security(_bearer)] = None,
    _c: Annotated[Any, Security(_cookie)] = None,
) -> Actor:
    """The actor the guard authenticated (every /api/ request is authenticated before routing)."""
    actor = request.scope.get("state", {}).get("actor")
    if not isinstance(actor, Actor):  # a route outside the guard's reach: authenticate here
        actor = current_actor(request)
    return actor


def _operator(actor: Annotated[Actor, Depends(_reader)]) -> Actor:
    Authenticator.require_operate(actor)
    return actor


Reader = Annotated[Actor, Depends(_reader)]
Operator = Annotated[Actor, Depends(_operator)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (1..1000)")]
Offset = Annotated[int, Query(ge=0, description="Items to skip")]
SinceNs = Annotated[int | None, Query(ge=0, description="Only from this time (ns, UTC)")]
SymbolQ = Annotated[str | None, Query(pattern=SYMBOL, description="e.g. BTCUSDT")]
StrategyQ = Annotated[str | None, Query(pattern=STRATEGY_ID, description="Strategy id")]
StrategyP = Annotated[str, Path(pattern=STRATEGY_ID, description="Strategy id")]
SymbolP = Annotated[str, Path(pattern=SYMBOL, description="Symbol, e.g. BTCUSDT")]
OrderP = Annotated[str, Path(pattern=CLIENT_ORDER_ID, description="Client order id")]


# --- the app -----------------------------------------------------------------------------------


def create_app(
    port: ControlPort,
    hub: EventHub,
    config: ControlConfig,
    *,
    version: str,
    console: ConsoleMount | None = None,
) -> FastAPI:
    """The control API (and the console when given) over ``port`` and ``hub``."""
    app = FastAPI(
        title="Tessera control API",
        version=version,
        description=(
            "Watch and steer a running Tessera bot. Authenticate with "
            "`Authorization: Bearer <token>` (tokens: `tessera control token new`) or the "
            "console's session cookie; actions need the operate role. Money, prices and "
            "quantities are decimal strings; times are integer nanoseconds since the epoch (UTC)."
        ),
        openapi_url=OPENAPI_PATH,
        docs_url=None,
        redoc_url=None,
    )
    auth = Authenticator(config)
    app.state.auth = auth
    app.state.port = port
    app.state.hub = hub
    app.state.config = config
    app.state.closing = asyncio.Event()
    app.state.sse_keepalive_s = SSE_KEEPALIVE_S
    app.state.event_streams = 0  # open /api/v1/events streams (at most MAX_EVENT_STREAMS)
    app.state.login_stylesheet = None  # the console may set its stylesheet's URL
    _install_handlers(app)
    _add_read_routes(app, port)
    _add_action_routes(app, port)
    _add_events_route(app, hub)
    _add_session_routes(app, auth)

    @app.get("/healthz", response_model=Health, tags=["health"], include_in_schema=True)
    def healthz() -> Health:
        """Liveness of the control server (no authentication)."""
        return Health(status="ok", version=version)

    @app.get(DOCS_PATH, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title="Tessera control API")

    if console is not None:
        console.mount(app)
    app.add_middleware(_Guard, auth=auth, max_body=config.max_body_bytes)
    return app


def _install_handlers(app: FastAPI) -> None:
    async def control_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ControlError)
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    async def auth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        return _auth_response(exc, request.scope)

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequiredError)
        if request.headers.get("hx-request") == "true":  # htmx: a full-page redirect
            # back to the page the browser shows after the log-in, not to the fragment it
            # was polling (a bare table, with no page around it)
            target = "/login?next=" + quote(_page_of(request), safe="/")
            return Response(status_code=401, headers={"HX-Redirect": target})
        target = "/login?next=" + quote(exc.next_path, safe="/")
        return RedirectResponse(target, status_code=303)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]  # without the "input" echo: a body may carry anything
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_exception_handler(ControlError, control_error)
    app.add_exception_handler(AuthError, auth_error)
    app.add_exception_handler(LoginRequiredError, login_required)
    app.add_exception_handler(RequestValidationError, validation_error)


def _auth_response(exc: AuthError, scope: Scope) -> Response:
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)


def _add_read_routes(app: FastAPI, port: ControlPort) -> None:
    tags: list[str | Enum] = ["read"]

    @app.get(f"{API}/whoami", response_model=WhoAmI, tags=tags, openapi_extra=_ROLE_READ)
    def whoami(actor: Reader) -> WhoAmI:
        """Who this request authenticates as, and its role."""
        return WhoAmI(name=actor.name, role=actor.role, via=actor.via)

    @app.get(f"{API}/status", response_model=Status, tags=tags, openapi_extra=_ROLE_READ)
    def status(actor: Reader) -> Status:
        """The bot: mode, venue, run, trading state, strategies and market-data freshness."""
        return port.status()

    @app.get(f"{API}/balances", response_model=Balances, tags=tags, openapi_extra=_ROLE_READ)
    def balances(actor: Reader) -> Balances:
        """Balances per asset and the account's equity in the quote asset."""
        return port.balances()

    @app.get(
        f"{API}/positions", response_model=list[PositionOut], tags=tags, openapi_extra=_ROLE_READ
    )
    def positions(actor: Reader) -> list[PositionOut]:
        """Open positions per symbol and strategy, with unrealized PnL at the mark."""
        return port.positions()

    @app.get(
        f"{API}/orders/open", response_model=list[OrderOut], tags=tags, openapi_extra=_ROLE_READ
    )
    def open_orders(actor: Reader) -> list[OrderOut]:
        """The orders open at the exchange now."""
        return port.open_orders()

    @app.get(f"{API}/orders", response_model=Page[OrderOut], tags=tags, openapi_extra=_ROLE_READ)
    async def orders(
        actor: Reader,
        status: Annotated[str | None, Query(pattern=ORDER_STATUS)] = None,
        symbol: SymbolQ = None,
        strategy: StrategyQ = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[OrderOut]:
        """Orders, newest first, filtered by status, symbol and strategy, in pages."""
        return await port.orders(
            status=status, symbol=symbol, strategy=strategy, limit=limit, offset=offset
        )

    @app.get(f"{API}/fills", response_model=Page[FillOut], tags=tags, openapi_extra=_ROLE_READ)
    async def fills(
        actor: Reader,
        symbol: SymbolQ = None,
        strategy: StrategyQ = None,
        since_ns: SinceNs = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[FillOut]:
        """Fills, newest first, filtered by symbol, strategy and time, in pages."""
        return await port.fills(
            symbol=symbol, strategy=strategy, since_ns=since_ns, limit=limit, offset=offset
        )

    @app.get(f"{API}/pnl", response_model=list[StrategyPnl], tags=tags, openapi_extra=_ROLE_READ)
    async def pnl(actor: Reader) -> list[StrategyPnl]:
        """Per strategy: realized PnL net of fees, fees, unrealized PnL at the mark, trades."""
        return await port.pnl()

    @app.get(f"{API}/equity", response_model=list[EquityPoint], tags=tags, openapi_extra=_ROLE_READ)
    async def equity(
        actor: Reader, since_ns: SinceNs = None, limit: Limit = 1000
    ) -> list[EquityPoint]:
        """Equity and drawdown samples, oldest first."""
        return await port.equity_history(since_ns=since_ns, limit=limit)

    @app.get(f"{API}/risk", response_model=RiskOut, tags=tags, openapi_extra=_ROLE_READ)
    def risk(actor: Reader) -> RiskOut:
        """Trading state, the halt (who, when, why), drawdown against the kill-switch, limits."""
        return port.risk()

    @app.get(f"{API}/logs", response_model=list[LogLine], tags=tags, openapi_extra=_ROLE_READ)
    def logs(
        actor: Reader,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        level: Annotated[str | None, Query(pattern=LOG_LEVEL)] = None,
    ) -> list[LogLine]:
        """The bot's recent log lines (secrets redacted), newest last; ``level`` = minimum."""
        return port.recent_logs(limit=limit, level=level)

    @app.get(
        f"{API}/actions", response_model=Page[ActionRecord], tags=tags, openapi_extra=_ROLE_READ
    )
    async def actions(actor: Reader, limit: Limit = 100, offset: Offset = 0) -> Page[ActionRecord]:
        """The control actions taken (who, role, how, when, why, outcome), newest first."""
        return await port.actions(limit=limit, offset=offset)


def _add_action_routes(app: FastAPI, port: ControlPort) -> None:
    tags = ["actions"]
    common: dict[str, Any] = {
        "response_model": ActionOut,
        "tags": tags,
        "openapi_extra": _ROLE_OPERATE,
        "responses": {
            403: {"description": "Not the operate role, or a CSRF/Origin check failed"},
            404: {"description": "Unknown strategy, order or position"},
            409: {"description": "Not possible in the bot's current state"},
        },
    }

    @app.post(f"{API}/risk/halt", **common)
    async def halt(actor: Operator, body: ActionRequest) -> ActionOut:
        """Halt trading now: open orders are cancelled and the halt is persisted (a restart
        stays halted), exactly like `tessera risk halt`."""
        return await port.halt(actor, body.reason)

    @app.post(f"{API}/risk/reset", **common)
    async def reset(actor: Operator, body: ActionRequest) -> ActionOut:
        """Resume trading after a halt or the kill-switch; the actor is recorded as who reset
        (like `tessera risk reset --by`)."""
        return await port.reset(actor, body.reason)

    @app.post(f"{API}/strategies/{{strategy}}/pause", **common)
    async def pause(actor: Operator, strategy: StrategyP, body: ActionRequest) -> ActionOut:
        """Pause one strategy: it places no new orders until resumed (survives a restart)."""
        return await port.pause(actor, strategy, body.reason)

    @app.post(f"{API}/strategies/{{strategy}}/resume", **common)
    async def resume(actor: Operator, strategy: StrategyP, body: ActionRequest) -> ActionOut:
        """Resume a paused strategy."""
        return await port.resume(actor, strategy, body.reason)

    @app.post(f"{API}/orders/{{client_order_id}}/cancel", **common)
    async def cancel(actor: Operator, client_order_id: OrderP, body: ActionRequest) -> ActionOut:
        """Cancel one open order by its client order id."""
        return await port.cancel(actor, client_order_id, body.reason)

    @app.post(f"{API}/positions/{{symbol}}/close", **common)
    async def close_position(
        actor: Operator,
        symbol: SymbolP,
        strategy: Annotated[str, Query(pattern=STRATEGY_ID, description="Strategy id")],
        body: ActionRequest,
    ) -> ActionOut:
        """Close a strategy's position with a reduce-only market order, through the same
        gateway and risk checks as every order."""
        return await port.close_position(actor, symbol, strategy, body.reason)


def _add_events_route(app: FastAPI, hub: EventHub) -> None:
    @app.get(
        f"{API}/events",
        tags=["read"],
        response_class=StreamingResponse,
        openapi_extra=_ROLE_READ,
        responses={
            200: {
                "description": "Server-sent events: `event: <kind>` and `data: {ts, data}` "
                "(JSON); a `: keep-alive` comment every 15 s",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            503: {"description": "Too many open event streams"},
        },
    )
    async def events(request: Request, actor: Reader) -> StreamingResponse:
        """The bot's events as they happen: order, fill, halt, kill_switch, reset,
        strategy_paused, strategy_resumed, reconciliation, equity, control_action, log,
        daily_summary."""
        state = request.app.state
        if state.event_streams >= MAX_EVENT_STREAMS:
            raise ControlError(
                503,
                f"too many open event streams ({MAX_EVENT_STREAMS}): close a console tab or "
                "another client's stream",
            )
        return StreamingResponse(
            event_stream(hub, state.closing, state.sse_keepalive_s, state),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


async def event_stream(
    hub: EventHub, closing: asyncio.Event, keepalive_s: float, counter: Any = None
) -> AsyncIterator[str]:
    """Server-sent events from a new hub subscription, closed when the client goes (the
    response's task is cancelled) or the server stops (``closing``). ``counter.event_streams``
    (the app's state), when given, counts the open streams."""
    sub = hub.subscribe()
    closed = asyncio.ensure_future(closing.wait())
    if counter is not None:
        counter.event_streams += 1
    try:
        yield ": connected\n\n"
        while not closing.is_set():
            get = asyncio.ensure_future(sub.get())
            try:
                done, _ = await asyncio.wait(
                    {get, closed}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                if not get.done():
                    get.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await get
            if get in done:
                event = get.result()
                body = json.dumps({"ts": event.ts, "data": event.data}, default=str)
                yield f"event: {event.kind}\ndata: {body}\n\n"
            elif not done:
                yield ": keep-alive\n\n"
            if sub.dropped:
                yield f": dropped {sub.dropped} events (a slow reader)\n\n"
                sub.dropped = 0
    finally:
        sub.close()
        closed.cancel()
        if counter is not None:
            counter.event_streams -= 1


def _add_session_routes(app: FastAPI, auth: Authenticator) -> None:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: files("tessera.control").joinpath("templates", name).read_text("utf-8")
        ),
        autoescape=True,
    )

    def page(request: Request, message: str, next_path: str, status: int) -> HTMLResponse:
        html = env.get_template("login.html").render(
            message=message,
            next=next_path,
            has_users=auth.has_users,
            local=auth.local,
            stylesheet=request.app.state.login_stylesheet,
        )
        return HTMLResponse(html, status_code=status)

    @app.get("/login", response_class=HTMLResponse, tags=["session"])
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        """The console's log-in page."""
        return page(request, "", safe_next(next), 200)

    @app.post(
        "/login",
        tags=["session"],
        status_code=303,
        response_class=RedirectResponse,
        responses={
            303: {"description": "Logged in: the session cookie is set; go to `next`"},
            401: {"description": "Wrong user name or password (the same answer for both)"},
            403: {"description": "Cross-origin log-in refused"},
            429: {"description": "Too many failed log-ins; see `Retry-After`"},
        },
    )
    async def login(
        request: Request,
        username: Annotated[str, Form(max_length=256)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        next: Annotated[str, Form(max_length=2048)] = "/",
    ) -> Response:
        """Log in with a user name and password (form fields); sets the ``tessera_session``
        cookie and redirects to ``next``. Failed attempts are limited per client address and
        per user name (429 with ``Retry-After``)."""
        if auth.foreign_origin(request):
            raise AuthError(403, "cross-origin log-in refused")
        target = safe_next(next)
        if not auth.has_users:
            return page(request, "No console users are configured.", target, 400)
        try:
            session = await auth.login(username, password, client_address(request))
        except AuthError as exc:
            refused = page(request, exc.message, target, exc.status)
            refused.headers.update(exc.headers)
            return refused
        old = request.cookies.get(SESSION_COOKIE)
        auth.sessions.delete(old)  # no session fixation: always a fresh id
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session.id,
            max_age=int(auth.config.session_ttl_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post(
        "/logout",
        tags=["session"],
        status_code=303,
        response_class=RedirectResponse,
        responses={
            303: {"description": "Logged out: the session is deleted; go to /login"},
            403: {"description": "Missing or wrong CSRF token, or a foreign Origin"},
        },
    )
    async def logout(request: Request) -> Response:
        """End the console session (needs its CSRF token, header or form field)."""
        session = auth.session_of(request)
        if session is not None:
            actor = Actor(session.name, session.role, "session", client_address(request))
            form_token: str | None = None
            if request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                value = (await request.form()).get(CSRF_FIELD)
                form_token = value if isinstance(value, str) else None
            auth.check_state_change(request, actor, form_token)
            auth.logout(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response


def safe_next(target: str) -> str:
    """A same-site path to go to after log-in; anything else (``//evil``, ``https://...``,
    backslashes, control characters) becomes ``/``."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return "/"
    return target


# --- the guard middleware ----------------------------------------------------------------------


class _BodyTooLargeError(Exception):
    pass


class _Guard:
    """Body limit, Host check, API authentication, security headers, generic 500s."""

    def __init__(self, app: ASGIApp, *, auth: Authenticator, max_body: int) -> None:
        self.app = app
        self.auth = auth
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        started = False

        async def send_secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                _secure_headers(MutableHeaders(scope=message), path)
            await send(message)

        conn = HTTPConnection(scope)
        try:
            self.auth.check_host(conn)
            body = await self._read_body(scope, receive)
            if path.startswith("/api/"):
                self._gate(scope, conn)
        except _BodyTooLargeError:
            await _plain_error(
                scope,
                send_secured,
                413,
                f"request body too large: the limit is {self.max_body} bytes "
                "(control.max_body_bytes)",
                {"Connection": "close"},
            )
            return
        except AuthError as exc:
            await _auth_response(exc, scope)(scope, receive, send_secured)
            return
        except _UnsupportedMediaError:
            await _plain_error(
                scope, send_secured, 415, "send the body as JSON (Content-Type: application/json)"
            )
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send_secured)
        except Exception as exc:
            # the traceback as text, not exc_info: a rich renderer would print the frames'
            # locals, and those hold the request's headers (tokens, cookies)
            log.error(
                "control API request failed",
                method=scope.get("method"),
                path=path,
                error=repr(exc),
                traceback="".join(traceback.format_exception(exc)),
            )
            if not started:
                await _plain_error(
                    scope, send_secured, 500, "internal error: the bot's log has the details"
                )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            raise _BodyTooLargeError
        if (
            scope.get("method") in ("GET", "HEAD")
            and length is None
            and ("chunked" not in headers.get("transfer-encoding", ""))
        ):
            return b""  # no body: do not wait on receive (an SSE stream listens to it later)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _gate(self, scope: Scope, conn: HTTPConnection) -> None:
        actor = self.auth.authenticate(conn)
        if scope.get("method") in STATE_CHANGING:
            self.auth.check_state_change(conn, actor)
            ctype = conn.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise _UnsupportedMediaError
        scope.setdefault("state", {})["actor"] = actor


class _UnsupportedMediaError(Exception):
    pass


def _secure_headers(headers: MutableHeaders, path: str) -> None:
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    headers["Content-Security-Policy"] = DOCS_CSP if path == DOCS_PATH else CSP
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if "access-control-allow-origin" in headers:
        del headers["access-control-allow-origin"]
    if not path.startswith("/static/") and (
        path.startswith("/api/") or "cache-control" not in headers
    ):
        headers["Cache-Control"] = "no-store"


async def _plain_error(
    scope: Scope,
    send: Callable[[Message], Awaitable[None]],
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    response = JSONResponse({"detail": message}, status_code=status, headers=headers)

    async def no_receive() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, no_receive, send)


__all__ = [
    "API",
    "LOCAL_HEADER",
    "ConsoleMount",
    "LoginRequiredError",
    "create_app",
    "csrf_token_for",
    "current_actor",
    "event_stream",
    "require_action",
    "require_session",
    "safe_next",
]
