"""The web console: server-rendered pages over the `ControlPort`, live over server-sent events.

Why this shape: the console runs inside the bot, so it must be small, have no build step and
fetch nothing from the internet. Pages are Jinja2 templates (autoescaped: every strategy name,
reason and log line is text, never markup); each live part of a page is a *fragment* with its
own URL (``/fragments/<name>``) that htmx re-fetches when the bot's event stream
(``/api/v1/events``) announces something that changes it — a fill re-fetches the fills table —
so the server stays the only place that renders HTML, and a page never needs a reload.

Actions are plain HTML forms posted to ``/console/<action>``: the session's CSRF token is
checked, read-only users are refused (403, and they are never shown a button), and every action
goes through a confirmation page that asks for the reason (the port records who, when and why).
The outcome — done, refused with the bot's message — comes back as a flash on the page the
action started from (post, redirect, get: a reload never repeats an action).

Scripts: only files served from ``/static`` (htmx, its SSE extension, ``console.js``); no inline
script, style attribute or event handler, so the app's ``script-src 'self'`` policy holds.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

from tessera.config.models import ControlConfig
from tessera.control.app import csrf_token_for, require_action, require_session
from tessera.control.auth import LOCAL_HEADER, AuthError
from tessera.control.events import BotEvent, EventHub
from tessera.control.port import Actor, ControlError, ControlPort
from tessera.control.schemas import ActionOut, EquityPoint

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

PAGE_SIZE = 50
ALERT_KINDS = frozenset({"halt", "kill_switch", "reconciliation", "strategy_paused"})
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MAX_REASON = 500  # as ActionRequest.reason
MAX_SUMMARY = 300  # characters of one alert's line
FLASH_TTL_S = 300.0
FLASH_MAX = 256

NAV = (
    ("/", "Overview"),
    ("/positions", "Positions"),
    ("/orders", "Orders"),
    ("/strategies", "Strategies"),
    ("/risk", "Risk"),
    ("/logs", "Logs"),
)


# --- formatting (Jinja filters) ---------------------------------------------------------------


def fmt_ts(ns: int | None) -> str:
    """Nanoseconds since the epoch as a UTC time a person reads; ``-`` for none."""
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_money(value: str | None, places: int = 2) -> str:
    """A decimal string rounded for reading (the API keeps the full value)."""
    if value is None or value == "":
        return "-"
    try:
        d = Decimal(value)
    except InvalidOperation:
        return value
    return f"{d.quantize(Decimal(1).scaleb(-places)):,}"


def fmt_num(value: str | None) -> str:
    """A quantity or price as sent, without trailing zeros."""
    if value is None or value == "":
        return "-"
    try:
        d = Decimal(value)
    except InvalidOperation:
        return value
    text = format(d.normalize(), "f")
    return text


def sign_class(value: str | None) -> str:
    try:
        d = Decimal(value) if value else Decimal(0)
    except InvalidOperation:
        return ""
    return "pos" if d > 0 else "neg" if d < 0 else ""


# --- the equity curve and the drawdown bar, drawn on the server -------------------------------


@dataclass(frozen=True, slots=True)
class Curve:
    """An inline SVG polyline of the equity history (viewBox ``0 0 width height``)."""

    points: str
    width: int
    height: int
    low: str
    high: str
    first_ns: int
    last_ns: int
    n: int


def equity_curve(history: list[EquityPoint], width: int = 640, height: int = 160) -> Curve | None:
    """The equity history scaled into the box (floats only for drawing; labels keep the
    decimal text). ``None`` below two points: a line needs two."""
    pts = sorted(history, key=lambda p: p.ts)
    if len(pts) < 2:
        return None
    values = [Decimal(p.equity) for p in pts]
    lo, hi = min(values), max(values)
    t0, t1 = pts[0].ts, pts[-1].ts
    span_t = (t1 - t0) or 1
    span_v = (hi - lo) or Decimal(1)
    pad = 4
    coords = []
    for p, v in zip(pts, values, strict=True):
        x = pad + (p.ts - t0) / span_t * (width - 2 * pad)
        y = pad + float((hi - v) / span_v) * (height - 2 * pad)
        coords.append(f"{x:.1f},{y:.1f}")
    return Curve(
        " ".join(coords), width, height, fmt_money(str(lo)), fmt_money(str(hi)), t0, t1, len(pts)
    )


@dataclass(frozen=True, slots=True)
class DrawdownBar:
    """The drawdown against the kill-switch limit, as widths in a 0..``width`` SVG box."""

    drawdown_pct: float
    limit_pct: float | None
    width: int
    fill: float
    level: str  # ok | warn | limit


def drawdown_bar(drawdown_pct: float, limit_pct: float | None, width: int = 300) -> DrawdownBar:
    if limit_pct is None or limit_pct <= 0:
        # no kill-switch: scale to 100 %, say so in the page
        fraction = min(max(drawdown_pct, 0.0) / 100.0, 1.0)
        return DrawdownBar(drawdown_pct, None, width, fraction * width, "ok")
    fraction = min(max(drawdown_pct, 0.0) / limit_pct, 1.0)
    level = "limit" if fraction >= 1.0 else "warn" if fraction >= 0.5 else "ok"
    return DrawdownBar(drawdown_pct, limit_pct, width, fraction * width, level)


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One console action: the form fields naming its target, what the confirmation page says,
    and the page to return to."""

    title: str
    fields: tuple[str, ...]
    warning: str
    back: str
    danger: bool = False


ACTIONS: Mapping[str, ActionSpec] = {
    "halt": ActionSpec(
        "Halt trading",
        (),
        "The bot stops placing new orders until someone resets it. The halt is kept in the "
        "database and survives a restart, exactly as a halt from the command line.",
        "/risk",
        danger=True,
    ),
    "reset": ActionSpec(
        "Reset the halt",
        (),
        "The bot resumes trading on its next bar. The reset is recorded with your name.",
        "/risk",
        danger=True,
    ),
    "pause": ActionSpec(
        "Pause a strategy",
        ("strategy",),
        "The strategy places no new orders until it is resumed; its open orders and position "
        "stay as they are.",
        "/strategies",
    ),
    "resume": ActionSpec(
        "Resume a strategy",
        ("strategy",),
        "The strategy trades again from its next bar.",
        "/strategies",
    ),
    "cancel": ActionSpec(
        "Cancel an order",
        ("client_order_id",),
        "The order is cancelled on the exchange.",
        "/orders",
    ),
    "close": ActionSpec(
        "Close a position",
        ("symbol", "strategy"),
        "A reduce-only market order closes the position, through the same risk checks as every "
        "order (a halted bot still allows it: it only reduces).",
        "/positions",
        danger=True,
    ),
}


async def _call(
    port: ControlPort, name: str, actor: Actor, t: Mapping[str, str], reason: str
) -> ActionOut:
    if name == "halt":
        return await port.halt(actor, reason)
    if name == "reset":
        return await port.reset(actor, reason)
    if name == "pause":
        return await port.pause(actor, t["strategy"], reason)
    if name == "resume":
        return await port.resume(actor, t["strategy"], reason)
    if name == "cancel":
        return await port.cancel(actor, t["client_order_id"], reason)
    if name == "close":
        return await port.close_position(actor, t["symbol"], t["strategy"], reason)
    raise ControlError(404, f"unknown action {name!r}")


@dataclass(frozen=True, slots=True)
class Flash:
    owner: str
    kind: str  # done | refused | failed
    message: str
    created: float


class FlashBox:
    """Outcomes waiting to be shown once, after the redirect that follows an action. Keyed by
    an unguessable id and tied to the actor's name, so a link cannot show one person another's
    message; old ones expire."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Flash] = OrderedDict()

    def put(self, owner: str, kind: str, message: str) -> str:
        now = time.monotonic()
        while self._items and (
            len(self._items) >= FLASH_MAX
            or now - next(iter(self._items.values())).created > FLASH_TTL_S
        ):
            self._items.popitem(last=False)
        key = secrets.token_urlsafe(12)
        self._items[key] = Flash(owner, kind, message, now)
        return key

    def take(self, key: str | None, owner: str) -> Flash | None:
        if not key:
            return None
        flash = self._items.get(key)
        if flash is None or flash.owner != owner:
            return None
        del self._items[key]
        if time.monotonic() - flash.created > FLASH_TTL_S:
            return None
        return flash


def _int_param(request: Request, name: str, default: int = 0, cap: int = 10_000_000) -> int:
    raw = request.query_params.get(name)
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return min(max(value, 0), cap)


def _event_summary(event: BotEvent) -> str:
    """One line for an alert: the event's reason or message first, then its other fields
    (not its time, shown beside it; floats shortened)."""
    data = {k: v for k, v in event.data.items() if k != "ts"}
    head = ""
    for key in ("reason", "message", "detail"):
        if key in data:
            head = str(data.pop(key))
            break
    rest = ", ".join(
        f"{k}={round(v, 4) if isinstance(v, float) else v}" for k, v in list(data.items())[:6]
    )
    line = f"{head} ({rest})" if head and rest else head or rest
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…"


Builder = Callable[[Request, Actor], Awaitable[dict[str, Any]]]


class Console:
    """The web console over a bot's `ControlPort`; `mount` adds its pages, fragments, form
    routes and static files to the control app (`tessera.control.app.create_app`)."""

    def __init__(self, port: ControlPort, hub: EventHub, config: ControlConfig) -> None:
        self.port = port
        self.hub = hub
        self.config = config
        self.flashes = FlashBox()
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(ts=fmt_ts, money=fmt_money, num=fmt_num, sign=sign_class)
        self.fragments: dict[str, tuple[str, Builder]] = {
            "state": ("frag_state.html", self._state),
            "overview": ("frag_overview.html", self._overview),
            "alerts": ("frag_alerts.html", self._alerts),
            "positions": ("frag_positions.html", self._positions),
            "open-orders": ("frag_open_orders.html", self._open_orders),
            "orders": ("frag_orders.html", self._orders),
            "fills": ("frag_fills.html", self._fills),
            "strategies": ("frag_strategies.html", self._strategies),
            "risk-state": ("frag_risk_state.html", self._risk_state),
            "risk-numbers": ("frag_risk_numbers.html", self._risk_numbers),
            "actions": ("frag_actions.html", self._actions),
            "logs": ("frag_logs.html", self._logs),
        }
        self.pages: dict[str, tuple[str, str, tuple[str, ...]]] = {
            "/": ("overview.html", "Overview", ("overview", "alerts", "fills")),
            "/positions": ("positions.html", "Positions", ("positions",)),
            "/orders": ("orders.html", "Orders", ("open-orders", "orders", "fills")),
            "/strategies": ("strategies.html", "Strategies", ("strategies",)),
            "/risk": ("risk.html", "Risk", ("risk-state", "risk-numbers", "actions")),
            "/logs": ("logs.html", "Logs", ("logs",)),
        }

    # --- wiring ------------------------------------------------------------------------------

    def mount(self, app: FastAPI) -> None:
        app.state.login_stylesheet = "/static/console.css"
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
        router = APIRouter(include_in_schema=False)
        for path in self.pages:
            router.add_api_route(path, self._page_route(path), methods=["GET"])
        router.add_api_route("/favicon.ico", _favicon, methods=["GET"])
        router.add_api_route("/fragments/{name}", self.fragment, methods=["GET"])
        router.add_api_route("/console/{action}", self.act, methods=["POST"])
        router.add_api_route("/console/{action}", _back, methods=["GET"])
        app.include_router(router)

    def _page_route(self, path: str) -> Callable[[Request], Awaitable[Response]]:
        async def page(request: Request) -> Response:
            return await self.page(request, path)

        page.__name__ = f"console_page_{path.strip('/') or 'overview'}"
        return page

    # --- rendering ---------------------------------------------------------------------------

    def _render(self, template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def _base(self, request: Request, actor: Actor, path: str, title: str) -> dict[str, Any]:
        flash = self.flashes.take(request.query_params.get("flash"), actor.name)
        status = self.port.status()
        return {
            "actor": actor,
            "csrf": csrf_token_for(request),
            "nav": NAV,
            "path": path,
            "title": title,
            "flash": flash,
            "status": status,
            "live": True,
            # local mode (no users, loopback): actions carry the local header instead of CSRF
            "hx_headers": json.dumps({LOCAL_HEADER: "1"}) if actor.via == "local" else "",
        }

    def _error(
        self, request: Request, actor: Actor, status: int, title: str, message: str
    ) -> HTMLResponse:
        context = self._base(request, actor, "", title)
        context["message"] = message
        return _stay(self._render("error.html", context, status))

    async def page(self, request: Request, path: str) -> Response:
        actor = require_session(request)
        template, title, parts = self.pages[path]
        context = self._base(request, actor, path, title)
        context["state"] = await self._state(request, actor)
        for name in parts:
            context[name.replace("-", "_")] = await self.fragments[name][1](request, actor)
        return self._render(template, context)

    async def fragment(self, request: Request, name: str) -> Response:
        actor = require_session(request)
        if name not in self.fragments:
            return self._render("error.html", {"message": "No such fragment."}, 404)
        template, build = self.fragments[name]
        context = await build(request, actor)
        return self._render(
            template,
            {name.replace("-", "_"): context, "actor": actor, "csrf": csrf_token_for(request)},
        )

    # --- fragment contexts -------------------------------------------------------------------

    async def _state(self, request: Request, actor: Actor) -> dict[str, Any]:
        risk = self.port.risk()
        status = self.port.status()
        return {"risk": risk, "status": status}

    async def _overview(self, request: Request, actor: Actor) -> dict[str, Any]:
        risk = self.port.risk()
        balances = self.port.balances()
        history = await self.port.equity_history(limit=1_000)
        return {
            "risk": risk,
            "status": self.port.status(),
            "balances": balances,
            "curve": equity_curve(history),
            "bar": drawdown_bar(risk.drawdown_pct, risk.max_drawdown_pct),
            "pnl": await self.port.pnl(),
        }

    async def _alerts(self, request: Request, actor: Actor) -> dict[str, Any]:
        events = [e for e in self.hub.recent if e.kind in ALERT_KINDS][-20:]
        return {"rows": [(e, _event_summary(e)) for e in reversed(events)]}

    async def _positions(self, request: Request, actor: Actor) -> dict[str, Any]:
        return {"rows": self.port.positions()}

    async def _open_orders(self, request: Request, actor: Actor) -> dict[str, Any]:
        return {"rows": self.port.open_orders()}

    async def _orders(self, request: Request, actor: Actor) -> dict[str, Any]:
        offset = _int_param(request, "orders_offset")
        page = await self.port.orders(limit=PAGE_SIZE, offset=offset)
        return {"page": page, "pager": _pager(request, "orders_offset", page.total, offset)}

    async def _fills(self, request: Request, actor: Actor) -> dict[str, Any]:
        offset = _int_param(request, "fills_offset")
        page = await self.port.fills(limit=PAGE_SIZE, offset=offset)
        return {"page": page, "pager": _pager(request, "fills_offset", page.total, offset)}

    async def _strategies(self, request: Request, actor: Actor) -> dict[str, Any]:
        status = self.port.status()
        pnl = {p.strategy: p for p in await self.port.pnl()}
        return {"rows": [(s, pnl.get(s.strategy)) for s in status.strategies]}

    async def _risk_state(self, request: Request, actor: Actor) -> dict[str, Any]:
        return {"risk": self.port.risk()}

    async def _risk_numbers(self, request: Request, actor: Actor) -> dict[str, Any]:
        risk = self.port.risk()
        return {"risk": risk, "bar": drawdown_bar(risk.drawdown_pct, risk.max_drawdown_pct)}

    async def _actions(self, request: Request, actor: Actor) -> dict[str, Any]:
        return {"page": await self.port.actions(limit=20)}

    async def _logs(self, request: Request, actor: Actor) -> dict[str, Any]:
        level = request.query_params.get("level") or None
        if level is not None and level.lower() not in LOG_LEVELS:
            level = None
        lines = self.port.recent_logs(limit=200, level=level)
        query = urlencode({"level": level}) if level else ""
        return {
            "lines": list(reversed(lines)),
            "level": level,
            "levels": LOG_LEVELS,
            "query": query,
        }

    # --- actions -----------------------------------------------------------------------------

    async def act(self, request: Request, action: str) -> Response:
        actor = require_session(request)  # nobody: to the log-in page
        try:
            # Origin, the session's CSRF token (form field) or the local header, the role
            actor = await require_action(request)
        except AuthError as exc:
            return self._error(request, actor, exc.status, "Refused", _refusal(exc))
        form = await request.form()
        spec = ACTIONS.get(action)
        if spec is None:
            return self._error(request, actor, 404, "Not found", "No such action.")
        target = {f: _field(form, f) for f in spec.fields}
        missing = [f for f, v in target.items() if not v]
        if missing:
            return self._error(
                request, actor, 422, "Bad form", f"The form lacks {', '.join(missing)}."
            )
        reason = _field(form, "reason").strip()
        confirmed = _field(form, "confirm") == "yes"
        error = ""
        if confirmed and not reason:
            error = "Say why: the reason is kept with your name in the record."
        elif len(reason) > MAX_REASON:
            error = f"The reason is too long ({len(reason)} characters; at most {MAX_REASON})."
        if not confirmed or error:
            context = self._base(request, actor, spec.back, spec.title)
            context.update(
                state=await self._state(request, actor),
                action=action,
                spec=spec,
                target=target,
                reason=reason,
                error=error,
            )
            return _stay(self._render("confirm.html", context, 422 if error else 200))
        try:
            out = await _call(self.port, action, actor, target, reason)
            kind = out.outcome
            message = f"{spec.title}: {out.outcome}" + (f" — {out.detail}" if out.detail else "")
        except ControlError as exc:
            kind, message = "refused", f"{spec.title}: refused — {exc.message}"
        key = self.flashes.put(actor.name, kind, message)
        return RedirectResponse(f"{spec.back}?{urlencode({'flash': key})}", status_code=303)


def _stay(response: HTMLResponse) -> HTMLResponse:
    """A page answering a form (a confirmation, a refusal) is not a place to come back to:
    htmx keeps the address bar on the page the form came from (``HX-Push-Url: false``), so
    Back and Reload never land on a ``/console/...`` URL."""
    response.headers["HX-Push-Url"] = "false"
    return response


def _back(action: str) -> RedirectResponse:
    """``GET /console/<action>`` (a reload of a form's address without htmx): to the page the
    action belongs to; it never acts."""
    spec = ACTIONS.get(action)
    return RedirectResponse(spec.back if spec is not None else "/", status_code=303)


def _favicon() -> FileResponse:
    """Browsers ask for /favicon.ico on every page, the log-in page too: answer it."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _refusal(exc: AuthError) -> str:
    if exc.status == 403 and "read role" in exc.message:
        return f"{exc.message[0].upper()}{exc.message[1:]}."
    if exc.status == 403 and "CSRF" in exc.message:
        return (
            "This form has expired or did not come from this console (its CSRF token is "
            "missing or wrong): reload the page and try again."
        )
    return f"Refused: {exc.message}."


@dataclass(frozen=True, slots=True)
class Pager:
    offset: int
    total: int
    first: int
    last: int
    prev_query: str | None
    next_query: str | None
    query: str


def _pager(request: Request, name: str, total: int, offset: int) -> Pager:
    """Links to the previous and next page, keeping the other list's offset."""
    params = {k: v for k, v in request.query_params.items() if k.endswith("_offset") and k != name}

    def q(off: int) -> str:
        return urlencode({**params, name: str(off)})

    prev_q = q(max(offset - PAGE_SIZE, 0)) if offset > 0 else None
    next_q = q(offset + PAGE_SIZE) if offset + PAGE_SIZE < total else None
    return Pager(
        offset,
        total,
        min(offset + 1, total),
        min(offset + PAGE_SIZE, total),
        prev_q,
        next_q,
        q(offset),
    )
