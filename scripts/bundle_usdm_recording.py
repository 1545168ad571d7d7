"""Bundle a trimmed slice of the real Binance USDⓈ-M BTCUSDT recording the simulator replays.

Usage::

    .venv/bin/python scripts/bundle_usdm_recording.py \
        ../shared/data/hftbacktest-binance-raw-ws/usdm/btcusdt_20240808.gz \
        samples/binance-raw-ws/usdm/btcusdt_20240808.gz

The source (hftbacktest's collector, about 6 minutes, 3.6 MB) is too large to bundle; the
simulator's tests need a couple of minutes. The slice keeps every line whose local receive time
is within ``--seconds`` (default 120) of the first line, in file order and byte for byte (the
REST snapshot line, line 55 of the source, is inside it). Lines are written to a gzip file with
a fixed mtime so that reruns give the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path


def trim(source: Path, seconds: float) -> list[bytes]:
    keep: list[bytes] = []
    first: int | None = None
    with gzip.open(source, "rb") as fh:
        for raw in fh:
            ts = int(raw.split(b" ", 1)[0])
            first = ts if first is None else first
            if ts - first > seconds * 1e9:
                break
            keep.append(raw)
    if not any(b'"lastUpdateId"' in line for line in keep):
        raise SystemExit(f"{source}: no REST snapshot line in the first {seconds} s")
    return keep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--seconds", type=float, default=120.0)
    args = ap.parse_args(argv)
    lines = trim(args.source, args.seconds)
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    with args.dest.open("wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        for line in lines:
            gz.write(line)
    digest = hashlib.sha256(args.dest.read_bytes()).hexdigest()
    print(f"{args.dest}: {len(lines)} lines, sha256 {digest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
