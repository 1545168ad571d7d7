"""A strategy's own state, kept across restarts of the bot: ``ctx.state``.

A strategy object lives in memory; a restarted bot builds a new one. What the strategy must
remember to act the same after a restart — the entry it is waiting on, a counter, the exits
its order helpers are managing (brackets waiting for their entry, trailing stops) — goes into
``ctx.state``, a dict of JSON values plus `Decimal` (kept exact). The live bot writes it to the
execution store after each closed bar and after each fill of the strategy, and gives it back
before ``on_start``; the backtest keeps it in memory (same API, nothing to restore).

A graceful stop loses nothing; a crash loses at most the changes of the last bar, and the
orders those changes sent are recovered by client order id as always.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

_DECIMAL = "__decimal__"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {_DECIMAL: str(value)}
    raise TypeError(
        f"ctx.state holds JSON values and Decimal; {type(value).__name__} cannot be stored"
    )


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _DECIMAL in obj:
        return Decimal(obj[_DECIMAL])
    return obj


def encode_state(state: dict[str, Any]) -> str:
    """JSON text; keys sorted, so equal states encode equal (the bot writes only changes)."""
    return json.dumps(state, default=_default, sort_keys=True, separators=(",", ":"))


def decode_state(text: str) -> dict[str, Any]:
    value = json.loads(text, object_hook=_hook)
    if not isinstance(value, dict):
        raise ValueError("a strategy's stored state is not an object")
    return value
