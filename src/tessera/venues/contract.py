"""The venue contract: what every venue provides, and the registry that finds one by name.

A venue is one exchange API's wire format: its stream names, its market-data and user-data
payloads, its error codes and its order status names. The domain (orders, fills, positions,
the state machine) names no venue; code that talks to an exchange asks the registry for a
`Venue` (`venue("binance-spot")`) and reads payloads through it, so adding a venue means adding
a folder and one entry in `REGISTRY`, not touching the domain.

What a venue provides (`Venue`):

* ``name``, ``description``;
* ``stream_names(symbol, interval)``: the venue's stream name of each market-data kind for
  one symbol (``trade``, ``aggTrade``, ``kline``, ``depth``, ``bookTicker`` and the venue's own);
* ``market_data``: `MarketDataParsers`, the row parsers of those kinds; rows of the kinds every
  venue has have the same keys on every venue (``extra`` holds the venue's own kinds);
* ``rest_paths``: `MarketDataRest`, the public REST paths a market-data client reads (the
  book snapshot a local order book syncs from, recent and older trades, klines), so that the
  ingest asks the venue instead of assuming spot's ``/api/v3``; ``rest_url`` and ``ws_url``:
  the real venue's hosts;
* ``parse_user_event(raw)``: one user-data frame -> an `ExecutionReport` (or a subclass with
  the venue's own fields), an account update (an instance of one of ``account_events``), a
  venue-only event, or None for an event the venue ignores; raises ``user_event_error``;
* ``classify_error(code)`` -> `ErrorAction` (or None for a code with no known meaning) and
  ``error_for(code, msg)`` -> the `tessera.execution.exchange` exception to raise (None when
  the answer means "already so");
* ``order_status``: every status name the venue sends -> `OrderStatus`;
* ``simulator``: the venue's exchange simulator as a `SimulatorSpec` (its module, the adapter's
  ``exchange.name``, whether the account is balances or positions, which code refuses an order
  over the lot size), or None; read from `SIMULATORS` (see below).

**The contract tests** (``tests/venues/contract/``) are parametrized over every registered
venue and each venue's bundled real payloads (a table per venue in
``tests/venues/contract/venue_payloads.py``; a case with no real payload bundled yet is declared
with the reason and shows as skipped, never faked): market data (trade, aggregate trade, kline
closed and open, depth diff, book top give the same row shapes), user data (a new order, a
partial fill, a fill, a cancel, an account update), error codes mapped to what to do (reject,
retry later, unknown order, clock skew, auth, rate limit), and the status map covering every
status the venue sends and every exchange-side `OrderStatus`.

**The life-cycle and reconciliation cases**
(``tests/venues/contract/test_venue_contract_lifecycle.py``) run the same test bodies on every
registered venue against its in-process simulator over real sockets, through the venue's
`tessera.execution.exchange.Exchange` adapter: a limit rests, is found by client order id among
the open orders and canceled, a second cancel is an unknown order; a market order fills and its
fills (price, quantity, fee, liquidity) move the account by exactly that; a partly filled limit
canceled keeps its filled quantity; an order over the lot size's maximum quantity is refused
with the venue's code, which the venue's table maps to `ErrorAction.REJECT` (spot -1013,
USDⓈ-M -4005), and nothing is left open; an order whose answer is
dropped (by the caller, or lost on the wire by the simulator's fault) is found by its client
order id in the state it has, and `OrderManager.recover` after a restart brings an order
filled meanwhile to FILLED with its fills imported once; after a sequence the exchange's open
orders and account (balances on spot, the position and wallet on USDⓈ-M) equal what the fills
imply, and a new adapter (a reconnect) reads the same orders, account and trades. Where the
venues differ, the test reads the venue's `SimulatorSpec`, never the venue's name.

Why a spec and not a factory: the simulators import the venue layer (`tessera.sim.usdm` reads
its exchangeInfo and leverage brackets through `tessera.venues.binance_usdm`), so a venue
importing its simulator would turn the layering upside down. The contract names the simulator
and what the venue's account looks like; the factories that start one and hand back a
connected adapter live with the tests (``tests/venues/contract/simulators.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tessera.execution.orders import OrderStatus
from tessera.venues.binance.errors import ErrorAction

if TYPE_CHECKING:
    from tessera.config.settings import TesseraSettings

RowParser = Callable[[dict[str, Any], int], dict[str, Any]]
# (first update id, final update id, previous final id or None, event ms, bids, asks)
DepthLevels = tuple[int, int, int | None, int, list[list[str]], list[list[str]]]


@dataclass(frozen=True)
class MarketDataParsers:
    """Payload -> row parsers of the market-data kinds every venue has (same row keys on every
    venue), and the venue's own kinds in ``extra``. Each raises ``error`` on a bad payload."""

    trade: RowParser
    agg_trade: RowParser
    kline: Callable[[dict[str, Any], int], tuple[bool, dict[str, Any]]]  # (closed, row)
    depth: Callable[[dict[str, Any]], DepthLevels]
    book_ticker: RowParser
    depth_follows: Callable[[int, int, int | None], bool]  # (last final id, U, pu) -> in order?
    error: type[Exception]
    extra: Mapping[str, RowParser] = field(default_factory=dict)


@dataclass(frozen=True)
class MarketDataRest:
    """A venue's public market-data REST paths (under its ``rest_url``), with the same query
    parameters and the same answer layout on every Binance venue: ``depth`` (the order-book
    snapshot, ``lastUpdateId``), ``trades`` (the newest trades), ``historical_trades`` (trades
    from an id on; an API key header on the real exchange), ``klines``."""

    depth: str
    trades: str
    historical_trades: str
    klines: str


@dataclass(frozen=True)
class Venue:
    """What a venue provides; see the module docstring."""

    name: str
    description: str
    stream_names: Callable[[str, str], dict[str, str]]
    market_data: MarketDataParsers
    parse_user_event: Callable[[str | bytes], object | None]
    user_event_error: type[Exception]
    account_events: tuple[type, ...]
    classify_error: Callable[[int], ErrorAction | None]
    error_for: Callable[[int, str], Exception | None]
    order_status: Mapping[str, OrderStatus]
    rest_url: str  # the real venue's REST base (what a run on it talks to unless told otherwise)
    ws_url: str  # its market-data websocket base
    rest_paths: MarketDataRest  # its public market-data REST paths

    @property
    def simulator(self) -> SimulatorSpec | None:
        """The venue's exchange simulator (`SIMULATORS`), or None if it has none."""
        return SIMULATORS.get(self.name)


@dataclass(frozen=True)
class SimulatorSpec:
    """A venue's exchange simulator and the capabilities its life-cycle cases depend on.

    ``module`` serves the venue (an in-process ``ExchangeSimulator``); ``exchange_id`` is the
    ``exchange.name`` that picks the venue's adapter (`tessera.execution.ccxt_exchange.
    open_exchange`); ``account`` is what a fill moves: ``balances`` (spot: each asset's free and
    locked amount) or ``positions`` (a derivatives venue: a signed position per symbol and a
    margin wallet in ``margin_asset``); ``lot_size_code`` is the error code the venue answers
    an order over its LOT_SIZE maximum quantity with (a filter every venue checks that the
    adapter cannot round away)."""

    module: str
    exchange_id: str
    account: Literal["balances", "positions"]
    lot_size_code: int
    margin_asset: str = ""


# venue name -> its simulator; a venue missing here has none and its life-cycle cases skip
SIMULATORS: Mapping[str, SimulatorSpec] = {
    "binance-spot": SimulatorSpec(
        module="tessera.sim",
        exchange_id="binance",
        account="balances",
        lot_size_code=-1013,  # Filter failure: LOT_SIZE
    ),
    "binance-usdm": SimulatorSpec(
        module="tessera.sim.usdm",
        exchange_id="binance-usdm",
        account="positions",
        lot_size_code=-4005,  # Quantity greater than max quantity.
        margin_asset="USDT",
    ),
}


# name -> the module whose ``VENUE`` it is (imported on first use: a process reading one venue
# does not load the others)
REGISTRY: Mapping[str, str] = {
    "binance-spot": "tessera.venues.binance_spot.venue",
    "binance-usdm": "tessera.venues.binance_usdm.venue",
}


class UnknownVenueError(KeyError):
    """A venue name that is not registered; the message lists the registered ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown venue"


def venue_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def exchange_hosts(s: TesseraSettings) -> tuple[str, str]:
    """The REST and websocket bases a run or an ingest talks to: ``exchange.rest_url``/``ws_url``
    when set, else the venue's own hosts — USDⓈ-M's fapi/fstream for ``binance-usdm``
    (``data.rest_url`` and ``ws_url`` are spot's: a perpetual run or ingest must not fall back
    to them), the ``data`` ones for spot."""
    if s.exchange.name == "binance-usdm":
        usdm = venue("binance-usdm")
        return s.exchange.rest_url or usdm.rest_url, s.exchange.ws_url or usdm.ws_url
    return s.exchange.rest_url or s.data.rest_url, s.exchange.ws_url or s.data.ws_url


def venue(name: str) -> Venue:
    """The registered venue ``name`` (``binance-spot``, ``binance-usdm``)."""
    if name not in REGISTRY:
        raise UnknownVenueError(
            f"unknown venue {name!r}: registered venues are {', '.join(REGISTRY)}"
        )
    found = importlib.import_module(REGISTRY[name]).VENUE
    if not isinstance(found, Venue) or found.name != name:
        raise TypeError(f"{REGISTRY[name]}.VENUE is not the Venue {name!r}")
    return found
