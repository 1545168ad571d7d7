"""`FillTotals`: what the stored fills explain, kept across reconciliation passes, reading only
the fills stored since the last pass — and equal at every pass to summing every fill again, on
SQLite and PostgreSQL, including when a fill becomes visible below an id already read (what
PostgreSQL does when two transactions commit out of the order their ids were handed out)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tessera.execution.filters import SymbolFilters
from tessera.execution.orders import Fill, Liquidity, Order, OrderSide, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.execution.reconcile import FillTotals
from tessera.execution.state import OrderEvent, OrderEventKind, OrderStateMachine
from tessera.sim.exchange_info import recorded_exchange_info
from tessera.venues.binance_spot.instruments import filters_by_symbol

D = Decimal
K = OrderEventKind
SM = OrderStateMachine()
FILTERS = filters_by_symbol(recorded_exchange_info())
SYMBOL = next(iter(FILTERS))


@pytest.fixture
def store(database_url: str) -> Iterator[ExecutionStore]:
    s = ExecutionStore(database_url)
    s.start_run("run-1", "paper", "0.1.0", ["s"])
    yield s
    s.close()


def by_summing_everything(
    fills: Sequence[Fill], filters: Mapping[str, SymbolFilters]
) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """The reference: every fill summed from the start (what a pass did before)."""
    deltas: dict[str, Decimal] = defaultdict(Decimal)
    positions: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        sign = 1 if f.side is OrderSide.BUY else -1
        positions[f.symbol] += sign * f.qty
        flt = filters[f.symbol]
        deltas[flt.base_asset] += sign * f.qty
        deltas[flt.quote_asset] -= sign * f.qty * f.price
        deltas[f.fee_asset] -= f.fee
    return dict(deltas), dict(positions)


class Ledger:
    """Orders and their fills written through the store, numbered in turn."""

    def __init__(self, store: ExecutionStore) -> None:
        self.store = store
        self.n = 0

    def fill(self, side: OrderSide, qty: str, price: str, fee: str = "0.01") -> None:
        self.n += 1
        cid = f"c-{self.n}"
        order = Order(cid, SYMBOL, side, OrderType.MARKET, D(qty), strategy="s")
        assert self.store.record_intent(order, "run-1", self.n)
        SM.apply(order, OrderEvent(K.SUBMITTED, 2))
        fill = Fill(str(1000 + self.n), cid, SYMBOL, side, D(price), D(qty), D(fee), "USDT",
                    Liquidity.TAKER, 3, "s")  # fmt: skip
        event = OrderEvent(K.FILLED, 3, fill=fill)
        SM.apply(order, event)
        assert self.store.record_fill(order, event)


def test_each_pass_reads_only_the_new_fills_and_equals_summing_them_all(
    store: ExecutionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(store)
    totals = FillTotals()
    read: list[int] = []
    fills_after = store.fills_after

    def counting(after_id: int) -> list[tuple[int, Fill]]:
        rows = fills_after(after_id)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(store, "fills_after", counting)
    for n_new in (3, 0, 5, 1):
        for i in range(n_new):
            side = OrderSide.BUY if i % 2 == 0 else OrderSide.SELL
            ledger.fill(side, f"0.00{i + 1}", f"6000{i}.5")
        read.clear()
        count, deltas, positions = totals.explained(store, FILTERS)
        assert read == [n_new]  # one query, the new rows only
        assert count == store.fill_count() == ledger.n
        assert (deltas, positions) == by_summing_everything(store.all_fills(), FILTERS)
    assert totals.recounts == 0


def test_a_fill_visible_below_an_id_already_read_makes_the_totals_sum_everything_again(
    store: ExecutionStore,
) -> None:
    """What PostgreSQL can do to a reader by id: transaction A takes fill id 2, B takes id 3 and
    commits first; a pass reads up to 3; then A commits, below the last id read. Made here with
    the rows themselves: fill 2 is held out of the table while fills 3 and 4 are read, then
    committed again with its id."""
    ledger = Ledger(store)
    for side in (OrderSide.BUY, OrderSide.BUY, OrderSide.SELL):
        ledger.fill(side, "0.002", "60000.5")
    with store.engine.begin() as c:  # fill 2: not yet committed, as far as readers can tell
        row = dict(c.exec_driver_sql("SELECT * FROM fills WHERE id = 2").mappings().one())
        c.exec_driver_sql("DELETE FROM fills WHERE id = 2")
    ledger.fill(OrderSide.SELL, "0.001", "61000")  # id 4
    totals = FillTotals()
    assert totals.read(store, FILTERS) == 3  # ids 1, 3, 4
    assert totals.last_id == 4
    insert = text(
        f"INSERT INTO fills ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"
    )
    with store.engine.begin() as c:  # fill 2 commits now, below the last id read
        c.execute(insert, row)
    count, deltas, positions = totals.explained(store, FILTERS)
    assert totals.recounts == 1
    assert count == store.fill_count() == 4
    assert (deltas, positions) == by_summing_everything(store.all_fills(), FILTERS)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rounds=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
                st.decimals(D("0.00001"), D("5"), places=5),
                st.decimals(D("1000"), D("100000"), places=2),
                st.decimals(D("0"), D("1"), places=8),
            ),
            max_size=4,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_running_totals_equal_the_sum_of_every_fill_after_any_sequence_of_passes(
    tmp_path_factory: pytest.TempPathFactory,
    rounds: list[list[tuple[OrderSide, Decimal, Decimal, Decimal]]],
) -> None:
    path = tmp_path_factory.mktemp("totals") / "t.db"
    store = ExecutionStore(f"sqlite:///{path}")
    try:
        store.start_run("run-1", "paper", "0.1.0", ["s"])
        ledger = Ledger(store)
        totals = FillTotals()
        for fills in rounds:
            for side, qty, price, fee in fills:
                ledger.fill(side, str(qty), str(price), str(fee))
            count, deltas, positions = totals.explained(store, FILTERS)
            assert count == ledger.n
            assert (deltas, positions) == by_summing_everything(store.all_fills(), FILTERS)
    finally:
        store.close()


def hold_out(store: ExecutionStore, fill_id: int) -> dict[str, object]:
    """Take a fill's row out of the table (a transaction that took the id, not committed)."""
    with store.engine.begin() as c:
        row = dict(c.exec_driver_sql(f"SELECT * FROM fills WHERE id = {fill_id}").mappings().one())
        c.exec_driver_sql(f"DELETE FROM fills WHERE id = {fill_id}")
    return row


def commit_late(store: ExecutionStore, row: dict[str, object]) -> None:
    """Put the row back with its id: the transaction commits, below ids already read."""
    names = ", ".join(row)
    insert = text(f"INSERT INTO fills ({names}) VALUES ({', '.join(':' + k for k in row)})")
    with store.engine.begin() as c:
        c.execute(insert, row)


def test_later_reads_count_only_the_fills_above_the_mark_of_two_reads_before(
    store: ExecutionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later pass does not count the whole history (PostgreSQL's count reads every row): the
    first two reads count every fill, later ones the fills above the id the totals had reached
    two reads before, and every `FULL_COUNT_EVERY`-th read all of them again."""
    ledger = Ledger(store)
    totals = FillTotals()
    totals.FULL_COUNT_EVERY = 5
    calls: list[tuple[str, int | None]] = []
    full, after = store.fill_count, store.fill_count_after

    def count_all() -> int:
        calls.append(("all", None))
        return full()

    def count_after(after_id: int) -> int:
        calls.append(("after", after_id))
        return after(after_id)

    monkeypatch.setattr(store, "fill_count", count_all)
    monkeypatch.setattr(store, "fill_count_after", count_after)
    marks: list[int] = []
    per_read: list[list[tuple[str, int | None]]] = []
    for _ in range(6):
        ledger.fill(OrderSide.BUY, "0.001", "60000")
        calls.clear()
        totals.read(store, FILTERS)
        per_read.append(list(calls))
        marks.append(totals.last_id)
        assert (totals.deltas, totals.positions) == by_summing_everything(
            store.all_fills(), FILTERS
        )
    # reads 0-1: every fill; 2-4: above the mark of two reads before; 5 (every 5th): all again
    assert per_read == [
        [("all", None)],
        [("all", None)],
        [("after", marks[0])],
        [("after", marks[1])],
        [("after", marks[2])],
        [("all", None)],
    ]
    assert totals.recounts == 0 and totals.count == 6


def test_a_late_fill_above_the_window_is_caught_by_the_next_read(store: ExecutionStore) -> None:
    ledger = Ledger(store)
    totals = FillTotals()
    ledger.fill(OrderSide.BUY, "0.002", "60000")
    ledger.fill(OrderSide.BUY, "0.002", "60000")
    totals.read(store, FILTERS)  # read 1 (ids 1-2; full count)
    for _ in range(3):
        ledger.fill(OrderSide.SELL, "0.001", "61000")  # ids 3-5
    late = hold_out(store, 4)
    totals.read(store, FILTERS)  # read 2 (ids 3, 5; full count: agrees without 4)
    ledger.fill(OrderSide.SELL, "0.001", "61000")  # id 6
    commit_late(store, late)  # id 4 commits: above read 1's mark (id 2)
    count, deltas, positions = totals.explained(store, FILTERS)  # read 3: windowed
    assert totals.recounts == 1 and count == 6
    assert (deltas, positions) == by_summing_everything(store.all_fills(), FILTERS)


def test_a_fill_late_by_more_than_two_reads_waits_for_the_next_full_count(
    store: ExecutionStore,
) -> None:
    """The window's limit, shown: a transaction open across two passes commits below the
    window; the windowed reads cannot see it, the next full count does."""
    ledger = Ledger(store)
    totals = FillTotals()
    totals.FULL_COUNT_EVERY = 4
    for _ in range(3):
        ledger.fill(OrderSide.BUY, "0.001", "60000")  # ids 1-3
    late = hold_out(store, 2)
    totals.read(store, FILTERS)  # read 0 (full)
    ledger.fill(OrderSide.BUY, "0.001", "60000")
    totals.read(store, FILTERS)  # read 1 (full)
    ledger.fill(OrderSide.BUY, "0.001", "60000")
    totals.read(store, FILTERS)  # read 2: windowed above read 0's mark (id 3)
    commit_late(store, late)  # id 2 commits, below every window from now on
    totals.read(store, FILTERS)  # read 3: windowed, cannot see it
    assert totals.recounts == 0 and totals.count == 4  # one fill short, for now
    count, deltas, positions = totals.explained(store, FILTERS)  # read 4: a full count
    assert totals.recounts == 1 and count == 5
    assert (deltas, positions) == by_summing_everything(store.all_fills(), FILTERS)
