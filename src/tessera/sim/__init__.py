"""The local Binance spot exchange simulator (REST + websockets) replaying real market data."""

from tessera.sim.faults import FaultPlan
from tessera.sim.market import SimMarket
from tessera.sim.server import ExchangeSimulator, SimStats, SimulatorThread

__all__ = ["ExchangeSimulator", "FaultPlan", "SimMarket", "SimStats", "SimulatorThread"]
