"""Loading a recording: the fast path for frames gives what the line-by-line parse gives.

`load_recording` cuts a combined-stream frame by position and sends every other line through
the general parse (`_general_line`). Both must agree on any line — a frame, a snapshot, an
oddly spaced or broken one — and the chunked reading must not depend on where a chunk ends.
"""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.sim import recording
from tessera.sim.exchange_info import recorded_exchange_info, step_of
from tessera.sim.recording import Recording, load_recording

REPO = Path(__file__).resolve().parents[2]
BTC = REPO / "samples" / "binance-raw-ws" / "spot" / "btcusdt_20240808.gz"


def _key(rec: Recording) -> tuple[object, ...]:
    frames = [(f.recv_ns, f.stream, f.kind, f.symbol, f.data) for f in rec.frames]
    snaps = {k: (v.recv_ns, v.last_update_id, v.bids, v.asks) for k, v in rec.snapshots.items()}
    return frames, snaps, rec.skipped_lines


def _line_by_line(path: Path) -> Recording:
    """The reference: every line through the general parse, as the loader did before."""
    rec = Recording()
    symbol_hint = path.name.split("_", 1)[0].upper()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\n")
            if line:
                recording._general_line(rec, path, lineno, line, symbol_hint)
    rec.frames.sort(key=lambda f: f.recv_ns)
    return rec


STREAMS = ["btcusdt@trade", "ethusdt@depth@100ms", "btcusdt@kline_1m", "nostream", "x@", "@y"]
PAYLOADS = ['{"e":"trade","E":1}', "{}", '{"s":"é€"}', "", "[1,2]", '{"a":"}"}']
SEPARATORS = ['","data":', '", "data":', '","data": ']


@st.composite
def lines(draw: st.DrawFn) -> str:
    ts = draw(st.sampled_from(["123", "0", "-5", "x1", "", "17000000000000000000", "٣"]))
    kind = draw(st.sampled_from(["frame", "frame", "frame", "snapshot", "junk"]))
    if kind == "snapshot":
        body = '{"lastUpdateId":5,"bids":[["1","2"]],"asks":[]}'
    elif kind == "junk":
        body = draw(st.text(alphabet='{}":@ab1 ,', max_size=40))
    else:
        stream = draw(st.sampled_from(STREAMS))
        sep = draw(st.sampled_from(SEPARATORS))
        body = '{"stream":"' + stream + sep + draw(st.sampled_from(PAYLOADS)) + "}"
    space = draw(st.sampled_from([" ", "  ", ""]))
    tail = draw(st.sampled_from(["", "\r", " ", "}"]))
    return ts + space + body + tail


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(lines(), max_size=25), st.sampled_from([5, 64, 1 << 24]))
def test_any_lines_load_as_the_line_by_line_parse_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: list[str], chunk: int
) -> None:
    path = tmp_path / "btcusdt_test.gz"
    path.write_bytes(gzip.compress("\n".join(body).encode() + b"\n"))
    monkeypatch.setattr(recording, "_CHUNK", chunk)  # chunks cut anywhere in a line
    assert _key(load_recording([path])) == _key(_line_by_line(path))


def test_the_bundled_recording_loads_as_the_line_by_line_parse_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = load_recording([BTC])
    assert len(fast.frames) > 40_000 and fast.snapshots and fast.skipped_lines == 0
    assert _key(fast) == _key(_line_by_line(BTC))
    monkeypatch.setattr(recording, "_CHUNK", 4099)
    assert _key(load_recording([BTC])) == _key(fast)


def test_each_exchange_info_is_a_copy_of_its_own() -> None:
    first = recorded_exchange_info()
    first["symbols"].clear()
    first["rateLimits"][0]["limit"] = -1
    second = recorded_exchange_info()
    assert second["symbols"] and second["rateLimits"][0]["limit"] != -1


def test_the_step_a_column_shows_is_the_coarsest_power_of_ten_of_its_values() -> None:
    assert step_of(["1.50", "2.25", "2.25", "3"]) == step_of(["2.25"]) == Decimal("0.01")
    assert str(step_of(["100", "20.0"])) == "1"
    assert step_of([]) is None
