"""The simulator's own send rate at ``max`` speed, in messages per second.

    .venv/bin/python bench/bench_sim_send.py [--synthetic 500000] [--clients bare,raw]
        [--repeat 3] [--no-real]

The simulator runs in this process; each client runs in its own process (two cores: one sends,
one receives) and stops after the last expected frame:
- ``bare``: a `websockets` client that only calls ``recv()`` (what an ingest client can get);
- ``raw``: a plain socket that does the websocket handshake, then only counts bytes (the
  simulator's ceiling, without a client's frame parsing).
Scenarios: the bundled real recordings (BTCUSDT+ETHUSDT, 2 days) on 1 stream (``@bookTicker``,
the busiest) and on 10 combined streams (trade, aggTrade, bookTicker, depth@100ms, kline_1m per
symbol), plus synthetic ``@trade`` frames at scale (valid Binance payloads; synthetic data is for
throughput only) on 1 stream and on 10 symbols.

The machine may be shared, so each scenario runs ``--repeat`` interleaved rounds (every client
once per round, the order reversed every other round); a row gives the median and min-max of
msgs/s and is printed as its scenario ends. The wait for the replay to end grows with the
frames sent; a client process is killed if anything fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import sys
import time

import orjson

from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.recording import BUNDLED_RECORDINGS, Frame

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT"]
SYMBOLS += ["SOLUSDT", "DOGEUSDT", "DOTUSDT", "LTCUSDT", "TRXUSDT"]


def synthetic_market(n: int, symbols: list[str]) -> SimMarket:
    t0 = 1_723_161_600_000
    frames = []
    for i in range(n):
        sym = symbols[i % len(symbols)]
        data = {
            "e": "trade",
            "E": t0 + i // 10,
            "s": sym,
            "t": 1_000_000 + i // len(symbols),
            "p": f"{60000 + i % 97:.8f}",
            "q": f"{0.001 * (1 + i % 13):.8f}",
            "T": t0 + i // 10,
            "m": i % 2 == 0,
            "M": True,
        }
        text = orjson.dumps(data).decode()
        frames.append(Frame((t0 + i // 10) * 1_000_000, f"{sym.lower()}@trade", "trade", sym, text))
    return SimMarket(frames)


# --- clients (run in a child process) -----------------------------------------------------------


async def client_bare(url: str, n: int) -> float:
    import websockets

    async with websockets.connect(url, max_size=1 << 24, max_queue=None) as ws:
        await ws.recv()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            await ws.recv()
        return time.perf_counter() - t0


def client_raw(url: str, total_bytes: int) -> float:
    host_port, _, path = url.removeprefix("ws://").partition("/")
    host, _, port = host_port.partition(":")
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        got = len(buf.split(b"\r\n\r\n", 1)[1])
        chunk = bytearray(1 << 20)
        t0 = time.perf_counter()
        while got < total_bytes:
            k = s.recv_into(chunk)
            if not k:
                raise RuntimeError(f"connection closed after {got} of {total_bytes} bytes")
            got += k
        return time.perf_counter() - t0


def child(kind: str, url: str, n: int, total_bytes: int) -> None:
    elapsed = asyncio.run(client_bare(url, n)) if kind == "bare" else client_raw(url, total_bytes)
    print(json.dumps({"seconds": elapsed}))


# --- the simulator side -------------------------------------------------------------------------


def replay_deadline_s(frames: int) -> float:
    """The longest a replay may take: 60 s plus 100 µs a frame (a rate 25x below the slowest
    client here), so a hung client fails the run instead of holding it forever."""
    return 60.0 + frames * 100e-6


async def run_one(market: SimMarket, streams: list[str], kind: str) -> dict[str, float]:
    combined = len(streams) > 1
    datas = [market.stream(s) for s in streams]
    n = sum(len(d.payloads) for d in datas if d is not None)
    total_bytes = sum(sum(map(len, d.wire(combined))) for d in datas if d is not None)
    sim = ExchangeSimulator(market, speed=None, ping_interval_s=None)
    async with sim:
        path = f"/stream?streams={'/'.join(streams)}" if combined else f"/ws/{streams[0]}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--child",
            kind,
            "--url",
            sim.ws_url + path,
            "--expect",
            str(n),
            "--bytes",
            str(total_bytes),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            # the client's start-up (an interpreter and an import), not the work: a fixed bound
            await asyncio.wait_for(sim.wait_connections(1), 60)
            t0 = time.perf_counter()
            await asyncio.wait_for(sim.wait_replayed(), replay_deadline_s(n))
            server_s = time.perf_counter() - t0
            out, _ = await asyncio.wait_for(proc.communicate(), replay_deadline_s(n))
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} client exited {proc.returncode}")
        client_s = float(json.loads(out.decode().strip().splitlines()[-1])["seconds"])
    assert sim.stats.total_messages == n, (sim.stats.total_messages, n)
    return {
        "messages": n,
        "mb": total_bytes / 1e6,
        "client_s": client_s,
        "rate": n / client_s,
        "server_rate": n / server_s,
    }


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``, each formatted with ``fmt``."""
    mid, lo, hi = statistics.median(values), min(values), max(values)
    return f"{mid:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


async def main_async(args: argparse.Namespace) -> None:
    scenarios: list[tuple[str, SimMarket, list[str]]] = []
    if args.real:
        real = SimMarket.from_recording(BUNDLED_RECORDINGS)
        ten_real = [
            f"{s}@{k}"
            for s in ("btcusdt", "ethusdt")
            for k in ("trade", "aggTrade", "bookTicker", "depth@100ms", "kline_1m")
        ]
        scenarios += [
            ("real, 1 stream (btcusdt@bookTicker)", real, ["btcusdt@bookTicker"]),
            ("real, 10 combined streams", real, ten_real),
        ]
    if args.synthetic:
        one = synthetic_market(args.synthetic, SYMBOLS[:1])
        ten = synthetic_market(args.synthetic, SYMBOLS)
        scenarios += [
            (f"synthetic, 1 stream ({args.synthetic:,} trades)", one, ["btcusdt@trade"]),
            (
                f"synthetic, 10 combined streams ({args.synthetic:,} trades)",
                ten,
                [f"{s.lower()}@trade" for s in SYMBOLS],
            ),
        ]
    print(
        f"\nSimulator send rate at max speed ({os.cpu_count()} CPUs; simulator and client in "
        f"separate processes); {args.repeat} interleaved round(s): median (min-max)\n"
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average (1, 5, 15 min) "
        f"{_load()}\n",
        flush=True,
    )
    print("| scenario | client | messages | MB | seconds | msgs/s | simulator msgs/s |")
    print("|---|---|---:|---:|---:|---:|---:|", flush=True)
    clients = [c for c in args.clients.split(",") if c]
    for label, market, streams in scenarios:
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in clients}
        for k in range(args.repeat):
            for kind in clients if k % 2 == 0 else clients[::-1]:
                runs[kind].append(await run_one(market, streams, kind))
        for kind, rs in runs.items():
            print(
                f"| {label} | {kind} | {rs[0]['messages']:,.0f} | {rs[0]['mb']:.1f} | "
                f"{statistics.median(r['client_s'] for r in rs):.2f} | "
                f"{spread([r['rate'] for r in rs], ',.0f')} | "
                f"{spread([r['server_rate'] for r in rs], ',.0f')} |",
                flush=True,
            )
    print(f"\nload average at the end {_load()}", flush=True)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--synthetic", type=int, default=500_000, help="synthetic frames (0: none)")
    ap.add_argument("--clients", default="bare,raw")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument(
        "--no-real", dest="real", action="store_false", help="skip the bundled recordings"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.url, args.expect, args.bytes)
        return
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
