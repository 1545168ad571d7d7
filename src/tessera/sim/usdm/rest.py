"""USDⓈ-M public REST under ``/fapi/v1``, answered from the replayed market.

The same gateway as spot (`tessera.sim.rest.RestApi`: weights, 429/418, faults, Binance error
bodies; the same symbol and limit rules), the same state (`MarketState`), futures spellings:
prices with the symbol's ``pricePrecision`` as Binance USDⓈ-M renders them (``"61800.20"``),
``depth`` with ``E``/``T``, ``trades`` without ``isBestMatch``, tickers without spot's bid/ask
fields and with ``time``. Klines are the spot bars (`MarketState.klines`). Mark prices, the
premium index and funding come from `tessera.sim.usdm.market.MarkPrices` (see there for what
the mark is when the recording has no ``@markPrice`` stream).

Endpoints: ``ping``, ``time``, ``exchangeInfo``, ``depth``, ``trades``, ``aggTrades``, ``klines``,
``markPriceKlines``, ``premiumIndex``, ``fundingRate``, ``ticker/24hr``, ``ticker/price``,
``ticker/bookTicker``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tessera.sim import payloads as binance
from tessera.sim import tickers
from tessera.sim.looping import ShiftedMarket
from tessera.sim.payloads import INTERVAL_MS, Trade, fmt_plain
from tessera.sim.rest import BinanceError, depth_weight, json_response, server_time_ms
from tessera.sim.usdm.mark_stream import serve_mark_streams
from tessera.sim.usdm.market import INTEREST_RATE, MarkPrices, bar_market, next_funding_time

if TYPE_CHECKING:
    from tessera.sim.market import SimMarket
    from tessera.sim.server import ExchangeSimulator

ZERO = Decimal(0)
INVALID_DEPTH_LIMIT = binance.error(-1130, "Data sent for parameter 'limit' is not valid.")


def _ticker_weight(request: web.Request) -> int:
    """fapi: one symbol 1 (24hr) / 1, every symbol 40 (24hr) / 2."""
    one = "symbol" in request.query
    if request.path.endswith("/24hr"):
        return 1 if one else 40
    return 1 if one else 2


class UsdmPublicApi:
    """Registers the ``/fapi/v1`` market-data endpoints on a simulator (before it starts)."""

    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim
        self.rest = sim.rest
        self.marks = MarkPrices(sim.market)
        self.first_marks = self.marks  # pass 0's: later passes of a looped replay move them
        info = sim.market.exchange_info
        self.price_places = {s["symbol"]: int(s["pricePrecision"]) for s in info["symbols"]}
        self.qty_places = {s["symbol"]: int(s["quantityPrecision"]) for s in info["symbols"]}
        for path, handler, weight in (
            ("/fapi/v1/ping", self.rest.ping, 1),
            ("/fapi/v1/time", self.rest.server_time, 1),
            ("/fapi/v1/exchangeInfo", self.exchange_info, 1),
            ("/fapi/v1/depth", self.depth, depth_weight),
            ("/fapi/v1/trades", self.trades, 5),
            ("/fapi/v1/historicalTrades", self.historical_trades, 20),
            ("/fapi/v1/aggTrades", self.agg_trades, 20),
            ("/fapi/v1/klines", self.rest.klines, 5),
            ("/fapi/v1/markPriceKlines", self.mark_price_klines, 5),
            ("/fapi/v1/premiumIndex", self.premium_index, 1),
            ("/fapi/v1/fundingRate", self.funding_rate, 1),
            ("/fapi/v1/ticker/24hr", self.ticker_24hr, _ticker_weight),
            ("/fapi/v1/ticker/price", self.ticker_price, _ticker_weight),
            ("/fapi/v1/ticker/bookTicker", self.book_ticker, _ticker_weight),
        ):
            self.rest.add_route("GET", path, handler, weight)

    def on_pass(self, market: SimMarket) -> None:
        """A looped replay started a pass (`ExchangeSimulator.pass_hooks`): the marks, and the
        mark streams built from them, come from that pass's (shifted) market."""
        if isinstance(market, ShiftedMarket) and market.base is self.first_marks.market:
            self.marks = self.first_marks.moved(market, market.dt)  # no re-parsing
        else:
            self.marks = MarkPrices(market)
        serve_mark_streams(market, self.marks)

    # --- formats --------------------------------------------------------------------------------

    def px(self, symbol: str, value: Decimal) -> str:
        return f"{value:.{self.price_places.get(symbol, 8)}f}"

    def qty(self, symbol: str, value: Decimal) -> str:
        return f"{value:.{self.qty_places.get(symbol, 8)}f}"

    def mark(self, symbol: str) -> Decimal:
        """The mark at the replay position (the last trade's price before the first mark)."""
        sample = self.marks.at(self.sim.state, symbol)
        return sample.price if sample is not None else tickers.last_price(self.sim.state, symbol)

    # --- endpoints ------------------------------------------------------------------------------

    async def exchange_info(self, request: web.Request) -> web.Response:
        info = dict(self.sim.market.exchange_info)
        info["serverTime"] = server_time_ms(self.sim)
        return json_response(info)

    async def depth(self, request: web.Request) -> web.Response:
        sym = self.rest.symbol(request)
        raw = request.query.get("limit", "500")
        if raw not in ("5", "10", "20", "50", "100", "500", "1000"):
            raise BinanceError(INVALID_DEPTH_LIMIT)
        now = server_time_ms(self.sim)
        book = self.sim.state.books.get(sym)
        if book is None:
            return json_response({"lastUpdateId": 0, "E": now, "T": now, "bids": [], "asks": []})
        bids, asks = book.top(int(raw))
        return json_response(
            {
                "lastUpdateId": book.last_update_id,
                "E": self.sim.state.last_event_ms,
                "T": self.sim.state.last_event_ms,
                "bids": [[self.px(sym, p), q] for p, q in bids],
                "asks": [[self.px(sym, p), q] for p, q in asks],
            }
        )

    async def trades(self, request: web.Request) -> web.Response:
        sym = self.rest.symbol(request)
        limit = self.rest.limit(request, 500, 1000)
        return json_response(_trade_rows(self.sim.state.recent_trades(sym, limit)))

    async def historical_trades(self, request: web.Request) -> web.Response:
        """``/fapi/v1/historicalTrades``: from ``fromId`` on (else the newest), futures rows
        (what a client backfilling a trade-id gap reads; Binance wants an API key for it)."""
        sym = self.rest.symbol(request)
        limit = self.rest.limit(request, 500, 1000)
        from_id = self.rest.integer(request, "fromId")
        state = self.sim.state
        trades = (
            state.trades_from(sym, from_id, limit)
            if from_id is not None
            else state.recent_trades(sym, limit)
        )
        return json_response(_trade_rows(trades))

    async def agg_trades(self, request: web.Request) -> web.Response:
        """Spot's ``aggTrades`` rules; the rows without spot's ``M``."""
        resp = await self.rest.agg_trades(request)
        assert isinstance(resp.body, bytes)
        rows = orjson.loads(resp.body)
        return json_response([{k: v for k, v in r.items() if k != "M"} for r in rows])

    async def mark_price_klines(self, request: web.Request) -> web.Response:
        sym = self.rest.symbol(request)
        interval = request.query.get("interval", "")
        if not interval:
            raise BinanceError(binance.missing_param("interval"))
        if interval not in INTERVAL_MS or interval == "1s":
            raise BinanceError(binance.INVALID_INTERVAL)
        limit = self.rest.limit(request, 500, 1500)
        start, end = self.rest.integer(request, "startTime"), self.rest.integer(request, "endTime")
        if start is not None and end is not None and start > end:
            raise BinanceError(binance.START_AFTER_END)
        return json_response(self.marks.klines(self.sim.state, sym, interval, start, end, limit))

    def _premium(self, sym: str) -> dict[str, object]:
        state = self.sim.state
        sample = self.marks.at(state, sym)
        mark = self.mark(sym)
        rate = sample.funding_rate if sample is not None and sample.funding_rate else ZERO
        now = state.last_event_ms
        nxt = sample.next_funding_time if sample and sample.next_funding_time else None
        return {
            "symbol": sym,
            "markPrice": f"{mark:.8f}",
            "indexPrice": f"{mark:.8f}",  # no index recorded: the mark stands in
            "estimatedSettlePrice": f"{mark:.8f}",
            "lastFundingRate": f"{rate:.8f}",
            "interestRate": f"{INTEREST_RATE:.8f}",
            "nextFundingTime": nxt if nxt is not None else next_funding_time(now),
            "time": now,
        }

    async def premium_index(self, request: web.Request) -> web.Response:
        symbols, alone = self._symbols(request)
        rows = [self._premium(s) for s in symbols]
        return json_response(rows[0] if alone else rows)

    async def funding_rate(self, request: web.Request) -> web.Response:
        """Funding history: the released settlements of a ``@markPrice`` stream (none without
        funding data; see `tessera.sim.usdm.market`)."""
        symbols = [self.rest.symbol(request)] if "symbol" in request.query else None
        limit = self.rest.limit(request, 100, 1000)
        start, end = self.rest.integer(request, "startTime"), self.rest.integer(request, "endTime")
        rows: list[dict[str, Any]] = []
        for sym in symbols or list(self.sim.market.symbols):
            rows.extend(self.funding_rows(sym))
        rows = [
            r
            for r in sorted(rows, key=lambda r: r["fundingTime"])
            if (start is None or r["fundingTime"] >= start)
            and (end is None or r["fundingTime"] <= end)
        ]
        return json_response(rows[:limit] if start is not None else rows[-limit:])

    def funding_rows(self, sym: str) -> list[dict[str, Any]]:
        """One row per funding time the released marks passed (the rate their last frame
        before it announced, and the mark of that frame)."""
        market = bar_market(self.sim.market)
        if market is not None:  # bar mode: the funding file's rows the replay has passed
            if sym != market.symbol:
                return []
            head = self.sim.head
            now = self.sim.market.clock_ms[head - 1] if head else -1  # the replay's clock
            return [
                {
                    "symbol": sym,
                    "fundingRate": f"{f.rate:.8f}",
                    "fundingTime": f.ts_ns // 1_000_000,
                    "markPrice": f"{f.mark_price:.8f}" if f.mark_price is not None else "",
                }
                for f in market.funding
                if f.ts_ns // 1_000_000 <= now
            ]
        anchors, samples = self.marks.series(sym)
        released = samples[: len([a for a in anchors if a < self.sim.state.position])]
        rows: list[dict[str, Any]] = []
        for prev, cur in itertools.pairwise(released):
            t = prev.next_funding_time
            rate = prev.funding_rate
            if t is None or rate is None or cur.time < t:
                continue
            if not rows or rows[-1]["fundingTime"] != t:
                rows.append(
                    {
                        "symbol": sym,
                        "fundingRate": f"{rate:.8f}",
                        "fundingTime": t,
                        "markPrice": f"{prev.price:.8f}",
                    }
                )
        return rows

    def _symbols(self, request: web.Request) -> tuple[list[str], bool]:
        if "symbol" in request.query:
            return [self.rest.symbol(request)], True
        return list(self.sim.market.symbols), False

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        symbols, alone = self._symbols(request)
        rows = []
        for sym in symbols:
            s = tickers.window_stats(self.sim.state, sym)
            rows.append(
                {
                    "symbol": sym,
                    "priceChange": self.px(sym, s.change),
                    "priceChangePercent": f"{s.change_percent:.3f}",
                    "weightedAvgPrice": self.px(sym, s.weighted_avg),
                    "lastPrice": self.px(sym, s.last),
                    "lastQty": self.qty(sym, s.last_qty),
                    "openPrice": self.px(sym, s.open),
                    "highPrice": self.px(sym, s.high),
                    "lowPrice": self.px(sym, s.low),
                    "volume": self.qty(sym, s.volume),
                    "quoteVolume": f"{s.quote_volume:.2f}",
                    "openTime": s.open_time,
                    "closeTime": s.close_time,
                    "firstId": s.first_id,
                    "lastId": s.last_id,
                    "count": s.count,
                }
            )
        return json_response(rows[0] if alone else rows)

    async def ticker_price(self, request: web.Request) -> web.Response:
        symbols, alone = self._symbols(request)
        now = self.sim.state.last_event_ms
        rows = [
            {
                "symbol": s,
                "price": self.px(s, tickers.last_price(self.sim.state, s)),
                "time": now,
            }
            for s in symbols
        ]
        return json_response(rows[0] if alone else rows)

    async def book_ticker(self, request: web.Request) -> web.Response:
        symbols, alone = self._symbols(request)
        now = self.sim.state.last_event_ms
        rows = []
        for s in symbols:
            bid, bid_q, ask, ask_q = tickers.best_levels(self.sim.state, s)
            rows.append(
                {
                    "symbol": s,
                    "bidPrice": self.px(s, bid),
                    "bidQty": self.qty(s, bid_q),
                    "askPrice": self.px(s, ask),
                    "askQty": self.qty(s, ask_q),
                    "time": now,
                }
            )
        return json_response(rows[0] if alone else rows)


def _trade_rows(trades: Iterable[Trade]) -> list[dict[str, Any]]:
    """Trades as USDⓈ-M's REST rows: spot's without ``isBestMatch``, with ``quoteQty``."""
    return [
        {
            "id": t.id,
            "price": t.price,
            "qty": t.qty,
            "quoteQty": fmt_plain(Decimal(t.price) * Decimal(t.qty)),
            "time": t.time,
            "isBuyerMaker": t.is_buyer_maker,
        }
        for t in trades
    ]
