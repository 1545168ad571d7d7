"""`UsdmCcxtExchange.funding_income` (``/fapi/v1/income?incomeType=FUNDING_FEE`` through ccxt
binanceusdm) against the USDⓈ-M simulator in bar mode over the bundled real XRP/USDT candles
and funding rates: the rows the simulator booked, oldest first, from a start time on
(inclusive), read into ledger records by `funding_record`."""

from __future__ import annotations

from decimal import Decimal

import pytest
from live_bot_helpers import KEY, SECRET

from tessera.execution.ccxt_exchange import open_exchange
from tessera.execution.persistence import FundingRecord
from tessera.sim.usdm import usdm_trading_config, usdm_venue
from tessera.sim.usdm.bars import SAMPLE_SYMBOL, usdm_bar_market
from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange
from tessera.venues.binance_usdm.rest import funding_record


async def test_funding_income_answers_the_simulators_funding_rows_from_a_start_time() -> None:
    venue = usdm_venue(
        usdm_bar_market(),
        speed=None,
        autostart=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )
    engine = venue.engine
    assert engine is not None
    async with venue.sim:
        venue.sim.release(20)
        engine.place({"symbol": SAMPLE_SYMBOL, "side": "SELL", "type": "MARKET", "quantity": "500"})
        venue.sim.release(60)  # candles 20..59: several 8h funding times
        booked = [
            FundingRecord(r.symbol, r.time_ms, r.amount, "USDT", "income", str(r.tran_id))
            for r in engine.incomes
            if r.kind == "FUNDING_FEE"
        ]
        assert len(booked) >= 3
        ex = open_exchange(venue.sim.rest_url, KEY, SECRET, exchange_id="binance-usdm")
        assert isinstance(ex, UsdmCcxtExchange)
        try:
            every = [funding_record(r) for r in await ex.funding_income()]
            later = [funding_record(r) for r in await ex.funding_income(booked[1].ts_ms)]
            none = await ex.funding_income(booked[-1].ts_ms + 1)
        finally:
            await ex.close()
    assert every == booked
    assert later == booked[1:]
    assert none == []
    assert all(r.amount > 0 for r in booked)  # a short receives at a positive rate


def test_an_income_row_without_its_amount_is_refused_naming_the_field() -> None:
    row = {"symbol": "BTCUSDT", "time": 1707465600000, "asset": "USDT", "tranId": "1"}
    with pytest.raises(ValueError, match="'income'"):
        funding_record(row)
    with pytest.raises(ValueError, match="not understood"):
        funding_record({**row, "income": "n/a"})
    assert funding_record({**row, "income": "-0.04618913"}).amount == Decimal("-0.04618913")
