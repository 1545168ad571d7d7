"""Binance USDⓈ-M's own streams and user-data events on the bundled payloads: mark price and
funding, liquidation orders, order updates with futures' fields (reduce-only, position side,
realized PnL, the exchange's own liquidation/ADL/settlement orders), account updates with
signed positions, and the events that are not used."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.execution.orders import Liquidity, OrderSide, OrderStatus, OrderType
from tessera.execution.perp.margin import MarginMode
from tessera.venues.binance.market_data import MalformedMessageError
from tessera.venues.binance_usdm.market_data import force_order_row, mark_price_row
from tessera.venues.binance_usdm.user_data import (
    FuturesAccountUpdate,
    FuturesExecutionReport,
    MalformedEventError,
    parse_user_event,
)

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "binance-api"
MARKET = SAMPLES / "futures-market-data"
USER = SAMPLES / "futures-user-data"
MS = 1_000_000
RECV = 1_700_000_000_000_000_000


def load(path: Path) -> dict[str, object]:
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


def order_update(name: str) -> FuturesExecutionReport:
    event = parse_user_event((USER / name).read_text())
    assert isinstance(event, FuturesExecutionReport)
    return event


def test_a_mark_price_update_gives_mark_index_settle_funding_rate_and_next_funding_time() -> None:
    row = mark_price_row(load(MARKET / "mark_price_stream.json"), RECV)
    assert row == {
        "mark_price": "11794.15000000",
        "index_price": "11784.62659091",
        "estimated_settle_price": "11784.25641265",
        "funding_rate": "0.00038167",
        "next_funding_time": 1562306400000 * MS,
        "event_time": 1562305380000 * MS,
        "recv_time": RECV,
    }


@given(rate=st.decimals(min_value=-1, max_value=1, places=8, allow_nan=False))
def test_a_funding_rate_of_either_sign_is_kept_exactly(rate: Decimal) -> None:
    payload = load(MARKET / "mark_price_stream.json") | {"r": f"{rate:f}"}
    assert Decimal(mark_price_row(payload, RECV)["funding_rate"]) == rate


def test_a_mark_price_with_a_negative_price_or_a_numeric_rate_is_refused() -> None:
    payload = load(MARKET / "mark_price_stream.json")
    with pytest.raises(MalformedMessageError, match="'p'"):
        mark_price_row(payload | {"p": "-1"}, RECV)
    with pytest.raises(MalformedMessageError, match="'r'"):
        mark_price_row(payload | {"r": 0.0001}, RECV)


def test_a_liquidation_order_gives_its_symbol_side_prices_and_quantities() -> None:
    row = force_order_row(load(MARKET / "liquidation_stream.json"), RECV)
    assert row == {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "order_type": "LIMIT",
        "time_in_force": "IOC",
        "qty": "0.014",
        "price": "9910.00000000",
        "avg_price": "9910.12345678",
        "status": "FILLED",
        "last_filled_qty": "0.014",
        "filled_qty": "0.014",
        "trade_time": 1568014460893 * MS,
        "event_time": 1568014460893 * MS,
        "recv_time": RECV,
    }
    with pytest.raises(MalformedMessageError, match="'S'"):
        force_order_row({"E": 1, "o": {"s": "BTCUSDT", "S": "LONG"}}, RECV)


def test_a_new_trailing_stop_keeps_the_futures_fields_and_is_not_a_domain_order_type() -> None:
    r = order_update("order_update_new.json")
    assert r.venue_order_type == "TRAILING_STOP_MARKET" and r.order_type is None
    assert r.stop_price == Decimal("7103.04") and r.position_side == "LONG"
    assert r.side is OrderSide.BUY and r.time_in_force == "GTC"
    assert not r.reduce_only and not r.by_exchange and r.fill is None


def test_a_partial_fill_has_its_fill_realized_pnl_and_quote_from_the_average_price() -> None:
    r = order_update("order_update_trade_partial.json")
    assert r.fill is not None
    assert (r.fill.trade_id, r.fill.price, r.fill.qty) == (
        "12345678",
        Decimal("7100.50"),
        Decimal("0.001"),
    )
    assert (r.fill.fee, r.fill.fee_asset, r.fill.liquidity) == (
        Decimal("0.01"),
        "USDT",
        Liquidity.MAKER,
    )
    assert r.order_type is OrderType.LIMIT and r.realized_pnl == Decimal("12.34")
    assert r.cum_quote == Decimal("0.001") * Decimal("7100.50")
    assert r.status is OrderStatus.PARTIALLY_FILLED and r.working


@pytest.mark.parametrize(
    ("name", "exec_type", "status"),
    [
        ("order_update_calculated.json", "CALCULATED", "FILLED"),
        ("order_update_insurance.json", "CALCULATED", "NEW_INSURANCE"),
        ("order_update_adl.json", "CALCULATED", "NEW_ADL"),
        ("order_update_settlement.json", "TRADE", "FILLED"),
        ("order_update_delivery.json", "TRADE", "FILLED"),
    ],
)
def test_the_exchanges_own_liquidation_adl_and_settlement_orders_are_fills_it_placed(
    name: str, exec_type: str, status: str
) -> None:
    raw = json.loads((USER / name).read_text())["o"]
    assert (raw["x"], raw["X"]) == (exec_type, status)
    r = order_update(name)
    assert r.by_exchange and r.reduce_only
    assert r.status is OrderStatus.FILLED and not r.working
    assert (
        r.fill is not None and r.fill.qty == Decimal(raw["l"]) and r.fill.price == Decimal(raw["L"])
    )


def test_a_fill_without_commission_fields_has_no_fee_rather_than_failing() -> None:
    raw = json.loads((USER / "order_update_delivery.json").read_text())["o"]
    assert "n" not in raw and "N" not in raw
    r = order_update("order_update_delivery.json")
    assert r.fill is not None and (r.fill.fee, r.fill.fee_asset) == (Decimal(0), "")


def test_a_liquidation_not_executed_yet_carries_no_fill() -> None:
    r = order_update("order_update_calculated_pending.json")
    assert r.exec_type == "CALCULATED" and r.status is OrderStatus.ACCEPTED and r.fill is None


def test_an_account_update_gives_balances_and_signed_positions_with_their_margin() -> None:
    event = parse_user_event((USER / "account_update.json").read_text())
    assert isinstance(event, FuturesAccountUpdate)
    assert (event.event_ms, event.transaction_ms, event.reason) == (
        1564745798939,
        1564745798939,
        "ORDER",
    )
    usdt = event.balances["USDT"]
    assert (usdt.wallet, usdt.cross_wallet, usdt.change) == (
        Decimal("122624.12345678"),
        Decimal("100.12345678"),
        Decimal("50.12345678"),
    )
    both, long, short = event.positions
    assert (both.position_side, both.qty) == ("BOTH", 0)
    assert (long.qty, long.entry_price, long.unrealized_pnl) == (
        Decimal(20),
        Decimal("6563.6"),
        Decimal("2850.21200"),
    )
    assert (short.qty, short.isolated_wallet, short.accumulated_realized) == (
        Decimal(-10),
        Decimal("6570.42511771"),
        Decimal("-45.04000000"),
    )
    assert {p.margin_mode for p in event.positions} == {MarginMode.ISOLATED}


def test_an_account_update_of_a_balance_only_has_no_positions() -> None:
    event = parse_user_event((USER / "account_update_bnfcr.json").read_text())
    assert isinstance(event, FuturesAccountUpdate)
    assert event.positions == () and event.balances["BNFCR"].wallet == Decimal("5001.28983031")


# ALGO_UPDATE gives a report now: tests/execution/test_usdm_algo_exchange.py
@pytest.mark.parametrize("name", ["trade_lite.json"])
def test_events_the_order_manager_does_not_need_give_none(name: str) -> None:
    assert parse_user_event((USER / name).read_text()) is None


def test_an_unknown_margin_type_or_status_is_malformed_naming_the_event() -> None:
    doc = json.loads((USER / "account_update.json").read_text())
    doc["a"]["P"][0]["mt"] = "portfolio"
    with pytest.raises(MalformedEventError, match=r"ACCOUNT_UPDATE.*'portfolio'"):
        parse_user_event(json.dumps(doc))
    doc = json.loads((USER / "order_update_new.json").read_text())
    doc["o"]["X"] = "PENDING_NEW"
    with pytest.raises(MalformedEventError, match=r"ORDER_TRADE_UPDATE.*PENDING_NEW"):
        parse_user_event(json.dumps(doc))
