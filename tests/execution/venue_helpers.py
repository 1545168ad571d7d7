"""Shared by the tests that trade against the simulator's order API."""

from __future__ import annotations

from decimal import Decimal

from tessera.sim import ExchangeSimulator
from tessera.sim.state import MarketState


def resting_price(sim: ExchangeSimulator, symbol: str = "BTCUSDT") -> Decimal:
    """A buy price below the current bid that the rest of the replay trades down to.

    Read from a separate state of the same market, so the simulator's own state does not move.
    """
    sim.state.advance_to(sim.head)
    seen = len(sim.state.trades(symbol))
    bid = max(sim.state.books[symbol].bids)
    peek = MarketState(sim.market)
    peek.advance_to(len(sim.market.frames))
    low = min(Decimal(t.price) for t in peek.trades(symbol)[seen : seen + 2000])
    return min(low, bid - Decimal("1"))
