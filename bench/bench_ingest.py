"""Ingest throughput: simulator at max speed -> client, in messages per second.

    .venv/bin/python bench/bench_ingest.py [--messages 200000] [--repeat 3]
        [--clients bare,bare-aiohttp,tessera,ccxt.pro] [--streams 1,10]

Each run starts a fresh simulator *process* (`tessera sim serve --speed max`) replaying a
synthetic recording of Binance spot ``@trade`` frames (valid payloads; synthetic data is fine
for throughput), then one client process that stops after receiving every frame:
- bare: a `websockets` client that only receives (the ceiling the issue names)
- bare-aiohttp: an aiohttp websocket client that only receives (the ceiling of the library
  tessera's ingest uses; its frame reader is compiled, several times faster than `websockets`)
- tessera: `IngestService` -> Parquet on disk (parse, validate, gap-check, batch, write)
- ccxt.pro: `watch_trades` pointed at the simulator
on one stream, and on 10 combined streams (10 symbols). Peak RSS is the client process's.

The machine may be shared, so the runs are interleaved: ``--repeat`` rounds, each running
every client once, the order reversed every other round; the table gives the median and the
min-max of msgs/s, and "tessera vs this" is the median (min-max) of the per-round ratios. The
load average is printed at the start and the end, and each run's line as it ends.

The simulator loads the whole recording before it listens (about 20 µs a frame on a quiet
machine: 10 s for 500k), so the bench waits for its port with a deadline that grows with
``--messages``, and stops at once, with the simulator's own error output, if the simulator
exits first. Every simulator and client process is stopped and every temporary folder
removed, also on failure or Ctrl-C.
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
import statistics
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


def sim_deadline_s(frames: int) -> float:
    """How long the simulator may take to load ``frames`` and listen: its parse costs ~20 µs a
    frame on a quiet reference machine (10.4 s for 500k) and took 54 s for 500k at a load
    average of 10 on its 2 cores, so allow 250 µs a frame on top of 30 s for the interpreter
    and imports (155 s for 500k). Only a simulator that never listens waits this long."""
    return 30.0 + frames * 250e-6


def client_timeout_s(frames: int) -> float:
    """A client run's ceiling: ccxt.pro stops itself after 60 s of measuring; the others get
    1 ms a frame (a rate 100x below the slowest we have seen) on top of 120 s of start-up."""
    return 120.0 + frames * 1e-3


def start_sim(recording: Path, port: int, frames: int, log: Path) -> subprocess.Popen[bytes]:
    """Start `tessera sim serve` and return once it accepts connections (it binds only after
    loading the recording). Raises, with its error output, if it exits or misses the deadline;
    the process is stopped in that case."""
    env = {**os.environ, "TESSERA_LOG_LEVEL": "WARNING"}
    with log.open("wb") as err:
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
            stderr=err,
        )
    deadline = sim_deadline_s(frames)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"simulator exited with {proc.returncode}:\n{tail}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return proc
            time.sleep(0.05)
        raise RuntimeError(
            f"simulator did not listen within {deadline:.0f} s ({frames:,} frames to load)"
        )
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
        got = first = 0  # trades received; those of the first batch, which starts the clock
        t0: float | None = None
        t_last = 0.0
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
            t_last = time.perf_counter()
            got += len(trades)
            if t0 is None:
                t0, first = t_last, len(trades)
        if t0 is None or got == first:
            raise RuntimeError("ccxt.pro received less than two batches of trades")
        # the rate reached after the first batch, up to the last one (not the stall that may
        # have ended the loop), as the time it would take for all n
        return (t_last - t0) * n / (got - first)
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


def run_client(kind: str, port: int, streams: list[str], n: int) -> dict[str, float]:
    """One client process against the simulator on ``port``; its JSON line, or an error."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--port",
            str(port),
            "--child-streams",
            ",".join(streams),
            "--messages",
            str(n),
        ],
        capture_output=True,
        text=True,
        timeout=client_timeout_s(n),  # on expiry subprocess.run kills the client
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} client exited {out.returncode}:\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``, each formatted with ``fmt``."""
    mid, lo, hi = statistics.median(values), min(values), max(values)
    return f"{mid:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument(
        "--clients",
        default="bare,bare-aiohttp,tessera,ccxt.pro",
        help="comma-separated subset to run",
    )
    ap.add_argument("--streams", default="1,10", help="stream layouts: 1 and/or 10 (default both)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-streams", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.port, args.child_streams.split(","), args.messages)
        return
    clients = [c for c in args.clients.split(",") if c]
    unknown = set(clients) - {"bare", "bare-aiohttp", "tessera", "ccxt.pro"}
    layouts = [int(x) for x in args.streams.split(",") if x]
    if unknown or not set(layouts) <= {1, 10} or args.repeat < 1:
        ap.error(f"unknown clients {sorted(unknown)} or streams {layouts} or --repeat < 1")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"{started}; {args.messages:,} trade frames; {args.repeat} interleaved round(s); "
        f"load average (1, 5, 15 min) {load()} on {os.cpu_count()} cores",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-rec-"))
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        for nsyms in layouts:
            label = "1 stream" if nsyms == 1 else f"{nsyms} streams"
            syms = SYMBOLS[:nsyms]
            rec = work / f"{nsyms}_trades.gz"
            t0 = time.perf_counter()
            make_recording(rec, args.messages, syms)
            print(f"{label}: recording written in {time.perf_counter() - t0:.1f} s", flush=True)
            streams = [f"{s.lower()}@trade" for s in syms]
            results[label] = {kind: [] for kind in clients}
            for k in range(args.repeat):
                for kind in clients if k % 2 == 0 else clients[::-1]:
                    port = free_port()
                    t0 = time.perf_counter()
                    sim = start_sim(rec, port, args.messages, work / "sim.log")
                    ready = time.perf_counter() - t0
                    try:
                        r = run_client(kind, port, streams, args.messages)
                    finally:
                        stop(sim)
                    results[label][kind].append(r)
                    print(
                        f"{label} round {k + 1}/{args.repeat} {kind}: {r['rate']:,.0f} msgs/s, "
                        f"{r['seconds']:.2f} s, peak RSS {r['rss_mb']:.0f} MB "
                        f"(simulator ready after {ready:.1f} s)",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nIngest throughput, {args.messages:,} trade frames, simulator at max speed "
        f"(separate process); {args.repeat} interleaved round(s): median (min-max)\n"
        f"load average at the end {load()}\n"
    )
    print("| streams | client | msgs/s | seconds | peak RSS MB | tessera vs this |")
    print("|---|---|---:|---:|---:|---:|")
    for label, runs in results.items():
        ours = runs.get("tessera")
        for kind, rs in runs.items():
            rates = [r["rate"] for r in rs]
            # paired: round k of tessera against round k of this client
            ratio = (
                spread([o["rate"] / r["rate"] for o, r in zip(ours, rs, strict=True)], ".2f") + "x"
                if ours
                else "-"
            )
            print(
                f"| {label} | {kind} | {spread(rates, ',.0f')} | "
                f"{statistics.median(r['seconds'] for r in rs):.2f} | "
                f"{statistics.median(r['rss_mb'] for r in rs):.0f} | {ratio} |"
            )


if __name__ == "__main__":
    main()
