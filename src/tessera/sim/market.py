"""`SimMarket`: the data a simulated exchange serves, independent of sockets and clocks.

A market is an ordered list of *base frames* (what was recorded, or events built from Arrow
tables), one replay clock value per frame (the exchange event time ``E`` in ms), the recorded
``/depth`` snapshots and the exchangeInfo entries. Replaying means releasing base frames in order;
every websocket stream is a list of payloads, each *anchored* at the base frame whose release
makes it visible:

- base streams (``<sym>@trade``, ``<sym>@depth@100ms``, ``<sym>@bookTicker``, recorded
  ``@aggTrade``/``@kline_1m``) anchor each payload at its own frame, text exactly as recorded;
- derived streams are built on first use, from base frames only, so they are deterministic and
  agree with what REST serves at the same position: ``<sym>@aggTrade`` from trades,
  ``<sym>@kline_<interval>`` from trades (or from 1m bars), ``<sym>@depth`` (1000 ms) by merging
  the 100 ms diffs of each second.

Loaders: :meth:`SimMarket.from_recording` (raw recordings, frame for frame) and
:meth:`SimMarket.from_tables` (``pyarrow`` tables with the columns of ``tessera.data.schemas``
``TRADES`` / ``KLINES``, as read from the Parquet store).
"""

from __future__ import annotations

import re
import statistics
import struct
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tessera.logging import get_logger
from tessera.sim.exchange_info import EXCHANGE_INFO_FILE, build_exchange_info, step_of
from tessera.sim.payloads import (
    INTERVAL_MS,
    AggTrade,
    Kline,
    Trade,
    aggregate_trades,
    bucket_open,
    combine,
    finer,
)
from tessera.sim.recording import Frame, Recording, Snapshot, load_recording

log = get_logger(__name__)

_EVENT_TIME = re.compile(r'"E":(\d+)')
_STREAM = re.compile(r"^([a-z0-9_.-]+)@([A-Za-z0-9_@]+)$")
# Every spot order type, as Binance's exchangeInfo lists them for a symbol today (see
# samples/binance-api/spot-http/exchange_info_response.json). The bundled 2021 exchangeInfo
# predates STOP_LOSS and TAKE_PROFIT on BTCUSDT/ETHUSDT; a simulator that refused them could not
# exercise them, so built markets serve this list (the engine enforces what is served).
SPOT_ORDER_TYPES = (
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
)
# USDⓈ-M diff-depth streams and their update speed (``@depth`` is 250 ms on futures), derived
# from a recording's ``@depth@0ms`` diffs when the recording has no such stream itself
USDM_DEPTH_WINDOWS_MS = {"depth": 250, "depth@100ms": 100, "depth@250ms": 250, "depth@500ms": 500}
# Binance pushes kline updates every second for 1s bars and every 2 seconds for the others.
KLINE_UPDATE_MS = {"1s": 1_000}
DEFAULT_KLINE_UPDATE_MS = 2_000


def normalize_stream(name: str) -> str | None:
    """``"BTCUSDT@trade"`` -> ``"btcusdt@trade"``; None if it is not a stream name."""
    sym, at, rest = name.partition("@")
    if not at or not sym or not rest:
        return None
    norm = f"{sym.lower()}@{rest}"
    return norm if _STREAM.match(norm) else None


def ws_text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, final websocket text frame (RFC 6455 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


@dataclass
class StreamData:
    """One websocket stream: payload texts and the base frame index each one waits for."""

    name: str
    kind: str  # trade | aggTrade | depth | bookTicker | kline
    anchors: list[int]
    payloads: list[str]
    _wire: dict[bool, list[bytes]] = field(default_factory=dict, repr=False)

    def wire(self, combined: bool) -> list[bytes]:
        """Pre-built websocket frames (raw payload, or the combined-stream envelope)."""
        built = self._wire.get(combined)
        if built is None:
            if combined:
                head = f'{{"stream":"{self.name}","data":'.encode()
                built = [ws_text_frame(head + p.encode() + b"}") for p in self.payloads]
            else:
                built = [ws_text_frame(p.encode()) for p in self.payloads]
            self._wire[combined] = built
        return built


@dataclass(slots=True)
class SymbolTrades:
    anchors: list[int]  # base frame index of each trade
    trades: list[Trade]
    event_ms: list[int]  # E of the frame that carried each trade


@dataclass(slots=True)
class SymbolBars:
    """1m bars given as data (kline frames), not built from trades."""

    anchors: list[int]
    bars: list[Kline]  # each frame's bar: updates of one open_time replace earlier ones
    closed: list[bool]  # the frame's "x": the bar is final
    interval: str = "1m"  # the bars' interval (a bar file of 1h perpetual candles: "1h")


class SimMarket:
    """Immutable replay data; safe to share between simulators (derived streams are cached)."""

    def __init__(
        self,
        frames: list[Frame],
        snapshots: Mapping[str, Snapshot] | None = None,
        exchange_info: dict[str, Any] | None = None,
        exchange_info_path: Path = EXCHANGE_INFO_FILE,
    ) -> None:
        self.frames = frames
        self.snapshots = dict(snapshots or {})
        self.symbols: list[str] = sorted({f.symbol for f in frames} | set(self.snapshots))
        self.clock_ms = _replay_clock(frames)
        base: dict[str, StreamData] = {}
        self._kind_index: dict[str, list[int]] = {}
        for i, f in enumerate(frames):
            sd = base.get(f.stream)
            if sd is None:
                sd = base[f.stream] = StreamData(f.stream, f.kind, [], [])
            sd.anchors.append(i)
            sd.payloads.append(f.data)
            self._kind_index.setdefault(f.kind, []).append(i)
        # a Mapping: a looped replay's later passes (`tessera.sim.looping`) shift it lazily
        self._base: Mapping[str, StreamData] = base
        self._derived: dict[str, StreamData | None] = {}
        self._trades: dict[str, SymbolTrades] = {}
        self._aggs: dict[str, tuple[list[int], list[AggTrade]]] = {}
        self._bars: dict[str, SymbolBars] = {}
        # the interval of the bars each symbol carries as kline frames (1m, or a bar file's own)
        self.bar_intervals: dict[str, str] = {}
        for name in self._base:
            sym_l, _, kind = name.partition("@")
            if kind.startswith("kline_"):
                self.bar_intervals.setdefault(sym_l.upper(), kind[6:])
        if exchange_info is None:
            exchange_info = build_exchange_info(
                self.symbols, self._observed_steps(), exchange_info_path
            )
            for entry in exchange_info["symbols"]:
                entry["orderTypes"] = list(SPOT_ORDER_TYPES)
        self.exchange_info = exchange_info
        for sym in self.symbols:
            if f"{sym.lower()}@depth@100ms" in self._base and sym not in self.snapshots:
                log.warning(
                    "no depth snapshot recorded: /depth serves a book built from diffs alone",
                    symbol=sym,
                )

    # --- loaders --------------------------------------------------------------------------------

    @classmethod
    def from_recording(
        cls, recording: Recording | Iterable[Path], exchange_info_path: Path = EXCHANGE_INFO_FILE
    ) -> SimMarket:
        rec = recording if isinstance(recording, Recording) else load_recording(recording)
        return cls(rec.frames, rec.snapshots, exchange_info_path=exchange_info_path)

    @classmethod
    def from_tables(
        cls,
        trades: Mapping[str, pa.Table] | None = None,
        klines: Mapping[str, pa.Table] | None = None,
        exchange_info_path: Path = EXCHANGE_INFO_FILE,
    ) -> SimMarket:
        """Events from tables with the ``TRADES`` / ``KLINES`` columns, keyed by symbol.

        Trades become ``@trade`` frames (``E`` = ``event_time``, else ``trade_time``); klines (of
        one interval, 1m or longer) become closed ``@kline_<interval>`` events at their
        ``event_time`` (else close time + 1 ms). The
        tables carry no trade ids per bar, so those events say ``f``/``L`` = -1.
        """
        frames: list[tuple[int, int, Frame]] = []
        for sym, table in (trades or {}).items():
            frames.extend(_trade_frames(sym, table))
        for sym, table in (klines or {}).items():
            frames.extend(_kline_frames(sym, table))
        frames.sort(key=lambda x: (x[0], x[1]))
        return cls([f for _, _, f in frames], exchange_info_path=exchange_info_path)

    # --- what the replay serves -----------------------------------------------------------------

    def stream(self, name: str) -> StreamData | None:
        """The stream called ``name`` (normalized), or None if this market has no such data."""
        norm = normalize_stream(name)
        if norm is None:
            return None
        base = self._base.get(norm)
        if base is not None:
            return base
        if norm not in self._derived:
            self._derived[norm] = self._derive(norm)
        return self._derived[norm]

    def base_streams(self) -> list[str]:
        return sorted(self._base)

    def kind_indices(self, kind: str) -> list[int]:
        """Base frame indices of one kind, in replay order (fault plans count them)."""
        return self._kind_index.get(kind, [])

    def trades(self, symbol: str) -> SymbolTrades:
        got = self._trades.get(symbol)
        if got is None:
            got = SymbolTrades([], [], [])
            base = self._base.get(f"{symbol.lower()}@trade")
            if base is not None:
                for i, text in zip(base.anchors, base.payloads, strict=True):
                    d = orjson.loads(text)
                    got.anchors.append(i)
                    got.trades.append(Trade.from_ws(d))
                    got.event_ms.append(int(d["E"]))
            self._trades[symbol] = got
        return got

    def aggregates(self, symbol: str) -> tuple[list[int], list[AggTrade]]:
        """Aggregate trades with their anchors: recorded ones if any, else built from trades."""
        got = self._aggs.get(symbol)
        if got is None:
            anchors: list[int] = []
            aggs: list[AggTrade] = []
            recorded = self._base.get(f"{symbol.lower()}@aggTrade")
            if recorded is not None:
                for i, text in zip(recorded.anchors, recorded.payloads, strict=True):
                    anchors.append(i)
                    aggs.append(AggTrade.from_ws(orjson.loads(text)))
            else:
                st = self.trades(symbol)
                # Aggregate ids are their own sequence on Binance; ours count from the first
                # trade id so that they look plausible and never collide across replays.
                first = st.trades[0].id if st.trades else 0
                for last, agg in aggregate_trades(st.trades, first):
                    anchors.append(st.anchors[last])
                    aggs.append(agg)
            got = self._aggs[symbol] = (anchors, aggs)
        return got

    def given_bars(self, symbol: str) -> SymbolBars | None:
        """Bars carried as kline frames (recorded 1m, or a table's bars of any one interval),
        if the data has them."""
        got = self._bars.get(symbol)
        if got is None:
            interval = self.bar_intervals.get(symbol)
            base = self._base.get(f"{symbol.lower()}@kline_{interval}") if interval else None
            if base is None or interval is None:
                return None
            ks = [orjson.loads(p)["k"] for p in base.payloads]
            got = SymbolBars(
                list(base.anchors),
                [Kline.from_ws(k) for k in ks],
                [bool(k["x"]) for k in ks],
                interval,
            )
            self._bars[symbol] = got
        return got

    # --- derivations ----------------------------------------------------------------------------

    def _derive(self, name: str) -> StreamData | None:
        sym_l, _, kind = name.partition("@")
        sym = sym_l.upper()
        if sym not in self.symbols:
            return None
        if kind == "aggTrade":
            anchors, aggs = self.aggregates(sym)
            if not aggs:
                return None
            st = self.trades(sym)
            pos = {a: e for a, e in zip(st.anchors, st.event_ms, strict=True)}
            payloads = [
                orjson.dumps(a.ws(sym, pos.get(i, a.time))).decode()
                for i, a in zip(anchors, aggs, strict=True)
            ]
            return StreamData(name, "aggTrade", anchors, payloads)
        if kind.startswith("kline_") and kind[6:] in INTERVAL_MS:
            return self._derive_klines(name, sym, kind[6:])
        if kind in USDM_DEPTH_WINDOWS_MS and f"{sym_l}@depth@0ms" in self._base:
            return self._derive_depth_usdm(name, sym, USDM_DEPTH_WINDOWS_MS[kind])
        if kind == "depth":
            return self._derive_depth_1s(name, sym)
        return None

    def _derive_klines(self, name: str, sym: str, interval: str) -> StreamData | None:
        out = StreamData(name, "kline", [], [])
        every = KLINE_UPDATE_MS.get(interval, DEFAULT_KLINE_UPDATE_MS)
        clock = self.clock_ms
        cur: Kline | None = None
        last_emit = -(1 << 62)

        def close_bar(bar: Kline, before: int) -> None:
            # Binance closes a bar on its own clock, not at the next trade: anchor the final
            # event at the first frame (any stream) past the bar's close time.
            at = min(bisect_right(clock, bar.close_time), before)
            if out.anchors:
                at = max(at, out.anchors[-1])  # E can run ahead of T: keep the stream in order
            out.anchors.append(at)
            out.payloads.append(orjson.dumps(bar.ws(sym, interval, clock[at], True)).decode())

        st = self.trades(sym)
        if st.trades:
            for i, t, e in zip(st.anchors, st.trades, st.event_ms, strict=True):
                start = bucket_open(t.time, interval)
                if cur is not None and start > cur.open_time:
                    close_bar(cur, i)
                    cur = None
                if cur is None:
                    cur = Kline.first(start, interval, t)
                else:
                    cur.add(t)
                if e - last_emit >= every:
                    last_emit = e
                    out.anchors.append(i)
                    out.payloads.append(orjson.dumps(cur.ws(sym, interval, e, False)).decode())
        else:
            given = self.given_bars(sym)
            if given is None or finer(interval, given.interval):
                return None  # finer bars than the data: not derivable
            done: list[Kline] = []  # final 1m bars of the current bucket
            for i, b, final in zip(given.anchors, given.bars, given.closed, strict=True):
                start = bucket_open(b.open_time, interval)
                if cur is not None and start > cur.open_time:
                    close_bar(cur, i)
                    done = []
                cur = combine(start, interval, [*done, b])
                if final:
                    done.append(b)
                    if b.close_time == cur.close_time:  # the bucket's last minute is final
                        close_bar(cur, i)
                        cur, done = None, []
                        continue
                e = clock[i]
                if e - last_emit >= every:
                    last_emit = e
                    out.anchors.append(i)
                    out.payloads.append(orjson.dumps(cur.ws(sym, interval, e, False)).decode())
        if cur is not None and clock and clock[-1] > cur.close_time:
            close_bar(cur, len(clock) - 1)
        return out if out.payloads else None

    def _derive_depth_1s(self, name: str, sym: str) -> StreamData | None:
        """``<sym>@depth`` (1000 ms): the 100 ms diffs of each second merged into one."""
        base = self._base.get(f"{sym.lower()}@depth@100ms")
        if base is None:
            return None
        out = StreamData(name, "depth", [], [])
        group: list[dict[str, Any]] = []
        anchor = -1

        def flush() -> None:
            bids, asks = _merged_levels(group)
            first, last = group[0], group[-1]
            merged = {
                "e": "depthUpdate",
                "E": last["E"],
                "s": last["s"],
                "U": first["U"],
                "u": last["u"],
                "b": bids,
                "a": asks,
            }
            out.anchors.append(anchor)
            out.payloads.append(orjson.dumps(merged).decode())

        for i, text in zip(base.anchors, base.payloads, strict=True):
            d = orjson.loads(text)
            if group and int(d["E"]) // 1000 != int(group[0]["E"]) // 1000:
                flush()
                group = []
            group.append(d)
            anchor = i
        if group:
            flush()
        return out

    def _derive_depth_usdm(self, name: str, sym: str, window_ms: int) -> StreamData | None:
        """USDⓈ-M ``@depth``/``@depth@<n>ms`` from recorded ``@depth@0ms`` diffs: the diffs of
        each window of exchange time merged (the last quantity of a level wins), ``U`` and
        ``pu`` of the first, ``u``, ``E`` and ``T`` of the last, so that ``pu`` still equals
        the ``u`` of the event before, as Binance's futures book procedure checks."""
        base = self._base[f"{sym.lower()}@depth@0ms"]
        out = StreamData(name, "depth", [], [])
        group: list[dict[str, Any]] = []
        anchor = -1

        def flush() -> None:
            bids, asks = _merged_levels(group)
            first, last = group[0], group[-1]
            merged = {
                "e": "depthUpdate",
                "E": last["E"],
                "T": last["T"],
                "s": last["s"],
                "U": first["U"],
                "u": last["u"],
                "pu": first["pu"],
                "b": bids,
                "a": asks,
            }
            out.anchors.append(anchor)
            out.payloads.append(orjson.dumps(merged).decode())

        for i, text in zip(base.anchors, base.payloads, strict=True):
            d = orjson.loads(text)
            if group and int(d["E"]) // window_ms != int(group[0]["E"]) // window_ms:
                flush()
                group = []
            group.append(d)
            anchor = i
        if group:
            flush()
        return out

    def _observed_steps(self) -> dict[str, tuple[Decimal | None, Decimal | None]]:
        steps: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        for sym in self.symbols:
            st = self.trades(sym)
            if st.trades:
                steps[sym] = (
                    step_of(t.price for t in st.trades),
                    step_of(t.qty for t in st.trades),
                )
        return steps


def _merged_levels(group: list[dict[str, Any]]) -> tuple[list[list[str]], list[list[str]]]:
    """Bids (best first) and asks (best first) of depth diffs merged in order: the last
    quantity of a level wins, as a book applying them one by one would hold it."""
    bids: dict[Decimal, list[str]] = {}
    asks: dict[Decimal, list[str]] = {}
    for d in group:
        for lv in d["b"]:
            bids[Decimal(lv[0])] = lv
        for lv in d["a"]:
            asks[Decimal(lv[0])] = lv
    return [bids[p] for p in sorted(bids, reverse=True)], [asks[p] for p in sorted(asks)]


def _replay_clock(frames: list[Frame]) -> list[int]:
    """Replay time of each frame: its exchange event time ``E`` (ms), never going backwards.

    Frames without ``E`` (spot ``@bookTicker``) get their local receive time shifted by the
    median exchange-minus-local offset seen on frames that have one.
    """
    events: list[int | None] = []
    offsets: list[int] = []
    for f in frames:
        m = _EVENT_TIME.search(f.data, 0, 64)
        if m is None:
            events.append(None)
            continue
        e = int(m.group(1))
        events.append(e)
        if len(offsets) < 2000:
            offsets.append(e - f.recv_ns // 1_000_000)
    offset = int(statistics.median(offsets)) if offsets else 0
    clock: list[int] = []
    prev = -(1 << 62)
    for f, ev in zip(frames, events, strict=True):
        t = ev if ev is not None else f.recv_ns // 1_000_000 + offset
        prev = max(prev, t)
        clock.append(prev)
    return clock


def _ms(col: Any) -> list[int | None]:
    return [None if v is None else v // 1_000_000 for v in pc.cast(col, pa.int64()).to_pylist()]


def _trade_frames(symbol: str, table: pa.Table) -> Iterable[tuple[int, int, Frame]]:
    ids = table["trade_id"].to_pylist()
    prices = pc.cast(table["price"], pa.string()).to_pylist()
    qtys = pc.cast(table["qty"], pa.string()).to_pylist()
    makers = table["is_buyer_maker"].to_pylist()
    times = _ms(table["trade_time"])
    events = _ms(table["event_time"]) if "event_time" in table.column_names else times
    recvs = (
        pc.cast(table["recv_time"], pa.int64()).to_pylist()
        if "recv_time" in table.column_names
        else [None] * len(ids)
    )
    stream = f"{symbol.lower()}@trade"
    for tid, p, q, m, t, e, r in zip(ids, prices, qtys, makers, times, events, recvs, strict=True):
        assert t is not None
        ev = e if e is not None else t
        text = orjson.dumps(Trade(tid, p, q, t, m).ws(symbol, ev)).decode()
        yield ev, tid, Frame(r if r is not None else ev * 1_000_000, stream, "trade", symbol, text)


def _kline_frames(symbol: str, table: pa.Table) -> Iterable[tuple[int, int, Frame]]:
    intervals = set(table["interval"].to_pylist())
    if len(intervals) != 1 or not intervals <= set(INTERVAL_MS) - {"1s"}:
        raise ValueError(
            f"{symbol}: klines must be bars of one interval of Binance's, 1m or longer "
            f"(got {sorted(intervals)})"
        )
    (interval,) = intervals
    cols = {
        name: pc.cast(table[name], pa.string()).to_pylist()
        for name in (
            "open",
            "high",
            "low",
            "close",
            "volume",
            "quote_volume",
            "taker_buy_base",
            "taker_buy_quote",
        )
    }
    opens, closes = _ms(table["open_time"]), _ms(table["close_time"])
    events = _ms(table["event_time"]) if "event_time" in table.column_names else closes
    counts = table["trades"].to_pylist()
    stream = f"{symbol.lower()}@kline_{interval}"
    for j in range(table.num_rows):
        ot, ct = opens[j], closes[j]
        assert ot is not None and ct is not None
        ev = events[j] if events[j] is not None else ct + 1
        assert ev is not None
        bar = Kline(
            ot,
            ct,
            Decimal(cols["open"][j]),
            Decimal(cols["high"][j]),
            Decimal(cols["low"][j]),
            Decimal(cols["close"][j]),
            Decimal(cols["volume"][j]),
            Decimal(cols["quote_volume"][j]),
            int(counts[j]),
            Decimal(cols["taker_buy_base"][j]),
            Decimal(cols["taker_buy_quote"][j]),
        )
        text = orjson.dumps(bar.ws(symbol, interval, ev, True)).decode()
        yield ev, ot, Frame(ev * 1_000_000, stream, "kline", symbol, text)
