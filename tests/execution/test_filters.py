"""Exchange filters against the real Binance exchangeInfo bundled in samples/."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest

from tessera.execution.fees import FeeSchedule
from tessera.execution.filters import FilterViolationError, SymbolFilters
from tessera.execution.orders import Liquidity, OrderSide, OrderType
from tessera.venues.binance_spot.instruments import filters_by_symbol

D = Decimal
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="module")
def real_filters() -> dict[str, SymbolFilters]:
    with gzip.open(SAMPLES / "cryptofeed" / "BINANCE.0.gz", "rt") as fh:
        line = fh.readline()
    info = json.loads(line.split(": ", 1)[1])
    return filters_by_symbol(info)


def test_parses_every_real_symbol(real_filters: dict[str, SymbolFilters]) -> None:
    assert len(real_filters) == 1695
    btc = real_filters["BTCUSDT"]
    assert btc.tick_size == D("0.01") and btc.step_size == D("0.00001")
    assert btc.min_notional == D("10") and btc.base_asset == "BTC" and btc.quote_asset == "USDT"
    assert btc.max_num_orders == 200 and "LIMIT_MAKER" in btc.order_types


@pytest.mark.parametrize(
    ("otype", "qty", "price", "ref", "violation"),
    [
        (OrderType.LIMIT, "0.001", "50000.00", None, None),
        (OrderType.LIMIT, "0.001", "50000.005", None, "PRICE_FILTER"),  # off tick
        (OrderType.LIMIT, "0.001", "0.001", None, "PRICE_FILTER"),  # below minPrice
        (OrderType.LIMIT, "0.000015", "50000", None, "LOT_SIZE"),  # off step
        (OrderType.LIMIT, "0.000001", "50000", None, "LOT_SIZE"),  # below minQty
        (OrderType.LIMIT, "9000.00001", "1", None, "LOT_SIZE"),  # above maxQty
        (OrderType.LIMIT, "0.0001", "50000", None, "MIN_NOTIONAL"),  # 5 USDT < 10
        (OrderType.MARKET, "0.0001", None, "50000", "MIN_NOTIONAL"),  # applyToMarket
        (OrderType.MARKET, "0.001", None, "50000", None),
        (OrderType.MARKET, "101", None, "50000", "MARKET_LOT_SIZE"),  # above market maxQty
        (OrderType.LIMIT, "0.001", "300000", "50000", "PERCENT_PRICE"),  # > 5x avg price
    ],
)
def test_btcusdt_rules(
    real_filters: dict[str, SymbolFilters],
    otype: OrderType,
    qty: str,
    price: str | None,
    ref: str | None,
    violation: str | None,
) -> None:
    f = real_filters["BTCUSDT"]
    args = (otype, D(qty), D(price) if price else None, D(ref) if ref else None)
    if violation is None:
        f.check(*args)
    else:
        with pytest.raises(FilterViolationError) as info:
            f.check(*args)
        assert info.value.filter_type == violation
        assert str(info.value) == f"Filter failure: {violation}"
        assert info.value.code == -1013


def test_rounding(real_filters: dict[str, SymbolFilters]) -> None:
    f = real_filters["BTCUSDT"]
    assert f.round_price(D("50000.019"), OrderSide.BUY) == D("50000.01")
    assert f.round_price(D("50000.011"), OrderSide.SELL) == D("50000.02")
    assert f.round_price(D("50000.015")) == D("50000.02")
    assert f.round_qty(D("0.123456789")) == D("0.12345")
    # what rounding produces always passes the lot/price checks
    f.check(OrderType.LIMIT, f.round_qty(D("0.123456789")), f.round_price(D("43210.987")))


def test_fees_exact() -> None:
    fees = FeeSchedule(maker_bps=D("2"), taker_bps=D("7.5"))
    assert fees.fee(D("10000"), Liquidity.MAKER) == D("2.0000")
    assert fees.fee(D("-10000"), Liquidity.TAKER) == D("7.50000")
    with pytest.raises(ValueError, match="fees must be"):
        FeeSchedule(maker_bps=D("-1"))
