"""`TradingBot`: ``Exchange WS -> Features -> Model -> Strategy -> Signal -> Risk -> Execution``.

One asyncio process. The strategies, features, model, risk engine and order manager are the
objects the backtest and research use; only the adapters differ (a websocket feed instead of a
bar file, `CcxtExchange` or `PaperExchange` instead of the backtest's matcher).

Per closed bar: features are updated incrementally, the model scores them, every strategy sees
the bar and may set a target position, which is published as a `Signal` (Redis stream or the
in-process queue). The executor consumes signals, trades the difference between target and
held position after the pre-trade risk checks, and acknowledges the signal once the order
intent is durable. Marks (trades, book tops) update equity, drawdown and the kill-switch.

Crash safety comes from the layers below: the order path persists before it sends and
recovers by client order id on start; signals are idempotent by ``signal_id``; a halt is
persisted and restored. Start-up therefore always runs recovery (and in live/dev mode a full
reconciliation) before any new order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal as os_signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from tessera import __version__, metrics
from tessera.config.models import ControlConfig, NotifyConfig, RiskConfig, StrategyRef
from tessera.config.settings import DatabaseSync
from tessera.control.events import EventHub
from tessera.data.intervals import interval_ns
from tessera.execution.exchange import (
    Balance,
    Exchange,
    ExchangeError,
    ExchangeOrder,
    ExchangeTrade,
)
from tessera.execution.fees import FeeSchedule
from tessera.execution.filters import SymbolFilters
from tessera.execution.gateway import OrderGateway
from tessera.execution.ids import ClientOrderIdGenerator
from tessera.execution.lock import (
    LockHolder,
    TradingLock,
    TradingLockHeldError,
    acquire_trading_lock,
)
from tessera.execution.manager import OrderManager
from tessera.execution.observers import MetricsOrderObserver
from tessera.execution.orders import ExitReason, Order, OrderList, OrderStatus, OrderType
from tessera.execution.perp.margin import LeverageBrackets, MarginMode
from tessera.execution.perp_reconcile import PerpExchange, PerpSettings
from tessera.execution.persistence import ExecutionStore, LedgerConflictError
from tessera.execution.reconcile import FillTotals, PerpReconciler, Reconciler
from tessera.execution.schema import MAX_RUN_ID, MAX_STRATEGY_ID, MAX_SYMBOL, ValueTooLongError
from tessera.execution.sizing import MarketKind
from tessera.execution.state import OrderEvent, OrderEventKind
from tessera.live.account import AccountBook
from tessera.live.clock import ClockSyncError, ExchangeClock, MarketClock
from tessera.live.context import LiveContext
from tessera.live.control_port import BotControl, fill_data, order_data, sample_equity
from tessera.live.executor import LatencyTrace, SignalExecutor
from tessera.live.feed import MarketFeed
from tessera.live.halt import ACCOUNT, HaltGuard
from tessera.live.heap import freeze_startup_heap, release_startup_heap, watch_gc_pauses
from tessera.live.looplag import LoopLagMonitor
from tessera.live.marks import AccountMarks
from tessera.live.perp_account import perp_book_balances, perp_filters
from tessera.live.perp_risk import PerpRiskBook
from tessera.live.ratelimit import (
    LocalRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    limits_from_exchange_info,
)
from tessera.live.scorer import ModelScorer
from tessera.live.signals import (
    LocalSignalQueue,
    RedisSignalQueue,
    Signal,
    SignalKind,
    SignalQueue,
)
from tessera.live.strategy_host import StrategyHost, StrategyStartError
from tessera.logging import bind_context, get_logger
from tessera.metrics import HealthState
from tessera.risk.engine import AccountView, RiskEngine
from tessera.risk.leverage import MarginRatioAlert, ReduceOrder
from tessera.risk.listeners import MetricsRiskListener, publish_perp
from tessera.strategies.base import Bar, BookTop, Strategy, TradeTick
from tessera.strategies.guard import StrategyGuard
from tessera.venues.binance.klines import bar_from_rest
from tessera.venues.binance_spot.instruments import filters_by_symbol

log = get_logger(__name__)
ZERO = Decimal(0)
# the order events a strategy hears of through ``on_order`` (not the bot's own bookkeeping)
_ORDER_HOOK_EVENTS = frozenset(
    {
        OrderEventKind.ACCEPTED,
        OrderEventKind.FILLED,
        OrderEventKind.CANCELED,
        OrderEventKind.EXPIRED,
        OrderEventKind.REJECTED,
    }
)
MS = 1_000_000
# how long the warm-up waits for a market frame to close bars by: Binance pushes every kline
# stream every 1-2 s, traded or not; a replay that has not started sends none
FIRST_FRAME_WAIT_S = 5.0
# An order request older than the recvWindow (``exchange.recv_window_ms``, 5 s by default)
# plus this margin for clock skew can no longer be accepted: "not found" is then final.
UNKNOWN_MARGIN_NS = 2_000_000_000


class _ShutdownWatchdog:
    """Ends the process if shutdown overruns its budget: a thread, so that it fires even when
    the event loop is stuck in a blocking call (a database that stopped answering). Exiting is
    safe at any point: every order step is committed before the next, and the next start
    recovers in-flight orders by client order id."""

    def __init__(self, seconds: float, left_behind: Any) -> None:
        import threading

        self._timer = threading.Timer(seconds, self._fire, args=(seconds, left_behind))
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    @staticmethod
    def _fire(seconds: float, left_behind: Any) -> None:
        import os

        try:
            detail = left_behind()
        except Exception:
            detail = "unknown"
        log.error("shutdown overran its budget: exiting now", after_s=seconds, left=detail)
        os._exit(EXIT_SHUTDOWN_TIMEOUT)


class WireTimedExchange:
    """Delegates to an `Exchange`, noting when each order request goes on the wire (after
    the order manager has made its intent durable): the end of tick-to-order."""

    def __init__(self, inner: Exchange) -> None:
        self.inner = inner
        self.wire_ns: dict[str, int] = {}

    async def submit(self, order: Order) -> ExchangeOrder:
        self.wire_ns[order.client_order_id] = time.time_ns()
        return await self.inner.submit(order)

    async def submit_list(self, orders: OrderList) -> list[ExchangeOrder]:
        now = time.time_ns()
        for leg in orders.legs:
            self.wire_ns[leg.client_order_id] = now
        return await self.inner.submit_list(orders)

    async def cancel(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        return await self.inner.cancel(symbol, client_order_id)

    async def query(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        return await self.inner.query(symbol, client_order_id)

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return await self.inner.open_orders(symbol)

    async def balances(self) -> dict[str, Balance]:
        return await self.inner.balances()

    async def my_trades(self, symbol: str, from_id: int | None = None) -> list[ExchangeTrade]:
        return await self.inner.my_trades(symbol, from_id)

    async def close(self) -> None:
        await self.inner.close()


class LiveRefusedError(RuntimeError):
    """The bot will not start (live-trading safety checks)."""


class BotStartError(RuntimeError):
    """The bot could not start (the exchange or the database did not answer as needed)."""


EXIT_OK = 0
EXIT_PROBLEMS = 1  # ran to the end, but something was lost or left (see the last log lines)
EXIT_STORE_FATAL = 3  # the database cannot record orders (disk full, read-only): stopped
EXIT_SHUTDOWN_TIMEOUT = 4  # shutdown did not finish within shutdown_timeout_s: exited anyway

# Database errors no retry can fix while the bot runs: it cannot record an order, so it must not
# trade. SQLite's texts and PostgreSQL's SQLSTATEs (53100 disk_full, 53200 out_of_memory, 25006
# read_only_sql_transaction, 58030 io_error).
_FATAL_STORE_TEXT = (
    "database or disk is full",
    "disk i/o error",
    "readonly database",
    "no space left on device",
    "read-only file system",
)
_FATAL_SQLSTATES = {"53100", "53200", "25006", "58030"}


def store_error_is_fatal(exc: BaseException) -> bool:
    """True for a database error that retrying will not fix (a full disk, a read-only store)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if str(getattr(cur, "sqlstate", "") or "") in _FATAL_SQLSTATES:
            return True
        text = str(cur).lower()
        if any(t in text for t in _FATAL_STORE_TEXT):
            return True
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    return False


@dataclass
class BotOptions:
    mode: str  # dev | paper | live
    strategies: Sequence[StrategyRef]
    symbols: Sequence[str]
    interval: str
    rest_url: str
    ws_url: str
    database_url: str
    run_id: str
    risk: RiskConfig
    redis_url: str | None = None
    database_sync: DatabaseSync = "full"  # see `make_engine`
    api_key: str = ""
    api_secret: str = ""
    model_ref: str | None = None
    registry_dir: Path | None = None
    quote_asset: str = "USDT"
    paper_balances: Mapping[str, str] = field(default_factory=lambda: {"USDT": "10000"})
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    signal_stream: str = "tessera:signals"
    signal_maxlen: int = 100_000
    consumer_group: str = "executors"
    claim_idle_ms: int = 30_000
    max_signal_age_s: float = 60.0
    reconcile_interval_s: float = 60.0
    mark_interval_s: float = 0.25
    ingest_store: Path | None = None  # persist the market data too (an embedded ingest)
    duration_s: float | None = None
    consumer: str = "bot"
    # a closed bar that arrives later than this (beyond the feed's usual lag) is not traded on
    max_bar_age_s: float = 10.0
    # a symbol silent this long is a stalled feed (None: 30 s, or 1.5 bars for longer bars)
    stall_after_s: float | None = None
    # SIGTERM to exit, whatever is in flight; what is left is said, and the next start resolves it
    shutdown_timeout_s: float = 30.0
    # an order request unanswered this long has an unknown outcome (resolved by client order id)
    order_timeout_s: float = 10.0
    # the venue (``exchange.name``: binance, binance-usdm) and the recvWindow of signed requests
    exchange_id: str = "binance"
    recv_window_ms: int = 5_000
    # perpetuals (exchange_id binance-usdm): the leverage and margin mode (ISOLATED, CROSS)
    # start-up reconciliation sets on a flat symbol and requires of an open position
    perp_leverage: int = 1
    perp_margin_mode: str = "CROSS"
    # the market data has ended (a finished replay): the bot stops, saying so, instead of idling
    end_of_data: Callable[[], bool] | None = None
    # a strategy raising this many times in a row is paused (the others trade on; exit 1)
    max_strategy_errors: int = 3
    # the control API and web console served by the bot (off unless ``control.enabled``)
    control: ControlConfig | None = None
    # trading events and the daily summary sent through Apprise (off without ``notify.urls``)
    notify: NotifyConfig | None = None
    # exempt what start-up made from garbage collection once warmed up (see tessera.live.heap)
    freeze_startup_heap: bool = True


def zero_counters(symbols: Sequence[str]) -> None:
    """Create the counter series of the events the dashboards and alerts count with
    ``increase()``/``rate()`` at 0: a series born at 1 hides its first event (those functions
    need a sample before it), so the first reconnect, denial or rejection would show as 0."""
    for reason in metrics.RECONNECT_REASONS:
        metrics.WS_RECONNECTS.labels(reason=reason)
    for kind in metrics.STREAM_TYPES:
        metrics.WS_MALFORMED.labels(stream_type=kind)
    for dataset in metrics.DATASETS:
        for action in metrics.GAP_ACTIONS:
            metrics.WS_GAPS.labels(dataset=dataset, action=action)
    for reason in metrics.RISK_DENIAL_REASONS:
        metrics.RISK_DENIALS.labels(reason=reason)
    for sym in symbols:
        for side in metrics.SIDES:
            order = {"symbol": sym, "side": side, "type": "market"}  # what the bot sends
            for counter in (
                metrics.ORDERS_SUBMITTED,
                metrics.ORDERS_ACKED,
                metrics.ORDERS_CANCELED,
            ):
                counter.labels(**order)
            for reason in metrics.REJECT_REASONS:
                metrics.ORDERS_REJECTED.labels(**order, reason=reason)
            for liquidity in metrics.LIQUIDITY:
                metrics.FILLS.labels(symbol=sym, side=side, liquidity=liquidity)
        metrics.LIQUIDATIONS.labels(symbol=sym)
        metrics.MARGIN_CALLS.labels(symbol=sym)
        metrics.OUT_OF_ORDER_BARS.labels(symbol=sym)


class TradingBot:
    def __init__(self, options: BotOptions) -> None:
        self.o = options
        self.symbols = [s.upper() for s in options.symbols]
        # Binance USDⓈ-M perpetuals: fapi paths, perpetual sizing and reconciliation
        self.perp = options.exchange_id == "binance-usdm"
        self.unknown_after_ns = options.recv_window_ms * MS + UNKNOWN_MARGIN_NS
        self.health = HealthState()
        self.stopping = asyncio.Event()
        self.last_prices: dict[str, Decimal] = {}
        self.latest_features: dict[str, dict[str, float]] = {}
        self.predictions: dict[str, float] = {}
        self.warming = True
        self.now_ns = time.time_ns()
        self._event_ts: dict[str, tuple[int, int]] = {}  # symbol -> (event ns, receive ns)
        self._last_bar: dict[str, int] = {}
        self._booked: set[str] = set()  # symbols with a book-top stream
        # bars from the websocket while the REST warm-up runs: applied after it, in order
        self._early_bars: list[tuple[Bar, int, int]] | None = []
        self._t_model: dict[str, int] = {}
        self._db_failed = False
        self._signal_seq = 0
        self._tasks: list[asyncio.Task[Any]] = []
        # what went wrong in this run that a person must hear of: non-empty -> non-zero exit
        self.problems: list[str] = []
        self.exit_code = EXIT_OK
        self.stale_bars = 0
        self.lock: TradingLock | None = None
        self.ended_by_data = False
        self._signal_handlers: list[os_signal.Signals] = []
        self.late_bar_times: set[int] = set()  # open times (ns) of bars not traded on
        self.out_of_order_bars = 0  # closed bars older than the last one (dropped, counted)
        self._bars_back: set[str] = set()  # symbols whose latest bar went back in time
        self._acting = True  # False while a bar older than max_bar_age_s is being processed
        # what a person watching cares about (orders, fills, halts, pauses, equity): the
        # control API's event stream, the console and the notifier read it
        self.hub = EventHub()
        self.control = BotControl(self)
        self.control_url: str | None = None  # where the control API listens, once it does
        self._control_server: Any = None
        self._notifier: Any = None

    # --- set-up ---------------------------------------------------------------------------------

    async def _setup(self) -> None:
        o = self.o
        self._check_identifiers()
        if o.mode == "live" and not (o.api_key and o.api_secret):
            raise LiveRefusedError("live mode needs exchange credentials (api_key, api_secret)")
        # one trading process per account: a second bot would double every position and each
        # one's user-data stream would book the other's fills
        try:
            self.lock = await asyncio.to_thread(
                acquire_trading_lock, o.database_url, ACCOUNT, LockHolder(o.run_id, o.mode)
            )
        except TradingLockHeldError as exc:
            raise LiveRefusedError(str(exc)) from exc
        self.store = ExecutionStore(o.database_url, sync=o.database_sync)
        # a run id reused with another mode or other strategies is a LedgerConflictError
        try:
            self.store.start_run(o.run_id, o.mode, __version__, [s.name for s in o.strategies])
        except LedgerConflictError as exc:
            raise LiveRefusedError(str(exc)) from exc
        if self.perp:
            info = await self._rest("/fapi/v1/exchangeInfo", {}, weight=1)
            self.filters: dict[str, SymbolFilters] = perp_filters(info)
        else:
            info = await self._rest("/api/v3/exchangeInfo", {}, weight=20)
            self.filters = filters_by_symbol(info)
        missing = [s for s in self.symbols if s not in self.filters]
        if missing:
            raise LiveRefusedError(f"the exchange does not list {missing}")
        limits = limits_from_exchange_info(info)
        self.redis: Any = None
        if o.redis_url:
            from redis.asyncio import Redis

            self.redis = Redis.from_url(o.redis_url)
            self.limiter: RateLimiter = RedisRateLimiter(self.redis, limits, api_key=o.api_key)
            self.queue: SignalQueue = RedisSignalQueue(
                self.redis, o.signal_stream, o.consumer_group, o.signal_maxlen
            )
        else:
            self.limiter = LocalRateLimiter(limits)
            self.queue = LocalSignalQueue(o.signal_maxlen)
        # the exchange's time: requests are signed with it, and bars are closed by it
        self.clock = ExchangeClock.for_rest_url(
            o.rest_url, limiter=self.limiter, path="/fapi/v1/time" if self.perp else "/api/v3/time"
        )
        try:
            await self.clock.sync("startup")
        except ClockSyncError as exc:
            raise BotStartError(f"cannot read the exchange's clock at {o.rest_url}: {exc}") from exc
        self.market_clock = MarketClock(self.clock)
        for lim in limits:
            metrics.RATE_LIMIT_LIMIT.labels(
                scope=metrics.bounded(lim.scope, metrics.RATE_LIMIT_SCOPES)
            ).set(lim.limit)
        self.exchange: Exchange
        self.paper: Any
        if o.mode == "paper" and self.perp:
            self.paper = self._perp_paper()
            self.exchange = self.paper
        elif o.mode == "paper":
            from tessera.execution.paper import PaperExchange

            self.paper = PaperExchange(
                self.filters,
                self.store,
                initial_balances=o.paper_balances,
                fees=o.fees,
                on_report=self._on_report,
            )
            self.exchange = self.paper
        else:
            from tessera.live.assembly import exchange_client

            self.paper = None
            self.exchange = exchange_client(o, limiter=self.limiter, clock=self.clock)
        self.observer = MetricsOrderObserver(o.quote_asset)
        self.wire = WireTimedExchange(self.exchange)
        self.manager = OrderManager(self.store, self.wire, o.run_id, "", o.mode, self)
        self.ids = ClientOrderIdGenerator(o.run_id, self.store.next_seq(o.run_id))
        self.manager.take_seq = self.ids.take  # signal-derived ids share the run's sequence
        self.manager.on_exchange_order = self._on_liquidated
        self.account = AccountBook(self.filters, o.quote_asset)
        self.risk = RiskEngine(o.risk, MetricsRiskListener())
        self.perp_risk: PerpRiskBook | None = self._perp_risk_book() if self.perp else None
        self._perp_mark_task: asyncio.Task[None] | None = None
        self.margin_ratio_alerts = 0
        self.margin_called: list[str] = []  # symbols margin-called in this run: /readyz false
        self._heap_frozen = False  # released at shutdown (tessera.live.heap)
        self.loop_lag = LoopLagMonitor()  # how late the event loop runs (tessera.live.looplag)
        # per symbol, the first exchange trade id reconciliation has not looked at yet
        self._trade_cursor: dict[str, int] = {}
        # what the stored fills explain, summed as they come (see `FillTotals`)
        self._fill_totals = FillTotals()
        self._past_ratio_alert: set[str] = set()
        self.liq_distance_cuts = 0
        self.gateway = OrderGateway(
            self.manager,
            self.risk,
            self.filters,
            self.limiter,
            self._account_view,
            on_denied=self._on_denied,
        )
        self.executor = SignalExecutor(
            queue=self.queue,
            store=self.store,
            manager=self.manager,
            gateway=self.gateway,
            account=self.account,
            filters=self.filters,
            ids=self.ids,
            known=lambda strategy, symbol: strategy in self.contexts and symbol in self.filters,
            can_record=lambda: self.exit_code != EXIT_STORE_FATAL,
            failed=self._failed,
            problem=self.problem,
            wire_ns=self.wire.wire_ns,
            consumer=o.consumer,
            max_signal_age_s=o.max_signal_age_s,
            claim_idle_ms=o.claim_idle_ms,
            market=MarketKind.PERPETUAL if self.perp else MarketKind.SPOT,
        )
        self.halt = HaltGuard(
            store=self.store,
            risk=self.risk,
            manager=self.manager,
            gateway=self.gateway,
            account=self.account,
            filters=self.filters,
            ids=self.ids,
            equity=self.equity,
            failed=self._failed,
            order_lock=self.executor.lock,
            publish=self.hub.publish,
        )
        self.marks = AccountMarks(
            self.account,
            self.manager,
            self.risk,
            self.limiter,
            self.last_prices,
            strategies=lambda: [s.strategy_id for s in self.strategies],
            on_actions=self.halt.on_actions,
            equity=self._perp_equity if self.perp_risk is not None else None,
        )
        metrics.DRAWDOWN_LIMIT_PCT.set(o.risk.max_drawdown_pct or math.inf)  # null: off
        metrics.set_trading_state("ACTIVE")
        metrics.KILL_SWITCH_ENGAGED.set(0)
        zero_counters(self.symbols)
        self.halt.restore()
        self.scorer: ModelScorer | None = None
        if o.model_ref:
            if o.registry_dir is None:
                raise LiveRefusedError("a model needs a registry directory")
            self.scorer = ModelScorer(o.model_ref, o.registry_dir, self.symbols)
            log.info("model loaded", model=self.scorer.name, features=len(self.scorer.columns))
        try:
            self.host = StrategyHost(
                o.strategies,
                self.symbols,
                self,
                self.store,
                o.max_strategy_errors,
                self._strategy_paused,
                self._failed,
                can_write=lambda: self.exit_code != EXIT_STORE_FATAL,
            )
            self.host.restore()
        except StrategyStartError as exc:
            raise LiveRefusedError(str(exc)) from exc
        if self.scorer is None and any(s.name == "model_signal" for s in self.strategies):
            raise LiveRefusedError("model_signal needs a model: pass --model NAME[:VERSION]")

    def _check_identifiers(self) -> None:
        """Every identifier the bot stores must fit its column: refused here, in one clear
        sentence, rather than by the database at the first order."""
        o = self.o
        try:
            interval_ns(o.interval)
        except ValueError as exc:
            raise LiveRefusedError(f"--interval: {exc}") from None
        if len(o.run_id) > MAX_RUN_ID:
            raise LiveRefusedError(
                f"run id {o.run_id!r} is {len(o.run_id)} characters; at most {MAX_RUN_ID}"
            )
        for sym in self.symbols:
            if len(sym) > MAX_SYMBOL:
                raise LiveRefusedError(f"symbol {sym!r} is longer than {MAX_SYMBOL} characters")
        for ref in o.strategies:
            # the id may gain a "-N" suffix when the same strategy runs twice
            if len(ref.name) + 4 > MAX_STRATEGY_ID:
                raise LiveRefusedError(
                    f"strategy name {ref.name!r} is too long: at most {MAX_STRATEGY_ID - 4} "
                    "characters"
                )

    async def _rest(self, path: str, params: Mapping[str, Any], weight: int = 2) -> Any:
        """A public REST call (klines, exchangeInfo), paced by the shared limiter once it
        exists (the first call, exchangeInfo, is what the limiter is configured from)."""
        limiter = getattr(self, "limiter", None)
        if limiter is not None:
            await limiter.acquire(weight, 0)
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
            session.get(self.o.rest_url.rstrip("/") + path, params=dict(params)) as resp,
        ):
            if resp.status != 200:
                raise ExchangeError(f"GET {path}: HTTP {resp.status}: {(await resp.text())[:200]}")
            return await resp.json(content_type=None)

    async def _reconcile(self, first: bool) -> bool:
        """Orders, fills and balances against the exchange; False if something is unexplained."""
        if self.paper is not None:
            await self.manager.recover()
            return True
        async with self.executor.lock:
            started = time.perf_counter()
            if self.perp:
                settings = PerpSettings(self.o.perp_leverage, MarginMode(self.o.perp_margin_mode))
                assert isinstance(self.exchange, PerpExchange)
                report = await PerpReconciler(
                    self.manager,
                    self.filters,
                    self.symbols,
                    settings,
                    ACCOUNT,
                    self.exchange,
                    trade_cursor=self._trade_cursor,
                    fill_totals=self._fill_totals,
                ).run()
            else:
                report = await Reconciler(
                    self.manager,
                    self.filters,
                    self.symbols,
                    ACCOUNT,
                    self._trade_cursor,
                    self._fill_totals,
                ).run()
            metrics.RECONCILIATION_SECONDS.observe(time.perf_counter() - started)
        if not report.ok:
            self.halt.restore()
            self.hub.publish("reconciliation", {"ok": False, "problems": report.problems[:20]})
        return report.ok

    async def _load_balances(self) -> None:
        if self.perp:
            perp = self.exchange
            assert isinstance(perp, PerpExchange)
            positions = await perp.positions(list(self.symbols))
            wallets = await perp.perp_balances()
            self.account.reset(perp_book_balances(wallets, positions, self.filters))
            if self.perp_risk is not None:
                self.perp_risk.reset(wallets, positions)
            return
        balances = await self.exchange.balances()
        self.account.reset({a: b.free + b.locked for a, b in balances.items()})

    async def _warm_up(self) -> None:
        """Recent closed bars over REST, through features, model and strategies, without
        trading; afterwards each strategy's current target is published once."""
        self.host.start()
        need = self.host.warmup_bars
        if self.scorer is not None:
            need = max(need, self.scorer.warmup + 1)
        limit = min(max(need + 5, 10), 1000)
        # bars are closed by the market's own clock (its frames' event times): in a replay the
        # server's wall clock is far past every recorded bar and would let the forming one in
        if not await self.market_clock.wait_observed(self.symbols, FIRST_FRAME_WAIT_S):
            log.warning("no market frame yet: closing warm-up bars by the server's clock")
        warm = 0
        for sym in self.symbols:
            for bar in await self._closed_bars(sym, limit):
                self._on_closed_bar(bar, 0, 0)
                warm += 1
        early, self._early_bars = self._early_bars or [], None
        for bar, event_ns, recv_ns in early:  # live bars that arrived during the warm-up
            self._on_closed_bar(bar, event_ns, recv_ns, overlap=True)
        self.warming = False
        self.host.warmed_up()
        for ctx in self.host.contexts.values():
            for sym, target in ctx.targets.items():
                self._emit_target(ctx.strategy_id, sym, target)
        log.info("warm-up done", bars=warm, needed=need)

    # --- the run --------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or ``duration_s``); returns the exit code."""
        o = self.o
        bind_context(run_id=o.run_id, strategy=",".join(s.name for s in o.strategies))
        watch_gc_pauses()
        await self._setup()
        loop = asyncio.get_running_loop()
        for sig in (os_signal.SIGTERM, os_signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._request_stop, sig.name)
                self._signal_handlers.append(sig)
        self.health.checks = {
            "market_data": lambda: hasattr(self, "feed") and self.feed.healthy,
            "store": lambda: self.exit_code != EXIT_STORE_FATAL,
            "warmed_up": lambda: not self.warming,
            # a halted bot (kill-switch, `tessera risk halt`) is alive but will not trade
            "not_halted": lambda: self.risk.halt is None,
            "no_margin_call": lambda: not self.margin_called,
        }
        try:
            if self.perp and self.paper is None:
                await self._refuse_hedge_mode()
            if self.perp_risk is not None:
                await self._load_brackets()
            await self._load_balances()
            ok = await self._reconcile(first=True)
            if not ok and o.mode == "live":
                raise LiveRefusedError(
                    "reconciliation failed (see the log); trading stays halted until a person "
                    "checks the account and runs `tessera risk reset --by NAME`"
                )
            await self._load_balances()
            self.manager.settle_ns = self.unknown_after_ns  # from now on this process sends
            # orders resting from an earlier run are the strategies' too: open_orders lists
            # them, cancel_order reaches them, their fills update the same objects
            for order in self.store.open_orders():
                if order.strategy in self.contexts:
                    self.manager.live.setdefault(order.client_order_id, order)
            self.feed = MarketFeed(
                o.ws_url,
                self.symbols,
                o.interval,
                self,
                on_reconnect=self._on_feed_reconnect,
                stall_after_s=o.stall_after_s,
                market_clock=self.market_clock,
                on_mark=self._on_mark if self.perp_risk is not None else None,
            )
            self._spawn(self.feed.run(), "feed")
            await asyncio.wait_for(self.feed.connected.wait(), 30)
            await self._warm_up()
            # before the first order: the notifier subscribes before any fill can happen
            await self._start_operator_side()
            self._spawn(self.executor.publisher(), "publisher")
            self._spawn(self.executor.run(), "executor")
            self._spawn(self.marks.run(self.o.mark_interval_s), "marks")
            self._spawn(self.halt.watch(), "halt-watch")
            self._spawn(self._periodic_reconcile(), "reconcile")
            self._spawn(self._db_watch(), "db-watch")
            self._spawn(self._resolve_unknown(), "resolve-unknown")
            if o.redis_url:
                self._spawn(self.executor.claim_loop(), "claim")
            if self.paper is None:
                self._spawn(self._user_data(), "user-data")
            elif self.perp:
                self._spawn(self._paper_funding(), "paper-funding")
            self._spawn(self.clock.run(self.stopping), "clock")
            if o.end_of_data is not None:
                self._spawn(self._watch_end_of_data(o.end_of_data), "end-of-data")
            self._spawn(self._lock_watch(), "lock-watch")
            if o.ingest_store is not None:
                self._spawn(self._ingest(o.ingest_store), "ingest")
                self.health.checks["market_data_store"] = lambda: (
                    not hasattr(self, "_ingest_service") or self._ingest_service.health().ok
                )
            self.health.checks["market_time_advancing"] = lambda: not self._bars_back
            self._spawn(sample_equity(self), "equity-samples")
            self._spawn(self.loop_lag.run(self.stopping), "loop-lag")
            if o.freeze_startup_heap:  # see tessera.live.heap: no 100 ms pauses while trading
                self._heap_frozen = True
                log.info("start-up heap frozen", objects=freeze_startup_heap())
            self.health.ready = True
            log.info("bot running", mode=o.mode, symbols=self.symbols, interval=o.interval)
            await self._wait_stop()
        except (LiveRefusedError, BotStartError):
            raise
        except (ExchangeError, TimeoutError, aiohttp.ClientError, OSError) as exc:
            if self.health.ready:
                raise
            raise BotStartError(f"start-up failed: {type(exc).__name__}: {exc}") from exc
        finally:
            await self._shutdown()
        return self._final_exit_code()

    def _final_exit_code(self) -> int:
        if self.exit_code == EXIT_OK and self.problems:
            self.exit_code = EXIT_PROBLEMS
        for problem in self.problems:
            log.error("run ended with a problem", problem=problem)
        return self.exit_code

    def problem(self, text: str, exit_code: int = EXIT_PROBLEMS) -> None:
        """Something a person must hear of: logged now, listed at exit, non-zero exit code."""
        if text not in self.problems:
            self.problems.append(text)
            log.error("problem", problem=text)
        # the first hard failure names the exit code (a full disk that also slows the shutdown
        # exits as a full disk); EXIT_PROBLEMS only replaces a clean exit
        if self.exit_code in (EXIT_OK, EXIT_PROBLEMS) and exit_code != EXIT_OK:
            self.exit_code = exit_code

    def _request_stop(self, why: str = "") -> None:
        if not self.stopping.is_set():
            log.info("stop requested", signal=why)
            self.stopping.set()
        elif why:  # a second signal: the person wants out now
            import os

            log.error("second stop signal: exiting now", left=self._left_behind())
            os._exit(EXIT_SHUTDOWN_TIMEOUT)

    async def _wait_stop(self) -> None:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.stopping.wait())]
        waits += [t for t in self._tasks if t.get_name() in ("feed", "executor")]
        done, _ = await asyncio.wait(
            waits, timeout=self.o.duration_s, return_when=asyncio.FIRST_COMPLETED
        )
        for t in done:
            if t is waits[0] or t.cancelled():
                continue
            failure = t.exception()
            name = t.get_name()  # type: ignore[attr-defined]
            # the bot cannot trade without its feed or executor: stop, and say why (exit 1)
            self.problem(
                f"the {name} task ended: {failure!r}"[:400] if failure else f"the {name} task ended"
            )
            if failure is not None:
                log.error("task failed", task=name, exc_info=failure)
        waits[0].cancel()

    async def _shutdown(self) -> None:
        """Graceful: no new signals, the queued ones executed, in-flight orders resolved,
        market data flushed, then exit — all within ``shutdown_timeout_s``. What could not be
        finished in time is said (and the next start's recovery resolves it by client order id);
        a watchdog thread ends the process should the event loop itself be stuck in a call."""
        self.stopping.set()
        self.health.ready = False
        budget = self.o.shutdown_timeout_s
        deadline = time.monotonic() + budget
        watchdog = _ShutdownWatchdog(budget + 5.0, self._left_behind)
        watchdog.start()

        def left() -> float:
            return max(deadline - time.monotonic(), 0.05)

        try:
            await self._shutdown_steps(left)
        finally:
            watchdog.cancel()
            if self._heap_frozen:
                self._heap_frozen = False
                release_startup_heap()
        if time.monotonic() > deadline:
            self.problem(
                f"shutdown took longer than {budget:g} s; left: {self._left_behind()}",
                EXIT_SHUTDOWN_TIMEOUT,
            )
        # a bot run inside a longer-lived process (a notebook, the demo, tests) gives the
        # process its signals back
        loop = asyncio.get_running_loop()
        for sig in self._signal_handlers:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        self._signal_handlers.clear()
        log.info("bot stopped", signals=self.signals_published, orders=self.orders_sent)

    def _unsettled(self) -> list[str]:
        """Client ids of orders whose outcome is not known yet (intent or request in flight)."""
        manager: OrderManager | None = getattr(self, "manager", None)
        return [
            o.client_order_id
            for o in (manager.live.values() if manager is not None else ())
            if o.status in (OrderStatus.SUBMITTED, OrderStatus.INITIALIZED)
        ]

    def _left_behind(self) -> str:
        manager = getattr(self, "manager", None)
        pending = [t.get_name() for t in self._tasks if not t.done() and t.get_name() != "ingest"]
        in_flight = (
            [o.client_order_id for o in manager.live.values() if o.status.is_open]
            if manager is not None
            else []
        )
        return f"tasks {pending or 'none'}; open or in-flight orders {in_flight or 'none'}"

    async def _start_operator_side(self) -> None:
        """The control API (and console) when ``control.enabled``, the notifier when
        ``notify.urls`` names a target. A port the API cannot listen on is a start error."""
        control = self.o.control
        notify = self.o.notify
        if notify is not None and notify.urls:
            from tessera.notify import Notifier, NotifyError

            try:
                self._notifier = Notifier(
                    notify, self.hub, bot_name=self.o.run_id, summary=self.control.summary
                )
            except NotifyError as exc:  # names the URL's position and scheme, not the URL
                raise BotStartError(str(exc)) from None
            self._spawn(self._notifier.run(), "notifier")
            await asyncio.sleep(0)  # its subscription is taken now, before any order
        if control is not None and control.enabled:
            from tessera.control.app import create_app
            from tessera.control.server import ControlServerError, start_control_server

            console = None
            if control.console:
                from tessera.control.console import Console

                console = Console(self.control, self.hub, control)
            app = create_app(self.control, self.hub, control, version=__version__, console=console)
            try:
                self._control_server = await start_control_server(app, control.host, control.port)
            except ControlServerError as exc:  # its message names host:port and control.port
                raise BotStartError(str(exc)) from None
            self.control_url = str(self._control_server.url)
            log.info("control API listening", url=self.control_url, console=control.console)

    async def _stop_control_server(self, left: Any) -> None:
        server, self._control_server = self._control_server, None
        if server is not None:
            try:
                await asyncio.wait_for(server.stop(), min(5.0, left()))
            except Exception as exc:
                log.warning("the control API did not stop cleanly", error=str(exc)[:200])

    async def _shutdown_steps(self, left: Any) -> None:
        await self._stop_control_server(left)  # no operator action while shutting down
        feed = getattr(self, "feed", None)
        if feed is not None:
            feed.stop()
        self.warming = True  # strategies may still see a bar; nothing new is published
        host: StrategyHost | None = getattr(self, "host", None)
        if host is not None:
            host.stop()  # on_stop after on_start only, once
        executor = next((t for t in self._tasks if t.get_name() == "executor"), None)
        if executor is not None and not executor.done() and self.exit_code != EXIT_STORE_FATAL:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.executor.drain(), min(10.0, left()))
        for t in self._tasks:
            if t.get_name() == "ingest":
                self._ingest_service.stop()
                try:  # more than the ingest's own 5 s of retries at stop
                    await asyncio.wait_for(asyncio.shield(t), max(min(15.0, left()), 6.0))
                except TimeoutError:
                    self.problem("the market-data ingest did not stop in time")
                except Exception as exc:
                    self.problem(f"the market-data ingest failed: {exc!r}"[:400])
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=min(5.0, left()))
            if stuck:
                log.error("tasks did not stop in time", tasks=[t.get_name() for t in stuck])
        for t in self._tasks:
            failure = t.exception() if t.done() and not t.cancelled() else None
            if failure is not None:
                log.error("task ended with an error", task=t.get_name(), error=str(failure)[:300])
        if hasattr(self, "manager") and self.exit_code != EXIT_STORE_FATAL:
            # in-flight orders resolved before exit; after the executor is stopped, so that a
            # submit the drain gave up on (say, waiting for the rate limiter) is settled too
            # An order the exchange does not know yet is closed as never sent only once it is
            # older than the recvWindow (`settle_ns`): a request cut off on its way (a submit the
            # drain gave up on) may still be accepted until then. So recover until nothing is in
            # flight, or the budget (less 2 s for closing) is spent.
            while True:
                try:
                    await asyncio.wait_for(self.manager.recover(), min(15.0, left()))
                except Exception as exc:
                    log.error(
                        "final recovery incomplete",
                        error=f"{type(exc).__name__}: {exc}"[:300],
                        stuck_on=self.manager.recovery_step or "nothing",
                    )
                    break
                if not self._unsettled() or left() < 3.0:
                    break
                await asyncio.sleep(min(1.0, left() - 2.0))
        if self._notifier is not None:  # its task is cancelled with the others above
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._notifier.close(), min(2.0, left()))
        open_orders = self._unsettled()
        if open_orders:
            unanswered = [c for c in open_orders if self.manager.on_its_way(c)]
            self.problem(
                f"orders still in flight at exit (the next start resolves them by client "
                f"order id): {open_orders}"
                + (f"; their submit still awaiting its answer: {unanswered}" if unanswered else "")
            )
        if hasattr(self, "store"):
            with contextlib.suppress(Exception):
                self.store.stop_run(self.o.run_id)
            if hasattr(self, "exchange"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.exchange.close(), min(5.0, left()))
            with contextlib.suppress(Exception):
                self.store.close()
        if getattr(self, "redis", None) is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.aclose(), min(2.0, left()))
        if getattr(self, "clock", None) is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.clock.close(), min(2.0, left()))
        ingest = getattr(self, "_ingest_service", None)
        if ingest is not None:
            health = ingest.health()
            if health.data_lost:
                self.problem(f"market data lost: {health.summary()}")
        lock = getattr(self, "lock", None)
        if lock is not None:
            with contextlib.suppress(Exception):
                lock.release()

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    # --- market data ----------------------------------------------------------------------------

    def on_bar(self, bar: Bar, event_ns: int, recv_ns: int) -> None:
        if self._early_bars is not None:  # warm-up over REST still running: keep for after it
            self._early_bars.append((bar, event_ns, recv_ns))
            return
        try:
            self._on_closed_bar(bar, event_ns, recv_ns)
        except Exception as exc:  # a failing strategy or store must not stop the market feed
            self._failed("bar", exc)

    def _strategy_paused(self, strategy: Strategy, reason: str) -> None:
        self.hub.publish(
            "strategy_paused", {"strategy": strategy.strategy_id, "by": "errors", "reason": reason}
        )
        self.problem(reason)

    def _failed(self, where: str, exc: Exception) -> None:
        """An error outside the order path: logged; a database error marks the store suspect
        so that it is reconciled as soon as it answers again."""
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, LedgerConflictError | ValueTooLongError):
            # not an outage: two writers disagree, or a value cannot be stored. Retrying or
            # reconciling cannot fix it, and trading on would build on a ledger in doubt.
            self._store_fatal(where, exc)
            return
        if isinstance(exc, SQLAlchemyError):
            self._db_failed = True
            if store_error_is_fatal(exc):
                self._store_fatal(where, exc)
                return
        log.error("handler failed", where=where, error=str(exc)[:300], kind=type(exc).__name__)

    def _store_fatal(self, where: str, exc: BaseException) -> None:
        """The database cannot record (disk full, read-only): stop trading at once and exit
        non-zero rather than retry — an order that cannot be recorded must not be sent."""
        if self.exit_code == EXIT_STORE_FATAL:
            return
        metrics.STORE_FATAL.inc()
        self.problem(
            f"the database cannot record orders ({where}: {str(exc)[:200]}); stopped trading. "
            "Free space or make the store writable, then start again: the start-up recovery "
            "resolves the orders in flight",
            EXIT_STORE_FATAL,
        )
        self._request_stop()

    def _on_closed_bar(
        self, bar: Bar, event_ns: int, recv_ns: int, *, overlap: bool = False
    ) -> None:
        """``overlap``: the bar comes from a batch that may repeat bars already seen (REST bars
        after a reconnect, websocket bars held while REST was read): older ones are skipped
        quietly. A live websocket bar older than the last one is the venue going back."""
        last = self._last_bar.get(bar.symbol, -1)
        if bar.open_time == last or (overlap and bar.open_time < last):
            return  # already seen
        if bar.open_time < last:
            self._bar_went_back(bar, last)
            return
        self._bars_back.discard(bar.symbol)
        self._acting = True
        if recv_ns and not self.warming:
            # late beyond the feed's usual lag (a stall, a backlog): seen, not traded on
            delay = self.feed.lag.delay_ns(bar.close_time, recv_ns)
            if delay > self.o.max_bar_age_s * 1e9:
                self._acting = False
                self.stale_bars += 1
                if len(self.late_bar_times) < 100_000:
                    self.late_bar_times.add(bar.open_time)
                metrics.STALE_BARS.labels(symbol=bar.symbol).inc()
                log.warning(
                    "bar arrived late: not trading on it",
                    symbol=bar.symbol,
                    open_time=bar.open_time,
                    late_s=round(delay / 1e9, 1),
                    max_bar_age_s=self.o.max_bar_age_s,
                )
        self._last_bar[bar.symbol] = bar.open_time
        metrics.BAR_LAST_OPEN.labels(symbol=bar.symbol).set(bar.open_time / 1e9)
        self._event_ts[bar.symbol] = (event_ns, recv_ns)
        self.now_ns = bar.close_time if self.warming else time.time_ns()
        price = Decimal(repr(bar.close))
        self.last_prices[bar.symbol] = price
        if self.paper is not None and bar.symbol not in self._booked:
            self.paper.on_quote(bar.symbol, price, price)  # no book data: quote the close
        if self.scorer is not None:
            feats, score = self.scorer.update(bar)
            self.latest_features[bar.symbol] = feats
            if score is None:
                self.predictions.pop(bar.symbol, None)
            else:
                self.predictions[bar.symbol] = score
        self._t_model[bar.symbol] = time.time_ns()
        self.host.on_bar(bar, self.warming)
        if self.perp_risk is not None and not self.warming:
            self._start_perp_mark(bar.close_time)

    def _bar_went_back(self, bar: Bar, last: int) -> None:
        """A closed bar older than one already traded on: the venue's clock went backwards (a
        replayed recording that starts over, a venue fault). Not traded on — a strategy's
        indicators and the ledger's times must not run backwards — but counted, logged, shown
        as not-ready until a newer bar arrives, and told in the exit code: a bot that drops
        every bar is a bot that has stopped trading."""
        metrics.OUT_OF_ORDER_BARS.labels(symbol=bar.symbol).inc()
        self.out_of_order_bars += 1
        first = bar.symbol not in self._bars_back
        self._bars_back.add(bar.symbol)
        if first:
            log.error(
                "bar older than the last one: not trading on it",
                symbol=bar.symbol,
                open_time=bar.open_time,
                last_open_time=last,
                back_s=round((last - bar.open_time) / 1e9, 3),
            )
            problem = f"{bar.symbol}: the market data went back in time (bars not traded on)"
            if problem not in self.problems:
                self.problem(problem)

    def on_trade(self, tick: TradeTick, recv_ns: int) -> None:
        price = Decimal(repr(tick.price))
        self.last_prices[tick.symbol] = price
        if self.paper is not None:
            try:
                self.paper.on_trade(tick.symbol, price, Decimal(repr(tick.qty)))
            except Exception as exc:
                self._failed("paper trade", exc)
        self._tick_hooks("on_trade", tick.symbol, tick)

    def on_book(self, book: BookTop, recv_ns: int) -> None:
        self._booked.add(book.symbol)
        if self.paper is not None:
            self.paper.on_quote(book.symbol, Decimal(repr(book.bid)), Decimal(repr(book.ask)))
        self._tick_hooks("on_book", book.symbol, book)

    def _tick_hooks(self, hook: str, symbol: str, event: TradeTick | BookTop) -> None:
        """Trades and book tops reach strategies once the warm-up is over (bars carry no
        trades: a backtest on bars never calls these hooks)."""
        if not self.warming:
            self.host.on_tick(hook, symbol, event)

    async def _on_feed_reconnect(self) -> None:
        """Bars missed while disconnected come over REST; orders are reconciled.

        Which REST bars are closed is decided by the market's clock, and that clock is as old
        as the outage until a fresh frame arrives — which happens only after this returns. So
        bars from the stream are held back (as during the warm-up) while a task waits for a
        fresh frame, applies the missed bars from REST, then the held ones, in order."""
        log.info("market feed reconnected: recovering orders and missed bars")
        await self.manager.recover()
        if self._early_bars is None:
            self._early_bars = []
            self._spawn(self._catch_up(self.market_clock.mark()), "catch-up")

    async def _catch_up(self, mark: Mapping[str, int]) -> None:
        try:
            if not await self.market_clock.wait_observed(self.symbols, 30.0, since=mark):
                log.warning("no fresh market frame after reconnecting; fetching bars anyway")
            for sym in self.symbols:
                for bar in await self._closed_bars(sym, 100):
                    self._on_closed_bar(bar, bar.close_time, time.time_ns(), overlap=True)
        except Exception as exc:
            self._failed("fetching missed bars", exc)
        finally:
            early, self._early_bars = self._early_bars or [], None
            for bar, event_ns, recv_ns in early:
                try:
                    self._on_closed_bar(bar, event_ns, recv_ns, overlap=True)
                except Exception as exc:
                    self._failed("bar", exc)

    async def _closed_bars(self, symbol: str, limit: int) -> list[Bar]:
        """The newest closed bars over REST. Binance's newest row is the bar still forming
        (the current bar always exists, traded or not): it is never taken. The rows before it
        are closed by the market's clock too (a replay's server clock is years past its bars,
        so the clock alone would take a forming bar, half built, for closed)."""
        rows = await self._rest(
            "/fapi/v1/klines" if self.perp else "/api/v3/klines",
            {"symbol": symbol, "interval": self.o.interval, "limit": min(limit + 1, 1000)},
        )
        return [bar_from_rest(symbol, row) for row in self.market_clock.closed(symbol, rows[:-1])]

    # --- signals (the strategies' decisions, see `LiveContext`) --------------------------------

    def signal_id(self, strategy: str, symbol: str) -> str | None:
        """A new signal's id, or None when the bot is not acting on decisions now (warm-up,
        a late bar, stopping): unique per emission; a redelivery carries the same id."""
        if self.warming or not self._acting:
            return None
        self._signal_seq += 1
        bar_time = self._last_bar.get(symbol, 0)
        return f"{self.o.run_id}:{strategy}:{symbol}:{bar_time}:{self._signal_seq}"

    def publish(
        self,
        signal_id: str,
        strategy: str,
        symbol: str,
        kind: str,
        target: Decimal | None = None,
        order: dict[str, str] | None = None,
    ) -> None:
        event_ns, recv_ns = self._event_ts.get(symbol, (0, 0))
        now = time.time_ns()
        sig = Signal(
            signal_id=signal_id,
            strategy=strategy,
            symbol=symbol,
            target_qty="" if target is None else str(target),
            ts_event=event_ns,
            ts_recv=recv_ns or now,
            ts_signal=now,
            meta={"t_model": str(self._t_model.get(symbol, now))},
            kind=kind,
            order=order or {},
        )
        if recv_ns:
            metrics.SIGNAL_LATENCY.labels(strategy=strategy).observe((now - recv_ns) / 1e9)
            metrics.ORDER_LATENCY.labels(stage="event_to_signal").observe((now - recv_ns) / 1e9)
        metrics.SIGNALS.labels(strategy=strategy).inc()
        self.executor.emit(sig)

    def _emit_target(self, strategy: str, symbol: str, target: Decimal) -> None:
        sid = self.signal_id(strategy, symbol)
        if sid is not None:
            self.publish(sid, strategy, symbol, SignalKind.TARGET, target=target)

    @property
    def strategies(self) -> list[Strategy]:
        host: StrategyHost | None = getattr(self, "host", None)
        return host.strategies if host is not None else []

    @property
    def contexts(self) -> dict[str, LiveContext]:
        host: StrategyHost | None = getattr(self, "host", None)
        return host.contexts if host is not None else {}

    @property
    def guards(self) -> dict[str, StrategyGuard]:
        host: StrategyHost | None = getattr(self, "host", None)
        return host.guards if host is not None else {}

    @property
    def orders_sent(self) -> int:
        executor = getattr(self, "executor", None)
        return executor.orders_sent if executor is not None else 0

    @property
    def signals_published(self) -> int:
        executor = getattr(self, "executor", None)
        return executor.signals_published if executor is not None else 0

    @property
    def traces(self) -> Sequence[LatencyTrace]:
        executor = getattr(self, "executor", None)
        return executor.traces if executor is not None else ()

    def position(self, symbol: str, strategy: str) -> Decimal:
        return self.executor.position(symbol, strategy)

    def live_orders(self, strategy: str) -> list[Order]:
        return [o for o in self.manager.live.values() if o.strategy == strategy]

    def cash(self) -> Decimal:
        return self.account.cash()

    def tick_size(self, symbol: str) -> Decimal | None:
        f = self.filters.get(symbol)
        return f.tick_size if f is not None and f.tick_size else None

    def order_types(self, symbol: str) -> frozenset[str]:
        f = self.filters.get(symbol)
        return f.order_types if f is not None else frozenset()

    def tradeable_position(self, symbol: str, strategy: str) -> Decimal:
        qty = self.position(symbol, strategy)
        f = self.filters.get(symbol)
        if not qty or f is None:
            return qty
        tradeable = f.round_qty(abs(qty), market=True)
        price = self.last_prices.get(symbol)
        if price is not None and f.min_notional and tradeable * price < f.min_notional:
            return ZERO
        return tradeable if qty > 0 else -tradeable

    def _account_view(self) -> AccountView:
        positions: dict[str, Decimal] = {}
        for (sym, _), p in self.manager.positions.items():
            positions[sym] = positions.get(sym, ZERO) + p.qty
        open_orders = sum(1 for o in self.manager.live.values() if o.status.is_open)
        perp = None
        if self.perp_risk is not None:
            perp = self.perp_risk.snapshot(self.last_prices, self.symbols)
        return AccountView(positions, dict(self.last_prices), open_orders, perp=perp)

    # --- order events (the manager's observer) --------------------------------------------------

    def on_event(self, order: Order, event: OrderEvent, live_orders: int) -> None:
        self.observer.on_event(order, event, live_orders)
        self.hub.publish("order", order_data(order))
        if event.kind is OrderEventKind.FILLED and event.fill is not None:
            self.hub.publish("fill", fill_data(order, event.fill))
            self.account.apply_fill(event.fill)
            self.host.on_fill(order, event.fill)
        if order.status.is_terminal:
            self.manager.live.pop(order.client_order_id, None)
        if event.kind in _ORDER_HOOK_EVENTS:
            self.host.on_order(order)

    def _on_denied(self, order: Order, reason: str) -> None:
        """An order a check refused before it was sent: the strategy hears it as a rejection."""
        self.hub.publish("order", order_data(order))
        self.host.on_order(order)

    def _on_liquidated(self, order: Order) -> None:
        """The exchange closed a position itself (liquidation, ADL, settlement; the manager
        booked its order with reason liquidation): an error, ``tessera_liquidations_total``,
        and trading halts, persisted as every halt, until a person resets it."""
        reason = f"liquidated on the exchange: {order.symbol} order {order.client_order_id}"
        log.error("liquidated on the exchange", symbol=order.symbol, cid=order.client_order_id,
                  qty=str(order.filled_qty or order.qty), strategy=order.strategy)  # fmt: skip
        metrics.LIQUIDATIONS.labels(symbol=order.symbol).inc()
        ts = time.time_ns()
        self.halt.seen = float(ts)  # this process's own halt: the watch does not act twice
        actions = self.risk.manual_halt(reason, ts)
        self.store.save_halt(ACCOUNT, reason, ts, self.risk.drawdown_pct, self.risk.equity_peak)
        self.store.record_risk_event("halt", "liquidation", detail=reason)
        self.hub.publish("halt", {"reason": reason, "ts": ts})
        self._spawn(self.halt.carry_out(actions), "liquidation-halt")

    def _on_report(self, report: Any) -> None:
        try:
            self.manager.on_execution_report(report)
        except Exception as exc:  # recovery applies it once the store answers again
            self._failed("execution report", exc)

    async def _user_data(self) -> None:
        from tessera.execution.userdata import UserDataStream
        from tessera.live.perp_userdata import PerpUserDataStream

        stream = (PerpUserDataStream if self.perp else UserDataStream)(
            self.o.rest_url,
            self.o.ws_url,
            self.o.api_key,
            on_report=self._on_report,
            on_reconnect=self._on_user_data_reconnect if self.perp else self.manager.recover,
        )
        if isinstance(stream, PerpUserDataStream):
            stream.on_perp_account = self._on_perp_account
            # the payments made while no bot listened (down over a funding time)
            self._spawn(self._import_funding(), "funding-import")
            # the account as the venue has it once the stream listens: an ACCOUNT_UPDATE sent
            # before (a fill between start-up and the first connect) reached nobody
            self._spawn(self._seed_perp_risk_when(stream.connected), "perp-risk-seed")
            stream.on_margin_call = lambda e: self._margin_call(
                [p.symbol for p in e.positions], "the venue's MARGIN_CALL"
            )
        try:
            await stream.run()
        finally:
            stream.stop()

    # --- the leverage risk on a perpetual (tessera.risk.leverage) --------------------------------

    def _perp_paper(self) -> Any:
        """Paper on a perpetual: `PerpPaperExchange` margined with the bundled real leverage
        brackets (``/fapi/v1/leverageBracket`` needs keys paper does not have); a traded symbol
        without brackets is refused."""
        from tessera.backtest.perp_inputs import BRACKETS_FILE, PerpInputError, load_brackets
        from tessera.execution.paper import PaperPerpError, PerpPaperExchange

        try:
            brackets = load_brackets()
        except PerpInputError as exc:
            raise LiveRefusedError(str(exc)) from exc
        missing = [s for s in self.symbols if s not in brackets]
        if missing:
            raise LiveRefusedError(
                f"{BRACKETS_FILE} has no leverage brackets for {', '.join(missing)}: paper "
                "cannot margin a position there, so the bot does not start"
            )
        try:
            return PerpPaperExchange(
                self.filters,
                {s: brackets[s] for s in self.symbols},
                self.store,
                initial_balances=self.o.paper_balances,
                fees=self.o.fees,
                on_report=self._on_paper_perp_report,
                leverage=self.o.perp_leverage,
                margin_mode=MarginMode(self.o.perp_margin_mode),
            )
        except PaperPerpError as exc:
            raise LiveRefusedError(str(exc)) from exc
        except ValueError as exc:
            raise LiveRefusedError(f"live.perp_leverage: {exc}") from exc

    def _on_paper_perp_report(self, report: Any) -> None:
        """A paper report; after a fill the leverage risk takes the paper account as it is now
        (paper sends no ACCOUNT_UPDATE)."""
        self._on_report(report)
        if report.fill is not None:
            self._paper_risk_sync()

    def _paper_risk_sync(self) -> None:
        if self.perp_risk is not None and self.paper is not None:
            self.perp_risk.reset(self.paper.wallets(), self.paper.position_list(self.symbols))

    async def _paper_funding(self) -> None:
        """Paper on a perpetual: a second before each funding time the venue's
        ``/fapi/v1/premiumIndex`` (lastFundingRate, markPrice) of every traded symbol, booked
        into the paper account at the funding time. A failure is logged; the paper exchange
        then refuses prints and orders a minute after the time (never skips it)."""
        from tessera.venues.binance_usdm.rest import PREMIUM_INDEX, funding_rate_and_mark

        paper = self.paper
        while not self.stopping.is_set():
            due = paper.next_funding_ns
            wait = (due - 1_000_000_000 - time.time_ns()) / 1e9
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
                continue
            try:
                rates = {}
                for sym in self.symbols:
                    doc = await self._rest(PREMIUM_INDEX, {"symbol": sym}, weight=1)
                    rates[sym] = funding_rate_and_mark(doc)
                await asyncio.sleep(max(due - time.time_ns(), 0) / 1e9)
                paper.settle_funding(due, rates)
                self._paper_risk_sync()
                log.info(
                    "paper funding settled",
                    ts=due,
                    rates={s: str(r) for s, (r, _) in rates.items()},
                )
            except Exception as exc:
                self._failed("paper funding", exc)
                await asyncio.sleep(5)

    def _perp_risk_book(self) -> PerpRiskBook:
        """The perpetual account for the leverage risk; its brackets come from the venue at
        start-up (`_load_brackets`)."""
        steps = {k: f.market_step_size or f.step_size for k, f in self.filters.items()}
        return PerpRiskBook(
            {},
            self.o.perp_leverage,
            MarginMode(self.o.perp_margin_mode),
            {k: v for k, v in steps.items() if v > 0},
        )

    async def _load_brackets(self) -> None:
        """The leverage brackets of every traded symbol from the venue
        (``GET /fapi/v1/leverageBracket``); the bundled real answer
        (``samples/binance-usdm/leverage_brackets.json``) only when the venue does not answer
        that endpoint (logged). A traded symbol without brackets is refused: its margin, and so
        every leverage limit, could not be computed."""
        from tessera.backtest.perp_inputs import BRACKETS_FILE, PerpInputError, load_brackets
        from tessera.execution.exchange import AuthError, ExchangeError, OutcomeUnknownError

        assert self.perp_risk is not None
        endpoint = "GET /fapi/v1/leverageBracket"
        fetch = getattr(self.exchange, "leverage_brackets", None)
        source = f"the venue's {endpoint}"
        brackets: dict[str, LeverageBrackets] | None = None
        error = "the exchange client has no leverage_brackets"
        if fetch is not None:
            try:
                brackets = await fetch()
            except AuthError:
                raise
            except (ExchangeError, OutcomeUnknownError) as exc:
                error = str(exc)[:200]
            except ValueError as exc:
                raise LiveRefusedError(
                    f"{endpoint} answered with leverage brackets the bot cannot read ({exc}); "
                    "without them the leverage risk cannot be computed, so the bot does not start"
                ) from None
        if brackets is None:
            log.warning(
                "the venue did not answer the leverage brackets: using the bundled file",
                endpoint=endpoint,
                error=error,
                file=str(BRACKETS_FILE),
            )
            source = str(BRACKETS_FILE)
            try:
                brackets = load_brackets()
            except PerpInputError as exc:
                raise LiveRefusedError(str(exc)) from exc
        missing = [s for s in self.symbols if s not in brackets]
        if missing:
            raise LiveRefusedError(
                f"{source} has no leverage brackets for {', '.join(missing)}: the bot cannot "
                "compute the margin, liquidation price or leverage limits of a position there, "
                "so it does not start. Trade symbols the venue lists brackets for (remove "
                f"{', '.join(missing)} from the strategies' symbols)."
            )
        self.perp_risk.brackets = dict(brackets)
        log.info("leverage brackets loaded", source=source, symbols=len(brackets))

    def _on_mark(self, symbol: str, price: Decimal, event_ms: int) -> None:
        """The venue's mark price of ``symbol`` (its ``@markPrice@1s`` stream) to the risk
        book: the perpetual risk marks positions there, as Binance liquidates them."""
        if self.perp_risk is not None:
            self.perp_risk.on_mark(symbol, price, event_ms)

    def _on_perp_account(self, update: Any) -> None:
        """An ``ACCOUNT_UPDATE``: wallet and positions to the risk book; a funding payment to
        ``tessera_funding_paid/received_total``, the log and the ledger (``funding_payments``).
        A cross payment while several symbols are held names no symbol: the ledger takes it
        from ``/fapi/v1/income``, which does."""
        from tessera.execution.persistence import FundingRecord
        from tessera.live.perp_risk import CROSS_FUNDING

        if self.perp_risk is None:
            return
        payment = self.perp_risk.on_account_update(update)
        if payment is not None:
            metrics.record_funding(payment.symbol, float(payment.amount))
            log.info(
                "funding booked",
                symbol=payment.symbol,
                amount=str(payment.amount),
                ts_ms=payment.ts_ms,
            )
            if payment.symbol == CROSS_FUNDING:
                self._spawn(self._import_funding(), "funding-import")
                return
            record = FundingRecord(
                payment.symbol,
                payment.ts_ms,
                payment.amount,
                self.perp_risk.margin_asset,
                "user_data",
            )
            try:
                self.store.record_funding(ACCOUNT, record)
            except Exception as exc:  # the next import (reconnect, restart) stores it
                self._failed("funding payment", exc)

    async def _on_user_data_reconnect(self) -> None:
        """Back on the user-data stream: what happened while away reaches the bot only over
        REST. A full reconciliation (orders and fills, then each symbol's position, leverage
        and margin mode, as at start: a position opened or settings changed by hand meanwhile
        halt trading), the account the leverage risk reads (the ACCOUNT_UPDATEs sent while
        away are lost), then the funding payments missed. A reconciliation that cannot run
        (the venue or the store failing) is logged and counted; the order recovery it starts
        with is then retried alone, and the periodic pass reconciles again."""
        try:
            await self._reconcile(first=False)
        except Exception as exc:
            self._failed("reconciliation after a user-data reconnect", exc)
            await self.manager.recover()
        await self._seed_perp_risk()
        await self._import_funding()

    async def _seed_perp_risk_when(self, connected: asyncio.Event) -> None:
        await connected.wait()
        await self._seed_perp_risk()

    async def _seed_perp_risk(self) -> None:
        """The leverage risk's account from the venue's positions and wallets (its REST view):
        the book otherwise follows ACCOUNT_UPDATEs, and one sent while no stream listened would
        leave it trading on a position it does not know. A failure is logged; the next
        ACCOUNT_UPDATE or reconnect corrects the book."""
        if self.perp_risk is None or self.paper is not None:
            return
        perp = self.exchange
        assert isinstance(perp, PerpExchange)
        try:
            positions = await perp.positions(list(self.symbols))
            wallets = await perp.perp_balances()
        except Exception as exc:
            self._failed("leverage risk account", exc)
            return
        self.perp_risk.reset(wallets, positions)

    async def _import_funding(self) -> int:
        """Store the funding payments ``/fapi/v1/income`` lists since the newest stored one
        (each once: the ledger skips what the stream already stored); the new ones also go to
        the funding metrics. Answers how many were new."""
        from tessera.venues.binance_usdm.rest import funding_record

        fetch = getattr(self.exchange, "funding_income", None)
        if fetch is None:
            return 0
        try:
            since = await asyncio.to_thread(self.store.last_funding_ms, ACCOUNT)
            rows = await fetch(since)
            new = 0
            for row in rows:
                record = funding_record(row)
                if self.store.record_funding(ACCOUNT, record):
                    new += 1
                    metrics.record_funding(record.symbol, float(record.amount))
        except (ExchangeError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("funding import failed; the next reconnect retries", error=str(exc)[:300])
            return 0
        except Exception as exc:
            self._failed("funding import", exc)
            return 0
        log.info("funding imported", since_ms=since, rows=len(rows), new=new)
        return new

    async def _refuse_hedge_mode(self) -> None:
        """One-way mode only: a hedge-mode account (the venue's positionSide/dual) is refused
        before anything is reconciled or traded (the reconciliation would halt on it too)."""
        perp = self.exchange
        assert isinstance(perp, PerpExchange)
        if await perp.hedge_mode():
            raise LiveRefusedError(
                f"the {self.o.exchange_id} account is in hedge mode (GET /fapi/v1/positionSide/"
                "dual says dualSidePosition true); Tessera trades one-way mode only, one "
                "position per symbol: switch the account to one-way mode (Binance refuses the "
                "switch while a position or an order is open) and start again"
            )

    def _margin_call(self, symbols: list[str], what: str) -> None:
        """A margin call on ``symbols`` (``what``: the venue's event or the ratio alert):
        logged as an error, counted, /readyz false for the rest of the run, and acted on as
        ``risk.on_margin_call`` says (halt, flatten: through `HaltGuard.halt_now`; log)."""
        act = self.risk.config.on_margin_call
        log.error("margin call", symbols=symbols, source=what, action=act)
        for sym in symbols:
            metrics.MARGIN_CALLS.labels(symbol=sym).inc()
            if sym not in self.margin_called:
                self.margin_called.append(sym)
        if act == "log":
            return
        reason = f"margin call: {', '.join(symbols)} ({what})"
        try:
            actions = self.halt.halt_now(reason, flatten=True if act == "flatten" else None)
        except Exception as exc:  # the store: the order path refuses anyway
            self._failed("margin call halt", exc)
            return
        if actions:
            self._spawn(self.halt.carry_out(actions), "margin-call-halt")

    def _start_perp_mark(self, ts: int) -> None:
        """Mark the perpetual account at a closed bar, unless the last mark is still acting."""
        task = self._perp_mark_task
        if self.stopping.is_set() or (task is not None and not task.done()):
            return
        self._perp_mark_task = asyncio.create_task(self._mark_perp(ts), name="perp-mark")

    async def _mark_perp(self, ts: int) -> None:
        """`RiskEngine.mark_perp` at the venue's marks (the last prices until they arrive): the
        drawdown at the mark (kill-switch actions to the halt guard), the gauges
        (`publish_perp`), margin-ratio alerts logged, and the monitor's cuts sent as reduce-only
        market orders (reason ``liq_distance``)."""
        try:
            assert self.perp_risk is not None
            snap = self.perp_risk.snapshot(self.last_prices, self.symbols)
            actions, leverage = self.risk.mark_perp(snap, ts)
            publish_perp(snap)
            alerted = {s for a in leverage if isinstance(a, MarginRatioAlert) for s in a.symbols}
            crossed, self._past_ratio_alert = alerted - self._past_ratio_alert, alerted
            if crossed:
                self._margin_call(sorted(crossed), "margin ratio past risk.margin_ratio_alert")
            for action in leverage:
                if isinstance(action, MarginRatioAlert):
                    self.margin_ratio_alerts += 1
                    log.warning(
                        "margin ratio alert",
                        symbols=list(action.symbols),
                        margin_ratio=str(action.margin_ratio),
                        threshold=str(action.threshold),
                        mode=action.mode.value,
                    )
                else:
                    await self._cut(action)
            if actions:
                await self.halt.on_actions(actions)
        except Exception as exc:
            self._failed("perpetual mark", exc)

    async def _cut(self, action: ReduceOrder) -> None:
        """A position too close to liquidation: reduce-only market orders from the strategies
        holding it (in id order), unless a cut of the symbol is still open."""
        async with self.executor.lock:
            if any(
                o.symbol == action.symbol and o.reason is ExitReason.LIQ_DISTANCE
                for o in self.manager.live.values()
                if o.status.is_open
            ):
                return
            left = action.qty
            holders = sorted(
                (strat, p.qty)
                for (sym, strat), p in self.manager.positions.items()
                if sym == action.symbol and p.qty
            )
            log.warning(
                "position too close to liquidation: cutting",
                symbol=action.symbol,
                qty=str(action.qty),
                distance_pct=str(action.distance_pct),
            )
            for strategy, qty in holders:
                if left <= 0:
                    break
                if (qty > 0) == (action.side.sign > 0):
                    continue  # on the side the cut adds to
                cut = min(left, abs(qty))
                order = Order(
                    client_order_id=self.ids.next(),
                    symbol=action.symbol,
                    side=action.side,
                    type=OrderType.MARKET,
                    qty=cut,
                    strategy=strategy,
                    signal_id=f"liq:{strategy}:{action.symbol}:{time.time_ns()}",
                    reason=ExitReason.LIQ_DISTANCE,
                    reduce_only=True,
                )
                placed = await self.gateway.submit(order)
                if placed.status is OrderStatus.REJECTED:
                    log.error("cut failed", symbol=action.symbol, strategy=strategy)
                    continue
                left -= cut
                self.liq_distance_cuts += 1

    # --- marks, drawdown and the kill-switch ----------------------------------------------------

    def equity(self) -> Decimal:
        return self.account.equity(self.last_prices)

    def _perp_equity(self) -> Decimal:
        """A perpetual account's equity at the venue's marks (`AccountMarks`' drawdown)."""
        assert self.perp_risk is not None
        return self.perp_risk.snapshot(self.last_prices, self.symbols).equity

    async def mark(self) -> None:
        """Equity to the risk engine (kill-switch), PnL and exposure to the gauges."""
        await self.marks.mark()

    async def _resolve_unknown(self) -> None:
        """Orders whose outcome is unknown (the answer was lost, a 5xx) are looked up by client
        order id once the exchange's recvWindow has passed: a request older than that can no
        longer be accepted, so "not found" is then final and the order is closed."""
        told: set[str] = set()
        while True:
            await asyncio.sleep(1.0)
            now = time.time_ns()
            cutoff = now - self.unknown_after_ns
            old = [
                o
                for o in list(self.manager.live.values())
                if o.status is OrderStatus.SUBMITTED and (o.ts_last or o.ts_created) < cutoff
            ]
            # a submit still awaiting its answer (held back by the rate limiter, or an
            # exchange slow to answer) settles itself: told once, not recovered under it
            told &= self.manager.live.keys()
            for o in old:
                cid = o.client_order_id
                if self.manager.on_its_way(cid) and cid not in told:
                    told.add(cid)
                    log.warning(
                        "order request still unanswered",
                        cid=cid,
                        after_s=round((now - (o.ts_last or o.ts_created)) / 1e9, 1),
                    )
            if any(not self.manager.on_its_way(o.client_order_id) for o in old):
                try:
                    await self.manager.recover()
                except Exception as exc:
                    self._failed("resolving unknown orders", exc)

    async def _db_watch(self) -> None:
        """After a database error: once the store answers again, reconcile (answers that
        could not be written while it was down are applied from the exchange's truth).
        Failed attempts back off (1 s doubling to 30 s): a store that answers reads but not
        writes must not be hammered with reconciliations."""
        pause = 1.0
        while True:
            await asyncio.sleep(pause)
            if not self._db_failed or self.exit_code == EXIT_STORE_FATAL:
                pause = 1.0
                continue
            try:
                await asyncio.to_thread(self.store.load_halt, ACCOUNT)
            except Exception:
                continue
            log.warning("the database answers again: reconciling")
            self._db_failed = False
            try:
                await self._reconcile(first=False)
                pause = 1.0
            except Exception as exc:
                self._failed("reconcile after database outage", exc)
                pause = min(pause * 2, 30.0)

    async def _periodic_reconcile(self) -> None:
        while True:
            await asyncio.sleep(self.o.reconcile_interval_s)
            try:
                await self._reconcile(first=False)
            except Exception as exc:
                log.warning("periodic reconciliation failed", error=str(exc)[:200])

    async def _watch_end_of_data(self, ended: Callable[[], bool]) -> None:
        """A replay that has ended sends nothing more: stop (exit 0, saying why) rather than
        sit idle and ready. The last frames get a moment to arrive first."""
        while not ended():  # noqa: ASYNC110 (a flag of the simulator's thread: no event here)
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)
        log.warning("the market data ended (the replay is over): stopping")
        self.ended_by_data = True
        self._request_stop()

    async def _lock_watch(self) -> None:
        """The trading lock lives in a PostgreSQL session: a server restart ends it. Verify it
        (taking it again if free); if another process holds it now, stop trading."""
        while self.lock is not None:
            await asyncio.sleep(5.0)
            try:
                await asyncio.to_thread(self.lock.verify)
            except TradingLockHeldError as exc:
                self.problem(f"the trading lock was lost to another process: {exc}")
                self._request_stop()
                return
            except Exception as exc:  # the database is down: the order path refuses anyway
                self._failed("trading lock check", exc)

    async def _ingest(self, store_dir: Path) -> None:
        from tessera.data.ingest.service import IngestService
        from tessera.data.store import ParquetStore

        self._ingest_service = IngestService(
            ParquetStore(store_dir),
            self.o.ws_url,
            self.o.rest_url,
            self.symbols,
            kinds=("trade", "kline"),
            intervals=(self.o.interval,),
            shared=True,  # on the feed's connection: one websocket per bot
            # the venue's REST paths and the store's partition of that venue (binance-usdm
            # rows beside what `tessera data import/download` put there, never in spot's)
            venue="binance-usdm" if self.perp else "binance-spot",
        )
        await self._ingest_service.run(attach=self.feed.attach)
