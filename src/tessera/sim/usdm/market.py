"""The USDⓈ-M market the simulator replays: a recording, the fapi exchangeInfo, brackets, marks.

Why its own loader: a USDⓈ-M recording is replayed frame for frame like a spot one (the same
`SimMarket`, `MarketState` and websocket machinery: trades, ``@depth@0ms`` diffs, bookTickers),
but it is served with the real fapi exchangeInfo (``samples/binance-usdm/exchange_info.json``,
reduced to the recorded symbols, each entry unchanged) instead of spot's, and it needs a mark
price, which spot has no notion of.

Mark price. A recording that holds ``<sym>@markPrice`` / ``@markPrice@1s`` frames gives it
(``p``, with the funding rate ``r`` and next funding time ``T``). The bundled recording does not:
there the mark is the middle of the recorded best bid and ask (``@bookTicker``), the price the
book says a position is worth. That is a stand-in, not Binance's mark (which starts from an index
of spot prices not recorded here), and `MarkPrices.source` says which one is served. Without
funding data the funding rate is unknown: ``premiumIndex`` then says ``lastFundingRate`` 0 and
``fundingRate`` has no rows (`MarkPrices.has_funding` is False), rather than inventing a rate.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from tessera.execution.perp.margin import LeverageBrackets
from tessera.sim.market import SimMarket
from tessera.sim.payloads import bucket_close, bucket_open, finer
from tessera.sim.recording import REPO_ROOT, load_recording
from tessera.sim.state import MarketState
from tessera.venues.binance_usdm.brackets import parse_leverage_brackets

if TYPE_CHECKING:
    from tessera.sim.usdm.bars import UsdmBarMarket

USDM_SAMPLES = REPO_ROOT / "samples" / "binance-usdm"
USDM_EXCHANGE_INFO_FILE = USDM_SAMPLES / "exchange_info.json"
USDM_BRACKETS_FILE = USDM_SAMPLES / "leverage_brackets.json"
USDM_RECORDINGS = sorted((REPO_ROOT / "samples" / "binance-raw-ws" / "usdm").glob("*.gz"))
FUNDING_INTERVAL_MS = 8 * 3_600_000  # Binance USDⓈ-M: funding at 00:00, 08:00, 16:00 UTC
INTEREST_RATE = Decimal("0.00010000")  # Binance's fixed interest rate per funding interval
ZERO = Decimal(0)
TWO = Decimal(2)


@lru_cache(maxsize=2)
def _load_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def usdm_exchange_info(
    symbols: Iterable[str], path: Path = USDM_EXCHANGE_INFO_FILE
) -> dict[str, Any]:
    """The recorded fapi exchangeInfo with ``symbols`` reduced to the given ones (each entry
    as recorded). A symbol the file lacks is an error naming it and the file."""
    doc: dict[str, Any] = orjson.loads(path.read_bytes())  # a fresh copy: callers edit it
    by_name = {s["symbol"]: s for s in doc["symbols"]}
    wanted = sorted(set(symbols))
    missing = [s for s in wanted if s not in by_name]
    if missing:
        raise ValueError(
            f"{path}: no exchangeInfo entry for {', '.join(missing)} "
            f"(it lists {', '.join(sorted(by_name))})"
        )
    doc["symbols"] = [by_name[s] for s in wanted]
    return doc


def usdm_brackets(path: Path = USDM_BRACKETS_FILE) -> dict[str, LeverageBrackets]:
    """The bundled real ``/fapi/v1/leverageBracket`` tiers, parsed."""
    return parse_leverage_brackets(_load_json(path))


def usdm_market(paths: Sequence[Path] | None = None) -> SimMarket:
    """A market replaying USDⓈ-M recordings (default: the bundled BTCUSDT slice)."""
    chosen = [Path(p) for p in (paths or USDM_RECORDINGS)]
    missing = [str(p) for p in chosen if not p.exists()]
    if missing:
        raise FileNotFoundError(f"recording not found: {', '.join(missing)}")
    rec = load_recording(chosen)
    return SimMarket(rec.frames, rec.snapshots, exchange_info=usdm_exchange_info(rec.symbols))


@dataclass(frozen=True, slots=True)
class MarkSample:
    time: int  # ms
    price: Decimal
    funding_rate: Decimal | None  # from markPrice frames, or a bar market's funding file
    next_funding_time: int | None
    high: Decimal | None = None  # bar mode: the mark's range over the candle
    low: Decimal | None = None


class MarkPrices:
    """Mark prices of one market in replay order, anchored at base frames like the streams."""

    def __init__(self, market: SimMarket) -> None:
        self.market = market
        self._series: dict[str, tuple[list[int], list[MarkSample]]] = {}
        self.source: dict[str, str] = {}
        self._moved: tuple[MarkPrices, int] | None = None

    def moved(self, market: SimMarket, dt: int) -> MarkPrices:
        """These marks ``dt`` ms later, for ``market`` (a looped replay's later pass of this
        one's market, see `tessera.sim.looping`): the same prices, times moved, each next
        funding time the first on its own funding grid after the moved time."""
        out = MarkPrices(market)
        out._moved = (self, dt)
        return out

    def series(self, symbol: str) -> tuple[list[int], list[MarkSample]]:
        got = self._series.get(symbol)
        if got is not None:
            return got
        if self._moved is not None:
            base, dt = self._moved
            at, src = base.series(symbol)
            self.source[symbol] = base.source[symbol]
            got = self._series[symbol] = (at, [_moved_sample(s, dt) for s in src])
            return got
        anchors: list[int] = []
        samples: list[MarkSample] = []
        low = symbol.lower()
        marks = [s for s in self.market.base_streams() if s.startswith(f"{low}@markPrice")]
        if bar_market(self.market) is not None:
            self.source[symbol] = self._bar_series(symbol, anchors, samples)
        elif marks:
            self.source[symbol] = marks[0]
            sd = self.market.stream(marks[0])
            assert sd is not None
            for i, text in zip(sd.anchors, sd.payloads, strict=True):
                d = orjson.loads(text)
                samples.append(
                    MarkSample(int(d["E"]), Decimal(d["p"]), Decimal(d["r"]), int(d["T"]))
                )
                anchors.append(i)
        else:
            self.source[symbol] = f"{low}@bookTicker mid"
            sd = self.market.stream(f"{low}@bookTicker")
            clock = self.market.clock_ms
            for i, text in zip(sd.anchors, sd.payloads, strict=True) if sd else ():
                d = orjson.loads(text)
                mid = (Decimal(d["b"]) + Decimal(d["a"])) / TWO
                samples.append(MarkSample(clock[i], mid, None, None))
                anchors.append(i)
        got = self._series[symbol] = (anchors, samples)
        return got

    def _bar_series(self, symbol: str, anchors: list[int], samples: list[MarkSample]) -> str:
        """Bar mode: one sample per candle, released with the candle (see `usdm.bars`); the
        funding rate is the last one settled (none before the first: no look-ahead)."""
        market = bar_market(self.market)
        assert market is not None
        given = market.given_bars(symbol)
        if given is None or symbol != market.symbol:
            return "none"
        times = [f.ts_ns // 1_000_000 for f in market.funding]
        for i, mb in zip(given.anchors, market.mark_bars, strict=True):
            now = mb.close_ms + 1
            k = bisect_right(times, now)
            rate = market.funding[k - 1].rate if k > 0 else None
            nxt = times[k] if k < len(times) else next_funding_time(now)
            samples.append(MarkSample(now, mb.close, rate, nxt, mb.high, mb.low))
            anchors.append(i)
        return market.mark_source

    def at(self, state: MarketState, symbol: str) -> MarkSample | None:
        """The last mark released at the state's position (None before the first)."""
        anchors, samples = self.series(symbol)
        n = bisect_left(anchors, state.position)
        return samples[n - 1] if n > 0 else None

    def has_funding(self, symbol: str) -> bool:
        market = bar_market(self.market)
        if market is not None:
            return symbol == market.symbol and bool(market.funding)
        return any(s.funding_rate is not None for s in self.series(symbol)[1][:1])

    def _bar_klines(
        self, state: MarketState, market: UsdmBarMarket, symbol: str, interval: str,
        start: int | None, end: int | None, limit: int,
    ) -> list[list[object]]:  # fmt: skip
        """Bar mode: the released candles' mark bars (the mark file's klines, else the
        candle's), resampled to ``interval``; finer intervals than the candles have no rows."""
        given = market.given_bars(symbol)
        if given is None or symbol != market.symbol or finer(interval, market.interval):
            return []
        n = bisect_left(given.anchors, state.position)
        rows: list[list[Any]] = []
        for mb in market.mark_bars[:n]:
            t = bucket_open(mb.open_ms, interval)
            if rows and rows[-1][0] == t:
                r = rows[-1]
                r[2], r[3], r[4], r[6] = max(r[2], mb.high), min(r[3], mb.low), mb.close, r[6] + 1
            else:
                rows.append([t, mb.open, mb.high, mb.low, mb.close, bucket_close(t, interval), 1])
        rows = [
            r
            for r in rows
            if (start is None or r[0] >= bucket_open(start, interval))
            and (end is None or r[0] <= end)
        ]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [_mark_row(r) for r in rows]

    def klines(
        self, state: MarketState, symbol: str, interval: str, start: int | None,
        end: int | None, limit: int,
    ) -> list[list[object]]:  # fmt: skip
        """``markPriceKlines`` rows from the released marks: OHLC of the marks in each bar,
        volume "0", the number of marks as the count (Binance's layout)."""
        market = bar_market(self.market)
        if market is not None:
            return self._bar_klines(state, market, symbol, interval, start, end, limit)
        anchors, samples = self.series(symbol)
        released = samples[: bisect_left(anchors, state.position)]
        bars: list[list[Any]] = []
        for s in released:
            if start is not None and s.time < bucket_open(start, interval):
                continue
            if end is not None and s.time > end:
                break
            t = bucket_open(s.time, interval)
            if bars and bars[-1][0] == t:
                bar = bars[-1]
                bar[2], bar[3], bar[4] = max(bar[2], s.price), min(bar[3], s.price), s.price
                bar[8] += 1
            else:
                bars.append([t, s.price, s.price, s.price, s.price, "0",
                             bucket_close(t, interval), "0", 1, "0", "0", "0"])  # fmt: skip
        rows = bars[:limit] if start is not None else bars[-limit:]
        return [[r[0], *(f"{p:f}" for p in r[1:5]), *r[5:]] for r in rows]


def _moved_sample(s: MarkSample, dt: int) -> MarkSample:
    t = s.time + dt
    nxt = s.next_funding_time
    if nxt is not None and nxt <= t:
        nxt += ((t - nxt) // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
    return MarkSample(t, s.price, s.funding_rate, nxt, s.high, s.low)


def _mark_row(r: list[Any]) -> list[Any]:
    """[open time, open, high, low, close, close time, count] as a markPriceKlines row."""
    t, o, h, lo, c, close, n = r
    return [t, f"{o:f}", f"{h:f}", f"{lo:f}", f"{c:f}", "0", close, "0", n, "0", "0", "0"]


def next_funding_time(now_ms: int) -> int:
    """The next 00:00/08:00/16:00 UTC after ``now_ms``."""
    return (now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


def bar_market(market: SimMarket) -> UsdmBarMarket | None:
    """The market as a `UsdmBarMarket` (bar mode with mark and funding files), else None."""
    from tessera.sim.usdm.bars import UsdmBarMarket

    return market if isinstance(market, UsdmBarMarket) else None
