"""Funding payments of perpetuals in the ledger: one row per payment, whoever reports it.

The bot hears of a payment twice — the user-data ACCOUNT_UPDATE (FUNDING_FEE) and, after a
restart, the ``/fapi/v1/income`` import of what it missed — and may hear of it in either order
and more than once; the ledger must hold it once. The payments here are real: Binance's income
row of ccxt's fixture, and the bundled XRPUSDT funding rates (their times and rates as amounts).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from tessera import metrics
from tessera.data.futures_files import (
    SAMPLE_FUNDING,
    funding_rates_from_frames,
    read_funding_rates,
)
from tessera.execution.persistence import (
    MIGRATIONS,
    ExecutionStore,
    FundingRecord,
    LedgerConflictError,
    funding_slot,
    make_engine,
)

# /fapi/v1/income, fetchFundingHistory in samples/ccxt-fixtures/response-binance.json
REAL_INCOME = FundingRecord(
    "BTCUSDT", 1707465600000, Decimal("-0.04618913"), "USDT", "income", "8082457372019390060"
)
RATES = funding_rates_from_frames(read_funding_rates(SAMPLE_FUNDING))[0][:4]
ACCOUNTS = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecutionStore]:
    s = ExecutionStore(f"sqlite:///{tmp_path_factory.mktemp('funding') / 'tessera.db'}")
    yield s
    s.close()


@pytest.fixture
def any_store(database_url: str) -> Iterator[ExecutionStore]:
    s = ExecutionStore(database_url)
    yield s
    s.close()


def test_a_payment_reported_by_the_stream_and_then_by_the_income_import_is_one_row(
    any_store: ExecutionStore,
) -> None:
    stream = FundingRecord(
        REAL_INCOME.symbol, REAL_INCOME.ts_ms + 7, REAL_INCOME.amount, "USDT", "user_data"
    )
    assert any_store.record_funding("main", stream) is True
    assert any_store.record_funding("main", REAL_INCOME) is False
    assert any_store.record_funding("main", stream) is False
    [row] = any_store.funding_payments("main")
    assert row.record.amount == Decimal("-0.04618913")
    assert row.record.source == "user_data"
    assert row.record.ts_ms == REAL_INCOME.ts_ms + 7
    # the income row's tranId is kept with the row the stream made
    assert row.record.venue_id == "8082457372019390060"
    assert any_store.funding_payments("other") == []
    assert any_store.funding_payments("main", symbol="ETHUSDT") == []
    assert any_store.funding_payments("main", since=REAL_INCOME.ts_ms + 8) == []
    assert any_store.last_funding_ms("main") == REAL_INCOME.ts_ms + 7


def test_another_amount_at_the_same_funding_time_is_a_conflict_not_a_duplicate(
    any_store: ExecutionStore,
) -> None:
    any_store.record_funding("main", REAL_INCOME)
    other = FundingRecord(REAL_INCOME.symbol, REAL_INCOME.ts_ms, Decimal("-0.05"), "USDT", "income")
    conflicts = metrics.LEDGER_CONFLICTS.labels(table="funding_payments")
    before = conflicts._value.get()
    with pytest.raises(LedgerConflictError, match="funding_payments"):
        any_store.record_funding("main", other)
    assert [r.record.amount for r in any_store.funding_payments("main")] == [REAL_INCOME.amount]
    assert conflicts._value.get() == before + 1  # counted under its table, not "other"


def test_an_unknown_source_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'websocket'"):
        FundingRecord("XRPUSDT", 0, Decimal(1), "USDT", "websocket")


def test_the_funding_slot_rounds_to_the_minute_so_millisecond_differences_meet() -> None:
    assert funding_slot(1707465600000) == 1707465600000
    assert funding_slot(1707465599990) == funding_slot(1707465600012) == 1707465600000


def _reports() -> list[FundingRecord]:
    """Each bundled funding time reported by the stream and by the income import."""
    out = []
    for i, r in enumerate(RATES):
        ms = r.ts_ns // 1_000_000
        out.append(FundingRecord("XRPUSDT", ms, r.rate, "USDT", "user_data"))
        out.append(FundingRecord("XRPUSDT", ms, r.rate, "USDT", "income", str(1000 + i)))
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(2 * len(RATES))),
    repeats=st.lists(st.integers(0, 2 * len(RATES) - 1), max_size=6),
)
def test_any_order_of_stream_and_income_duplicates_stores_each_payment_once(
    store: ExecutionStore, order: list[int], repeats: list[int]
) -> None:
    account = f"acct-{next(ACCOUNTS)}"
    reports = _reports()
    stored = [store.record_funding(account, reports[i]) for i in [*order, *repeats]]
    assert stored.count(True) == len(RATES)
    rows = store.funding_payments(account)
    assert [(r.record.ts_ms, r.record.amount) for r in rows] == [
        (r.ts_ns // 1_000_000, r.rate) for r in RATES
    ]
    # whichever came first, every row ends with the income row's tranId
    assert [r.record.venue_id for r in rows] == [str(1000 + i) for i in range(len(RATES))]


def test_0005_adds_the_funding_table_and_downgrades_without_it(database_url: str) -> None:
    ExecutionStore(database_url).close()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            assert "funding_payments" in inspect(conn).get_table_names()
            command.downgrade(cfg, "0004")
            assert "funding_payments" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()
    store = ExecutionStore(database_url)  # upgrades again
    try:
        assert store.record_funding("main", REAL_INCOME) is True
    finally:
        store.close()
