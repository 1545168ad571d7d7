"""Binance USDⓈ-M payload parsing on the bundled REAL payloads (samples/binance-usdm/):
/fapi/v1/leverageBracket -> LeverageBrackets, /fapi/v1/exchangeInfo -> PerpetualInstrument.
Every value checked here is read from the sample file itself or quoted from it."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tessera.execution.filters import FilterViolationError
from tessera.execution.orders import OrderType
from tessera.venues import VenuePayloadError
from tessera.venues.binance_usdm.brackets import parse_leverage_brackets
from tessera.venues.binance_usdm.instruments import parse_exchange_info

D = Decimal
USDM = Path(__file__).resolve().parents[2] / "samples" / "binance-usdm"


def brackets_payload() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((USDM / "leverage_brackets.json").read_text())
    return data


def exchange_info_payload() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((USDM / "exchange_info.json").read_text())
    return data


# --- /fapi/v1/leverageBracket ---------------------------------------------------------------


def test_every_bundled_bracket_is_parsed_with_the_values_of_the_file() -> None:
    payload = brackets_payload()
    parsed = parse_leverage_brackets(payload)
    assert sorted(parsed) == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
    for entry in payload:
        tiers = parsed[entry["symbol"]].tiers
        assert len(tiers) == len(entry["brackets"])
        for tier, raw in zip(tiers, entry["brackets"], strict=True):
            assert tier.notional_floor == D(raw["notionalFloor"])
            assert tier.notional_cap == D(raw["notionalCap"])
            assert tier.maintenance_margin_rate == D(raw["maintMarginRatio"])
            assert tier.cum == D(raw["cum"])
            assert tier.max_leverage == int(raw["initialLeverage"])


def test_xrp_brackets_read_as_binance_publishes_them() -> None:
    xrp = parse_leverage_brackets(brackets_payload())["XRPUSDT"]
    # file: {"bracket": "3", "initialLeverage": "40", "notionalCap": "160000",
    #        "notionalFloor": "20000", "maintMarginRatio": "0.01", "cum": "85.0"}
    third = xrp.tiers[2]
    assert (third.notional_floor, third.notional_cap) == (D(20000), D(160000))
    assert (third.maintenance_margin_rate, third.cum, third.max_leverage) == (D("0.01"), D(85), 40)
    assert len(xrp.tiers) == 10 and xrp.max_notional == D(80_000_000)
    # 100,000 USDT of XRP: 100000 * 0.01 - 85 = 915
    assert xrp.maintenance_margin(D(100000)) == D(915)


def test_json_numbers_as_binance_sends_them_parse_to_the_same_brackets() -> None:
    # The bundled copy holds strings; Binance's API sends numbers. json parses 0.0065 as a
    # float: the parser must still give Decimal("0.0065"), not the float's binary value.
    text = (USDM / "leverage_brackets.json").read_text()
    as_strings = parse_leverage_brackets(json.loads(text))
    numeric = brackets_payload()
    for entry in numeric:
        for raw in entry["brackets"]:
            for key, value in raw.items():
                raw[key] = json.loads(value)  # "0.0065" -> 0.0065, "125" -> 125
    assert isinstance(numeric[0]["brackets"][2]["maintMarginRatio"], float)
    assert parse_leverage_brackets(numeric) == as_strings


def test_brackets_listed_out_of_order_are_sorted_by_bracket_number() -> None:
    payload = brackets_payload()
    payload[0]["brackets"].reverse()
    assert parse_leverage_brackets(payload) == parse_leverage_brackets(brackets_payload())
    single = parse_leverage_brackets(brackets_payload()[2])  # one object, not a list
    assert list(single) == ["XRPUSDT"]


def test_bad_bracket_payloads_are_refused_naming_symbol_and_field() -> None:
    payload = brackets_payload()
    del payload[1]["brackets"][3]["cum"]
    with pytest.raises(VenuePayloadError, match="ETHUSDT bracket 4 has no field 'cum'"):
        parse_leverage_brackets(payload)

    payload = brackets_payload()
    payload[0]["brackets"][1]["notionalFloor"] = "40000"  # overlaps bracket 1 (cap 50000)
    with pytest.raises(VenuePayloadError, match=r"BTCUSDT: tier 2 .* overlaps"):
        parse_leverage_brackets(payload)

    payload = brackets_payload()
    payload[0]["brackets"][1]["cum"] = "60.0"  # maintenance margin would jump at 50,000
    with pytest.raises(VenuePayloadError, match="jumps at notional 50000"):
        parse_leverage_brackets(payload)

    payload = brackets_payload()
    payload[0]["notionalCoef"] = 1.5
    with pytest.raises(VenuePayloadError, match="notionalCoef"):
        parse_leverage_brackets(payload)

    payload = brackets_payload()
    payload.append(copy.deepcopy(payload[0]))
    with pytest.raises(VenuePayloadError, match="BTCUSDT is listed twice"):
        parse_leverage_brackets(payload)


# --- /fapi/v1/exchangeInfo ------------------------------------------------------------------


def test_exchange_info_gives_the_perpetuals_and_says_what_it_skipped() -> None:
    info = parse_exchange_info(exchange_info_payload())
    assert sorted(info.instruments) == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
    assert info.skipped == {"BTCUSDT_210924": "CURRENT_QUARTER"}
    assert info.unread_filters == {"MAX_NUM_ALGO_ORDERS": ["BTCUSDT", "ETHUSDT", "XRPUSDT"]}
    assert info.server_time_ms == 1626858243909


def test_btcusdt_instrument_carries_the_values_of_the_file() -> None:
    btc = parse_exchange_info(exchange_info_payload()).instruments["BTCUSDT"]
    # file: PRICE_FILTER minPrice 556.72 maxPrice 1000000 tickSize 0.01; LOT_SIZE stepSize 0.001
    # minQty 0.001 maxQty 1000; MIN_NOTIONAL notional 5; PERCENT_PRICE 1.1500 / 0.8500;
    # MAX_NUM_ORDERS limit 200; triggerProtect 0.0500; liquidationFee 0.012000
    assert (btc.base_asset, btc.quote_asset, btc.margin_asset) == ("BTC", "USDT", "USDT")
    assert (btc.contract_type, btc.contract_size, btc.status) == ("PERPETUAL", D(1), "TRADING")
    assert (btc.tick_size, btc.min_price, btc.max_price) == (D("0.01"), D("556.72"), D(1000000))
    assert (btc.step_size, btc.min_qty, btc.max_qty) == (D("0.001"), D("0.001"), D(1000))
    assert (btc.market_step_size, btc.market_max_qty) == (D("0.001"), D(1000))
    assert btc.min_notional == D(5)
    assert (btc.percent_up, btc.percent_down) == (D("1.15"), D("0.85"))
    assert btc.max_num_orders == 200
    assert btc.trigger_protect == D("0.05") and btc.liquidation_fee == D("0.012")
    assert "TRAILING_STOP_MARKET" in btc.order_types and "GTX" in btc.time_in_force
    assert btc.tradable


def test_every_bundled_perpetual_matches_its_raw_filters() -> None:
    payload = exchange_info_payload()
    instruments = parse_exchange_info(payload).instruments
    for raw in payload["symbols"]:
        if raw["contractType"] != "PERPETUAL":
            continue
        inst = instruments[raw["symbol"]]
        by_type = {f["filterType"]: f for f in raw["filters"]}
        assert inst.tick_size == D(by_type["PRICE_FILTER"]["tickSize"])
        assert inst.step_size == D(by_type["LOT_SIZE"]["stepSize"])
        assert inst.min_qty == D(by_type["LOT_SIZE"]["minQty"])
        assert inst.min_notional == D(by_type["MIN_NOTIONAL"]["notional"])
        assert inst.margin_asset == raw["marginAsset"]
    xrp = instruments["XRPUSDT"]
    assert (xrp.tick_size, xrp.step_size, xrp.liquidation_fee) == (
        D("0.0001"),
        D("0.1"),
        D("0.005"),
    )


def test_instrument_filters_reject_what_binance_would() -> None:
    btc = parse_exchange_info(exchange_info_payload()).instruments["BTCUSDT"].filters()
    btc.check(OrderType.LIMIT, D("0.001"), D("30000.01"))  # 30 USDT, on the grid: accepted
    with pytest.raises(FilterViolationError, match="LOT_SIZE"):
        btc.check(OrderType.LIMIT, D("0.0015"), D(30000))
    with pytest.raises(FilterViolationError, match="PRICE_FILTER"):
        btc.check(OrderType.LIMIT, D("0.001"), D("30000.005"))
    with pytest.raises(FilterViolationError, match="MIN_NOTIONAL"):
        btc.check(OrderType.LIMIT, D("0.001"), D(4000))  # 4 USDT < 5
    with pytest.raises(FilterViolationError, match="MIN_NOTIONAL"):
        btc.check(OrderType.MARKET, D("0.001"), None, reference_price=D(4000))


def test_bad_exchange_info_is_refused_naming_the_symbol_and_field() -> None:
    payload = exchange_info_payload()
    del payload["symbols"][2]["marginAsset"]
    with pytest.raises(VenuePayloadError, match="XRPUSDT has no text field 'marginAsset'"):
        parse_exchange_info(payload)
    payload = exchange_info_payload()
    payload["symbols"][0]["filters"][0]["tickSize"] = "abc"
    with pytest.raises(VenuePayloadError, match="BTCUSDT PRICE_FILTER field 'tickSize'"):
        parse_exchange_info(payload)
    with pytest.raises(VenuePayloadError, match="no list 'symbols'"):
        parse_exchange_info({"timezone": "UTC"})
