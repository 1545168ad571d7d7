"""Processes and ledgers for the chaos test (`test_chaos.py`).

* ``python chaos_procs.py PORT [DELAY]``: the Binance spot simulator as its own process — what
  ``tessera sim serve --port PORT --speed 10x --start-now`` runs (bundled real BTCUSDT/ETHUSDT
  recordings, replay looped, signed trading endpoints; PORT 0: any free port, named in its
  banner), with two changes. Its exchangeInfo
  states (and it enforces) today's Binance REST weight limit, 6000 per minute, instead of the
  1200 of the bundled 2021 document: every bot start costs ~130 weight (exchangeInfo, markets,
  balances, trades, klines), and twenty-odd restarts a minute from one IP would otherwise spend
  the test waiting for the next weight window instead of trading. And the exchange places each
  order at once but answers ``DELAY`` seconds later, on REST and on the user-data stream (a
  slow venue), so that a kill often lands while an order exists on the exchange and its
  answer is not yet in our database.
* ``python chaos_procs.py PORT DELAY --usdm``: the same for Binance USDⓈ-M (``/fapi``): what
  ``tessera sim serve --usdm --port PORT --speed 10x --start-now`` runs (the bundled real
  120 s BTCUSDT perpetual recording, replay looped), with the same two changes.
* `SimLedger`: the simulator's own record of our account (orders, trades, balances), read over
  its signed REST API with a plain HMAC-SHA256 client — independent of the bot's adapter;
  `UsdmSimLedger` the same over ``/fapi`` (orders, trades, signed positions, wallet).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

SIM_KEY, SIM_SECRET = "tessera-sim-key", "tessera-sim-secret"


def start_simulator(
    log: Path, answer_delay_s: float = 0.0, usdm: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """The simulator (spot's, or USDⓈ-M's with ``usdm``) in a process of its own, on a port
    the kernel picks (no other test or worker can take it between choosing and binding);
    returns it and its port once it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["COLUMNS"] = "200"  # its banner (which names the port) on one line per item
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, "0", str(answer_delay_s)] + (["--usdm"] if usdm else []),
            env=env,
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    port: int | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the simulator exited: {log.read_text()[-3000:]}")
        if port is None:
            found = re.search(r"REST\s+http://127\.0\.0\.1:(\d+)/", log.read_text())
            port = int(found.group(1)) if found else None
        if port is not None:
            try:
                ping = "/fapi/v1/ping" if usdm else "/api/v3/ping"
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ping}", timeout=2):
                    return proc, port
            except OSError:
                pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"the simulator did not answer: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM, then SIGKILL if it does not exit; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


@dataclass(frozen=True)
class SimOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    status: str  # Binance's: NEW, FILLED, EXPIRED, ...
    qty: Decimal
    executed_qty: Decimal


@dataclass(frozen=True)
class SimTrade:
    trade_id: int
    order_id: int
    symbol: str
    is_buyer: bool
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal = Decimal(0)  # USDⓈ-M's realizedPnl of the trade; spot has none


class SimLedger:
    """Signed GETs against the simulator (Binance's HMAC-SHA256 query-string signature)."""

    def __init__(self, rest_url: str, key: str = SIM_KEY, secret: str = SIM_SECRET) -> None:
        self.base = rest_url.rstrip("/")
        self.key = key
        self.secret = secret.encode()

    def get(self, path: str, **params: Any) -> Any:
        """The decoded body; None for Binance's "order does not exist" (-2013)."""
        params["timestamp"] = int(time.time() * 1000)
        query = urllib.parse.urlencode(params)
        sig = hmac.new(self.secret, query.encode(), hashlib.sha256).hexdigest()
        req = urllib.request.Request(
            f"{self.base}{path}?{query}&signature={sig}", headers={"X-MBX-APIKEY": self.key}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            if body.get("code") == -2013:
                return None
            raise RuntimeError(f"GET {path} {params}: HTTP {exc.code} {body}") from exc

    def balances(self) -> dict[str, Decimal]:
        """Free + locked per asset."""
        doc = self.get("/api/v3/account")
        return {b["asset"]: Decimal(b["free"]) + Decimal(b["locked"]) for b in doc["balances"]}

    def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v3/openOrders", symbol=symbol))

    def orders(self, symbols: list[str]) -> list[SimOrder]:
        """Every order the simulator holds for us, by its (dense, increasing) order id."""
        out: list[SimOrder] = []
        order_id, misses = 1, 0
        while misses < 5:  # ids are consumed only by placed orders: a gap ends the list
            found = None
            for sym in symbols:
                found = self.get("/api/v3/order", symbol=sym, orderId=order_id)
                if found is not None:
                    break
            if found is None:
                misses += 1
            else:
                misses = 0
                out.append(
                    SimOrder(
                        int(found["orderId"]),
                        found["clientOrderId"],
                        found["symbol"],
                        found["side"],
                        found["status"],
                        Decimal(found["origQty"]),
                        Decimal(found["executedQty"]),
                    )
                )
            order_id += 1
        return out

    def trades(self, symbol: str) -> list[SimTrade]:
        """All of our trades in ``symbol`` (paged by trade id)."""
        out: list[SimTrade] = []
        from_id = 0
        while True:
            page = self.get("/api/v3/myTrades", symbol=symbol, fromId=from_id, limit=1000)
            out += [
                SimTrade(
                    int(t["id"]),
                    int(t["orderId"]),
                    t["symbol"],
                    bool(t["isBuyer"]),
                    Decimal(t["price"]),
                    Decimal(t["qty"]),
                    Decimal(t["commission"]),
                    t["commissionAsset"],
                )
                for t in page
            ]
            if len(page) < 1000:
                return out
            from_id = int(page[-1]["id"]) + 1


class UsdmSimLedger(SimLedger):
    """The USDⓈ-M simulator's record of our account, over its signed ``/fapi`` endpoints."""

    def orders(self, symbols: list[str]) -> list[SimOrder]:
        """Every order the simulator holds for us (``allOrders`` per symbol, by order id)."""
        out: list[SimOrder] = []
        for sym in symbols:
            from_id = 0
            while True:
                page = self.get("/fapi/v1/allOrders", symbol=sym, orderId=from_id, limit=1000)
                out += [
                    SimOrder(
                        int(o["orderId"]),
                        o["clientOrderId"],
                        o["symbol"],
                        o["side"],
                        o["status"],
                        Decimal(o["origQty"]),
                        Decimal(o["executedQty"]),
                    )
                    for o in page
                ]
                if len(page) < 1000:
                    break
                from_id = int(page[-1]["orderId"]) + 1
        return sorted(out, key=lambda o: o.order_id)

    def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        return list(self.get("/fapi/v1/openOrders", symbol=symbol))

    def trades(self, symbol: str) -> list[SimTrade]:
        """All of our trades in ``symbol`` (``userTrades``, paged by trade id)."""
        out: list[SimTrade] = []
        from_id = 0
        while True:
            page = self.get("/fapi/v1/userTrades", symbol=symbol, fromId=from_id, limit=1000)
            out += [
                SimTrade(
                    int(t["id"]),
                    int(t["orderId"]),
                    t["symbol"],
                    bool(t["buyer"]),
                    Decimal(t["price"]),
                    Decimal(t["qty"]),
                    Decimal(t["commission"]),
                    t["commissionAsset"],
                    Decimal(t["realizedPnl"]),
                )
                for t in page
            ]
            if len(page) < 1000:
                return out
            from_id = int(page[-1]["id"]) + 1

    def positions(self, symbols: list[str]) -> dict[str, Decimal]:
        """The signed position per symbol (``/fapi/v2/positionRisk``; one-way mode)."""
        rows = self.get("/fapi/v2/positionRisk")
        return {r["symbol"]: Decimal(r["positionAmt"]) for r in rows if r["symbol"] in symbols}

    def balances(self) -> dict[str, Decimal]:
        """The wallet balance per asset (``/fapi/v2/balance``: unrealized PnL not included)."""
        return {b["asset"]: Decimal(b["balance"]) for b in self.get("/fapi/v2/balance")}


def _serve(port: int, answer_delay_s: float) -> None:
    import asyncio

    from tessera.sim.cli import _serve as serve_forever
    from tessera.sim.market import SimMarket
    from tessera.sim.recording import recording_paths
    from tessera.sim.server import ExchangeSimulator
    from tessera.sim.trading import TradingConfig, TradingEngine

    market = SimMarket.from_recording(recording_paths(None))
    for limit in market.exchange_info["rateLimits"]:
        if limit["rateLimitType"] == "REQUEST_WEIGHT":
            limit["limit"] = 6000
    sim = ExchangeSimulator(market, speed=10.0, loop_replay=True, autostart=False)
    config = TradingConfig(api_key=SIM_KEY, api_secret=SIM_SECRET)
    config.response_delay_s = answer_delay_s
    engine = TradingEngine(sim, config)
    if answer_delay_s:
        _delay_user_data(engine, answer_delay_s)
    asyncio.run(serve_forever(sim, "127.0.0.1", port, "10x", True, SIM_KEY))


def _serve_usdm(port: int, answer_delay_s: float) -> None:
    import asyncio

    from tessera.sim.cli import _serve as serve_forever
    from tessera.sim.usdm import usdm_market, usdm_trading_config, usdm_venue

    market = usdm_market(None)
    for limit in market.exchange_info["rateLimits"]:
        if limit["rateLimitType"] == "REQUEST_WEIGHT":
            limit["limit"] = 6000
    config = usdm_trading_config(api_key=SIM_KEY, api_secret=SIM_SECRET)
    config.response_delay_s = answer_delay_s  # the /fapi order answer, as spot's
    venue = usdm_venue(market, trading=config, speed=10.0, loop_replay=True, autostart=False)
    if answer_delay_s:
        _delay_user_data(venue.engine, answer_delay_s)
    asyncio.run(serve_forever(venue.sim, "127.0.0.1", port, "10x", True, SIM_KEY, usdm=True))


def _delay_user_data(engine: Any, delay_s: float) -> None:
    """The user-data stream lags by ``delay_s`` too (in order): otherwise its pushed reports
    would tell the bot about an order a few ms after sending, and the window a kill can hit
    between "sent" and "known" would be that short."""
    import asyncio
    from collections import deque

    publish = engine._publish
    pending: deque[tuple[float, tuple[dict[str, Any], ...]]] = deque()

    def flush() -> None:
        loop = asyncio.get_running_loop()
        while pending and pending[0][0] <= loop.time():
            publish(*pending.popleft()[1])
        if pending:
            loop.call_at(pending[0][0], flush)

    def late(*events: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        pending.append((loop.time() + delay_s, events))
        if len(pending) == 1:
            loop.call_at(pending[0][0], flush)

    engine._publish = late


if __name__ == "__main__":
    serve = _serve_usdm if "--usdm" in sys.argv[3:] else _serve
    serve(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
