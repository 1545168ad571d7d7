"""Ticker statistics the simulator serves (``ticker/24hr``, ``ticker/price``, ``ticker/bookTicker``,
``avgPrice``), computed from what the replay has released so far.

Why a module of its own: bots (freqtrade first) read these before they trade, and spot and
USDⓈ-M serve the same statistics with different spellings; one computation keeps the two from
disagreeing. Pure code over `MarketState`: no HTTP here (`tessera.sim.rest` routes them).

"Now" is the replay clock (`MarketState.last_event_ms`), as for klines: the 24 h window is
``[now - 24h, now]``. A market with trades is measured on its trades (Binance's ids and counts);
a market replayed from bars alone (bar mode) on its released 1m bars (no trade ids: -1, and the
count the bars carry). A symbol without a book answers zero bid/ask, as Binance does for an empty
book.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from decimal import Decimal

from tessera.sim.payloads import ZERO, fmt8
from tessera.sim.state import MarketState

DAY_MS = 86_400_000
AVG_PRICE_MINS = 5  # Binance spot's avgPrice window
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One symbol's rolling-window statistics (Decimals; rendered by the endpoints)."""

    symbol: str
    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    last_qty: Decimal
    prev_close: Decimal  # the last price before the window, 0 when the data starts inside it
    volume: Decimal
    quote_volume: Decimal
    first_id: int
    last_id: int
    count: int

    @property
    def change(self) -> Decimal:
        return self.last - self.open

    @property
    def change_percent(self) -> Decimal:
        return self.change / self.open * _HUNDRED if self.open else ZERO

    @property
    def weighted_avg(self) -> Decimal:
        return self.quote_volume / self.volume if self.volume else ZERO


def window_stats(state: MarketState, symbol: str, window_ms: int = DAY_MS) -> WindowStats:
    """Statistics over ``[now - window_ms, now]`` of the released trades (else 1m bars)."""
    now = state.last_event_ms
    lo = now - window_ms
    trades = state.trades(symbol)
    if trades:
        times = [t.time for t in trades]
        i, j = bisect_left(times, lo), bisect_right(times, now)
        prev = Decimal(trades[i - 1].price) if i > 0 else ZERO
        inside = trades[i:j]
        if not inside:
            last = Decimal(trades[j - 1].price) if j > 0 else ZERO
            return WindowStats(
                symbol, lo, now, last, last, last, last, ZERO, prev, ZERO, ZERO, -1, -1, 0
            )
        prices = [Decimal(t.price) for t in inside]
        qtys = [Decimal(t.qty) for t in inside]
        return WindowStats(
            symbol,
            lo,
            now,
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
            qtys[-1],
            prev,
            sum(qtys, ZERO),
            sum((p * q for p, q in zip(prices, qtys, strict=True)), ZERO),
            inside[0].id,
            inside[-1].id,
            len(inside),
        )
    bars = state.bars_1m(symbol)
    opens = [b.open_time for b in bars]
    i = bisect_left(opens, lo)
    inside_bars = [b for b in bars[i:] if b.open_time <= now]
    if not inside_bars:
        z = ZERO
        return WindowStats(symbol, lo, now, z, z, z, z, z, z, z, z, -1, -1, 0)
    prev = bars[i - 1].close if i > 0 else ZERO
    return WindowStats(
        symbol,
        lo,
        now,
        inside_bars[0].open,
        max(b.high for b in inside_bars),
        min(b.low for b in inside_bars),
        inside_bars[-1].close,
        ZERO,
        prev,
        sum((b.volume for b in inside_bars), ZERO),
        sum((b.quote_volume for b in inside_bars), ZERO),
        -1,
        -1,
        sum(b.trades for b in inside_bars),
    )


def best_levels(state: MarketState, symbol: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(bid price, bid qty, ask price, ask qty) of the book; zeros for an empty side."""
    book = state.books.get(symbol)
    if book is None:
        return ZERO, ZERO, ZERO, ZERO
    bids, asks = book.top(1)
    bid, bid_q = (bids[0][0], Decimal(bids[0][1])) if bids else (ZERO, ZERO)
    ask, ask_q = (asks[0][0], Decimal(asks[0][1])) if asks else (ZERO, ZERO)
    return bid, bid_q, ask, ask_q


def ticker_24hr(state: MarketState, symbol: str, full: bool = True) -> dict[str, object]:
    """``GET /api/v3/ticker/24hr`` for one symbol (``type=FULL``, or ``MINI``), fields in
    Binance's order (see samples/binance-api/spot-http/ticker_24hr_response.json)."""
    s = window_stats(state, symbol)
    if not full:
        return {
            "symbol": symbol,
            "openPrice": fmt8(s.open),
            "highPrice": fmt8(s.high),
            "lowPrice": fmt8(s.low),
            "lastPrice": fmt8(s.last),
            "volume": fmt8(s.volume),
            "quoteVolume": fmt8(s.quote_volume),
            "openTime": s.open_time,
            "closeTime": s.close_time,
            "firstId": s.first_id,
            "lastId": s.last_id,
            "count": s.count,
        }
    bid, bid_q, ask, ask_q = best_levels(state, symbol)
    return {
        "symbol": symbol,
        "priceChange": fmt8(s.change),
        "priceChangePercent": f"{s.change_percent:.3f}",
        "weightedAvgPrice": fmt8(s.weighted_avg),
        "prevClosePrice": fmt8(s.prev_close),
        "lastPrice": fmt8(s.last),
        "lastQty": fmt8(s.last_qty),
        "bidPrice": fmt8(bid),
        "bidQty": fmt8(bid_q),
        "askPrice": fmt8(ask),
        "askQty": fmt8(ask_q),
        "openPrice": fmt8(s.open),
        "highPrice": fmt8(s.high),
        "lowPrice": fmt8(s.low),
        "volume": fmt8(s.volume),
        "quoteVolume": fmt8(s.quote_volume),
        "openTime": s.open_time,
        "closeTime": s.close_time,
        "firstId": s.first_id,
        "lastId": s.last_id,
        "count": s.count,
    }


def last_price(state: MarketState, symbol: str) -> Decimal:
    """The last released trade's price, else the last released bar's close, else 0."""
    trades = state.trades(symbol)
    if trades:
        return Decimal(trades[-1].price)
    bars = state.bars_1m(symbol)
    return bars[-1].close if bars else ZERO


def price_ticker(state: MarketState, symbol: str) -> dict[str, object]:
    """``GET /api/v3/ticker/price``."""
    return {"symbol": symbol, "price": fmt8(last_price(state, symbol))}


def book_ticker(state: MarketState, symbol: str) -> dict[str, object]:
    """``GET /api/v3/ticker/bookTicker``."""
    bid, bid_q, ask, ask_q = best_levels(state, symbol)
    return {
        "symbol": symbol,
        "bidPrice": fmt8(bid),
        "bidQty": fmt8(bid_q),
        "askPrice": fmt8(ask),
        "askQty": fmt8(ask_q),
    }


def avg_price(state: MarketState, symbol: str) -> dict[str, object]:
    """``GET /api/v3/avgPrice``: the volume-weighted price of the last 5 minutes' trades (bars
    without trades), ``closeTime`` the last trade's time (the last bar's close time)."""
    s = window_stats(state, symbol, AVG_PRICE_MINS * 60_000)
    trades = state.trades(symbol)
    if trades:
        close = trades[-1].time
    else:
        bars = state.bars_1m(symbol)
        close = bars[-1].close_time if bars else 0
    price = s.weighted_avg if s.volume else last_price(state, symbol)
    return {"mins": AVG_PRICE_MINS, "price": fmt8(price), "closeTime": close}
