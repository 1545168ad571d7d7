"""The event-driven backtest engine.

Per bar, in this order (the same order the live bot sees events in):
1. orders that have arrived are matched against the bar (`execution.matching`);
2. fills are booked (order state machine, portfolio, strategy ``on_fill``);
3. the portfolio is marked at the close; equity feeds the risk engine, whose kill-switch may
   halt trading, cancel everything and flatten — exactly as live;
4. the strategy sees the closed bar (``on_bar``) and may submit orders through the context,
   which runs the risk engine's pre-trade checks and the exchange filters first.

Every order type of `OrderType` is matched by the shared rules of `execution.matching`
(`WorkingOrders`): MARKET, LIMIT (GTC/IOC/FOK), LIMIT_MAKER, STOP_LOSS(_LIMIT),
TAKE_PROFIT(_LIMIT), and OCO lists (``submit_oco``; one leg acting expires the other). Each
state change of a strategy's order reaches its ``on_order`` (after ``on_fill`` for a fill).
Brackets and trailing stops come from `OrderHelpers`, the code the live context runs too.

The account is spot, as live: a short is refused (``no_borrow`` in ``result.denials``), a sell
may take only the base the account holds and has not locked in other open sells (a
reduce-only sell is cut to it), and a buy only the cash it has. Target positions are sized by
`execution.sizing` (a flip closes first) and the kill-switch flattens with reduce-only orders
(reason ``kill_switch``) that pass the risk engine like every other order.

Risk: the engine applies the `RiskConfig` it is given (None: no limits at all), the one the
live bot would run with, and makes what it did impossible to miss: the halt (its bar, the
account it found: `HaltSnapshot`) and every denial feed ``result.risk`` (`RiskSummary`), the
JSON and `risk_summary_lines`. The pre-trade check is given the exact equity, so caps written
as a fraction of equity (``"100%"``) follow a compounding strategy; an order that reduces a
position passes every entry limit, the drawdown halt included (`tessera.risk.engine`).

Orders decided at a bar's close arrive ``latency_ms`` later; with ``fill_at="close"`` market
orders fill at the deciding bar's close instead (the convention of backtesting.py's
``trade_on_close`` and vectorbt's ``from_signals`` on close prices).

Perpetuals: given `PerpInputs` (``perp=``), every symbol is a USDⓈ-M perpetual and the
account is a `PerpAccount` instead of the spot `Portfolio` (the same engine drives both through
the methods they share). Shorts are allowed, orders opening exposure need initial margin
(``insufficient_margin``, ``leverage_above_bracket`` in ``result.denials``), and per bar, after
the fills at the open: the position is liquidated at its liquidation price if the bar's mark
range crosses it (a fill with reason ``liquidation``, the strategy hears ``on_fill``), then the
funding times closing with the bar are settled on the position held, then the strategy sees the
bar. Equity is marked at the mark price. The leverage limits of the `RiskConfig` apply: the
pre-trade check sees the account as a `PerpAccountSnapshot` (``AccountView.perp``), and each
mark goes through `RiskEngine.mark_perp` (drawdown at the mark; the monitor's cuts sent as
reduce-only orders with reason ``liq_distance``; margin-ratio alerts counted). On spot they
cannot bind and the result lists them as not applied (`RiskSummary.not_applied`).

Money is exact: orders, fills, cash and positions are Decimal. The equity curve is float64.
Same inputs and seed give the same result, byte for byte.
"""

from __future__ import annotations

import gc
import heapq
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from tessera import gcpause
from tessera.backtest.data import BarSeries
from tessera.backtest.perp_inputs import PerpInputs, SymbolPerpInputs
from tessera.backtest.results import (
    BacktestResult,
    FillRecord,
    HaltSnapshot,
    PerpStats,
    PerpSummary,
    build_result,
)
from tessera.config.models import BacktestConfig, RiskConfig
from tessera.execution.fees import FeeSchedule
from tessera.execution.filters import SymbolFilters
from tessera.execution.ids import ClientOrderIdGenerator
from tessera.execution.matching import (
    BarView,
    Match,
    MatchEvent,
    SlippageKind,
    SlippageModel,
    WorkingOrders,
)
from tessera.execution.orders import (
    ExitReason,
    Fill,
    Liquidity,
    Order,
    OrderList,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    exit_oco,
)
from tessera.execution.perp.account import PerpAccount
from tessera.execution.perp.funding import FundingRate
from tessera.execution.perp.margin import MarginMode
from tessera.execution.portfolio import Instrument, Portfolio
from tessera.execution.pretrade import pretrade_denial
from tessera.execution.sizing import NO_BORROW, flatten_orders, orders_for_target
from tessera.execution.state import OrderEvent, OrderEventKind, OrderStateMachine
from tessera.risk.engine import AccountView, OrderIntent, RiskAction, RiskEngine, RiskListener
from tessera.risk.leverage import (
    LeverageAction,
    MarginRatioAlert,
    PerpAccountSnapshot,
    ReduceOrder,
)
from tessera.strategies.base import Bar, Strategy
from tessera.strategies.context import OrderHelpers
from tessera.strategies.guard import StrategyError

ZERO = Decimal(0)
MS = 1_000_000
K = OrderEventKind


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


# what `pretrade_denial` is given when the run has no risk engine: it reads the account only to
# pass it to the risk engine, so nothing is built per order
_NO_RISK_ACCOUNT = AccountView(positions={}, last_prices={})


class _SymbolState:
    """One symbol's bars, exposed to the loop as Python lists for one chunk at a time.

    Indexing Python lists is ~5x faster than NumPy scalars; converting in chunks keeps memory
    flat on long histories. ``offset`` maps a global bar index to the chunk.
    """

    def __init__(self, series: BarSeries) -> None:
        self.series = series
        self.symbol = series.symbol
        self.offset = 0
        self.last_close: float | None = None
        self.bar_index = -1
        self.position_f = 0.0  # float shadow of the net position, for the equity curve
        self.perp: SymbolPerpInputs | None = None
        self.last_mark: float | None = None  # perpetuals: the mark at the last close
        self.liq_f: float | None = None  # perpetuals: float shadow of the liquidation price
        self.mark_high: list[float] = []  # perpetuals: the mark per bar (whole series)
        self.mark_low: list[float] = []
        self.mark_close: list[float] = []
        self._dec_of: float | None = None  # the float `last_close_d` converted last
        self._dec = ZERO
        self.load(0, 0)

    def last_close_d(self) -> Decimal | None:
        """The last close as the exact Decimal of its shortest repr, converted once per bar
        however many orders and marks ask for it (identity: a new bar is a new float)."""
        close = self.last_close
        if close is None:
            return None
        if close is not self._dec_of:
            self._dec = _d(close)
            self._dec_of = close
        return self._dec

    def load(self, start: int, stop: int) -> None:
        s = self.series
        self.offset = start
        self.open_time: list[int] = s.open_time[start:stop].tolist()
        self.close_time: list[int] = s.close_time[start:stop].tolist()
        self.open: list[float] = s.open[start:stop].tolist()
        self.high: list[float] = s.high[start:stop].tolist()
        self.low: list[float] = s.low[start:stop].tolist()
        self.close: list[float] = s.close[start:stop].tolist()
        self.volume: list[float] = s.volume[start:stop].tolist()
        self.quote_volume: list[float] = s.quote_volume[start:stop].tolist()
        self.taker_buy: list[float] = s.taker_buy_volume[start:stop].tolist()


CHUNK = 1 << 16
# How often `BacktestEngine.run` calls its ``progress`` callback: about this many times a run.
PROGRESS_CHECKPOINTS = 10

#: ``progress(bars_done, bars_total, equity_so_far)``: the equity curve up to the last bar
#: done (a copy). An optimiser reports a running objective from it and may stop a hopeless
#: run by raising (Optuna's ``TrialPruned``); the exception leaves `run` as raised.
Progress = Callable[[int, int, np.ndarray], None]


class BacktestContext(OrderHelpers):
    """`StrategyContext` of the backtest; one per strategy (positions are attributed)."""

    def __init__(self, engine: BacktestEngine, strategy: str) -> None:
        super().__init__()
        self._engine = engine
        self._strategy = strategy

    @property
    def now(self) -> int:
        return self._engine.now

    def position(self, symbol: str) -> Decimal:
        portfolio = self._engine.portfolio
        # a lookup first: `strategy_position` builds a Position on every call to offer it
        pos = portfolio.by_strategy.get((symbol, self._strategy))
        if pos is None:
            return portfolio.strategy_position(symbol, self._strategy).qty
        return pos.qty

    def equity(self) -> Decimal:
        self._engine.sync_marks()
        return self._engine.portfolio.equity()

    def cash(self) -> Decimal:
        return self._engine.portfolio.cash.get(self._engine.portfolio.quote_asset, ZERO)

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """The leverage of the perpetual ``symbol`` from now on (new exposure posts
        ``notional / leverage``). ValueError above the bracket's maximum for the position's
        notional, or on a spot symbol."""
        account = self._engine.perp_account
        if account is None or symbol not in account.brackets:
            raise ValueError(f"set_leverage({symbol!r}): not a perpetual in this backtest")
        account.set_leverage(symbol, leverage)

    def last_price(self, symbol: str) -> float | None:
        return self._engine.symbols[symbol].last_close

    def tick_size(self, symbol: str) -> Decimal | None:
        f = self._engine.filters.get(symbol)
        return f.tick_size if f is not None and f.tick_size else None

    def order_types(self, symbol: str) -> frozenset[str]:
        f = self._engine.filters.get(symbol)
        return f.order_types if f is not None else frozenset()

    def features(self, symbol: str) -> Mapping[str, float]:
        st = self._engine.symbols[symbol]
        i = st.bar_index
        return {k: float(v[i]) for k, v in st.series.features.items()} if i >= 0 else {}

    def prediction(self, symbol: str) -> float | None:
        st = self._engine.symbols[symbol]
        preds = st.series.predictions
        if preds is None or st.bar_index < 0:
            return None
        return float(preds[st.bar_index])

    def submit_order(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        order_type: OrderType = OrderType.MARKET,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        *,
        reason: ExitReason | None = None,
        reduce_only: bool = False,
    ) -> Order | None:
        return self._engine.submit(
            self._strategy,
            symbol,
            side,
            qty,
            order_type,
            price,
            stop_price,
            time_in_force,
            reason=reason,
            reduce_only=reduce_only,
        )

    def submit_oco(
        self,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        *,
        take_profit: Decimal,
        stop_loss: Decimal,
        stop_limit: Decimal | None = None,
        reason: ExitReason | None = None,
        take_profit_reason: ExitReason | None = None,
        stop_loss_reason: ExitReason | None = None,
    ) -> OrderList | None:
        return self._engine.submit_oco(
            self._strategy,
            symbol,
            side,
            qty,
            take_profit=take_profit,
            stop_loss=stop_loss,
            stop_limit=(
                stop_limit
                if stop_limit is not None
                else self.stop_limit_for(symbol, side, stop_loss)
            ),
            take_profit_reason=take_profit_reason or reason or ExitReason.OCO,
            stop_loss_reason=stop_loss_reason or reason or ExitReason.OCO,
        )

    def cancel_order(self, client_order_id: str) -> None:
        order = self._engine.working.get(client_order_id)
        if order is not None and order.strategy == self._strategy:
            self._engine.cancel(client_order_id)

    def cancel_all(self, symbol: str | None = None) -> None:
        # called from on_fill, the order being filled is no longer working: only the orders
        # still open are cancelled
        for order in self.open_orders(symbol):
            self._engine.cancel(order.client_order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            o
            for o in self._engine.working.orders(symbol)
            if o.strategy == self._strategy and o.status.is_open
        ]

    def target_position(self, symbol: str, qty: Decimal) -> Order | None:
        """Market orders from `execution.sizing`, as live: from the position plus the market
        orders still on their way, a flip closed first (reduce-only, then the open); on spot a
        short refused (``no_borrow``) and a sell capped at the base the account has free; on a
        perpetual a short is a position like a long. Returns the last order sent."""
        engine = self._engine
        held = self.position(symbol) + engine.in_flight(symbol, self._strategy)
        perp = engine.perp_account is not None
        plan = orders_for_target(
            held,
            qty,
            filters=engine.filters.get(symbol),
            can_short=perp,
            sellable=None if perp else engine.sellable(symbol),
        )
        if plan.denied is not None:
            engine.denials.append((engine.now, self._strategy, plan.denied))
        sent: Order | None = None
        for step in plan.orders:
            order = engine.submit(
                self._strategy,
                symbol,
                step.side,
                step.qty,
                OrderType.MARKET,
                None,
                None,
                TimeInForce.GTC,
                reason=ExitReason.SIGNAL,
                reduce_only=step.reduce_only,
            )
            if order is None and step.reduce_only:
                break  # the close was refused: opening the other way would double the risk
            sent = order or sent
        return sent


@dataclass
class BacktestEngine:
    config: BacktestConfig
    risk_config: RiskConfig | None = None
    filters: Mapping[str, SymbolFilters] = field(default_factory=dict)
    max_participation: float = 0.0
    limit_fill: str = "touch"
    risk_listener: RiskListener | None = None
    perp: PerpInputs | None = None  # every symbol a USDⓈ-M perpetual (see the module docstring)

    def __post_init__(self) -> None:
        cfg = self.config
        self.fees = FeeSchedule(cfg.fees.maker_bps, cfg.fees.taker_bps)
        self.slippage = SlippageModel(
            SlippageKind(cfg.slippage.kind), cfg.slippage.bps, cfg.slippage.vol_mult
        )
        self.latency_ns = cfg.latency_ms * MS
        self.state_machine = OrderStateMachine()
        self.now = 0
        self._marks_dirty = False
        self._cash_f = 0.0
        self.perp_account: PerpAccount | None = None

    # --- public ---------------------------------------------------------------------------------

    def run(
        self,
        data: Sequence[BarSeries],
        strategies: Sequence[Strategy],
        *,
        progress: Progress | None = None,
    ) -> BacktestResult:
        """Run ``strategies`` over ``data``. ``progress`` (see `Progress`) is called about
        `PROGRESS_CHECKPOINTS` times, after whole bars only; without it nothing changes.

        The cyclic garbage collector is off while the bars run (it is on again when `run`
        returns or raises, unless the caller had it off): its automatic passes walk every
        order, fill and record the run keeps, again and again as they pile up, for nothing —
        the loop makes no reference cycles. A young-generation pass every `CHUNK` bars still
        frees any cycles a strategy makes, so memory stays bounded."""
        with gcpause.paused():
            return self._run(data, strategies, progress)

    def _run(
        self,
        data: Sequence[BarSeries],
        strategies: Sequence[Strategy],
        progress: Progress | None,
    ) -> BacktestResult:
        cfg = self.config
        self.symbols = {s.symbol: _SymbolState(s) for s in data}
        instruments = []
        for s in data:
            f = self.filters.get(s.symbol)
            base = f.base_asset if f else s.symbol.removesuffix(cfg.quote_currency)
            instruments.append(Instrument(s.symbol, base, cfg.quote_currency))
        self.portfolio: Portfolio | PerpAccount
        if self.perp is not None:
            self.perp_account = self._perp_account(data)
            self.portfolio = self.perp_account
            self._perp_stats = PerpStats()
        else:
            self.perp_account = None
            self.portfolio = Portfolio.with_cash(cfg.quote_currency, cfg.initial_cash, instruments)
        self.risk = (
            RiskEngine(self.risk_config, self.risk_listener)
            if self.risk_config is not None and self.risk_listener is not None
            else RiskEngine(self.risk_config)
            if self.risk_config is not None
            else None
        )
        rc = self.risk_config
        # whether a pre-trade check reads the account's equity: only a cap written as a fraction
        # of it does (`RiskEngine._cap`); quote amounts never
        self._risk_reads_equity = rc is not None and not all(
            isinstance(cap, Decimal)
            for cap in (rc.max_order_notional, rc.max_position_notional, rc.max_gross_exposure)
        )
        self.working = WorkingOrders()
        self.orders: list[Order] = []
        self.fill_records: list[FillRecord] = []
        self.denials: list[tuple[int, str, str]] = []
        self.halted_at: int | None = None
        self.halt: HaltSnapshot | None = None
        self._ids = ClientOrderIdGenerator("backtest")
        self._trade_seq = 0
        self._strategies = {st.strategy_id: st for st in strategies}
        if len(self._strategies) != len(strategies):
            raise ValueError("two strategies share an id; give each a distinct strategy_id")
        self._contexts = {sid: BacktestContext(self, sid) for sid in self._strategies}
        self._by_order: dict[str, Strategy] = {}

        n_steps = sum(len(x) for x in data)
        # array.array: 8 bytes per value instead of a Python object per bar
        times: array[int] = array("q")
        equity: array[float] = array("d")
        exposure: array[float] = array("d")
        self._cash_f = float(cfg.initial_cash)
        for st in strategies:
            try:
                st.on_start(self._contexts[st.strategy_id])
            except Exception as exc:
                raise StrategyError(st.strategy_id, "on_start", None, exc) from exc
        if len(data) == 1:
            self._run_single(self.symbols[data[0].symbol], times, equity, exposure, progress)
        else:
            for state in self.symbols.values():
                state.load(0, len(state.series))
            timeline = self._timeline(data)
            every = -(-len(timeline) // PROGRESS_CHECKPOINTS) if progress is not None else 0
            for step, (close_time, events) in enumerate(timeline, 1):
                if step % CHUNK == 0:
                    gc.collect(1)  # see `run`: the collector is off, cycles are freed here
                self.now = close_time
                for sym, i in events:
                    self._process_bar(self.symbols[sym], i)
                    if self.perp_account is not None:
                        self._perp_bar(self.symbols[sym], i)
                for sym, i in events:
                    self._strategy_bar(self.symbols[sym], i)
                eq, expo = self._mark_and_risk()
                times.append(close_time)
                equity.append(eq)
                exposure.append(expo)
                if every and (step % every == 0 or step == len(timeline)):
                    assert progress is not None
                    progress(step, len(timeline), np.array(equity, dtype=np.float64))
        for st in strategies:
            try:
                st.on_stop(self._contexts[st.strategy_id])
            except Exception as exc:
                raise StrategyError(st.strategy_id, "on_stop", None, exc) from exc
        self.sync_marks()
        assert len(times) <= n_steps
        return build_result(
            config=cfg,
            # views of the arrays the loop filled, not copies (24 bytes a bar less at the peak:
            # the loop appends nothing more to them)
            times=np.frombuffer(times, dtype=np.int64),
            equity=np.frombuffer(equity, dtype=np.float64),
            exposure=np.frombuffer(exposure, dtype=np.float64),
            fills=self.fill_records,
            orders=self.orders,
            portfolio=self.portfolio,
            denials=self.denials,
            halted_at=self.halted_at,
            risk_config=self.risk_config,
            halt=self.halt,
            perp=self._perp_summary() if self.perp_account is not None else None,
        )

    # --- the loop -------------------------------------------------------------------------------

    @staticmethod
    def _timeline(data: Sequence[BarSeries]) -> list[tuple[int, list[tuple[str, int]]]]:
        """Bars grouped by close time, symbols in a fixed order (determinism)."""
        if len(data) == 1:
            s = data[0]
            return [(int(t), [(s.symbol, i)]) for i, t in enumerate(s.close_time.tolist())]
        heap = [(int(s.close_time[0]), k, 0) for k, s in enumerate(data) if len(s)]
        heapq.heapify(heap)
        out: list[tuple[int, list[tuple[str, int]]]] = []
        while heap:
            t, k, i = heapq.heappop(heap)
            if out and out[-1][0] == t:
                out[-1][1].append((data[k].symbol, i))
            else:
                out.append((t, [(data[k].symbol, i)]))
            if i + 1 < len(data[k]):
                heapq.heappush(heap, (int(data[k].close_time[i + 1]), k, i + 1))
        return out

    def _run_single(
        self,
        st: _SymbolState,
        times: array[int],
        equity: array[float],
        exposure: array[float],
        progress: Progress | None = None,
    ) -> None:
        """One symbol: no timeline merge, the fewest operations per bar. With ``progress`` the
        bars are converted in smaller chunks (each ends at a checkpoint); the loop is the same."""
        strategies = [x for x in self._strategies.values() if st.symbol in x.symbols]
        contexts = [self._contexts[x.strategy_id] for x in strategies]
        pairs = list(zip(strategies, contexts, strict=True))
        symbol = st.symbol
        perp = self.perp_account is not None
        funding_due = st.perp.funding.due if st.perp is not None else {}
        mark_close, mark_low, mark_high = st.mark_close, st.mark_low, st.mark_high
        # a cross wallet's liquidation price moves with the other positions' marks: with more
        # than one, every held bar goes through `_perp_bar` (which resyncs); else only a bar
        # whose mark range reaches the liquidation price or that closes at a funding time
        acct = self.perp_account
        cross = acct if acct is not None and acct.mode is MarginMode.CROSS else None
        append_t, append_e, append_x = times.append, equity.append, exposure.append
        # the working orders' dict itself: a bar without orders costs one truth test of it
        # instead of a call to `WorkingOrders.__bool__`
        working = self.working._entries
        # spot: the drawdown of each held bar goes straight to the risk engine; the engine's
        # part (`_risk_acted`) runs only when the risk engine returns actions
        spot_risk = self.risk.update_equity if self.risk is not None and not perp else None
        n = len(st.series)
        chunk = CHUNK if progress is None else max(1, min(CHUNK, -(-n // PROGRESS_CHECKPOINTS)))
        for start in range(0, n, chunk):
            if progress is not None and start:
                progress(start, n, np.array(equity, dtype=np.float64))
            if start:
                gc.collect(1)  # see `run`: the collector is off, cycles are freed here
            st.load(start, min(start + chunk, n))
            close_l, ct_l = st.close, st.close_time
            ot_l, op_l, hi_l, lo_l, vol_l = st.open_time, st.open, st.high, st.low, st.volume
            qv_l, tb_l = st.quote_volume, st.taker_buy
            for j in range(len(close_l)):
                t = ct_l[j]
                self.now = t
                st.bar_index = start + j
                if working:
                    self._match_working(st, start + j)
                close = close_l[j]
                st.last_close = close
                self._marks_dirty = True
                if perp:  # liquidation and funding only matter when held or due
                    i = start + j
                    held = st.position_f
                    liq = st.liq_f
                    if i in funding_due or (
                        held
                        and (
                            (cross is not None and len(cross.positions) > 1)
                            or (
                                liq is not None
                                and (mark_low[i] <= liq if held > 0 else mark_high[i] >= liq)
                            )
                        )
                    ):
                        self._perp_bar(st, i)
                    else:
                        st.last_mark = mark_close[i]
                bar = Bar(
                    symbol, ot_l[j], t, op_l[j], hi_l[j], lo_l[j], close, vol_l[j], qv_l[j], tb_l[j]
                )
                for strat, ctx in pairs:
                    try:
                        if ctx._trails:  # the SDK's per-bar work: trailing stops to move
                            ctx._sdk_on_bar(bar)
                        strat.on_bar(bar, ctx)
                    except Exception as exc:  # user code: name it, the hook and the bar
                        raise StrategyError(strat.strategy_id, "on_bar", bar, exc) from exc
                pos = st.position_f
                if perp:  # marked at the mark price
                    if pos:
                        mark = st.last_mark
                        assert mark is not None
                        eq = self._cash_f + pos * mark
                        expo = abs(pos) * mark
                        stats = self._perp_stats
                        if eq > 0 and expo > stats.peak_leverage * eq:
                            stats.peak_leverage = expo / eq
                        liq = st.liq_f
                        if liq is not None:
                            dist = abs(mark - liq) / mark
                            if stats.min_liq_distance is None or dist < stats.min_liq_distance:
                                stats.min_liq_distance = dist
                                stats.min_liq_distance_at = t
                                stats.min_liq_distance_symbol = symbol
                        if self.risk is not None:
                            self._risk_update(eq)
                    else:
                        eq, expo = self._cash_f, 0.0
                    append_x(expo)
                elif pos:
                    eq = self._cash_f + pos * close
                    append_x(abs(pos) * close)
                    if spot_risk is not None:
                        actions = spot_risk(eq, t)
                        if actions:
                            self._risk_acted(actions, None, eq)
                else:
                    eq = self._cash_f
                    append_x(0.0)
                append_t(t)
                append_e(eq)
        if progress is not None and n:
            progress(n, n, np.array(equity, dtype=np.float64))

    def _match_working(self, st: _SymbolState, i: int) -> None:
        j = i - st.offset
        view = BarView(st.open[j], st.high[j], st.low[j], st.close[j], st.volume[j])
        open_time = st.open_time[j]
        events = self.working.match_bar(
            st.symbol,
            view,
            open_time,
            slippage=self.slippage,
            max_participation=self.max_participation,
            limit_fill=self.limit_fill,
        )
        for event in events:
            self._apply_event(event, open_time)

    def _process_bar(self, st: _SymbolState, i: int) -> None:
        st.bar_index = i
        if self.working:
            self._match_working(st, i)
        st.last_close = st.close[i - st.offset]
        self._marks_dirty = True

    def _strategy_bar(self, st: _SymbolState, i: int) -> None:
        j = i - st.offset
        bar = Bar(
            st.symbol,
            st.open_time[j],
            st.close_time[j],
            st.open[j],
            st.high[j],
            st.low[j],
            st.close[j],
            st.volume[j],
            st.quote_volume[j],
            st.taker_buy[j],
        )
        for strat in self._strategies.values():
            if st.symbol in strat.symbols:
                ctx = self._contexts[strat.strategy_id]
                try:
                    if ctx._trails:  # the SDK's per-bar work: trailing stops to move
                        ctx._sdk_on_bar(bar)
                    strat.on_bar(bar, ctx)
                except Exception as exc:  # user code: name it, the hook and the bar
                    raise StrategyError(strat.strategy_id, "on_bar", bar, exc) from exc

    def sync_marks(self) -> None:
        """Push the latest closes (perpetuals: marks) into the exact account (only when
        someone needs it)."""
        if self._marks_dirty:
            if self.perp_account is not None:
                for sym, st in self.symbols.items():
                    if st.last_mark is not None:
                        self.portfolio.mark(sym, _d(st.last_mark))
            else:
                for sym, st in self.symbols.items():
                    close = st.last_close_d()
                    if close is not None:
                        self.portfolio.mark(sym, close)
            self._marks_dirty = False

    def _risk_update(self, equity: float) -> None:
        """Mark-to-market into the risk engine; a perpetual account goes through
        `RiskEngine.mark_perp` (the drawdown on the exact equity at the mark, and the leverage
        monitor, whose cuts are sent here and whose alerts are counted)."""
        assert self.risk is not None
        leverage_actions: list[LeverageAction] = []
        equity_d: Decimal | None = None
        if self.perp_account is not None and self._monitor_may_act():
            snapshot = self._perp_snapshot()
            actions, leverage_actions = self.risk.mark_perp(snapshot, self.now)
            equity_d = snapshot.equity
        elif self.perp_account is not None:
            # what mark_perp would do when its monitor cannot act: the drawdown on the exact
            # equity at the mark, without building the snapshot (a few times faster per bar)
            self.sync_marks()
            equity_d = self.perp_account.equity()
            actions = self.risk.update_equity(equity_d, self.now)
        else:
            actions = self.risk.update_equity(equity, self.now)
        if actions:
            self._risk_acted(actions, equity_d, equity)
        if leverage_actions:
            self._leverage_actions(leverage_actions)

    def _risk_acted(
        self, actions: Sequence[RiskAction], equity_d: Decimal | None, equity: float
    ) -> None:
        """Carry out what `RiskEngine.update_equity` returned at this mark: the halt snapshot
        (the exact equity ``equity_d``; spot: None, made from the float ``equity`` only now,
        not on every bar), the cancel-all and the flatten."""
        assert self.risk is not None
        if equity_d is None:  # spot: exact only when a halt needs it, not on every bar
            equity_d = _d(equity)
        if self.halted_at is None and self.risk.halt is not None:
            # the account as the halt found it, for the result's frozen-position return
            quote = self.portfolio.quote_asset
            self.halted_at = self.now
            self.halt = HaltSnapshot(
                ts=self.now,
                reason=self.risk.halt.reason,
                drawdown_pct=self.risk.halt.drawdown_pct,
                equity=equity_d,
                cash=self._halt_cash(quote),
                positions={s: q for s, q in self.portfolio.net_positions().items() if q},
            )
        if RiskAction.CANCEL_ALL in actions:
            for order in list(self.working):
                self.cancel(order.client_order_id)
        if RiskAction.FLATTEN in actions:
            self._flatten()

    def _monitor_may_act(self) -> bool:
        """Whether the leverage monitor could return anything at this mark: always with
        ``margin_ratio_alert`` set; with ``min_liquidation_distance_pct`` only when a held
        position's float liquidation distance is within a point of the minimum (the exact
        check decides then); never with both off."""
        cfg = self.risk_config
        assert cfg is not None
        if cfg.margin_ratio_alert is not None:
            return True
        minimum = cfg.min_liquidation_distance_pct
        if minimum is None:
            return False
        for st in self.symbols.values():
            mark, liq, pos = st.last_mark, st.liq_f, st.position_f
            if pos and mark and liq is not None:
                distance = (mark - liq) / mark * 100.0 * (1.0 if pos > 0 else -1.0)
                if distance < minimum + 1.0:
                    return True
        return False

    def _perp_snapshot(self) -> PerpAccountSnapshot:
        """The perpetual account at its marks, for the leverage risk (`PerpAccount.snapshot`;
        the lot step of the filters rounds the monitor's cuts)."""
        acct = self.perp_account
        assert acct is not None
        self.sync_marks()
        fallback = {k: _d(v.last_close) for k, v in self.symbols.items() if v.last_close}
        steps = {k: f.market_step_size or f.step_size for k, f in self.filters.items()}
        return acct.snapshot(fallback, {k: v for k, v in steps.items() if v > 0})

    def _leverage_actions(self, actions: Sequence[LeverageAction]) -> None:
        """The leverage monitor's verdicts at a mark: a margin-ratio alert is counted (the
        backtest has nobody to page); a cut (`ReduceOrder`, a position closer to liquidation
        than ``min_liquidation_distance_pct``) goes out as reduce-only market orders with
        reason ``liq_distance`` through `submit`, from the strategies holding the position
        (in id order) — unless a cut of the symbol is still on its way."""
        acct = self.perp_account
        assert acct is not None
        stats = self._perp_stats
        for action in actions:
            if isinstance(action, MarginRatioAlert):
                stats.margin_ratio_alerts += 1
                ratio = float(action.margin_ratio)
                if stats.peak_margin_ratio is None or ratio > stats.peak_margin_ratio:
                    stats.peak_margin_ratio = ratio
                if stats.first_margin_ratio_alert_at is None:
                    stats.first_margin_ratio_alert_at = self.now
                continue
            assert isinstance(action, ReduceOrder)
            if any(
                o.reason is ExitReason.LIQ_DISTANCE and o.status.is_open
                for o in self.working.orders(action.symbol)
            ):
                continue
            left = action.qty
            sent = False
            holders = sorted(acct.strategy_shares(action.symbol))
            for strategy, qty in holders:
                if left <= 0:
                    break
                if (qty > 0) == (action.side is OrderSide.BUY):
                    continue  # on the side the cut adds to
                cut = min(left, abs(qty))
                order = self.submit(
                    strategy,
                    action.symbol,
                    action.side,
                    cut,
                    OrderType.MARKET,
                    None,
                    None,
                    TimeInForce.GTC,
                    reason=ExitReason.LIQ_DISTANCE,
                    reduce_only=True,
                )
                if order is not None:
                    left -= order.qty
                    sent = True
            if sent:
                stats.liq_distance_cuts += 1

    def _halt_cash(self, quote: str) -> Decimal:
        """The cash of the halt snapshot, such that cash + sum(qty x price) is the equity: the
        spot cash, or a perpetual's wallet minus sum(qty x entry)."""
        if self.perp_account is None:
            return self.portfolio.cash.get(quote, ZERO)
        acct = self.perp_account
        return acct.wallet - sum((p.qty * p.entry_price for p in acct.positions.values()), ZERO)

    def _mark_and_risk(self) -> tuple[float, float]:
        eq = self._cash_f
        expo = 0.0
        perp = self.perp_account is not None
        for st in self.symbols.values():
            price = st.last_mark if perp else st.last_close
            if st.position_f and price is not None:
                eq += st.position_f * price
                expo += abs(st.position_f) * price
        if perp and expo:
            self._perp_margin_stats(eq, expo)
        if self.risk is not None and expo:
            self._risk_update(eq)
        return eq, expo

    # --- perpetuals -----------------------------------------------------------------------------

    def _perp_account(self, data: Sequence[BarSeries]) -> PerpAccount:
        assert self.perp is not None
        pcfg = self.config.perp
        missing = [s.symbol for s in data if s.symbol not in self.perp.symbols]
        if missing:
            raise ValueError(f"no perpetual inputs for {', '.join(missing)}")
        for s in data:
            state = self.symbols[s.symbol]
            state.perp = inputs = self.perp.symbols[s.symbol]
            # Python lists: indexing them is several times faster than NumPy scalars
            state.mark_high = inputs.mark_high.tolist()
            state.mark_low = inputs.mark_low.tolist()
            state.mark_close = inputs.mark_close.tolist()
        account = PerpAccount(
            self.config.quote_currency,
            self.config.initial_cash,
            {s.symbol: self.perp.symbols[s.symbol].brackets for s in data},
            self.fees,
            MarginMode.ISOLATED if pcfg.margin_mode == "isolated" else MarginMode.CROSS,
            pcfg.leverage,
            pcfg.liquidation_fee_rate,
        )
        self._funding_marked_at_trade = 0
        return account

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """See `BacktestContext.set_leverage`."""
        if self.perp_account is None:
            raise ValueError(f"set_leverage({symbol!r}): not a perpetual in this backtest")
        self.perp_account.set_leverage(symbol, leverage)

    def _perp_bar(self, st: _SymbolState, i: int) -> None:
        """After the fills at the bar's open: liquidation on the bar's mark range, then the
        funding times that close with the bar, then the mark at the close."""
        acct = self.perp_account
        inputs = st.perp
        assert acct is not None and inputs is not None
        if st.position_f:
            if len(acct.positions) > 1 and acct.mode is MarginMode.CROSS:
                self._perp_resync()  # the others' marks move a cross liquidation price
            liq = st.liq_f
            if liq is not None:
                low = st.mark_low[i]
                high = st.mark_high[i]
                if (st.position_f > 0 and low <= liq) or (st.position_f < 0 and high >= liq):
                    lp = acct.crossed(st.symbol, _d(low), _d(high))
                    if lp is not None:
                        self._liquidate(st, lp, _d(low if st.position_f > 0 else high))
        due = inputs.funding.due.get(i)
        if due:
            close = _d(st.close[i - st.offset])
            for fr in due:
                rate = fr
                if fr.mark_price is None:
                    rate = FundingRate(fr.ts_ns, fr.rate, close)
                if acct.settle_funding({st.symbol: rate}):
                    self._perp_resync()
        st.last_mark = st.mark_close[i]

    def _perp_resync(self) -> None:
        """Float shadows from the exact account: cash as ``wallet - sum(qty x entry)`` (so
        equity = cash + sum(qty x mark)) and each symbol's liquidation price."""
        acct = self.perp_account
        assert acct is not None
        self._cash_f = float(
            acct.wallet - sum((p.qty * p.entry_price for p in acct.positions.values()), ZERO)
        )
        for sym, st in self.symbols.items():
            st.position_f = float(acct.positions[sym].qty) if sym in acct.positions else 0.0
            lp = acct.liquidation_price(sym) if sym in acct.positions else None
            st.liq_f = float(lp) if lp is not None else None

    def _perp_margin_stats(self, equity: float, gross: float) -> None:
        stats = self._perp_stats
        if equity > 0:
            stats.peak_leverage = max(stats.peak_leverage, gross / equity)
        for st in self.symbols.values():
            if st.position_f and st.liq_f is not None and st.last_mark:
                dist = abs(st.last_mark - st.liq_f) / st.last_mark
                if stats.min_liq_distance is None or dist < stats.min_liq_distance:
                    stats.min_liq_distance = dist
                    stats.min_liq_distance_at = self.now
                    stats.min_liq_distance_symbol = st.symbol

    def _liquidate(self, st: _SymbolState, price: Decimal, extreme: Decimal) -> None:
        """The exchange closes the position at ``price``: a reduce-only market order per
        strategy holding it, filled at once with reason ``liquidation``; strategies hear
        ``on_fill`` and ``on_order`` as for any fill."""
        acct = self.perp_account
        assert acct is not None
        shares = acct.strategy_shares(st.symbol)
        ts = st.open_time[st.bar_index - st.offset]
        rec = acct.liquidate(st.symbol, price, ts, extreme)
        total = abs(rec.qty)
        for strategy, qty in shares:
            frac = abs(qty) / total
            side = OrderSide.SELL if qty > 0 else OrderSide.BUY
            order = Order(
                client_order_id=self._ids.next(),
                symbol=st.symbol,
                side=side,
                type=OrderType.MARKET,
                qty=abs(qty),
                price=None,
                stop_price=None,
                time_in_force=TimeInForce.GTC,
                strategy=strategy,
                ts_created=ts,
                reason=ExitReason.LIQUIDATION,
                reduce_only=True,
            )
            self.orders.append(order)
            self.state_machine.apply(order, OrderEvent(K.SUBMITTED, ts))
            self.state_machine.apply(order, OrderEvent(K.ACCEPTED, ts))
            if strategy in self._strategies:
                self._by_order[order.client_order_id] = self._strategies[strategy]
            self._trade_seq += 1
            fill = Fill(
                trade_id=str(self._trade_seq),
                client_order_id=order.client_order_id,
                symbol=st.symbol,
                side=side,
                price=price,
                qty=abs(qty),
                fee=rec.fee * frac,
                fee_asset=acct.quote_asset,
                liquidity=Liquidity.TAKER,
                ts_event=ts,
                strategy=strategy,
            )
            self.state_machine.apply(order, OrderEvent(K.FILLED, ts, fill=fill))
            self.fill_records.append(
                FillRecord(fill, price, rec.realized_pnl * frac, ExitReason.LIQUIDATION)
            )
            self._perp_resync()
            strat = self._by_order.get(order.client_order_id)
            if strat is not None:
                ctx = self._contexts[strat.strategy_id]
                try:
                    ctx._sdk_on_fill(fill)
                    strat.on_fill(fill, ctx)
                except Exception as exc:
                    raise StrategyError(strat.strategy_id, "on_fill", None, exc) from exc
                self._notify(order)
        self._perp_resync()
        # what was resting for the symbol would now open a position nobody asked for
        for o in list(self.working.orders(st.symbol)):
            if o.reduce_only:
                self.cancel(o.client_order_id)

    def _perp_summary(self) -> PerpSummary:
        acct = self.perp_account
        assert acct is not None and self.perp is not None
        return PerpSummary.build(acct, self._perp_stats, self.perp, self.config.perp)

    # --- orders ---------------------------------------------------------------------------------

    def in_flight(self, symbol: str, strategy: str) -> Decimal:
        """Signed quantity of the strategy's market orders on their way (latency): they move
        the position, so sizing counts them, as the live executor does."""
        return sum(
            (
                o.remaining_qty * o.side.sign
                for o in self.working.orders(symbol)
                if o.strategy == strategy and o.type is OrderType.MARKET and o.status.is_open
            ),
            ZERO,
        )

    def sellable(self, symbol: str) -> Decimal:
        """Base the account holds and has not locked in open sells (an OCO locks once), as
        Binance locks a sell's quantity while it rests."""
        if self.perp_account is not None:
            raise RuntimeError("a perpetual has no base balance to sell")
        assert isinstance(self.portfolio, Portfolio)
        locked = ZERO
        lists: set[str] = set()
        for o in self.working.orders(symbol):
            if o.side is OrderSide.SELL and o.status.is_open:
                if o.list_id:
                    if o.list_id in lists:
                        continue
                    lists.add(o.list_id)
                locked += o.remaining_qty
        return max(self.portfolio.base_holdings(symbol) - locked, ZERO)

    def _spot_qty(
        self,
        strategy: str,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        reduce_only: bool,
        market: bool,
    ) -> Decimal | None:
        """``qty`` as the spot account allows it, or None (denial recorded). A sell beyond the
        free base is refused (``no_borrow``: a short needs a borrow); a reduce-only order is
        cut to the strategy's position and, for a sell, to the free base."""
        perp = self.perp_account is not None
        free = self.sellable(symbol) if side is OrderSide.SELL and not perp else None
        if not reduce_only:
            if free is not None and qty > free:
                self.denials.append((self.now, strategy, NO_BORROW))
                return None
            return qty
        pos = self.portfolio.strategy_position(symbol, strategy).qty
        reducible = max(-pos * side.sign, ZERO)  # a sell reduces a long, a buy a short
        if reducible <= 0:
            self.denials.append((self.now, strategy, "reduce_only"))
            return None
        capped = min(qty, reducible)
        if free is not None and capped > free:
            capped = free
            self.denials.append((self.now, strategy, NO_BORROW))  # said, even when cut only
        if capped != qty:
            f = self.filters.get(symbol)
            capped = f.round_qty(capped, market=market) if f is not None else capped
        if capped <= 0:
            return None
        return capped

    def _pretrade(
        self,
        strategy: str,
        symbol: str,
        legs: Sequence[tuple[OrderSide, Decimal, OrderType, Decimal | None, Decimal | None]],
        reduce_only: bool,
    ) -> str | None:
        """The live gateway's pre-trade checks (`pretrade_denial`: risk, then exchange
        filters) for each leg (side, qty, type, price, stop); the denial reason of the first leg
        refused (a risk denial by its reason alone, a filter as ``filter:<name>``), or None."""
        filters = self.filters.get(symbol)
        if self.risk is None and filters is None:
            return None  # what `pretrade_denial` answers with neither, without its arguments
        last = self.symbols[symbol].last_close_d()
        # only the risk engine reads the account: without one, the positions, prices and exact
        # equity are not built for every order (a third of the cost of a submit)
        account = _NO_RISK_ACCOUNT
        if self.risk is not None:
            perp = self.perp_account is not None
            equity: Decimal | None = None
            if perp or self._risk_reads_equity:
                # caps written as "50%" of equity resolve on the exact equity; with every cap
                # a quote amount nothing reads it, and it is not built for every order
                self.sync_marks()
                equity = self.portfolio.equity()
            last_prices: dict[str, Decimal] = {}
            for k, v in self.symbols.items():
                d = v.last_close_d()
                if d is not None:
                    last_prices[k] = d
            account = AccountView(
                positions=self.portfolio.net_positions(),
                last_prices=last_prices,
                open_orders=len(self.working),
                equity=equity,
                # a perpetual meets the leverage limits of the RiskConfig too
                perp=self._perp_snapshot() if perp else None,
            )
        for side, qty, otype, price, stop in legs:
            intent = OrderIntent(symbol, side, qty, otype, price, strategy, reduce_only=reduce_only)
            denial = pretrade_denial(intent, stop, self.risk, account, filters, last, self.now)
            if denial is not None:
                return denial.removeprefix("risk:")
        return None

    def submit(
        self,
        strategy: str,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        order_type: OrderType,
        price: Decimal | None,
        stop_price: Decimal | None,
        tif: TimeInForce,
        *,
        reason: ExitReason | None = None,
        reduce_only: bool = False,
    ) -> Order | None:
        """One order through the spot balance, the risk engine and the filters; None when
        refused (the reason is in ``denials``)."""
        market = order_type in (OrderType.MARKET, OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)
        allowed = self._spot_qty(strategy, symbol, side, qty, reduce_only, market)
        if allowed is None:
            return None
        qty = allowed
        if self.perp_account is not None and not reduce_only:
            st = self.symbols[symbol]
            ref = price or stop_price or (_d(st.last_close) if st.last_close else None)
            if ref is not None:
                why = self.perp_account.order_denial(symbol, qty * side.sign, ref)
                if why is not None:
                    self.denials.append((self.now, strategy, why))
                    return None
        denial = self._pretrade(
            strategy, symbol, [(side, qty, order_type, price, stop_price)], reduce_only
        )
        if denial is not None:
            self.denials.append((self.now, strategy, denial))
            return None
        order = Order(
            client_order_id=self._ids.next(),
            symbol=symbol,
            side=side,
            type=order_type,
            qty=qty,
            price=price,
            stop_price=stop_price,
            time_in_force=tif,
            strategy=strategy,
            ts_created=self.now,
            reason=reason or ExitReason.for_type(order_type),
            reduce_only=reduce_only,
        )
        self._send(order)
        return order

    def submit_oco(
        self,
        strategy: str,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        *,
        take_profit: Decimal,
        stop_loss: Decimal,
        stop_limit: Decimal | None,
        take_profit_reason: ExitReason,
        stop_loss_reason: ExitReason,
    ) -> OrderList | None:
        """An OCO: a LIMIT_MAKER at ``take_profit`` and a STOP_LOSS (STOP_LOSS_LIMIT at
        ``stop_limit``) at ``stop_loss``, both reduce-only exits; each leg is checked by the
        risk engine with its own type and by the filters, and the list goes whole or not."""
        allowed = self._spot_qty(strategy, symbol, side, qty, True, market=False)
        if allowed is None:
            return None
        list_id = self._ids.next()
        orders = exit_oco(
            list_id,
            self._ids.next(),
            self._ids.next(),
            symbol=symbol,
            side=side,
            qty=allowed,
            take_profit=take_profit,
            stop_loss=stop_loss,
            stop_limit=stop_limit,
            take_profit_reason=take_profit_reason,
            stop_loss_reason=stop_loss_reason,
            strategy=strategy,
            ts=self.now,
        )
        denial = self._pretrade(
            strategy,
            symbol,
            [(o.side, o.qty, o.type, o.price, o.stop_price) for o in orders.legs],
            True,
        )
        if denial is not None:
            self.denials.append((self.now, strategy, denial))
            return None
        for leg in orders.legs:
            self._send(leg)
        return orders

    def _send(self, order: Order) -> None:
        self.orders.append(order)
        self.state_machine.transition(order, K.SUBMITTED, self.now)
        if self.risk is not None:
            self.risk.record_sent(self.now)
        if order.strategy in self._strategies:
            self._by_order[order.client_order_id] = self._strategies[order.strategy]
        st = self.symbols[order.symbol]
        if (
            self.config.fill_at == "close"
            and order.type is OrderType.MARKET
            and st.last_close is not None
        ):
            self.state_machine.transition(order, K.ACCEPTED, self.now)
            self._notify(order)
            if order.status.is_open:
                self._fill_at_close(order, st.last_close)
            return
        self.working.add(order, self.now + self.latency_ns + 1)

    def cancel(self, client_order_id: str) -> None:
        """Cancel a working order; both legs of an OCO go together, as on Binance."""
        order = self.working.get(client_order_id)
        if order is None or not order.status.is_open:
            return  # filled (or closed) already: nothing to cancel
        partner = self.working.partner(client_order_id)
        for o in (order, partner):
            if o is not None and o.status.is_open:
                self.working.remove(o.client_order_id)
                self.state_machine.apply(o, OrderEvent(K.CANCEL_REQUESTED, self.now))
                self.state_machine.apply(o, OrderEvent(K.CANCELED, self.now))
                self._notify(o)

    def _flatten(self) -> None:
        """The kill-switch's flatten: reduce-only market orders (reason ``kill_switch``) from
        `execution.sizing`, through the risk engine, which lets reducing orders pass a halt."""
        positions = {key: pos.qty for key, pos in self.portfolio.by_strategy.items() if pos.qty}
        held: dict[str, Decimal] | None = None
        if isinstance(self.portfolio, Portfolio):
            held = {}
            for symbol, inst in self.portfolio.instruments.items():
                held[inst.base_asset] = held.get(inst.base_asset, ZERO) + self.sellable(symbol)
        for step in flatten_orders(positions, self.filters, held, ExitReason.KILL_SWITCH):
            self.submit(
                step.strategy,
                step.symbol,
                step.side,
                step.qty,
                OrderType.MARKET,
                None,
                None,
                TimeInForce.GTC,
                reason=step.reason,
                reduce_only=True,
            )

    def _fill_at_close(self, order: Order, close: float) -> None:
        ref = _d(close)
        px = self.slippage.adjust(order.side, ref, 0.0)
        self._book_fill(order, Match(order.qty, px, Liquidity.TAKER, ref), self.now)

    def _apply_event(self, event: MatchEvent, ts: int) -> None:
        """Apply one matching event through the state machine; callbacks follow each change."""
        order, result = event.order, event.result
        if order.status.is_terminal:  # cancelled by a callback earlier on this bar
            self.working.remove(order.client_order_id)
            return
        if result.reject is not None:  # refused on arrival, as the exchange would
            self.working.remove(order.client_order_id)
            self.state_machine.apply(order, OrderEvent(K.REJECTED, ts, reason=result.reject))
            self._notify(order)
            return
        if order.status is OrderStatus.SUBMITTED:  # arrived: the exchange acknowledges it
            self.state_machine.transition(order, K.ACCEPTED, ts)
            self._notify(order)
            if not order.status.is_open:  # the strategy cancelled it in on_order
                return
        if result.match is not None and not self._book_fill(order, result.match, ts):
            return
        if result.expire and order.status.is_open:
            self.working.remove(order.client_order_id)
            why = "the other leg of its order list acted" if event.expired_by_list else None
            self.state_machine.apply(order, OrderEvent(K.EXPIRED, ts, reason=why))
            self._notify(order)

    def _book_fill(self, order: Order, match: Match, ts: int) -> bool:
        """Book a fill; False when the account cannot pay for it (the order expires)."""
        quote = self.portfolio.quote_asset
        notional = match.qty * match.price
        fee = self.fees.fee(notional, match.liquidity)
        # Spot accounts cannot spend cash they do not have, nor sell base they do not hold
        # (Binance -2010); a perpetual needs the initial margin of what the fill opens.
        why = "insufficient_balance"
        if self.perp_account is not None:
            acct = self.perp_account
            held = acct.positions[order.symbol].qty if order.symbol in acct.positions else ZERO
            delta = match.qty * order.side.sign
            if order.reduce_only:  # only what the position still has (a liquidation took it?)
                short = held == 0 or (held > 0) == (delta > 0) or abs(delta) > abs(held)
                why = "reduce_only"
            else:
                denial = acct.order_denial(order.symbol, delta, match.price)
                short = denial is not None
                why = denial or why
        elif order.side is OrderSide.BUY:
            assert isinstance(self.portfolio, Portfolio)
            short = notional + fee > self.portfolio.cash.get(quote, ZERO)
        else:
            assert isinstance(self.portfolio, Portfolio)
            short = match.qty > self.portfolio.base_holdings(order.symbol)
        if short:
            self.working.remove(order.client_order_id)
            if order.status.is_open:
                self.state_machine.apply(order, OrderEvent(K.EXPIRED, ts, reason="insufficient"))
                self.denials.append((self.now, order.strategy, why))
                self._notify(order)
            return False
        self._trade_seq += 1
        fill = Fill(
            trade_id=str(self._trade_seq),
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            price=match.price,
            qty=match.qty,
            fee=fee,
            fee_asset=quote,
            liquidity=match.liquidity,
            ts_event=ts,
            strategy=order.strategy,
        )
        self.state_machine.fill(order, fill)
        realized = self.portfolio.apply_fill(fill)
        signed = float(fill.qty) * fill.side.sign
        self.symbols[order.symbol].position_f += signed
        # Re-derive the float cash from the exact books: no float drift across many fills.
        if self.perp_account is not None:
            self._perp_resync()
        else:
            self._cash_f = float(self.portfolio.cash.get(quote, ZERO))
        self.fill_records.append(FillRecord(fill, match.reference_price, realized, order.reason))
        strat = self._by_order.get(order.client_order_id)
        if strat is not None:
            ctx = self._contexts[strat.strategy_id]
            try:
                ctx._sdk_on_fill(fill)
                strat.on_fill(fill, ctx)
            except Exception as exc:
                raise StrategyError(strat.strategy_id, "on_fill", None, exc) from exc
            self._notify(order)
        return True

    def _notify(self, order: Order) -> None:
        """``on_order`` of the strategy that sent ``order`` (its helpers hear it first)."""
        strat = self._by_order.get(order.client_order_id)
        if strat is None:
            return
        ctx = self._contexts[strat.strategy_id]
        try:
            ctx._sdk_on_order(order)
            strat.on_order(order, ctx)
        except Exception as exc:
            raise StrategyError(strat.strategy_id, "on_order", None, exc) from exc
