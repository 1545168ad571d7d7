"""Reconciliation: our records against the exchange's, on start and after every reconnect.

1. Orders: `OrderManager.recover` — every possibly-live order looked up by client id; states
   and fills brought up to date; unsent intents closed.
2. Open orders on the exchange that we have no record of: unexplained.
3. Trades on the exchange: those of our orders that we lack are imported (once, by trade id);
   a trade of an order we do not know is unexplained.
4. Balances of the traded assets: the exchange's totals must equal a baseline plus what our
   fills explain (quantities, quote notional, fees in the asset they were charged in). The
   baseline is taken at the first reconciliation (exchange balances minus our fills so far), so
   holdings the bot did not make are allowed; a later difference is a deposit, withdrawal or
   trade we did not make — unexplained.

Anything unexplained **halts trading**: a persisted halt (`tessera risk status` shows it,
`tessera risk reset --by NAME` lifts it after a person looked), a risk event, the
``tessera_trading_state{state="HALTED"}`` metric and an error log naming each problem.

Because a halt needs a person, a problem must be real, not an artefact of timing: the bot keeps
running while reconciliation awaits the exchange (the stream records fills, submits answer), so
whatever was read before an ``await`` is checked again after it before it becomes a problem —
an order or trade is looked up in the store again, and a balance difference is checked again
after importing the trades made meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from tessera import metrics
from tessera.execution.exchange import ExchangeError, ExchangeTrade
from tessera.execution.filters import SymbolFilters
from tessera.execution.manager import OrderManager, RecoveryReport
from tessera.execution.orders import Fill, Order, OrderSide
from tessera.execution.perp_reconcile import PerpExchange, PerpSettings, plan
from tessera.execution.persistence import ExecutionStore
from tessera.logging import get_logger

log = get_logger(__name__)
ZERO = Decimal(0)
BASELINE = "baseline"


@dataclass
class ReconcileReport:
    recovery: RecoveryReport
    fills_imported: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class FillTotals:
    """What the stored fills explain, kept as running totals across reconciliation passes: the
    balance change per asset (spot) and the signed position per symbol (perpetuals).

    A pass used to read every fill ever stored, twice on a perpetual, holding the order path
    while it did: a bot that has run for weeks reads its whole history once a minute. Now a pass
    reads the fills stored since the last one (by row id) and adds them. Row ids are handed out
    when a row is inserted, not when it commits: on PostgreSQL a fill may become visible after
    one with a higher id was read, and would be skipped by "above the last id". So each read
    also counts stored fills and compares with what the totals hold; on a difference they are
    summed again from the first fill (slow, rare, and right). Counting every fill would make
    each pass grow with the history again (PostgreSQL's ``count(*)`` reads them all), so a read
    counts only the fills above the id the totals had reached two reads before — a transaction
    that took an id and has not committed by then has been open for two passes — and every
    ``FULL_COUNT_EVERY``-th read (and the first two) counts them all, which catches a
    transaction open even longer. The caller keeps one per account across passes (as the trade
    cursor), or none (start-up: a fresh one reads everything once)."""

    FULL_COUNT_EVERY = 60  # reads: hourly at the bot's default pass every 60 s

    def __init__(self) -> None:
        self._lock = threading.RLock()  # read on worker threads: one read at a time
        self.last_id = 0
        self.count = 0
        self.deltas: dict[str, Decimal] = defaultdict(Decimal)
        self.positions: dict[str, Decimal] = defaultdict(Decimal)
        self.recounts = 0  # totals summed again from the first fill (out-of-order commits)
        self.reads = 0
        # (last id, count) after each of the last two reads, oldest first
        self._marks: list[tuple[int, int]] = []

    def _add(self, fills: Sequence[tuple[int, Fill]], filters: Mapping[str, SymbolFilters]) -> None:
        for fill_id, f in fills:
            signed = f.qty if f.side is OrderSide.BUY else -f.qty
            self.positions[f.symbol] += signed
            flt = filters.get(f.symbol)
            if flt is not None:
                self.deltas[flt.base_asset] += signed
                self.deltas[flt.quote_asset] -= signed * f.price
                self.deltas[f.fee_asset] -= f.fee
            self.last_id = max(self.last_id, fill_id)
            self.count += 1

    def read(self, store: ExecutionStore, filters: Mapping[str, SymbolFilters]) -> int:
        """Bring the totals up to the store (on a worker thread: it queries); returns how many
        fills they cover."""
        with self._lock:
            self._add(store.fills_after(self.last_id), filters)
            if len(self._marks) < 2 or self.reads % self.FULL_COUNT_EVERY == 0:
                agrees = store.fill_count() == self.count
            else:
                # the fills read since the mark of two reads ago are exactly ours above its id
                since_id, since_count = self._marks[0]
                agrees = store.fill_count_after(since_id) == self.count - since_count
            if not agrees:
                # a fill committed below an id already read (or one stored between the two
                # queries): sum everything again rather than guess which
                self.recounts += 1
                self.last_id = self.count = 0
                self.deltas.clear()
                self.positions.clear()
                self._marks.clear()
                self._add(store.fills_after(0), filters)
            self.reads += 1
            self._marks = [*self._marks, (self.last_id, self.count)][-2:]
            return self.count

    def explained(
        self, store: ExecutionStore, filters: Mapping[str, SymbolFilters]
    ) -> tuple[int, dict[str, Decimal], dict[str, Decimal]]:
        """`read`, then copies of the totals: (fills covered, balance deltas, positions)."""
        with self._lock:
            count = self.read(store, filters)
            return count, dict(self.deltas), dict(self.positions)


# Binance's largest page of ``myTrades`` / ``userTrades``
TRADES_PAGE = 1000


class Reconciler:
    """One reconciliation pass. ``trade_cursor`` (symbol -> the first trade id not yet looked
    at), kept by the caller across passes, makes a periodic pass read only the trades made since
    the last clean one — page by page, however many — instead of the newest thousand each time;
    without one (start-up), the newest thousand are read, as Binance answers without ``fromId``.

    The store's work (looking trades up, reading every fill for the balances) runs on a worker
    thread: a bot's reconciliation must not hold the event loop that reads its market data and
    sends its orders (it held it 0.2-0.8 s a pass, growing with the fills, before).
    """

    def __init__(
        self,
        manager: OrderManager,
        filters: Mapping[str, SymbolFilters],
        symbols: Sequence[str],
        account: str = "default",
        trade_cursor: dict[str, int] | None = None,
        fill_totals: FillTotals | None = None,
    ) -> None:
        self.manager = manager
        self.store = manager.store
        self.exchange = manager.exchange
        self.filters = filters
        self.symbols = list(symbols)
        self.account = account
        self.trade_cursor = trade_cursor
        # kept by the caller across passes (see `FillTotals`); a fresh one reads every fill
        self.fill_totals = fill_totals if fill_totals is not None else FillTotals()

    async def run(self) -> ReconcileReport:
        report = ReconcileReport(await self.manager.recover())
        report.fills_imported = report.recovery.fills_imported
        for cid in report.recovery.unresolved:
            report.problems.append(f"order {cid}: its state on the exchange is unknown")
        for symbol in self.symbols:  # per symbol: Binance weighs the all-symbols query 40x
            for eo in await self.exchange.open_orders(symbol):
                # looked up after the await: an order recorded meanwhile is ours
                if await asyncio.to_thread(self.store.get_order, eo.client_order_id) is None:
                    report.problems.append(
                        f"open order {eo.client_order_id} ({symbol}) on the exchange is not ours"
                    )
        report.problems.extend(await self._import_trades(report))
        report.problems.extend(await self._account_problems(report))
        if report.problems:
            self._halt(report.problems)
        else:
            log.info("reconciliation clean", fills_imported=report.fills_imported)
        return report

    async def _account_problems(self, report: ReconcileReport) -> list[str]:
        """Spot: the balances of the traded assets against what our fills explain."""
        balance_problems = await self._balances()
        if balance_problems:
            # fills the exchange made after our trade query are in its balances but not yet in
            # our store: import them and compare once more before calling it unexplained
            self._add_new(report, await self._import_trades(report))
            balance_problems = await self._balances()
        return balance_problems

    @staticmethod
    def _add_new(report: ReconcileReport, problems: list[str]) -> None:
        """The second trade import (after an unexplained account) finds the same foreign trades
        as the first: each problem is told once."""
        report.problems.extend(p for p in problems if p not in report.problems)

    async def _import_trades(self, report: ReconcileReport) -> list[str]:
        """Our trades the store lacks are imported (once); a trade of no order of ours is a
        problem."""
        problems: list[str] = []
        for symbol in self.symbols:
            cursor = self.trade_cursor
            from_id = cursor.get(symbol) if cursor is not None else None
            clean = True
            while True:
                trades = await self.exchange.my_trades(symbol, from_id)
                # looked up after the await: the order's acknowledgement (its exchange id) may
                # have been recorded while the trades were being fetched
                for t, order, recorded in await asyncio.to_thread(self._look_up, symbol, trades):
                    if order is None:
                        clean = False
                        problems.append(
                            f"trade {t.fill.trade_id} ({symbol}) belongs to an order we never sent"
                        )
                    elif not recorded and self.manager.apply_fill(order, t.fill):
                        report.fills_imported += 1
                ids = [int(t.fill.trade_id) for t in trades if t.fill.trade_id.isdigit()]
                if cursor is None or len(ids) != len(trades):
                    break  # no cursor kept (start-up), or trade ids it cannot order by
                if ids and clean:
                    cursor[symbol] = max(ids) + 1  # the next pass starts after these
                if from_id is None or len(trades) < TRADES_PAGE or not clean:
                    break  # the newest page (the first pass), or the last one
                from_id = cursor[symbol]
        return problems

    def _look_up(
        self, symbol: str, trades: Sequence[ExchangeTrade]
    ) -> list[tuple[ExchangeTrade, Order | None, bool]]:
        """Each trade with its order (None: not ours) and whether its fill is stored already
        (on a worker thread; two store queries for the whole page)."""
        orders = self.store.orders_for_exchange_ids(symbol, [t.exchange_order_id for t in trades])
        ours = [(t, orders[t.exchange_order_id]) for t in trades if t.exchange_order_id in orders]
        # Binance lists trades by exchange order id only: the client id is the order's
        recorded = self.store.fills_recorded(
            [dataclasses.replace(t.fill, client_order_id=o.client_order_id) for t, o in ours]
        )
        stored = {t.fill.trade_id: r for (t, _), r in zip(ours, recorded, strict=True)}
        return [
            (t, orders.get(t.exchange_order_id), stored.get(t.fill.trade_id, False)) for t in trades
        ]

    async def _balances(self) -> list[str]:
        assets = sorted(
            {self.filters[s].base_asset for s in self.symbols if s in self.filters}
            | {self.filters[s].quote_asset for s in self.symbols if s in self.filters}
        )
        recorded = await asyncio.to_thread(self.store.fill_count)
        exchange = await self.exchange.balances()
        count, explained = await asyncio.to_thread(self._explained)
        if count != recorded:
            # a fill was recorded while the balances were out: which of them the snapshot
            # includes is unknown, so this comparison would be meaningless; the next
            # reconciliation compares again
            log.warning("balances not compared: fills arrived during the balance query")
            return []
        totals = {
            a: (exchange[a].free + exchange[a].locked) if a in exchange else ZERO for a in assets
        }
        baseline = await asyncio.to_thread(self.store.latest_balances, f"{BASELINE}:{self.account}")
        if not baseline:
            items = {a: (totals[a] - explained.get(a, ZERO), ZERO) for a in assets}
            self.store.snapshot_balances(f"{BASELINE}:{self.account}", items)
            log.info("balance baseline recorded", baseline={a: str(v[0]) for a, v in items.items()})
            return []
        problems = []
        for a in assets:
            expected = baseline.get(a, (ZERO, ZERO))[0] + explained.get(a, ZERO)
            if totals[a] != expected:
                problems.append(
                    f"{a} balance {totals[a]} on the exchange, {expected} expected from our fills "
                    f"(a deposit, withdrawal or trade we did not make?)"
                )
        return problems

    def _explained(self) -> tuple[int, dict[str, Decimal]]:
        """How many fills are stored, and the balance changes they explain (worker thread)."""
        count, deltas, _ = self.fill_totals.explained(self.store, self.filters)
        return count, deltas

    def _halt(self, problems: list[str]) -> None:
        reason = "reconciliation: " + "; ".join(problems[:5])
        if len(problems) > 5:
            reason += f"; and {len(problems) - 5} more"
        for p in problems:
            log.error("reconciliation mismatch", problem=p)
        self.store.save_halt(self.account, reason, time.time_ns(), 0.0, ZERO)
        self.store.record_risk_event("halt", "reconciliation", detail=reason[:2000])
        metrics.set_trading_state("HALTED")
        metrics.KILL_SWITCH_ENGAGED.set(1)


class PerpReconciler(Reconciler):
    """Reconciliation of a USDⓈ-M account: orders and trades as on spot; instead of spot's
    balance check (a perpetual's wallet moves with realized PnL and funding, which fills'
    quantities do not explain), each traded symbol's position, leverage and margin mode
    (`tessera.execution.perp_reconcile.plan`): a flat symbol gets the configured leverage and
    margin mode, a position our fills do not explain or settings that cannot be changed under
    an open position halt trading, through the same persisted halt as spot. A hedge-mode
    account halts too (one-way mode only).

    ``perp``: the adapter's account calls (`PerpExchange`); default: the order manager's
    exchange (pass the adapter when the manager's exchange is a wrapper of it)."""

    def __init__(
        self,
        manager: OrderManager,
        filters: Mapping[str, SymbolFilters],
        symbols: Sequence[str],
        settings: PerpSettings,
        account: str = "default",
        perp: PerpExchange | None = None,
        trade_cursor: dict[str, int] | None = None,
        fill_totals: FillTotals | None = None,
    ) -> None:
        super().__init__(manager, filters, symbols, account, trade_cursor, fill_totals)
        found = perp if perp is not None else manager.exchange
        if not isinstance(found, PerpExchange):
            raise TypeError(
                f"{type(found).__name__} is not a perpetuals exchange adapter "
                "(positions, leverage and margin mode)"
            )
        self.perp: PerpExchange = found
        self.settings = settings

    def ledger_positions(self) -> dict[str, Decimal]:
        """Signed position per symbol that our recorded fills explain (`FillTotals`)."""
        return self.fill_totals.explained(self.store, self.filters)[2]

    async def _account_problems(self, report: ReconcileReport) -> list[str]:
        if await self.perp.hedge_mode():
            return ["the account is in hedge (dual-side) position mode; Tessera trades one-way"]
        positions = await self.perp.positions(self.symbols)
        ledger = await asyncio.to_thread(self.ledger_positions)  # every fill: off the loop
        found = plan(positions, ledger, self.settings, self.symbols)
        if found.unexplained:
            # fills the exchange made after our trade query move its position but are not yet
            # in our store: import them and compare once more before calling it unexplained
            self._add_new(report, await self._import_trades(report))
            positions = await self.perp.positions(self.symbols)
            ledger = await asyncio.to_thread(self.ledger_positions)
            found = plan(positions, ledger, self.settings, self.symbols)
        problems = list(found.problems)
        for symbol, lev in found.set_leverage.items():
            try:
                await self.perp.set_leverage(symbol, lev)
            except ExchangeError as exc:
                problems.append(f"{symbol}: leverage {lev}x refused by the exchange: {exc}")
            else:
                log.info("leverage set", symbol=symbol, leverage=lev)
        for symbol, mode in found.set_mode.items():
            try:
                await self.perp.set_margin_mode(symbol, mode)
            except ExchangeError as exc:
                problems.append(
                    f"{symbol}: margin mode {mode.value} refused by the exchange: {exc}"
                )
            else:
                log.info("margin mode set", symbol=symbol, mode=mode.value)
        return problems
