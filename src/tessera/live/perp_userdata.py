"""Binance USDⓈ-M's user-data stream: spot's connection (`UserDataStream`: listen key,
keepalive, reconnect with backoff, ``on_reconnect`` to reconcile what happened meanwhile) with
USDⓈ-M's listen-key endpoint and the venue's parser.

Why a subclass and not a flag: the connection is the same, the two things that differ are the
venue's — the listen key is ``/fapi/v1/listenKey`` (spot: ``/api/v3/userDataStream``) and the
events are read by ``venue("binance-usdm").parse_user_event``:

* ``ORDER_TRADE_UPDATE`` -> `FuturesExecutionReport`, an `ExecutionReport`: handed to
  ``on_report`` like spot's (the order manager reads both alike; a fill is deduplicated by its
  trade id against the one the order answer brought);
* ``ACCOUNT_UPDATE`` -> `FuturesAccountUpdate` (wallet balances, signed positions) to
  ``on_perp_account`` if given;
* ``MARGIN_CALL`` -> `MarginCall`: logged as an error, and to ``on_margin_call`` if given;
* ``listenKeyExpired``: the key is dead, so the connection is closed and reopened with a new
  key (``on_reconnect`` then reconciles, as after any disconnect).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tessera import metrics
from tessera.execution.reports import ExecutionReport
from tessera.execution.userdata import Handler, UserDataStream
from tessera.logging import get_logger
from tessera.venues.binance_usdm.user_data import (
    FuturesAccountUpdate,
    ListenKeyExpired,
    MarginCall,
)
from tessera.venues.contract import venue

log = get_logger(__name__)
USDM = venue("binance-usdm")


class PerpUserDataStream(UserDataStream):
    """`UserDataStream` on Binance USDⓈ-M (see the module docstring)."""

    def __init__(
        self,
        rest_url: str,
        ws_url: str,
        api_key: str,
        on_report: Handler,
        on_perp_account: Callable[[FuturesAccountUpdate], Any] | None = None,
        on_margin_call: Callable[[MarginCall], Any] | None = None,
        on_reconnect: Callable[[], Awaitable[Any]] | None = None,
        keepalive_s: float = UserDataStream.KEEPALIVE_S,
        max_backoff_s: float = 30.0,
    ) -> None:
        super().__init__(
            rest_url,
            ws_url,
            api_key,
            on_report,
            on_reconnect=on_reconnect,
            keepalive_s=keepalive_s,
            max_backoff_s=max_backoff_s,
        )
        self.on_perp_account = on_perp_account
        self.on_margin_call = on_margin_call
        self.account_updates = 0
        self.margin_calls = 0
        self.keys_expired = 0

    async def _listen_key(self, session: aiohttp.ClientSession, method: str, key: str = "") -> str:
        # USDⓈ-M's keepalive and close take no listenKey parameter: the API key names it
        return await self._listen_key_call(
            session, method, f"{self.rest_url}/fapi/v1/listenKey", key
        )

    def _dispatch(self, raw: str) -> None:
        try:
            event = USDM.parse_user_event(raw)
        except USDM.user_event_error as exc:
            self.malformed += 1
            metrics.WS_MALFORMED.labels(stream_type="user").inc()
            log.warning("malformed user-data event skipped", error=str(exc), raw=raw[:200])
            return
        if isinstance(event, ExecutionReport):
            self.reports += 1
            self.on_report(event)
        elif isinstance(event, FuturesAccountUpdate):
            self.account_updates += 1
            if self.on_perp_account is not None:
                self.on_perp_account(event)
        elif isinstance(event, MarginCall):
            self.margin_calls += 1
            log.error(
                "margin call",
                symbols=[p.symbol for p in event.positions],
                cross_wallet=str(event.cross_wallet),
            )
            if self.on_margin_call is not None:
                self.on_margin_call(event)
        elif isinstance(event, ListenKeyExpired):
            log.warning("listen key expired: reconnecting with a new one")
            self.keys_expired += 1
            raise _KeyExpiredError


class _KeyExpiredError(aiohttp.ClientError):
    """Ends the connection (a `aiohttp.ClientError`: `UserDataStream.run` reconnects)."""
