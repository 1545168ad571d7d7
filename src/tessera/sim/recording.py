"""Recorded Binance websocket traffic, loaded for replay.

Format (hftbacktest's collector, the files in ``samples/binance-raw-ws/``): gzip text, one frame
per line, ``<local receive time ns> <raw JSON as Binance sent it>``. Frames use the combined-stream
envelope ``{"stream": "...", "data": {...}}``; one line holds a REST ``/depth`` snapshot
(``{"lastUpdateId": ..., "bids": [...], "asks": [...]}``).

Replay is frame for frame: we keep each frame's ``data`` *text* exactly as recorded (sliced out of
the line, never re-serialised) and only add the envelope a combined-stream client expects.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tessera import gcpause
from tessera.logging import get_logger

log = get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
BUNDLED_RECORDINGS = sorted((REPO_ROOT / "samples" / "binance-raw-ws" / "spot").glob("*.gz"))


@dataclass(slots=True)
class Frame:
    recv_ns: int
    stream: str  # e.g. "btcusdt@trade"
    kind: str  # trade | depth | bookTicker | aggTrade | kline
    symbol: str  # upper case, e.g. "BTCUSDT"
    data: str  # the raw JSON text of the payload
    parsed: dict[str, object] | None = None  # filled lazily where the simulator needs values


@dataclass
class Snapshot:
    symbol: str
    recv_ns: int
    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]


@dataclass
class Recording:
    frames: list[Frame] = field(default_factory=list)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    skipped_lines: int = 0

    @property
    def symbols(self) -> list[str]:
        return sorted({f.symbol for f in self.frames})


def stream_kind(stream: str) -> str:
    """``"btcusdt@depth@100ms"`` -> ``"depth"``, ``"btcusdt@kline_1m"`` -> ``"kline"``."""
    tail = stream.split("@", 1)[1]
    if tail.startswith("depth"):
        return "depth"
    if tail.startswith("kline"):
        return "kline"
    return tail  # trade, aggTrade, bookTicker


def split_envelope(text: str) -> tuple[str, str] | None:
    """``{"stream":"x","data":{...}}`` -> ("x", '{...}') without re-serialising the data."""
    head = '{"stream":"'
    if not text.startswith(head):
        return None
    end = text.index('"', len(head))
    stream = text[len(head) : end]
    marker = '"data":'
    start = text.index(marker, end) + len(marker)
    return stream, text[start : text.rindex("}")]


_HEAD = '{"stream":"'
_DATA = '","data":'
_CHUNK = 1 << 24  # decompressed bytes read at a time: fast, and memory stays near the frames'


def _lines(path: Path) -> Iterator[str]:
    """The lines of a gzip text file, without their ``\n``. Decompressed and decoded in large
    chunks cut at a newline (never inside a UTF-8 sequence): about half the time of iterating a
    text-mode gzip file line by line, without holding the whole text at once."""
    with gzip.open(path, "rb") as fh:
        tail = b""
        while chunk := fh.read(_CHUNK):
            chunk = tail + chunk
            cut = chunk.rfind(b"\n") + 1
            tail = chunk[cut:]
            if cut:
                yield from chunk[: cut - 1].decode("utf-8").split("\n")
        if tail:
            yield tail.decode("utf-8")


def load_recording(paths: Iterable[Path]) -> Recording:
    """Load and merge recordings; frames are ordered by local receive time (file order).

    A line that cannot be read is counted in ``skipped_lines``, logged and skipped.

    Every simulator and dev bot starts here (~180,000 frames bundled), so the common line — a
    combined-stream frame — is cut by position: one slice for the stream name, one for the
    payload, the stream's kind and symbol looked up once per stream. Any other line (the
    snapshot, or one that does not parse that way) takes the general path below. The cyclic
    garbage collector is paused meanwhile (as the backtest's loop does): its automatic passes
    would walk the growing list of frames again and again, and loading makes no cycles.
    """
    with gcpause.paused():
        return _load(paths)


def _load(paths: Iterable[Path]) -> Recording:
    rec = Recording()
    frames = rec.frames
    streams: dict[str, tuple[str, str]] = {}  # stream name -> (kind, symbol)
    for path in paths:
        symbol_hint = Path(path).name.split("_", 1)[0].upper()
        for lineno, line in enumerate(_lines(Path(path)), 1):
            sp = line.find(" ")
            if line.startswith(_HEAD, sp + 1):
                end = line.find(_DATA, sp + 12)
                last = line.rfind("}")
                if end > 0 and last > end + 9 and line[:sp].isdecimal():
                    stream = line[sp + 12 : end]
                    known = streams.get(stream)
                    if known is None and "@" in stream:
                        kind = stream_kind(stream)
                        known = streams[stream] = (kind, stream.split("@", 1)[0].upper())
                    if known is not None:
                        data = line[end + 9 : last]
                        frames.append(Frame(int(line[:sp]), stream, known[0], known[1], data))
                        continue
            line = line.rstrip("\r")
            if line:
                _general_line(rec, path, lineno, line, symbol_hint)
    frames.sort(key=lambda f: f.recv_ns)  # stable: keeps file order within equal times
    return rec


def _general_line(rec: Recording, path: Path, lineno: int, line: str, symbol_hint: str) -> None:
    """A line the fast path in `load_recording` did not take: a depth snapshot, a frame in
    another layout, or an unreadable line (counted, logged, skipped)."""
    try:
        ts, _, text = line.partition(" ")
        recv_ns = int(ts)
        env = split_envelope(text)
        if env is None:
            doc = orjson.loads(text)
            snap = Snapshot(
                symbol_hint,
                recv_ns,
                int(doc["lastUpdateId"]),
                doc["bids"],
                doc["asks"],
            )
            rec.snapshots.setdefault(symbol_hint, snap)
            return
        stream, data = env
        kind = stream_kind(stream)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        rec.skipped_lines += 1
        log.warning(
            "unreadable recording line skipped",
            path=str(path),
            line=lineno,
            error=str(exc),
            raw=line[:200],
        )
        return
    symbol = stream.split("@", 1)[0].upper()
    rec.frames.append(Frame(recv_ns, stream, kind, symbol, data))


def recording_paths(paths: Iterable[Path] | None) -> list[Path]:
    """The given recordings (all must exist), or the bundled BTCUSDT/ETHUSDT ones."""
    chosen = [Path(p) for p in (paths or [])] or BUNDLED_RECORDINGS
    missing = [p for p in chosen if not p.exists()]
    if missing:
        raise FileNotFoundError(f"recording not found: {', '.join(map(str, missing))}")
    return chosen
