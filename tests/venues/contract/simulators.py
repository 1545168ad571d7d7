"""Each registered venue's simulator, started in-process, with the venue's `Exchange` adapter
connected to it over real sockets: what the contract's life-cycle cases run on.

Why here and not in `tessera.venues.contract`: the simulators import the venue layer, so the
venue layer must not import them. The contract says which simulator a venue has and what its
account looks like (`SimulatorSpec`); this module starts it (`Harness.start`). A venue the
contract gives a simulator but this table does not is a failing test, not a skip.

Markets are the bundled real BTCUSDT recordings of 2024-08-08 (samples/SOURCES.md), spot and
USDⓈ-M; the replay is stepped by hand (``speed=None``), so a test knows the book its order
meets. The quantities are chosen for those recordings' prices (about 57,000 USDT).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tessera.execution.ccxt_exchange import open_exchange
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.state import MarketState
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.sim.usdm import usdm_market, usdm_trading_config, usdm_venue
from tessera.venues.binance_spot.exchange import CcxtExchange
from tessera.venues.contract import SimulatorSpec, venue

SAMPLES = Path(__file__).resolve().parents[3] / "samples/binance-raw-ws"
KEY, SECRET = "contract-key", "contract-secret"
SYMBOL = "BTCUSDT"


@dataclass(frozen=True)
class Running:
    """A started simulator, its trading engine, and the venue's adapter connected to it."""

    spec: SimulatorSpec
    sim: ExchangeSimulator
    engine: TradingEngine
    exchange: CcxtExchange

    def book_top(self) -> tuple[Decimal, Decimal]:
        """(best bid, best ask) of the book an order sent now meets."""
        self.sim.state.advance_to(self.sim.head)
        book = self.sim.state.books[SYMBOL]
        return max(book.bids), min(book.asks)

    def resting_price(self) -> Decimal:
        """A buy price under the bid that the replay's next trades reach (read from a separate
        state of the same market, so the simulator's own does not move)."""
        bid, _ = self.book_top()
        seen = len(self.sim.state.trades(SYMBOL))
        peek = MarketState(self.sim.market)
        peek.advance_to(len(self.sim.market.frames))
        low = min(Decimal(t.price) for t in peek.trades(SYMBOL)[seen : seen + 2000])
        return min(low, bid - Decimal("1"))

    def step_until(self, done: Callable[[], bool], frames: int = 20) -> bool:
        """Releases the replay ``frames`` at a time, matching our resting orders after each
        step, until ``done()`` or the recording ends; whether ``done()`` became true."""
        n = self.sim.head
        while not done() and n < len(self.sim.market.frames):
            n = min(n + frames, len(self.sim.market.frames))
            self.sim.release(n)
            self.engine.match_resting()
        return done()


@dataclass(frozen=True)
class Harness:
    """How to start one venue's simulator for the contract's cases.

    ``qty``: an order size every case can afford and the minimum notional admits;
    ``over_max_qty``: a size on the venue's step over its LOT_SIZE maximum;
    ``start_frame``: frames released before a case trades (a live book);
    ``known_gaps``: test name -> why that case is expected to fail on this venue (a defect
    found by the case and not yet fixed where it lives; the test is a strict xfail)."""

    name: str
    recording: Path
    load: Callable[[list[Path]], SimMarket]
    serve: Callable[[SimMarket], tuple[ExchangeSimulator, TradingEngine]]
    start_frame: int
    qty: Decimal
    over_max_qty: Decimal
    known_gaps: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def market(self) -> SimMarket:
        return self.load([self.recording])

    @asynccontextmanager
    async def start(self) -> AsyncIterator[Running]:
        spec = venue(self.name).simulator
        assert spec is not None, f"{self.name}: the contract names no simulator"
        sim, engine = self.serve(self.market)
        async with sim:
            sim.release(self.start_frame)
            ex = open_exchange(sim.rest_url, KEY, SECRET, exchange_id=spec.exchange_id)
            try:
                yield Running(spec, sim, engine, ex)
            finally:
                await ex.close()


def _spot(market: SimMarket) -> tuple[ExchangeSimulator, TradingEngine]:
    sim = ExchangeSimulator(market, speed=None, autostart=False)
    return sim, TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))


def _usdm(market: SimMarket) -> tuple[ExchangeSimulator, TradingEngine]:
    v = usdm_venue(
        market,
        speed=None,
        autostart=False,
        trading=usdm_trading_config(api_key=KEY, api_secret=SECRET),
    )
    assert v.engine is not None
    return v.sim, v.engine


HARNESSES: dict[str, Harness] = {
    "binance-spot": Harness(
        name="binance-spot",
        recording=SAMPLES / "spot/btcusdt_20240808.gz",
        load=SimMarket.from_recording,
        serve=_spot,
        start_frame=4000,
        qty=Decimal("0.010"),
        over_max_qty=Decimal("9001"),  # LOT_SIZE maxQty 9000
    ),
    "binance-usdm": Harness(
        name="binance-usdm",
        recording=SAMPLES / "usdm/btcusdt_20240808.gz",
        load=usdm_market,
        serve=_usdm,
        start_frame=15_000,
        qty=Decimal("0.010"),
        over_max_qty=Decimal("1001"),  # LOT_SIZE maxQty 1000
    ),
}

# the module each harness's simulator comes from, checked against the contract's spec
SERVED_BY: dict[str, str] = {"binance-spot": "tessera.sim", "binance-usdm": "tessera.sim.usdm"}
