"""Building a bot from settings: one function, used by ``tessera run`` and the demo alike.

Every ``live.*`` setting reaches the bot through here, so a setting cannot be honoured by one
entry point and ignored by another (the demo used to build its options by hand and ran with
the defaults of ``order_timeout_s``, ``max_bar_age_s``, ``max_strategy_errors``... whatever the
configuration said). What differs between entry points — the venue, the store, the run id, the
mode — is passed explicitly; anything else is an override naming a `BotOptions` field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from tessera.config.models import StrategyRef
from tessera.config.settings import TesseraSettings
from tessera.live.bot import BotOptions

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
    feature interval), the explicit venue and store, and ``overrides`` (field names of
    `BotOptions`; an unknown name is a `TypeError`, not ignored)."""
    known = {f.name for f in fields(BotOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"bot_options: no BotOptions field named {unknown}")
    live = settings.live
    values: dict[str, Any] = {name: getattr(live, name) for name in _FROM_LIVE}
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
        consumer=f"bot-{run_id}",
    )
    values.update(overrides)
    return BotOptions(**values)
