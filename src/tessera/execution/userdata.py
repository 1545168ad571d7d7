"""Binance's user-data stream: our orders' updates and balances, pushed as they happen.

A listen key (``POST /api/v3/userDataStream``, API key only) opens ``/ws/<listenKey>``; it
expires 60 minutes after the last keepalive (``PUT``), so one is sent every 30 minutes. Events:

* ``executionReport`` -> `ExecutionReport` (NEW, TRADE, CANCELED, EXPIRED, REJECTED, ...);
  a TRADE carries one fill (``t`` is the exchange trade id: fills are deduplicated by it);
* ``outboundAccountPosition`` -> `AccountPosition` (balances after a change);
* ``listStatus`` -> `ListStatus`: an order list (OCO) started, or is done (one leg filled or
  triggered and the other expired, or the list was canceled). The legs' own executionReports
  carry their states; the list event is handed to ``on_list_status`` if given, else dropped
  (nothing in it is needed to keep the orders right).

Every order type parses the same way; a report also names the type (``o``), the stop price
(``P``, stop and take-profit types) and the order list (``g``, -1 when none).

After a disconnect the stream reconnects with backoff, and calls ``on_reconnect`` so that the
owner reconciles what happened meanwhile (`OrderManager.recover`): events are not replayed.
Malformed events are counted, logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from tessera import metrics
from tessera.execution.exchange import BINANCE_STATUS
from tessera.execution.orders import Fill, Liquidity, OrderSide, OrderStatus, OrderType
from tessera.logging import get_logger

log = get_logger(__name__)
MS = 1_000_000

STATUS = BINANCE_STATUS


class MalformedEventError(ValueError):
    pass


@dataclass(frozen=True)
class ExecutionReport:
    symbol: str
    client_order_id: str  # for a cancel: the canceled order's id (Binance's "C")
    side: OrderSide
    exec_type: str  # x: NEW, TRADE, CANCELED, EXPIRED, REJECTED, ...
    status: OrderStatus  # X
    exchange_order_id: str
    cum_qty: Decimal
    cum_quote: Decimal
    event_ms: int
    fill: Fill | None  # exec_type TRADE only
    reject_reason: str = "NONE"
    order_type: OrderType | None = None  # o
    stop_price: Decimal | None = None  # P, when the type has one
    order_list_id: int = -1  # g: the OCO it belongs to, -1 when none
    working: bool = True  # w: on the book (False for a stop not triggered yet, or when done)


@dataclass(frozen=True)
class ListStatus:
    """A ``listStatus`` event: the state of an order list (OCO) as a whole."""

    symbol: str
    order_list_id: int  # g
    list_client_order_id: str  # C
    contingency_type: str  # c: OCO
    list_status_type: str  # l: RESPONSE, EXEC_STARTED, UPDATED, ALL_DONE
    list_order_status: str  # L: EXECUTING, ALL_DONE, REJECT
    reject_reason: str  # r
    event_ms: int
    orders: tuple[tuple[int, str], ...]  # (orderId, clientOrderId) of each leg

    @property
    def done(self) -> bool:
        return self.list_order_status in ("ALL_DONE", "REJECT")


@dataclass(frozen=True)
class AccountPosition:
    event_ms: int
    balances: dict[str, tuple[Decimal, Decimal]]  # asset -> (free, locked)


UserEvent = ExecutionReport | AccountPosition | ListStatus


def parse_user_event(raw: str | bytes) -> UserEvent | None:
    """One user-data frame; None for event types we do not use. Raises `MalformedEventError`."""
    try:
        d = orjson.loads(raw)
        if isinstance(d, dict) and "data" in d and "stream" in d:  # combined-stream wrapping
            d = d["data"]
        elif isinstance(d, dict) and "event" in d and "subscriptionId" in d:  # WebSocket API
            d = d["event"]
        kind = d["e"]
        if kind == "executionReport":
            exec_type = str(d["x"])
            # a cancel names the canceled order in "C" (its own "c" is the cancel request's id)
            cid = str(d["C"]) if exec_type == "CANCELED" and d.get("C") else str(d["c"])
            side = OrderSide(str(d["S"]))
            stop = Decimal(str(d.get("P") or "0"))
            otype = str(d.get("o", ""))
            fill = None
            if exec_type == "TRADE":
                fill = Fill(
                    trade_id=str(d["t"]),
                    client_order_id=cid,
                    symbol=str(d["s"]),
                    side=side,
                    price=Decimal(str(d["L"])),
                    qty=Decimal(str(d["l"])),
                    fee=Decimal(str(d["n"])),
                    fee_asset=str(d["N"] or ""),
                    liquidity=Liquidity.MAKER if d["m"] else Liquidity.TAKER,
                    ts_event=int(d["T"]) * MS,
                )
            return ExecutionReport(
                symbol=str(d["s"]),
                client_order_id=cid,
                side=side,
                exec_type=exec_type,
                status=STATUS[str(d["X"])],
                exchange_order_id=str(d["i"]),
                cum_qty=Decimal(str(d["z"])),
                cum_quote=Decimal(str(d["Z"])),
                event_ms=int(d["E"]),
                fill=fill,
                reject_reason=str(d.get("r", "NONE")),
                order_type=OrderType(otype) if otype in OrderType.__members__ else None,
                stop_price=stop if stop else None,
                order_list_id=int(d.get("g", -1)),
                working=bool(d.get("w", True)),
            )
        if kind == "outboundAccountPosition":
            return AccountPosition(
                int(d["E"]),
                {b["a"]: (Decimal(str(b["f"])), Decimal(str(b["l"]))) for b in d["B"]},
            )
        if kind == "listStatus":
            return ListStatus(
                symbol=str(d["s"]),
                order_list_id=int(d["g"]),
                list_client_order_id=str(d["C"]),
                contingency_type=str(d["c"]),
                list_status_type=str(d["l"]),
                list_order_status=str(d["L"]),
                reject_reason=str(d.get("r", "NONE")),
                event_ms=int(d["E"]),
                orders=tuple((int(o["i"]), str(o["c"])) for o in d["O"]),
            )
        return None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise MalformedEventError(f"{type(exc).__name__}: {exc}") from exc


Handler = Callable[[ExecutionReport], Any]


class UserDataStream:
    KEEPALIVE_S = 30 * 60.0

    def __init__(
        self,
        rest_url: str,
        ws_url: str,
        api_key: str,
        on_report: Handler,
        on_account: Callable[[AccountPosition], Any] | None = None,
        on_reconnect: Callable[[], Awaitable[Any]] | None = None,
        keepalive_s: float = KEEPALIVE_S,
        max_backoff_s: float = 30.0,
        on_list_status: Callable[[ListStatus], Any] | None = None,
    ) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.ws_url = ws_url.rstrip("/")
        self.api_key = api_key
        self.on_report = on_report
        self.on_account = on_account
        self.on_reconnect = on_reconnect
        self.on_list_status = on_list_status
        self.keepalive_s = keepalive_s
        self.max_backoff_s = max_backoff_s
        self.connected = asyncio.Event()
        self.malformed = 0
        self.reports = 0
        self.list_events = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def _listen_key(self, session: aiohttp.ClientSession, method: str, key: str = "") -> str:
        url = f"{self.rest_url}/api/v3/userDataStream"
        params = {"listenKey": key} if key else None
        async with session.request(
            method, url, params=params, headers={"X-MBX-APIKEY": self.api_key}
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=str(body)
                )
            return str(body.get("listenKey", key))

    async def run(self) -> None:
        backoff = 0.5
        first = True
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                keepalive: asyncio.Task[None] | None = None
                try:
                    key = await self._listen_key(session, "POST")
                    async with session.ws_connect(f"{self.ws_url}/ws/{key}", heartbeat=20) as ws:
                        self.connected.set()
                        backoff = 0.5
                        keepalive = asyncio.create_task(self._keepalive(session, key))
                        if not first and self.on_reconnect is not None:
                            await self.on_reconnect()  # what happened while we were away
                        first = False
                        await self._read(ws)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    log.warning("user-data stream failed", error=str(exc)[:200])
                finally:
                    self.connected.clear()
                    if keepalive is not None:
                        keepalive.cancel()
                if self._stop.is_set():
                    return
                metrics.WS_RECONNECTS.labels(reason="error").inc()
                delay = min(backoff, self.max_backoff_s) * (0.5 + random.random())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        stop = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                recv = asyncio.create_task(ws.receive())
                done, _ = await asyncio.wait({recv, stop}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    return
                msg = recv.result()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):  # fmt: skip
                    return
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                self._dispatch(msg.data)
        finally:
            stop.cancel()

    def _dispatch(self, raw: str) -> None:
        try:
            event = parse_user_event(raw)
        except MalformedEventError as exc:
            self.malformed += 1
            metrics.WS_MALFORMED.labels(stream_type="user").inc()
            log.warning("malformed user-data event skipped", error=str(exc), raw=raw[:200])
            return
        if isinstance(event, ExecutionReport):
            self.reports += 1
            self.on_report(event)
        elif isinstance(event, AccountPosition) and self.on_account is not None:
            self.on_account(event)
        elif isinstance(event, ListStatus):
            self.list_events += 1
            if self.on_list_status is not None:
                self.on_list_status(event)

    async def _keepalive(self, session: aiohttp.ClientSession, key: str) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self._listen_key(session, "PUT", key)
            except aiohttp.ClientError as exc:
                log.warning("listen-key keepalive failed", error=str(exc)[:200])
