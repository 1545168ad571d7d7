"""The local Binance spot exchange simulator (REST + websockets) replaying real market data.

The names below are imported on first use (PEP 562): importing one part (``tessera.sim.cli``
for ``tessera sim --help``, ``tessera.sim.recording``) does not load aiohttp and pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tessera.sim.faults import FaultPlan
    from tessera.sim.market import SimMarket
    from tessera.sim.server import ExchangeSimulator, SimStats, SimulatorThread

_MODULE_OF = {
    "ExchangeSimulator": "tessera.sim.server",
    "FaultPlan": "tessera.sim.faults",
    "SimMarket": "tessera.sim.market",
    "SimStats": "tessera.sim.server",
    "SimulatorThread": "tessera.sim.server",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["ExchangeSimulator", "FaultPlan", "SimMarket", "SimStats", "SimulatorThread"]
