"""The bot's pure parts: frame decoding, the account's marks, strategy targets as signals,
the `--strategy` syntax."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer

from tessera.execution.orders import Fill, Liquidity, OrderSide
from tessera.live.account import AccountBook
from tessera.live.cli import parse_strategy
from tessera.live.feed import MarketFeed
from tessera.strategies.base import Bar, BookTop, TradeTick
from tessera.venues.binance.klines import bar_from_rest, parse_kline
from tessera.venues.binance_spot.instruments import filters_by_symbol

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "binance-api"


class Recorder:
    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.trades: list[TradeTick] = []
        self.books: list[BookTop] = []

    def on_bar(self, bar: Bar, event_ns: int, recv_ns: int) -> None:
        self.bars.append(bar)

    def on_trade(self, tick: TradeTick, recv_ns: int) -> None:
        self.trades.append(tick)

    def on_book(self, book: BookTop, recv_ns: int) -> None:
        self.books.append(book)


def test_closed_kline_of_a_real_payload_becomes_a_bar_and_an_open_one_does_not() -> None:
    closed = json.loads((SAMPLES / "futures-market-data/kline_stream_closed.json").read_text())
    bar = parse_kline(closed)
    assert bar is not None
    assert (bar.open_time, bar.close_time) == (1638747660000 * 10**6, 1638747720000 * 10**6 - 1)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        0.001,
        0.0025,
        0.001,
        0.002,
        1000,
    )
    assert bar.taker_buy_volume == 500
    opened = json.loads((SAMPLES / "futures-market-data/kline_stream_open.json").read_text())
    assert parse_kline(opened) is None


def test_rest_kline_row_matches_the_websocket_bar() -> None:
    rows = json.loads((SAMPLES / "spot-http/klines_response.json").read_text())
    bar = bar_from_rest("BTCUSDT", rows[0])
    assert bar.open_time == int(rows[0][0]) * 10**6
    assert bar.close_time == (int(rows[0][6]) + 1) * 10**6 - 1  # the last ns of the bar
    assert bar.close == float(rows[0][4])


def test_feed_dispatches_frames_and_counts_malformed_ones_without_stopping() -> None:
    rec = Recorder()
    feed = MarketFeed("ws://unused", ["BTCUSDT"], "1m", rec)
    closed = json.loads((SAMPLES / "futures-market-data/kline_stream_closed.json").read_text())
    trade = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 7, "p": "61000.5", "q": "0.01",
             "T": 2, "m": True}  # fmt: skip
    book = {"u": 1, "s": "BTCUSDT", "b": "61000", "B": "1", "a": "61001", "A": "2"}
    frames = [
        {"stream": "btcusdt@kline_1m", "data": closed},
        {"stream": "btcusdt@trade", "data": trade},
        {"stream": "btcusdt@bookTicker", "data": book},
        {"stream": "btcusdt@trade", "data": {**trade, "p": None}},  # bad field
    ]
    for f in frames:
        feed.on_frame(orjson.dumps(f), 0)
    feed.on_frame(b'{"stream": "btcusdt@trade", "da', 0)  # truncated
    feed.on_frame(b'{"result": null, "id": 1}', 0)  # a SUBSCRIBE answer
    assert len(rec.bars) == 1 and len(rec.books) == 1 and len(rec.trades) == 1
    assert rec.trades[0].price == 61000.5 and rec.books[0].ask == 61001.0
    assert feed.stats.malformed == 2


def test_account_equity_follows_fills_exactly() -> None:
    info = json.loads((SAMPLES / "spot-http/exchange_info_response.json").read_text())
    filters = filters_by_symbol(info)
    sym = next(iter(filters))
    f = filters[sym]
    book = AccountBook(filters, f.quote_asset, {f.quote_asset: Decimal("1000")})
    fill = Fill("1", "c1", sym, OrderSide.BUY, Decimal("2.5"), Decimal("4"), Decimal("0.01"),
                f.quote_asset, Liquidity.TAKER, 1)  # fmt: skip
    book.apply_fill(fill)
    assert book.cash() == Decimal("1000") - Decimal("10") - Decimal("0.01")
    assert book.balances[f.base_asset] == Decimal("4")
    assert book.equity({sym: Decimal("3")}) == Decimal("1001.99")


def test_strategy_option_syntax() -> None:
    ref = parse_strategy("sma_cross:fast=5,slow=20,qty=0.01,allow_short=true")
    assert ref.name == "sma_cross"
    assert ref.params == {"fast": 5, "slow": 20, "qty": 0.01, "allow_short": True}
    assert parse_strategy("model_signal").params == {}
    with pytest.raises(typer.BadParameter):
        parse_strategy("sma_cross:fast")


def _bot_for_bar_order() -> object:
    from tessera.config.models import RiskConfig, StrategyRef
    from tessera.live.bot import BotOptions, TradingBot

    options = BotOptions(
        mode="paper",
        strategies=[StrategyRef(name="sma_cross")],
        symbols=["BTCUSDT"],
        interval="1s",
        rest_url="http://127.0.0.1:9",
        ws_url="ws://127.0.0.1:9",
        database_url="sqlite://",
        run_id="bar-order",
        risk=RiskConfig(),
    )
    return TradingBot(options)


def _bar(open_s: int) -> Bar:
    t = open_s * 1_000_000_000
    return Bar("BTCUSDT", t, t + 999_999_999, 1.0, 1.0, 1.0, 1.0, 1.0)


def test_a_live_bar_older_than_the_last_is_counted_reported_and_not_traded_on() -> None:
    from tessera import metrics

    bot: Any = _bot_for_bar_order()
    bot._last_bar["BTCUSDT"] = _bar(100).open_time
    before = metrics.OUT_OF_ORDER_BARS.labels(symbol="BTCUSDT")._value.get()
    bot._on_closed_bar(_bar(50), 0, 0)
    bot._on_closed_bar(_bar(51), 0, 0)
    assert bot.out_of_order_bars == 2
    assert metrics.OUT_OF_ORDER_BARS.labels(symbol="BTCUSDT")._value.get() == before + 2
    assert bot._bars_back == {"BTCUSDT"}  # /readyz market_time_advancing is false
    assert bot._last_bar["BTCUSDT"] == _bar(100).open_time  # nothing moved back
    assert bot.problems == ["BTCUSDT: the market data went back in time (bars not traded on)"]
    assert bot._final_exit_code() == 1


def test_bars_repeated_by_an_overlapping_batch_or_the_same_bar_again_are_skipped_quietly() -> None:
    bot: Any = _bot_for_bar_order()
    bot._last_bar["BTCUSDT"] = _bar(100).open_time
    bot._on_closed_bar(_bar(100), 0, 0)  # the warm-up's overlap with the websocket
    bot._on_closed_bar(_bar(60), 0, 0, overlap=True)  # REST bars after a reconnect
    assert bot.out_of_order_bars == 0 and not bot._bars_back and not bot.problems
