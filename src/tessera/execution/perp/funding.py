"""Funding payments of perpetual futures: who pays whom, how much, and at which bar.

A perpetual has no expiry; what keeps its price near the index is the **funding payment**
exchanged between longs and shorts at each funding time. Binance USDⓈ-M defines it as

    funding fee = position notional at the mark price × funding rate

at each funding time (00:00, 08:00 and 16:00 UTC for 8-hour symbols; some symbols fund every
4 h or 1 h). When the rate is positive longs pay shorts; when it is negative shorts pay longs.
Only accounts holding a position at the funding time pay or receive; the exchange takes no cut.

This module is pure (no venue, no I/O, no polars): `Decimal` in, `Decimal` out, so that the
backtest, the simulator and live reconciliation book the same amounts. A funding payment is a
ledger entry of its own kind (`FundingEntry`), never a fill: it moves the margin balance without
changing the position's size or entry price.

Amounts are **not rounded** here: Binance reports funding income to 8 decimals of the margin
asset, and whoever books the entry into a ledger with a fixed scale rounds it there (so a
cross-check to the cent sums unrounded amounts first).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import ClassVar

HOUR_NS = 3_600 * 1_000_000_000
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class FundingRate:
    """One symbol's funding rate at one funding time.

    ``ts_ns`` is the *nominal* funding time (UTC ns, on the hour, see `nominal_funding_time`);
    ``mark_price`` is the mark price at that time when the source has one (Binance's
    ``/fapi/v1/fundingRate`` returns ``markPrice`` for recent rows; older history and
    freqtrade's files do not, so the mark comes from mark-price candles instead).
    """

    ts_ns: int
    rate: Decimal
    mark_price: Decimal | None = None


def nominal_funding_time(ts_ns: int, grid_ns: int = HOUR_NS) -> int:
    """The funding time ``ts_ns`` floored to ``grid_ns`` (default: the hour).

    Binance settles funding on the hour, but the ``fundingTime`` it reports is stamped a few
    milliseconds later (0–18 ms in the bundled XRP history). Aligning the raw stamp to bars
    would push each payment one bar late (08:00:00.017 is after the bar ending at 08:00), so
    the domain works with the hour the payment is for.
    """
    if grid_ns <= 0:
        raise ValueError(f"grid_ns must be positive, got {grid_ns}")
    return ts_ns - ts_ns % grid_ns


def funding_payment(qty: Decimal, mark: Decimal, rate: Decimal) -> Decimal:
    """What the account receives (positive) or pays (negative) at one funding time.

    ``qty`` is the signed position in base units (long > 0, short < 0), ``mark`` the mark
    price at the funding time and ``rate`` the funding rate. Binance's fee is notional at the
    mark × rate, paid by longs when the rate is positive, so the account's cash flow is
    ``-qty × mark × rate``: a long pays on a positive rate, a short receives it, and a negative
    rate flips both.
    """
    if mark <= _ZERO:
        raise ValueError(f"mark price must be positive, got {mark}")
    return -(qty * mark * rate)


@dataclass(frozen=True, slots=True)
class FundingEntry:
    """A funding payment booked to the account: its own ledger entry kind, not a fill.

    ``amount`` is the signed cash flow for the account (see `funding_payment`); ``qty``,
    ``mark`` and ``rate`` are kept so that a report can show how it was computed and a
    reconciliation can compare it with the exchange's ``FUNDING_FEE`` income row.
    """

    kind: ClassVar[str] = "funding"

    ts_ns: int
    symbol: str
    qty: Decimal
    mark: Decimal
    rate: Decimal
    amount: Decimal


def settle_funding(
    positions: Mapping[str, Decimal],
    rates_at_ts: Mapping[str, FundingRate],
    marks: Mapping[str, Decimal] | None = None,
) -> list[FundingEntry]:
    """The funding entries of one funding time, one per symbol held with a rate due.

    ``positions`` maps symbol → signed quantity; ``rates_at_ts`` maps symbol → the rate due at
    this funding time (symbols whose funding is not due now are simply absent: intervals differ
    per symbol); ``marks`` maps symbol → mark price at the funding time and wins over the rate's
    own ``mark_price``. A flat position pays nothing and gets no entry. A held symbol with a
    rate due but no mark from either source is an error: guessing a price would book a wrong
    amount silently. Entries come sorted by symbol so runs are reproducible.
    """
    marks = marks or {}
    entries: list[FundingEntry] = []
    for symbol in sorted(rates_at_ts):
        qty = positions.get(symbol, _ZERO)
        if qty == _ZERO:
            continue
        fr = rates_at_ts[symbol]
        mark = marks.get(symbol, fr.mark_price)
        if mark is None:
            raise ValueError(
                f"funding for {symbol} at {fr.ts_ns} ns: no mark price (neither in marks nor "
                "on the funding rate); a funding payment needs the mark at the funding time"
            )
        amount = funding_payment(qty, mark, fr.rate)
        entries.append(FundingEntry(fr.ts_ns, symbol, qty, mark, fr.rate, amount))
    return entries


def funding_times(rates: Iterable[FundingRate]) -> list[int]:
    """The distinct funding times of ``rates``, ascending (ns)."""
    return sorted({r.ts_ns for r in rates})


@dataclass(frozen=True)
class FundingSchedule:
    """Funding rates assigned to the bars of a backtest, so it can apply them bar by bar.

    ``due`` maps a bar index to the rates payable at that bar's close. ``before`` and ``after``
    count the rates that fall outside the bars (at or before the first bar's open, or after
    the last bar's end): they are not applied, and the count says so rather than dropping them
    silently.
    """

    due: dict[int, tuple[FundingRate, ...]]
    before: int = 0
    after: int = 0
    applied: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "applied", sum(len(v) for v in self.due.values()))


def schedule(
    rates: Iterable[FundingRate], bar_open_ns: Sequence[int], interval_ns: int
) -> FundingSchedule:
    """Assign each funding time to the first bar **closing at or after** it.

    A bar opening at ``o`` covers ``[o, o + interval)`` and closes at ``o + interval`` (the
    engine stores that instant minus 1 ns as ``close_time``, Binance's convention). A funding
    time ``t`` with ``o < t <= o + interval`` is applied at that bar's close, to the position
    held over the bar, before the strategy's orders at that close: with hourly bars, the 08:00
    funding is paid at the close of the 07:00 bar. A funding time falling in a gap between bars
    is applied at the next bar's close (the first bar closing after it). ``bar_open_ns`` must be
    ascending; ``rates`` carry nominal times (see `nominal_funding_time`).
    """
    if interval_ns <= 0:
        raise ValueError(f"interval_ns must be positive, got {interval_ns}")
    opens = list(bar_open_ns)
    if any(b <= a for a, b in pairwise(opens)):
        raise ValueError("bar_open_ns must be strictly ascending")
    ends = [o + interval_ns for o in opens]
    due: dict[int, list[FundingRate]] = {}
    before = after = 0
    for fr in sorted(rates, key=lambda r: r.ts_ns):
        if not opens or fr.ts_ns <= opens[0]:
            before += 1
            continue
        i = bisect_left(ends, fr.ts_ns)
        if i == len(ends):
            after += 1
            continue
        due.setdefault(i, []).append(fr)
    return FundingSchedule({i: tuple(v) for i, v in due.items()}, before, after)
