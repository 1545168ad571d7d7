"""The registry: every registered venue loads, names itself, has its contract payload tables,
and names its streams."""

from __future__ import annotations

import pytest
from venue_payloads import (
    DEPTH_RECORDINGS,
    DOCUMENTED_STATUSES,
    ERRORS,
    MARKET,
    ORDER_STATE_FILES,
    USER,
)

from tessera.venues.contract import UnknownVenueError, Venue, venue, venue_names


def test_binance_spot_and_usdm_are_registered() -> None:
    assert venue_names() == ("binance-spot", "binance-usdm")


@pytest.mark.parametrize("name", venue_names())
def test_every_registered_venue_loads_and_has_every_contract_table(name: str) -> None:
    v = venue(name)
    assert isinstance(v, Venue) and v.name == name and v.description
    for table in (MARKET, USER, ERRORS, ORDER_STATE_FILES, DOCUMENTED_STATUSES, DEPTH_RECORDINGS):
        assert name in table, f"{name} has no contract payloads in {table}"


def test_an_unknown_venue_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(UnknownVenueError) as err:
        venue("kraken")
    assert "'kraken'" in str(err.value) and "binance-spot, binance-usdm" in str(err.value)


@pytest.mark.parametrize("name", venue_names())
def test_a_venue_names_a_stream_of_every_common_kind_for_the_symbol_and_interval(
    name: str,
) -> None:
    streams = venue(name).stream_names("BTCUSDT", "1m")
    assert {"trade", "aggTrade", "kline", "depth", "bookTicker"} <= set(streams)
    assert all(s.startswith("btcusdt@") for s in streams.values())
    assert streams["kline"].endswith("_1m")
    assert set(venue(name).market_data.extra) <= set(streams)  # its own kinds are named too


def test_usdm_names_its_mark_price_and_liquidation_streams() -> None:
    streams = venue("binance-usdm").stream_names("ETHUSDT", "5m")
    assert streams["markPrice"] == "ethusdt@markPrice@1s"
    assert streams["forceOrder"] == "ethusdt@forceOrder"
