"""The ``/api/v3/exchangeInfo`` the simulator serves.

Source: the complete real Binance spot exchangeInfo of 2021-10-12 bundled in
``samples/cryptofeed/BINANCE.0.gz`` (line 1: ``<url> -> <ts>: <JSON>``), reduced to the symbols
being served, every field and filter kept as recorded. A served symbol missing from that file gets
a generated entry: a real entry with the same quote asset, renamed, with the tick and lot sizes
the data itself shows, so that clients see the same keys and filter types as for any real symbol.
"""

from __future__ import annotations

import copy
import gzip
from collections.abc import Iterable, Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from tessera.logging import get_logger
from tessera.sim.payloads import fmt8

log = get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
EXCHANGE_INFO_FILE = REPO_ROOT / "samples" / "cryptofeed" / "BINANCE.0.gz"


@lru_cache(maxsize=4)
def _recorded(path: Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        line = fh.readline()
    return line.split(": ", 1)[1]


def recorded_exchange_info(path: Path = EXCHANGE_INFO_FILE) -> dict[str, Any]:
    """The whole recorded document, parsed anew from the cached text (callers may edit it;
    parsing is ~5x faster than a deep copy of the parsed document)."""
    doc: dict[str, Any] = orjson.loads(_recorded(path))
    return doc


def split_symbol(symbol: str, quote_assets: Iterable[str]) -> tuple[str, str]:
    """``"ADABTC"`` -> ``("ADA", "BTC")`` by the longest known quote asset it ends with."""
    for quote in sorted(quote_assets, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot tell the quote asset of {symbol!r}")


def step_of(values: Iterable[str]) -> Decimal | None:
    """The coarsest power of ten every value is a multiple of (the tick/lot size data shows)."""
    places = 0
    seen = False
    for v in set(values):  # prices and sizes repeat: each distinct one once
        seen = True
        exp = Decimal(v).normalize().as_tuple().exponent
        if isinstance(exp, int):
            places = max(places, -exp)
    return Decimal(1).scaleb(-places) if seen else None


def generated_entry(
    symbol: str,
    doc: Mapping[str, Any],
    tick_size: Decimal | None = None,
    step_size: Decimal | None = None,
) -> dict[str, Any]:
    """An entry for a symbol the recorded file does not list, modelled on a real one."""
    quotes = {s["quoteAsset"] for s in doc["symbols"]}
    base, quote = split_symbol(symbol, quotes)
    template = next(
        s for s in doc["symbols"] if s["quoteAsset"] == quote and s["status"] == "TRADING"
    )
    entry = copy.deepcopy(template)
    entry["symbol"], entry["baseAsset"] = symbol, base
    for f in entry["filters"]:
        if f["filterType"] == "PRICE_FILTER" and tick_size is not None:
            f["tickSize"] = f["minPrice"] = fmt8(tick_size)
        if f["filterType"] == "LOT_SIZE" and step_size is not None:
            f["stepSize"] = f["minQty"] = fmt8(step_size)
    return dict(entry)


def build_exchange_info(
    symbols: Iterable[str],
    steps: Mapping[str, tuple[Decimal | None, Decimal | None]] | None = None,
    path: Path = EXCHANGE_INFO_FILE,
) -> dict[str, Any]:
    """The recorded document reduced to ``symbols`` (in that order), generating missing ones.

    ``steps`` gives (tick size, lot step) seen in the data, used only for generated entries.
    """
    doc = recorded_exchange_info(path)
    by_name = {s["symbol"]: s for s in doc["symbols"]}
    chosen = []
    for sym in symbols:
        entry = by_name.get(sym)
        if entry is None:
            tick, step = (steps or {}).get(sym, (None, None))
            entry = generated_entry(sym, doc, tick, step)
            log.info("exchangeInfo entry generated", symbol=sym, modelled_on=entry["quoteAsset"])
        chosen.append(entry)
    doc["symbols"] = chosen
    return doc
