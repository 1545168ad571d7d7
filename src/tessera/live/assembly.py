"""Building a bot from settings: one function, used by ``tessera run`` and the demo alike.

Every ``live.*`` setting (and ``exchange.name``, ``exchange.recv_window_ms``) reaches the bot
through here, and `exchange_client` builds its exchange client from those options, so a
setting cannot be honoured by one entry point and ignored by another (the demo used to build
its options by hand and ran with the defaults of ``order_timeout_s``, ``max_bar_age_s``,
``max_strategy_errors``... whatever the configuration said). What differs between entry
points — the venue, the store, the run id, the mode — is passed explicitly; anything else is
an override naming a `BotOptions` field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from tessera.config.models import StrategyRef
from tessera.config.settings import (
    TesseraSettings,
)
from tessera.live.bot import BotOptions
from tessera.live.settings_check import check_trading_settings

if TYPE_CHECKING:
    from tessera.live.clock import ExchangeClock
    from tessera.live.ratelimit import RateLimiter
    from tessera.venues.binance_spot.exchange import CcxtExchange

# `BotOptions` fields taken from ``settings.live`` under the same name
_FROM_LIVE = (
    "signal_stream",
    "signal_maxlen",
    "consumer_group",
    "claim_idle_ms",
    "reconcile_interval_s",
    "order_timeout_s",
    "max_bar_age_s",
    "stall_after_s",
    "shutdown_timeout_s",
    "max_strategy_errors",
)


def bot_options(
    settings: TesseraSettings,
    *,
    mode: str,
    strategies: Sequence[StrategyRef],
    symbols: Sequence[str],
    rest_url: str,
    ws_url: str,
    database_url: str,
    run_id: str,
    **overrides: Any,
) -> BotOptions:
    """`BotOptions` from ``settings`` (risk, store sync, Redis, every ``live.*`` field, the
    control API and notifier settings, the feature interval, ``exchange.name`` and
    ``exchange.recv_window_ms``), the explicit venue and store, and ``overrides`` (field
    names of `BotOptions`; an unknown name is a `TypeError`, not ignored).

    An ``exchange.name`` Tessera cannot trade on is a `ConfigError` here, before anything
    starts: every mode's bot (paper too: its market data) speaks Binance's spot API."""
    known = {f.name for f in fields(BotOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"bot_options: no BotOptions field named {unknown}")
    live = settings.live
    values: dict[str, Any] = {name: getattr(live, name) for name in _FROM_LIVE}
    check_trading_settings(settings)
    values.update(
        perp_leverage=live.perp_leverage,
        perp_margin_mode=live.perp_margin_mode.upper(),
    )
    values.update(
        mode=mode,
        strategies=list(strategies),
        symbols=[s.upper() for s in symbols],
        interval=settings.features.interval,
        rest_url=rest_url,
        ws_url=ws_url,
        database_url=database_url,
        database_sync=settings.database_sync,
        run_id=run_id,
        risk=settings.risk,
        redis_url=settings.redis_url,
        exchange_id=settings.exchange.name,
        recv_window_ms=settings.exchange.recv_window_ms,
        consumer=f"bot-{run_id}",
        control=settings.control,
        notify=settings.notify,
    )
    values.update(overrides)
    return BotOptions(**values)


def exchange_client(
    options: BotOptions, *, limiter: RateLimiter | None, clock: ExchangeClock | None
) -> CcxtExchange:
    """The bot's signed REST client: the venue (``exchange_id``), the credentials, the
    ``recvWindow`` of every signed request, and ``order_timeout_s`` as the time a request may go
    unanswered before its outcome is unknown (then looked up by client order id)."""
    from tessera.execution.ccxt_exchange import open_exchange

    return open_exchange(
        options.rest_url,
        options.api_key,
        options.api_secret,
        exchange_id=options.exchange_id,
        timeout_ms=round(options.order_timeout_s * 1000),
        recv_window_ms=options.recv_window_ms,
        limiter=limiter,
        clock=clock,
    )
