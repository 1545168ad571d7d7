"""Looped replay that never sends time backwards: each pass over the data moves forward.

Why: a looped replay (``ExchangeSimulator(loop_replay=True)``, ``tessera sim serve --loop``)
used to start every pass at the recording's own times and ids. A real exchange's clock and
sequences never go back, and a live bot rightly drops a bar older than the last one it saw
(``tessera_out_of_order_bars_total``), so a bot stopped trading after the pass it started in.

Pass ``k`` serves the same market shifted forward, on everything the simulator serves (every
websocket stream, every REST answer, the trading engine's view of trades and the book):

- times (event ``E``, trade/transaction ``T``, kline open/close, aggTrade ``T``, forceOrder
  ``o.T``) by ``k * span_ms``. ``span_ms`` is the number of whole *units* the data touches,
  times the unit: the unit is 60 s, or the interval of the market's own kline frames when
  longer (a bar file of 1h candles loops by whole hours). So every 1s and 1m bar (and the
  market's own bars) stays on its grid, and the first bar of a pass opens after the last bar
  of the pass before. The replay starts the next pass at once, so market time jumps forward
  by ``span_ms`` minus the data's length at each boundary (a quiet stretch, up to one unit).
  Bars longer than the unit derived from finer data (a 1h bar of a 3-minute recording) are not
  realigned: the next pass's trades fall in the same 1h bar again, which then starts over;
- trade ids (``t``, aggTrade ``f``/``l``, kline ``f``/``L``) by ``k * (trade id range + 1)``
  per symbol, recorded aggregate ids (``a``) by ``k * (aggregate id range + 1)``; aggregates
  the simulator builds from trades count from the first trade id, so they move with trades;
- book update ids (``U``/``u``/``pu``, bookTicker ``u``, the snapshot's ``lastUpdateId``) by
  ``k * (update id range + 1)`` per symbol. A new pass starts with a fresh book: the first diff
  of a pass does not chain to the last one of the pass before (``U``/``pu`` jump forward), so a
  client sees a gap and resyncs from a ``/depth`` snapshot, which the fresh book answers with
  ids of the same pass;
- a recorded ``markPriceUpdate``'s next funding time ``T`` stays on its own funding grid: the
  first time on it (``T`` plus whole 8 h intervals) after the shifted event time.

Pass 0 is the market itself, byte for byte. A shifted pass is a `ShiftedMarket`: payload texts
are parsed, shifted and re-serialised lazily, per stream on first use; the simulator keeps only
the current pass. ``/time`` and everything the trading engine stamps with "now" is the host's
clock (see `tessera.sim.rest.server_time_ms`), which needs no shifting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tessera.sim.market import SimMarket, StreamData, SymbolBars, SymbolTrades
from tessera.sim.payloads import INTERVAL_MS, AggTrade, Kline, Trade
from tessera.sim.recording import Snapshot

__all__ = ["LoopOffsets", "ShiftedMarket", "loop_offsets", "market_for_pass", "shift_payload"]

MINUTE_MS = 60_000
MONTH_MS = 31 * 86_400_000  # a "1M" bar market: no fixed shift keeps calendar months aligned
FUNDING_INTERVAL_MS = 8 * 3_600_000
_UPDATE_ID = re.compile(r'"u":(\d+)')


@dataclass(frozen=True, slots=True)
class LoopOffsets:
    """What one pass adds, per symbol (upper case) where ids are concerned."""

    span_ms: int
    trade_ids: dict[str, int]
    agg_ids: dict[str, int]  # recorded aggregate ids; built aggregates move with trade ids
    update_ids: dict[str, int]

    def trade(self, symbol: str) -> int:
        return self.trade_ids.get(symbol, 1)

    def agg(self, symbol: str) -> int:
        return self.agg_ids.get(symbol, self.trade(symbol))

    def update(self, symbol: str) -> int:
        return self.update_ids.get(symbol, 1)


def _span(market: SimMarket) -> int:
    """Whole units touched by the data, times the unit (see the module docstring)."""
    unit = MINUTE_MS
    for interval in market.bar_intervals.values():
        width = INTERVAL_MS.get(interval, MINUTE_MS)
        unit = max(unit, width if width is not None else MONTH_MS)
    clock = market.clock_ms
    if not clock:
        return unit
    lo, hi = clock[0], clock[-1]
    for sym in market.symbols:
        trades = market.trades(sym).trades
        if trades:
            lo, hi = min(lo, trades[0].time), max(hi, trades[-1].time)
        given = market.given_bars(sym)
        if given is not None and given.bars:
            lo = min(lo, min(b.open_time for b in given.bars))
            hi = max(hi, max(b.open_time for b in given.bars))
    return (hi // unit - lo // unit + 1) * unit


def _id_range(values: Iterator[int]) -> int:
    lo = hi = None
    for v in values:
        if v < 0:
            continue
        lo = v if lo is None or v < lo else lo
        hi = v if hi is None or v > hi else hi
    return 1 if lo is None or hi is None else hi - lo + 1


def _update_ids(market: SimMarket, symbol: str) -> Iterator[int]:
    low = symbol.lower()
    snap = market.snapshots.get(symbol)
    if snap is not None:
        yield snap.last_update_id
    for name in market.base_streams():
        sym_l, _, kind = name.partition("@")
        if sym_l != low:
            continue
        sd = market.stream(name)
        if sd is None:
            continue
        if kind.startswith("depth"):
            for text in sd.payloads:
                d = orjson.loads(text)
                yield int(d["U"])
                yield int(d["u"])
                if "pu" in d:
                    yield int(d["pu"])
        elif kind == "bookTicker":
            for text in sd.payloads:
                m = _UPDATE_ID.search(text)
                if m is not None:
                    yield int(m.group(1))


def loop_offsets(market: SimMarket) -> LoopOffsets:
    """The per-pass shifts of ``market`` (computed once, from pass 0)."""
    trade_ids: dict[str, int] = {}
    agg_ids: dict[str, int] = {}
    update_ids: dict[str, int] = {}
    for sym in market.symbols:
        trades = market.trades(sym).trades
        ids = [t.id for t in trades]
        given = market.given_bars(sym)
        if given is not None:
            ids.extend(b.first_id for b in given.bars)
            ids.extend(b.last_id for b in given.bars)
        recorded_aggs = f"{sym.lower()}@aggTrade" in market.base_streams()
        if recorded_aggs:
            aggs = market.aggregates(sym)[1]
            ids.extend(a.first_id for a in aggs)
            ids.extend(a.last_id for a in aggs)
            agg_ids[sym] = _id_range(a.id for a in aggs)
        trade_ids[sym] = _id_range(iter(ids))
        update_ids[sym] = _id_range(_update_ids(market, sym))
    return LoopOffsets(_span(market), trade_ids, agg_ids, update_ids)


def _next_funding_on_grid(t: int, after: int) -> int:
    """``t`` plus the fewest whole funding intervals that put it after ``after``."""
    if t > after:
        return t
    return t + ((after - t) // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


def _add(d: dict[str, Any], key: str, delta: int) -> None:
    v = d.get(key)
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        d[key] = v + delta


def shift_event(d: dict[str, Any], dt: int, di: int, da: int, du: int) -> None:
    """Shift one parsed payload in place: times by ``dt``, trade ids by ``di``, aggregate ids
    by ``da``, book update ids by ``du`` (keys by event type: ``t`` is a trade id in a trade
    but an open time inside a kline's ``k``; ``T`` is a trade, transaction or funding time)."""
    event = d.get("e")
    _add(d, "E", dt)
    if event == "trade":
        _add(d, "T", dt)
        _add(d, "t", di)
    elif event == "aggTrade":
        _add(d, "T", dt)
        _add(d, "a", da)
        _add(d, "f", di)
        _add(d, "l", di)
    elif event == "kline":
        k = d.get("k")
        if isinstance(k, dict):
            _add(k, "t", dt)
            _add(k, "T", dt)
            _add(k, "f", di)
            _add(k, "L", di)
    elif event == "markPriceUpdate":
        t, e = d.get("T"), d.get("E")
        if isinstance(t, int) and isinstance(e, int) and t > 0:
            d["T"] = _next_funding_on_grid(t, e)
    elif event == "forceOrder":
        o = d.get("o")
        if isinstance(o, dict):
            _add(o, "T", dt)
    elif event in ("depthUpdate", "bookTicker") or (event is None and "u" in d):
        _add(d, "T", dt)
        _add(d, "U", du)
        _add(d, "u", du)
        _add(d, "pu", du)
    elif event == "24hrTicker" or event == "24hrMiniTicker":
        _add(d, "O", dt)
        _add(d, "C", dt)
    else:
        _add(d, "T", dt)


def shift_payload(text: str, dt: int, di: int, da: int, du: int) -> str:
    """`shift_event` on a payload's JSON text."""
    d = orjson.loads(text)
    shift_event(d, dt, di, da, du)
    return orjson.dumps(d).decode()


class _ShiftedStreams(Mapping[str, StreamData]):
    """A market's base streams, each shifted on first use (anchors shared with pass 0)."""

    def __init__(self, base: Mapping[str, StreamData], shift: Callable[[StreamData], StreamData]):
        self._source = base
        self._shift = shift
        self._done: dict[str, StreamData] = {}

    def __getitem__(self, name: str) -> StreamData:
        got = self._done.get(name)
        if got is None:
            got = self._done[name] = self._shift(self._source[name])
        return got

    def __contains__(self, name: object) -> bool:
        return name in self._source

    def __iter__(self) -> Iterator[str]:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)


class ShiftedMarket(SimMarket):
    """Pass ``k`` (> 0) of a looped replay of ``base``: the same frames, moved forward.

    Built without `SimMarket.__init__` on purpose: frames, kinds, symbols and exchangeInfo are
    the base's (nothing to recompute); the clock, snapshots, trades, aggregates and given bars
    are the base's shifted (objects, no parsing); base stream payloads are shifted per stream
    on first use, and derived streams (aggTrade, klines, merged depth) are derived again from
    the shifted data, so that they agree with REST exactly as on pass 0."""

    def __init__(self, base: SimMarket, k: int, offsets: LoopOffsets) -> None:
        self.base = base
        self.pass_index = k
        self.offsets = offsets
        self.dt = k * offsets.span_ms
        self.frames = base.frames
        self.symbols = base.symbols
        self.exchange_info = base.exchange_info
        self.bar_intervals = base.bar_intervals
        self._kind_index = base._kind_index
        self.clock_ms = [c + self.dt for c in base.clock_ms]
        self.snapshots = {
            sym: Snapshot(
                s.symbol,
                s.recv_ns + self.dt * 1_000_000,
                s.last_update_id + k * offsets.update(sym),
                s.bids,
                s.asks,
            )
            for sym, s in base.snapshots.items()
        }
        self._base = _ShiftedStreams(base._base, self._shift_stream)
        self._derived = {}
        self._trades = {}
        self._aggs = {}
        self._bars = {}

    def _derive(self, name: str) -> StreamData | None:
        """A derived stream: pass 0's shifted when shifting keeps it exact (aggregates, merged
        depth, klines whose interval divides the span), else derived again from the shifted
        data (a kline interval longer than the span keeps its own grid that way)."""
        kind = name.partition("@")[2]
        if kind.startswith("kline_"):
            width = INTERVAL_MS.get(kind[6:])
            if width is None or self.offsets.span_ms % width or kind == "kline_1w":
                return super()._derive(name)
        src = self.base.stream(name)
        return self._shift_stream(src) if src is not None else None

    def _deltas(self, symbol: str) -> tuple[int, int, int, int]:
        k, o = self.pass_index, self.offsets
        return self.dt, k * o.trade(symbol), k * o.agg(symbol), k * o.update(symbol)

    def _shift_stream(self, sd: StreamData) -> StreamData:
        dt, di, da, du = self._deltas(sd.name.partition("@")[0].upper())
        payloads = [shift_payload(p, dt, di, da, du) for p in sd.payloads]
        return StreamData(sd.name, sd.kind, sd.anchors, payloads)

    def trades(self, symbol: str) -> SymbolTrades:
        got = self._trades.get(symbol)
        if got is None:
            src = self.base.trades(symbol)
            dt, di, _, _ = self._deltas(symbol)
            got = SymbolTrades(
                src.anchors,
                [_shift_trade(t, dt, di) for t in src.trades],
                [e + dt for e in src.event_ms],
            )
            self._trades[symbol] = got
        return got

    def aggregates(self, symbol: str) -> tuple[list[int], list[AggTrade]]:
        got = self._aggs.get(symbol)
        if got is None:
            anchors, aggs = self.base.aggregates(symbol)
            dt, di, da, _ = self._deltas(symbol)
            got = self._aggs[symbol] = (
                anchors,
                [_shift_agg(a, dt, di, da) for a in aggs],
            )
        return got

    def given_bars(self, symbol: str) -> SymbolBars | None:
        got = self._bars.get(symbol)
        if got is None:
            src = self.base.given_bars(symbol)
            if src is None:
                return None
            dt, di, _, _ = self._deltas(symbol)
            got = SymbolBars(
                src.anchors, [_shift_bar(b, dt, di) for b in src.bars], src.closed, src.interval
            )
            self._bars[symbol] = got
        return got


def _shift_trade(t: Trade, dt: int, di: int) -> Trade:
    return Trade(t.id + di, t.price, t.qty, t.time + dt, t.is_buyer_maker)


def _shift_agg(a: AggTrade, dt: int, di: int, da: int) -> AggTrade:
    return AggTrade(
        a.id + da, a.price, a.qty, a.first_id + di, a.last_id + di, a.time + dt, a.is_buyer_maker
    )


def _shift_bar(b: Kline, dt: int, di: int) -> Kline:
    return Kline(
        b.open_time + dt, b.close_time + dt, b.open, b.high, b.low, b.close, b.volume,
        b.quote_volume, b.trades, b.taker_base, b.taker_quote,
        b.first_id + di if b.first_id >= 0 else b.first_id,
        b.last_id + di if b.last_id >= 0 else b.last_id,
    )  # fmt: skip


def market_for_pass(base: SimMarket, k: int, offsets: LoopOffsets) -> SimMarket:
    """Pass ``k`` of a looped replay: ``base`` itself for pass 0, else a `ShiftedMarket`."""
    return base if k == 0 else ShiftedMarket(base, k, offsets)
