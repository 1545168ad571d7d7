"""Helpers for the simulator tests: sample paths, REST getter, independent reference readers.

Reference values are read straight from the sample files with ``gzip``/``json`` (independent of
the simulator's own loaders) so that a bug in the loaders cannot hide itself.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from tessera.sim import ExchangeSimulator

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SPOT = SAMPLES / "binance-raw-ws" / "spot"
BTC_0808 = SPOT / "btcusdt_20240808.gz"
ETH_0808 = SPOT / "ethusdt_20240808.gz"
HTTP = SAMPLES / "binance-api" / "spot-http"


async def replay_all(sim: ExchangeSimulator) -> None:
    sim.start_replay()
    await asyncio.wait_for(sim.wait_replayed(), 60)


async def get(sim: ExchangeSimulator, path: str) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s, s.get(sim.rest_url + path) as r:
        return r.status, dict(r.headers), json.loads(await r.text())


def shape(value: Any) -> Any:
    """JSON shape: key sets and value types, recursively (lists by their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def recorded_lines(path: Path) -> list[tuple[str, str]]:
    """(stream, data text) for each enveloped frame of a raw recording, in file order."""
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            text = line.rstrip("\n").split(" ", 1)[1]
            if not text.startswith('{"stream"'):
                continue
            stream = json.loads(text)["stream"]
            out.append((stream, text[text.index('"data":') + len('"data":') : -1]))
    return out


def recorded_snapshot(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as fh:
        for line in fh:
            doc = json.loads(line.split(" ", 1)[1])
            if "lastUpdateId" in doc:
                return dict(doc)
    raise AssertionError("no snapshot line")


def rebuild_book(
    snapshot: dict[str, Any], diffs: list[dict[str, Any]]
) -> tuple[int, dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    """Binance's documented procedure, written out independently of the simulator."""
    last = int(snapshot["lastUpdateId"])
    bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
    for d in diffs:
        if d["u"] <= last:
            continue
        for side, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        last = d["u"]
    return last, bids, asks


def ws_connect(url: str) -> Any:
    """A ``websockets`` client that keeps reading while it closes.

    With its default bounded queue, a client that stops calling ``recv()`` while a max-speed
    replay is still streaming stops reading the socket, never sees the server's close frame and
    waits out ``close_timeout``. Tests leave streams early, so they read on.
    """
    return websockets.connect(url, max_queue=None, close_timeout=5)
