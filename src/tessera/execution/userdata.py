"""Binance's user-data stream: our orders' updates and balances, pushed as they happen.

The connection (listen key, keepalive, reconnects) is here; the events are parsed by
`tessera.venues.binance_spot.user_data` into the domain's reports (`tessera.execution.reports`),
and their names stay importable from this module for its many callers.

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
from typing import Any

import aiohttp

from tessera import metrics
from tessera.execution.reports import AccountPosition, ExecutionReport, ListStatus
from tessera.logging import get_logger
from tessera.venues.binance_spot.user_data import (
    MalformedEventError,
    UserEvent,
    parse_user_event,
)

__all__ = [
    "AccountPosition",
    "ExecutionReport",
    "ListStatus",
    "MalformedEventError",
    "UserDataStream",
    "UserEvent",
    "parse_user_event",
]

log = get_logger(__name__)


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
        params = {"listenKey": key} if key else None
        url = f"{self.rest_url}/api/v3/userDataStream"
        return await self._listen_key_call(session, method, url, key, params)

    async def _listen_key_call(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        key: str,
        params: dict[str, str] | None = None,
    ) -> str:
        """One listen-key request to ``url``: the key it answers (else ``key``); a non-200
        answer raises `aiohttp.ClientResponseError` with the body."""
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
