"""Which real dataset carries the bar columns a feature needs (see conftest.py)."""

from __future__ import annotations

import polars as pl


def bars_for(
    feature_requires: tuple[str, ...],
    real: pl.DataFrame,
    flow: pl.DataFrame,
    book: pl.DataFrame,
) -> pl.DataFrame:
    """The real dataset that carries the columns a feature needs."""
    if "taker_buy_base" in feature_requires:
        return flow
    if any(c.startswith(("bid_", "ask_")) for c in feature_requires):
        return book
    return real
