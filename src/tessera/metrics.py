"""Every predefined Prometheus metric of Tessera, and the `/metrics` server.

One module defines them all so that dashboards, alert rules and code agree on names,
help texts and label sets. Labels are bounded: a label value that is not in its
allowed set is recorded as ``other`` (see :func:`bounded`), so a bug or an exchange
sending new error codes can never blow up the number of series.

Units follow Prometheus conventions: seconds for time, base units for sizes,
quote currency (e.g. USDT) for money, percent 0..100 for ``*_pct``.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

# --- bounded label vocabularies -------------------------------------------------------------

SIDES: Final = frozenset({"buy", "sell"})
ORDER_TYPES: Final = frozenset(
    {
        "market",
        "limit",
        "limit_maker",
        "stop_loss",
        "stop_loss_limit",
        "take_profit",
        "take_profit_limit",
    }
)
LIQUIDITY: Final = frozenset({"maker", "taker"})
STREAM_TYPES: Final = frozenset(
    {"trade", "aggTrade", "kline", "depth", "bookTicker", "user", "control"}
    | {"markPrice", "forceOrder"}  # USDⓈ-M
)
DATASETS: Final = frozenset(
    {"trades", "agg_trades", "klines", "book_updates", "book_snapshots", "book_ticker"}
    | {"mark_prices", "liquidations", "funding_rates", "mark_klines"}  # USDⓈ-M
)
RECONNECT_REASONS: Final = frozenset({"closed", "error", "timeout", "planned", "stale", "gap"})
GAP_ACTIONS: Final = frozenset({"found", "filled", "unfillable"})
REJECT_REASONS: Final = frozenset(
    {
        "insufficient_balance",  # -2010
        "filter",  # -1013 (lot size, tick size, min notional)
        "timestamp",  # -1021
        "signature",  # -1022
        "unknown_order",  # -2011, -2013
        "bad_api_key",  # -2015
        "rate_limit",  # 429
        "ip_banned",  # 418
        "risk",  # denied by our own risk engine before sending
        "exchange",  # any other definitive exchange rejection
    }
)
RISK_DENIAL_REASONS: Final = frozenset(
    {
        "max_order_notional",
        "max_position",
        "max_gross_exposure",
        "price_band",
        "max_open_orders",
        "order_rate",
        "halted",
        "reducing_only",
        "kill_switch",
        "no_borrow",  # spot: a sell beyond what the account holds (a short) is not sent
        # perpetuals (tessera.risk.leverage)
        "max_leverage",
        "max_gross_leverage",
        "max_net_leverage",
        "liquidation_distance",
    }
)
TRADING_STATES: Final = ("ACTIVE", "REDUCING", "HALTED")
LATENCY_STAGES: Final = frozenset(
    {"event_to_signal", "signal_to_send", "send_to_ack", "tick_to_order"}
)
RATE_LIMIT_SCOPES: Final = frozenset(
    {"request_weight_1m", "orders_10s", "orders_1d", "exchange_backoff"}
)
OTHER: Final = "other"


def bounded(value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is an allowed label value, else ``"other"``."""
    return value if value in allowed else OTHER


# Histogram buckets from 100 µs to 10 s: the range between an in-process decision and a slow
# exchange round trip, roughly x2.5 per step so that p50/p99 stay readable at both ends.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Market-data lag (receive time - exchange event time) is usually 1 ms .. a few seconds.
LAG_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


# --- the metrics ----------------------------------------------------------------------------
# Defined at import on the default registry: prometheus_client refuses a duplicate name, so a
# typo'd second definition elsewhere fails loudly instead of producing a silent twin series.

BUILD_INFO = Info("tessera_build", "Tessera version, Python version and run mode of this process")

# Order flow
ORDERS_SUBMITTED = Counter(
    "tessera_orders_submitted",
    "Orders sent to the exchange (intent persisted, request on the wire)",
    ["symbol", "side", "type"],
)
ORDERS_ACKED = Counter(
    "tessera_orders_acked",
    "Orders the exchange acknowledged (NEW or immediately filled)",
    ["symbol", "side", "type"],
)
ORDERS_REJECTED = Counter(
    "tessera_orders_rejected",
    "Orders definitively rejected, by the exchange or our risk engine",
    ["symbol", "side", "type", "reason"],
)
ORDERS_CANCELED = Counter(
    "tessera_orders_canceled", "Orders that ended canceled or expired", ["symbol", "side", "type"]
)
ORDERS_IN_FLIGHT = Gauge(
    "tessera_orders_in_flight", "Orders sent whose outcome is not yet known (awaiting ack/query)"
)
ORDERS_OPEN = Gauge("tessera_orders_open", "Orders resting on the exchange", ["symbol"])

# Fills
FILLS = Counter(
    "tessera_fills", "Fills (trades of our orders) recorded", ["symbol", "side", "liquidity"]
)
FILLED_QUANTITY = Counter("tessera_filled_quantity", "Base quantity filled", ["symbol", "side"])
ORDERED_QUANTITY = Counter(
    "tessera_ordered_quantity",
    "Base quantity ordered (denominator of the fill ratio)",
    ["symbol", "side"],
)
FILL_RATIO = Gauge(
    "tessera_fill_ratio", "Filled / ordered base quantity since process start (0..1)", ["symbol"]
)
FEES_PAID = Counter("tessera_fees_paid", "Fees paid, in quote currency", ["symbol"])

# Latency
SIGNAL_LATENCY = Histogram(
    "tessera_signal_latency_seconds",
    "Market event received -> signal emitted by the strategy",
    ["strategy"],
    buckets=LATENCY_BUCKETS,
)
ORDER_LATENCY = Histogram(
    "tessera_order_latency_seconds",
    "Order path latency by stage: signal_to_send, send_to_ack, tick_to_order",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)

# The event loop and the interpreter's garbage collector (tessera.live.looplag, .heap)
GC_PAUSE = Histogram(
    "tessera_gc_pause_seconds",
    "Garbage-collector pauses of this process (the event loop runs nothing meanwhile)",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
EVENT_LOOP_LAG = Histogram(
    "tessera_event_loop_lag_seconds",
    "How late the event loop woke a task due every 50 ms: time it spent on something else",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
RECONCILIATION_SECONDS = Histogram(
    "tessera_reconciliation_seconds",
    "A reconciliation pass against the exchange (orders wait for it: it holds the executor)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
GC_FROZEN_OBJECTS = Gauge(
    "tessera_gc_frozen_objects",
    "Start-up objects exempted from garbage collection once the bot was warmed up",
)

# Positions, PnL, equity, drawdown
POSITION_SIZE = Gauge(
    "tessera_position_size", "Signed position in base units", ["symbol", "strategy"]
)
POSITION_NOTIONAL = Gauge(
    "tessera_position_notional",
    "Signed position value at the last mark, quote currency",
    ["symbol"],
)
GROSS_EXPOSURE = Gauge("tessera_gross_exposure", "Sum of |position notional|, quote currency")
PNL_REALIZED = Gauge(
    "tessera_pnl_realized", "Realized PnL since run start, quote currency", ["strategy"]
)
PNL_UNREALIZED = Gauge(
    "tessera_pnl_unrealized", "Unrealized PnL at the last mark, quote currency", ["strategy"]
)
EQUITY = Gauge("tessera_equity", "Account equity (cash + marked positions), quote currency")
EQUITY_PEAK = Gauge("tessera_equity_peak", "Highest equity seen, quote currency")
DRAWDOWN_PCT = Gauge(
    "tessera_drawdown_pct",
    "Drawdown from the equity peak in percent (0..100); feeds the risk kill-switch",
)
DRAWDOWN_LIMIT_PCT = Gauge(
    "tessera_drawdown_limit_pct", "Configured max_drawdown_pct at which the kill-switch engages"
)

# Risk
KILL_SWITCH_ENGAGED = Gauge(
    "tessera_kill_switch_engaged", "1 while the kill-switch holds trading halted, else 0"
)
TRADING_STATE = Gauge(
    "tessera_trading_state",
    "1 for the current trading state (ACTIVE/REDUCING/HALTED), 0 otherwise",
    ["state"],
)
RISK_DENIALS = Counter("tessera_risk_denials", "Orders denied by pre-trade risk checks", ["reason"])

# Perpetuals: leverage risk (tessera.risk.leverage; set by tessera.risk.listeners.publish_perp)
MARGIN_RATIO = Gauge(
    "tessera_margin_ratio",
    "Maintenance margin / margin balance (Binance's margin ratio, 0..1; liquidation at 1): the "
    "position's when isolated, the cross wallet's on every cross symbol",
    ["symbol"],
)
LIQUIDATION_DISTANCE_PCT = Gauge(
    "tessera_liquidation_distance_pct",
    "How far the mark may move against the position before liquidation, percent of the mark "
    "(+Inf: no price liquidates it)",
    ["symbol"],
)
# Funding flows both ways, and a counter only goes up: paid and received are two counters, so
# that increase() and rate() survive restarts; the net funding cost is paid - received.
FUNDING_PAID = Counter(
    "tessera_funding_paid", "Funding payments paid, margin asset (quote currency)", ["symbol"]
)
FUNDING_RECEIVED = Counter(
    "tessera_funding_received",
    "Funding payments received, margin asset (quote currency)",
    ["symbol"],
)
# a position the exchange closed itself (liquidation, ADL, settlement): trading halts on it
LIQUIDATIONS = Counter(
    "tessera_liquidations",
    "Orders the exchange placed on the account to close a position",
    ["symbol"],
)
# the venue's MARGIN_CALL (or the margin ratio past risk.margin_ratio_alert): the bot acts on
# it as risk.on_margin_call says, and /readyz says so
MARGIN_CALLS = Counter(
    "tessera_margin_calls",
    "Margin calls on a perpetual: the venue's MARGIN_CALL events and margin ratios past "
    "risk.margin_ratio_alert",
    ["symbol"],
)
SIGNALS = Counter("tessera_signals", "Signals emitted by strategies", ["strategy"])
SIGNALS_DROPPED = Counter(
    "tessera_signals_dropped",
    "Signals lost before execution (the queue unreachable for every retry)",
    ["strategy"],
)
STALE_BARS = Counter(
    "tessera_stale_bars",
    "Closed bars that arrived later than live.max_bar_age_s: seen by strategies, not traded on",
    ["symbol"],
)
OUT_OF_ORDER_BARS = Counter(
    "tessera_out_of_order_bars",
    "Closed bars older than the last one seen (the venue's clock went back): not traded on",
    ["symbol"],
)
STORE_FATAL = Counter(
    "tessera_store_fatal_errors",
    "Database errors that stop the bot (disk full, read-only store): it cannot record orders",
)
STRATEGY_HOOKS: Final = frozenset({"on_start", "on_bar", "on_fill", "on_stop"})
STRATEGY_ERRORS = Counter(
    "tessera_strategy_errors",
    "Exceptions raised by strategy code, by hook (the strategy is isolated; see strategy_paused)",
    ["strategy", "hook"],
)
STRATEGY_PAUSED = Gauge(
    "tessera_strategy_paused",
    "1 when a strategy was paused after live.max_strategy_errors consecutive errors",
    ["strategy"],
)

# Market data / websocket
WS_MESSAGES = Counter("tessera_ws_messages", "Websocket messages received", ["stream_type"])
WS_BYTES = Counter("tessera_ws_bytes", "Websocket payload bytes received")
WS_MALFORMED = Counter(
    "tessera_ws_malformed",
    "Websocket messages that failed to parse and were skipped",
    ["stream_type"],
)
WS_RECONNECTS = Counter("tessera_ws_reconnects", "Websocket reconnects", ["reason"])
# One series per connection owner: the bot's feed (its embedded ingest shares that connection)
# or a standalone `tessera ingest`; a second connection can never hide the first one's drop.
WS_CONNECTED = Gauge(
    "tessera_ws_connected",
    "1 while the market-data websocket is connected, by its owner (feed, ingest)",
    ["source"],
)
WS_GAPS = Counter(
    "tessera_ws_gaps",
    "Sequence gaps in market data: found, filled by backfill, or unfillable",
    ["dataset", "action"],
)
WS_LAG = Histogram(
    "tessera_ws_lag_seconds",
    "Receive time minus exchange event time",
    ["stream_type"],
    buckets=LAG_BUCKETS,
)
MARKET_DATA_LAST_EVENT = Gauge(
    "tessera_market_data_last_event_timestamp_seconds",
    "Exchange event time of the newest market-data message, unix seconds",
    ["symbol"],
)
# Our clock, not the exchange's: "nothing arrives" is told apart from "what arrives is old"
# (a replay of recorded data is old but not silent).
MARKET_DATA_LAST_RECEIVED = Gauge(
    "tessera_market_data_last_received_timestamp_seconds",
    "Receive time (our clock) of the newest market-data message, unix seconds",
    ["symbol"],
)


# How far the strategies have got, whichever way the bars came: the websocket, or REST after
# a reconnect (those bars are no market-data message, so the gauges above do not move).
BAR_LAST_OPEN = Gauge(
    "tessera_bar_last_open_timestamp_seconds",
    "Open time of the newest closed bar given to the strategies (from the websocket or "
    "from REST after a reconnect), unix seconds",
    ["symbol"],
)


def market_data_seen(symbol: str, event_ns: int, recv_ns: int) -> None:
    """The newest market-data message of ``symbol``: exchange event time and our receive time."""
    MARKET_DATA_LAST_EVENT.labels(symbol=symbol).set(event_ns / 1e9)
    MARKET_DATA_LAST_RECEIVED.labels(symbol=symbol).set(recv_ns / 1e9)


ROWS_WRITTEN = Counter("tessera_rows_written", "Rows written to the Parquet store", ["dataset"])
BOOK_RESYNCS = Counter(
    "tessera_book_resyncs", "Order-book resynchronisations from a REST snapshot", ["symbol"]
)

# Exchange HTTP / rate limits
EXCHANGE_HTTP_ERRORS = Counter(
    "tessera_exchange_http_errors", "Exchange REST responses with an error status", ["status"]
)
RATE_LIMIT_USED = Gauge(
    "tessera_rate_limit_used",
    "Exchange rate-limit usage as last known, per metered scope",
    ["scope"],
)
RATE_LIMIT_LIMIT = Gauge("tessera_rate_limit_limit", "Exchange rate limit per scope", ["scope"])
RATE_LIMIT_WAITS = Counter(
    "tessera_rate_limit_waits", "Requests delayed by our own rate limiter", ["scope"]
)


# --- helpers that keep the labels bounded ---------------------------------------------------


def set_trading_state(state: str) -> None:
    """Mark exactly one of ACTIVE/REDUCING/HALTED as current."""
    if state not in TRADING_STATES:
        raise ValueError(f"unknown trading state {state!r}; expected one of {TRADING_STATES}")
    for s in TRADING_STATES:
        TRADING_STATE.labels(state=s).set(1.0 if s == state else 0.0)


def record_funding(symbol: str, amount: float) -> None:
    """Count one funding payment: ``amount`` is the account's signed cash flow (negative: paid,
    positive: received), as `tessera.execution.perp.funding.FundingEntry.amount`."""
    if amount < 0:
        FUNDING_PAID.labels(symbol=symbol).inc(-amount)
    elif amount > 0:
        FUNDING_RECEIVED.labels(symbol=symbol).inc(amount)


def record_order_rejected(symbol: str, side: str, order_type: str, reason: str) -> None:
    ORDERS_REJECTED.labels(
        symbol=symbol,
        side=bounded(side, SIDES),
        type=bounded(order_type, ORDER_TYPES),
        reason=bounded(reason, REJECT_REASONS),
    ).inc()


# Running totals behind the fill-ratio gauge (a counter's value is not public API).
_quantities: dict[str, list[float]] = {}
_quantities_lock = threading.Lock()


def record_order_quantity(symbol: str, side: str, qty: float) -> None:
    """Count ``qty`` as ordered (the denominator of the fill ratio)."""
    ORDERED_QUANTITY.labels(symbol=symbol, side=bounded(side, SIDES)).inc(qty)
    with _quantities_lock:
        _quantities.setdefault(symbol, [0.0, 0.0])[0] += qty
        _update_fill_ratio(symbol)


def record_fill(symbol: str, side: str, liquidity: str, qty: float, fee_quote: float) -> None:
    """Count one fill of ``qty`` base units and its fee, and refresh the fill ratio."""
    FILLS.labels(
        symbol=symbol, side=bounded(side, SIDES), liquidity=bounded(liquidity, LIQUIDITY)
    ).inc()
    FILLED_QUANTITY.labels(symbol=symbol, side=bounded(side, SIDES)).inc(qty)
    FEES_PAID.labels(symbol=symbol).inc(fee_quote)
    with _quantities_lock:
        _quantities.setdefault(symbol, [0.0, 0.0])[1] += qty
        _update_fill_ratio(symbol)


def _update_fill_ratio(symbol: str) -> None:
    ordered, filled = _quantities[symbol]
    FILL_RATIO.labels(symbol=symbol).set(filled / ordered if ordered else 0.0)


def set_build_info(version: str, python: str, mode: str) -> None:
    BUILD_INFO.info({"version": version, "python": python, "mode": mode})


# --- the HTTP server ------------------------------------------------------------------------


class MetricsServerError(RuntimeError):
    """The metrics endpoint could not be started (port taken, bad host)."""


@dataclass
class HealthState:
    """What `/healthz` and `/readyz` report.

    Liveness is "the process answers"; readiness is set by the running service once it has
    market data, a reconciled account and so on. Checks are callables so the service can
    plug in its own without this module knowing about them.
    """

    ready: bool = False
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        results = {name: bool(check()) for name, check in self.checks.items()}
        return self.ready and all(results.values()), results


class MetricsServer:
    """A running `/metrics` + `/healthz` + `/readyz` endpoint on a daemon thread."""

    def __init__(
        self, httpd: http.server.ThreadingHTTPServer, thread: threading.Thread, health: HealthState
    ) -> None:
        self._httpd = httpd
        self._thread = thread
        self.health = health

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _make_handler(
    registry: CollectorRegistry, health: HealthState
) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/readyz":
                ok, results = health.readiness()
                body = "".join(f"{k} {'ok' if v else 'failing'}\n" for k, v in results.items())
                body += "ready\n" if ok else "not ready\n"
                self._send(200 if ok else 503, body.encode(), "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found; try /metrics, /healthz, /readyz\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # Scrapes every few seconds would drown the logs; access logging stays off.
            return

    return Handler


def start_metrics_server(
    port: int = 9090,
    host: str = "127.0.0.1",
    registry: CollectorRegistry = REGISTRY,
    health: HealthState | None = None,
) -> MetricsServer:
    """Serve `/metrics` (Prometheus text format), `/healthz` and `/readyz` on ``host:port``.

    ``port=0`` picks a free port (read it back from ``.port``). A port already in use raises
    :class:`MetricsServerError` with a message that says what to do.
    """
    health = health or HealthState()
    handler = _make_handler(registry, health)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        # Without SO_REUSEADDR a restart right after a stop fails on TIME_WAIT sockets; it does
        # not let two live servers share the port on Linux, so "in use" is still detected.
        allow_reuse_address = True

    try:
        httpd = Server((host, port), handler)
    except OSError as exc:
        if exc.errno in (98, 48):  # EADDRINUSE on Linux / macOS
            raise MetricsServerError(
                f"cannot serve metrics on {host}:{port}: the port is already in use. "
                f"Choose another with --metrics-port or TESSERA_METRICS_PORT (0 picks a free one)."
            ) from exc
        if isinstance(exc, socket.gaierror):
            raise MetricsServerError(f"cannot serve metrics: unknown host {host!r}") from exc
        raise MetricsServerError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    thread = threading.Thread(target=httpd.serve_forever, name="tessera-metrics", daemon=True)
    thread.start()
    return MetricsServer(httpd, thread, health)


def all_metric_names(registry: CollectorRegistry = REGISTRY) -> list[str]:
    """Family names of every Tessera metric, as a scrape shows them (for docs and tests)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(registry).decode()
    return sorted(
        {f.name for f in text_string_to_metric_families(text) if f.name.startswith("tessera_")}
    )


# --- market-data store and ingest failures (issue 14) -----------------------------------------

INGEST_FLUSH_FAILURES = Counter(
    "tessera_ingest_flush_failures",
    "Failed attempts to write buffered market data to the Parquet store (rows kept, retried)",
    ["dataset"],
)
INGEST_ROWS_DROPPED = Counter(
    "tessera_ingest_rows_dropped",
    "Market-data rows lost for good: buffer cap exceeded, unwritable at stop, or invalid",
    ["dataset", "reason"],
)
INGEST_BUFFERED_ROWS = Gauge(
    "tessera_ingest_buffered_rows",
    "Market-data rows held in memory, not yet in the Parquet store",
)
INGEST_WRITE_OK = Gauge(
    "tessera_ingest_write_ok",
    "1 while the ingest's writes to the Parquet store succeed, 0 while a flush is failing",
)
STORE_FILES_QUARANTINED = Counter(
    "tessera_store_files_quarantined",
    "Corrupt Parquet files moved to the store's _quarantine folder",
    ["dataset"],
)
INGEST_DROP_REASONS: Final = frozenset({"buffer_full", "unwritable_at_stop", "invalid"})

# --- the exchange clock (issue 14, defect 10) -------------------------------------------------

CLOCK_SYNC_REASONS: Final = frozenset({"startup", "periodic", "recv_window", "manual"})
EXCHANGE_CLOCK_OFFSET_MS = Gauge(
    "tessera_exchange_clock_offset_ms",
    "Exchange clock minus local wall clock at the last sync, ms (positive: the exchange is ahead)",
)
EXCHANGE_CLOCK_UNCERTAINTY_MS = Gauge(
    "tessera_exchange_clock_uncertainty_ms",
    "Bound on the error of the measured offset (half the slowest sample's round trip), ms",
)
EXCHANGE_CLOCK_RESYNCS = Counter(
    "tessera_exchange_clock_resyncs",
    "Synchronisations with the exchange clock, by what asked for them",
    ["reason"],
)
EXCHANGE_CLOCK_SYNC_FAILURES = Counter(
    "tessera_exchange_clock_sync_failures",
    "Synchronisations with the exchange clock that got no answer (the last offset is kept)",
)


# --- the execution ledger -------------------------------------------------------------------

LEDGER_TABLES: Final = frozenset({"runs", "orders", "fills", "funding_payments"})
LEDGER_CONFLICTS = Counter(
    "tessera_ledger_conflicts",
    "Unique-key collisions in the execution store whose stored row differs from the new one "
    "(a ledger error that is raised, never skipped as a duplicate)",
    ["table"],
)
