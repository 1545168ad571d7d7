"""Perpetual futures domain (pure): instruments, leverage brackets, margin, liquidation, funding.

No I/O and no venue here: venue folders (`tessera.venues.binance_usdm`) parse the wire into
these types. One-way position mode only (see `tessera.execution.perp.margin`).

Modules: `instrument` (`PerpetualInstrument`), `margin` (`MarginTier`, `LeverageBrackets`,
`MarginMode`, `PerpPosition`, `liquidation_price`), `funding` (funding payments), `account`
(`PerpAccount`: the wallet and positions the backtest and paper book into). Their public
names are also reachable here, looked up on first use (PEP 562), so this package imports none
of its modules until one is asked for and the modules stay independent of each other.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = ("margin", "instrument", "funding", "account")


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    for module_name in _MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{module_name}":
                continue
            raise
        value = getattr(module, name, None)
        if getattr(value, "__module__", None) == module.__name__:
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
