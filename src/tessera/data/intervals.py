"""Bar intervals Tessera knows, in nanoseconds.

A module of its own with no imports: the live bot and its feed need only these numbers, and
importing them from the research side (`tessera.data.universe`, `tessera.backtest.data`) would
load polars and NumPy into every bot's start-up for nothing.
"""

from __future__ import annotations

INTERVAL_NS: dict[str, int] = {
    "1s": 1_000_000_000,
    "1m": 60_000_000_000,
    "3m": 180_000_000_000,
    "5m": 300_000_000_000,
    "15m": 900_000_000_000,
    "30m": 1_800_000_000_000,
    "1h": 3_600_000_000_000,
    "2h": 7_200_000_000_000,
    "4h": 14_400_000_000_000,
    "6h": 21_600_000_000_000,
    "8h": 28_800_000_000_000,
    "12h": 43_200_000_000_000,
    "1d": 86_400_000_000_000,
}


def interval_ns(interval: str) -> int:
    """``"1m"`` -> 60_000_000_000; an unknown interval is a `ValueError`."""
    try:
        return INTERVAL_NS[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}") from None
