"""Ingest throughput: simulator at max speed -> client, in messages per second.

    .venv/bin/python bench/bench_ingest.py [--messages 200000]

Each run starts a fresh simulator *process* (`tessera sim serve --speed max`) replaying a
synthetic recording of Binance spot ``@trade`` frames (valid payloads; synthetic data is fine
for throughput), then one client process that stops after receiving every frame:
- bare: a `websockets` client that only receives (the ceiling the issue names)
- bare-aiohttp: an aiohttp websocket client that only receives (the ceiling of the library
  tessera's ingest uses; its frame reader is compiled, several times faster than `websockets`)
- tessera: `IngestService` -> Parquet on disk (parse, validate, gap-check, batch, write)
- ccxt.pro: `watch_trades` pointed at the simulator
on one stream, and on 10 combined streams (10 symbols). Peak RSS is the client process's.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
SYMBOLS = [
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "SOLUSDT",
    "DOGEUSDT",
    "DOTUSDT",
    "LTCUSDT",
    "TRXUSDT",
]


def make_recording(path: Path, n: int, symbols: list[str]) -> None:
    t0 = 1_723_161_600_000
    with gzip.open(path, "wt") as fh:
        for i in range(n):
            sym = symbols[i % len(symbols)]
            tid = 1_000_000 + i // len(symbols)
            data = {
                "e": "trade",
                "E": t0 + i,
                "s": sym,
                "t": tid,
                "p": f"{60000 + i % 97:.8f}",
                "q": f"{0.001 * (1 + i % 13):.8f}",
                "T": t0 + i,
                "m": i % 2 == 0,
                "M": True,
            }
            frame = {"stream": f"{sym.lower()}@trade", "data": data}
            fh.write(f"{(t0 + i) * 1_000_000} {orjson.dumps(frame).decode()}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim(recording: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TESSERA_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "--metrics-port",
            "0",
            "sim",
            "serve",
            "--port",
            str(port),
            "--speed",
            "max",
            "--no-loop",
            "--recording",
            str(recording),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("simulator did not start")


# --- clients (run in a child process) -----------------------------------------------------------


async def client_bare(url: str, streams: list[str], n: int) -> float:
    import websockets

    async with websockets.connect(
        f"{url}/stream?streams={'/'.join(streams)}", max_size=1 << 24
    ) as ws:
        t0 = time.perf_counter()
        for _ in range(n):
            await ws.recv()
        return time.perf_counter() - t0


async def client_bare_aiohttp(url: str, streams: list[str], n: int) -> float:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}/stream?streams={'/'.join(streams)}", max_msg_size=1 << 24) as ws,
    ):
        t0 = time.perf_counter()
        for _ in range(n):
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"connection ended early: {msg.type}")
        return time.perf_counter() - t0


async def client_tessera(url: str, streams: list[str], n: int, store_dir: str) -> float:
    from tessera.data.ingest import IngestService
    from tessera.data.store import ParquetStore

    symbols = [s.split("@")[0].upper() for s in streams]
    svc = IngestService(
        ParquetStore(store_dir),
        url,
        url.replace("ws://", "http://"),
        symbols,
        kinds=("trade",),
        flush_rows=20_000,
        backfill=False,
    )
    task = asyncio.create_task(svc.run())
    while svc.stats.messages == 0:  # noqa: ASYNC110 - polling a counter is the measurement
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()
    while svc.stats.messages < n:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    svc.stop()
    await task  # includes the final flush to Parquet
    elapsed = time.perf_counter() - t0
    assert sum(svc.stats.rows_written.values()) == n, svc.stats.rows_written
    return elapsed


async def client_ccxt(url: str, streams: list[str], n: int, rest: str) -> float:
    import ccxt.pro as ccxtpro

    ex = ccxtpro.binance(
        {
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "tradesLimit": 1_000_000,
            },
            "newUpdates": True,
        }
    )
    for key in ("public", "private"):
        ex.urls["api"][key] = f"{rest}/api/v3"
    ex.urls["api"]["ws"]["spot"] = f"{url}/stream/ws"
    try:
        await ex.load_markets()
        symbols = [f"{s.split('@')[0].upper()[:-4]}/USDT" for s in streams]
        got = 0
        t0: float | None = None
        # ccxt.pro is slow: measure at most 60 s and report the rate it reached.
        while got < n and (t0 is None or time.perf_counter() - t0 < 60):
            call = (
                ex.watch_trades(symbols[0])
                if len(symbols) == 1
                else ex.watch_trades_for_symbols(symbols)
            )
            try:
                trades = await asyncio.wait_for(call, 15)
            except TimeoutError:
                break  # the stream ended (or the client stalled): rate from what arrived
            if t0 is None:
                t0 = time.perf_counter()
            got += len(trades)
        elapsed = time.perf_counter() - (t0 or time.perf_counter())
        return elapsed * n / max(got, 1)  # time it would take for all n at the rate reached
    finally:
        await ex.close()


def child(kind: str, port: int, streams: list[str], n: int) -> None:
    url, rest = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    store = tempfile.mkdtemp(prefix="bench-ingest-")
    try:
        if kind == "bare":
            elapsed = asyncio.run(client_bare(url, streams, n))
        elif kind == "bare-aiohttp":
            elapsed = asyncio.run(client_bare_aiohttp(url, streams, n))
        elif kind == "tessera":
            elapsed = asyncio.run(client_tessera(url, streams, n, store))
        else:
            elapsed = asyncio.run(client_ccxt(url, streams, n, rest))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "rate": n / elapsed, "rss_mb": rss}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument(
        "--clients",
        default="bare,bare-aiohttp,tessera,ccxt.pro",
        help="comma-separated subset to run",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--streams", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.port, args.streams.split(","), args.messages)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-rec-"))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for label, syms in (("1 stream", SYMBOLS[:1]), ("10 streams", SYMBOLS)):
            rec = work / f"{len(syms)}_trades.gz"
            make_recording(rec, args.messages, syms)
            streams = [f"{s.lower()}@trade" for s in syms]
            results[label] = {}
            for kind in args.clients.split(","):
                port = free_port()
                sim = start_sim(rec, port)
                try:
                    print(f"{label}: {kind}…", file=sys.stderr)
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            kind,
                            "--port",
                            str(port),
                            "--streams",
                            ",".join(streams),
                            "--messages",
                            str(args.messages),
                        ],
                        capture_output=True,
                        text=True,
                        timeout=900,
                    )
                    if out.returncode != 0:
                        print(out.stderr[-2000:], file=sys.stderr)
                        continue
                    results[label][kind] = json.loads(out.stdout.strip().splitlines()[-1])
                finally:
                    sim.terminate()
                    sim.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nIngest throughput, {args.messages:,} trade frames, simulator at max speed "
        f"(separate process)\n"
    )
    print("| streams | client | msgs/s | seconds | peak RSS MB | tessera vs this |")
    print("|---|---|---:|---:|---:|---:|")
    for label, runs in results.items():
        ours = runs.get("tessera", {}).get("rate")
        for kind, r in runs.items():
            ratio = f"{ours / r['rate']:.2f}x" if ours else "–"
            print(
                f"| {label} | {kind} | {r['rate']:,.0f} | {r['seconds']:.2f} | "
                f"{r['rss_mb']:.0f} | {ratio} |"
            )


if __name__ == "__main__":
    main()
