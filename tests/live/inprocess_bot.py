"""Shared by the tests that run a `TradingBot` in the test's own event loop (faults, the fault
matrix): a simulator on its own thread, the bot's options against it, and polling waits."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from live_bot_helpers import KEY, SECRET

from tessera.config.models import RiskConfig, StrategyRef
from tessera.live.bot import BotOptions
from tessera.sim import FaultPlan
from tessera.sim.market import SimMarket
from tessera.sim.server import ExchangeSimulator, SimulatorThread
from tessera.sim.trading import TradingConfig, TradingEngine


@contextlib.contextmanager
def running_simulator(
    plan: FaultPlan | None = None,
    speed: float = 5.0,
    *,
    market: SimMarket | None = None,
    loop_replay: bool = True,
    **trading: Any,
) -> Iterator[tuple[ExchangeSimulator, TradingEngine]]:
    """The simulator on its own thread replaying ``market`` (default: the bundled recordings,
    in a loop), with its trading engine (``trading``: more `TradingConfig` fields)."""
    simulator = ExchangeSimulator(
        market, speed=speed, loop_replay=loop_replay, faults=plan or FaultPlan()
    )
    engine = TradingEngine(simulator, TradingConfig(api_key=KEY, api_secret=SECRET, **trading))
    thread = SimulatorThread(simulator)
    thread.start()
    try:
        yield simulator, engine
    finally:
        thread.stop()


def bot_options(sim: ExchangeSimulator, database_url: str, **kw: Any) -> BotOptions:
    """A bot trading sma_cross on 1s BTCUSDT bars of ``sim``, often (fast=2, slow=3)."""
    base: dict[str, Any] = {
        "mode": "live",
        "strategies": [StrategyRef(name="sma_cross", params={"fast": 2, "slow": 3, "qty": 0.001})],
        "symbols": ["BTCUSDT"],
        "interval": "1s",
        "rest_url": sim.rest_url,
        "ws_url": sim.ws_url,
        "database_url": database_url,
        "run_id": f"inproc-{secrets.token_hex(4)}",
        "risk": RiskConfig(),
        "api_key": KEY,
        "api_secret": SECRET,
        "reconcile_interval_s": 3600.0,
    }
    base.update(kw)
    return BotOptions(**base)


async def wait_until(cond: Callable[[], Any], within: float, what: str) -> None:
    """Polls ``cond``: the bot's state has no event for each of these conditions."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)
