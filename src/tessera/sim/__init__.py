"""The local Binance spot exchange simulator (REST + websockets) replaying real recordings."""

from tessera.sim.server import ExchangeSimulator, FaultPlan, SimulatorThread

__all__ = ["ExchangeSimulator", "FaultPlan", "SimulatorThread"]
