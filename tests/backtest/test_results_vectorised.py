"""The results are built from arrays and slotted objects instead of Python loops over dicts
and a million points; these tests keep the former implementations (verbatim, as references)
and check the new ones give exactly the same answers: random equity curves and fill sequences
(hypothesis), and the real bundled bars through the engine."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.results import FillRecord, Trade, _longest_underwater, round_trips
from tessera.config import BacktestConfig
from tessera.execution.orders import ExitReason, Fill, Liquidity, OrderSide
from tessera.strategies import SmaCross

ZERO = Decimal(0)


# --- the former implementations, kept as the reference ---------------------------------------


def reference_round_trips(
    fills: list[FillRecord],
    marks: Mapping[str, Decimal] | None = None,
    end_time: int | None = None,
) -> list[Trade]:
    """Group fills into round trips per (symbol, strategy). With ``marks`` (last price per
    symbol) and ``end_time``, a trip still open is closed there with reason ``end_of_data``."""
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    trades: list[Trade] = []
    for rec in fills:
        f = rec.fill
        key = (f.symbol, f.strategy)
        signed = f.qty * f.side.sign
        cur = open_.get(key)
        if cur is None:
            cur = open_[key] = _ref_new_trip(f.ts_event, signed)
        before = cur["pos"]
        after = before + signed
        # Part of this fill that opens/increases the position vs. part that closes it.
        if before == 0 or (before > 0) == (signed > 0):
            cur["entry_qty"] += abs(signed)
            cur["entry_value"] += abs(signed) * f.price
            cur["fees"] += f.fee
            cur["flow"] -= signed * f.price
        else:
            closing = min(abs(signed), abs(before))
            frac = closing / abs(signed)
            cur["exit_qty"] += closing
            cur["exit_value"] += closing * f.price
            cur["fees"] += f.fee * frac
            cur["pnl"] += rec.realized_pnl
            cur["flow"] += closing * f.price * (1 if before > 0 else -1)
            if after == 0 or (after > 0) != (before > 0):
                trades.append(_ref_close_trip(key, cur, f.ts_event, rec.reason.value))
                del open_[key]
                if after != 0:  # flipped: the rest opens a new trip
                    new = open_[key] = _ref_new_trip(f.ts_event, ZERO)
                    new["entry_qty"] = abs(after)
                    new["entry_value"] = abs(after) * f.price
                    new["fees"] = f.fee * (1 - frac)
                    new["flow"] = -after * f.price
                    new["pos"] = after
                    new["side"] = "long" if after > 0 else "short"
                    new["max"] = abs(after)
                continue
        cur["pos"] = after
        cur["max"] = max(cur["max"], abs(after))
    for key, cur in open_.items():
        mark = (marks or {}).get(key[0])
        if mark is not None and end_time is not None:
            trades.append(_ref_mark_trip(key, cur, end_time, mark))
        else:
            trades.append(_ref_close_trip(key, cur, None, ""))
    trades.sort(key=lambda t: (t.entry_time, t.symbol, t.strategy))
    return trades


def _ref_new_trip(ts: int, signed: Decimal) -> dict[str, Any]:
    return {
        "entry_time": ts,
        "pos": ZERO,
        "side": "long" if signed > 0 else "short",
        "entry_qty": ZERO,
        "entry_value": ZERO,
        "exit_qty": ZERO,
        "exit_value": ZERO,
        "fees": ZERO,
        "pnl": ZERO,
        "max": ZERO,
        "flow": ZERO,  # quote cash the trip's fills moved (before fees)
    }


def _ref_close_trip(
    key: tuple[str, str], cur: dict[str, Any], exit_time: int | None, reason: str
) -> Trade:
    entry_price = cur["entry_value"] / cur["entry_qty"] if cur["entry_qty"] else ZERO
    exit_price = cur["exit_value"] / cur["exit_qty"] if cur["exit_qty"] else None
    return Trade(
        symbol=key[0],
        strategy=key[1],
        side=cur["side"],
        entry_time=cur["entry_time"],
        exit_time=exit_time,
        qty=max(cur["max"], cur["entry_qty"] if exit_time else cur["max"]),
        entry_price=entry_price,
        exit_price=exit_price,
        pnl=cur["pnl"] - cur["fees"],
        fees=cur["fees"],
        exit_reason=reason,
    )


def _ref_mark_trip(
    key: tuple[str, str], cur: dict[str, Any], end_time: int, mark: Decimal
) -> Trade:
    """A trip open at the end, closed at ``mark`` on paper: PnL is the cash its fills moved
    plus the open quantity at the mark, net of fees; the exit price averages the exits made
    and the open rest at the mark."""
    open_qty = abs(cur["pos"])
    exit_qty = cur["exit_qty"] + open_qty
    entry_price = cur["entry_value"] / cur["entry_qty"] if cur["entry_qty"] else ZERO
    return Trade(
        symbol=key[0],
        strategy=key[1],
        side=cur["side"],
        entry_time=cur["entry_time"],
        exit_time=end_time,
        qty=cur["max"],
        entry_price=entry_price,
        exit_price=(cur["exit_value"] + open_qty * mark) / exit_qty if exit_qty else mark,
        pnl=cur["flow"] + cur["pos"] * mark - cur["fees"],
        fees=cur["fees"],
        exit_reason=ExitReason.END_OF_DATA.value,
    )


def reference_longest_underwater(
    times: npt.NDArray[np.int64], equity: npt.NDArray[np.float64]
) -> float:
    longest = 0
    start: int | None = None
    peak = -math.inf
    for t, e in zip(times.tolist(), equity.tolist(), strict=True):
        if e >= peak:
            peak = e
            if start is not None:
                longest = max(longest, t - start)
                start = None
        elif start is None:
            start = t
    if start is not None:
        longest = max(longest, int(times[-1]) - start)
    return longest / 1e9


# --- helpers ----------------------------------------------------------------------------------


def exact(trades: list[Trade]) -> list[tuple[Any, ...]]:
    """Every field, Decimals by their string: Decimal("0.010") == Decimal("0.01") would hide a
    different exponent."""
    return [
        (
            t.symbol,
            t.strategy,
            t.side,
            t.entry_time,
            t.exit_time,
            str(t.qty),
            str(t.entry_price),
            str(t.exit_price),
            str(t.pnl),
            str(t.fees),
            t.exit_reason,
        )
        for t in trades
    ]


decimals = hs.sampled_from(["0.01", "0.010", "0.5", "1", "1.00", "2", "0.003", "7.5"]).map(Decimal)
prices = hs.sampled_from(["100", "100.5", "99.99", "101.250", "42000.1", "0.5"]).map(Decimal)
fees = hs.sampled_from(["0", "0.1", "0.0125", "1.00", "0.333"]).map(Decimal)


@hs.composite
def fill_sequences(draw: hs.DrawFn) -> list[FillRecord]:
    """Fills of two symbols and two strategies: opens, adds, partial closes, flips."""
    out: list[FillRecord] = []
    ts = 0
    for k in range(draw(hs.integers(0, 40))):
        ts += draw(hs.integers(0, 3))  # equal times too
        fill = Fill(
            trade_id=str(k),
            client_order_id=f"o{k}",
            symbol=draw(hs.sampled_from(["BTCUSDT", "ETHUSDT"])),
            side=draw(hs.sampled_from([OrderSide.BUY, OrderSide.SELL])),
            price=draw(prices),
            qty=draw(decimals),
            fee=draw(fees),
            fee_asset="USDT",
            liquidity=Liquidity.TAKER,
            ts_event=ts,
            strategy=draw(hs.sampled_from(["a", "b"])),
        )
        reason = draw(hs.sampled_from([ExitReason.SIGNAL, ExitReason.STOP_LOSS]))
        out.append(FillRecord(fill, fill.price, draw(prices) - Decimal(100), reason))
    return out


# --- round trips ------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(fills=fill_sequences(), marked=hs.booleans())
def test_round_trips_equal_the_dict_based_reference_on_random_fills(
    fills: list[FillRecord], marked: bool
) -> None:
    marks = {"BTCUSDT": Decimal("100.75"), "ETHUSDT": Decimal("3.5")} if marked else None
    end = fills[-1].fill.ts_event + 1 if fills and marked else None
    assert exact(round_trips(fills, marks, end)) == exact(reference_round_trips(fills, marks, end))


# --- longest underwater -----------------------------------------------------------------------

equities = hs.lists(
    hs.one_of(
        hs.sampled_from([100.0, 101.0, 99.0, 100.5, 0.0]),  # many ties with the peak
        hs.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        hs.just(math.nan),
    ),
    max_size=60,
)


@settings(max_examples=600, deadline=None)
@given(values=equities, steps=hs.lists(hs.integers(-5, 10**12), max_size=60))
def test_longest_underwater_equals_the_bar_by_bar_walk(
    values: list[float], steps: list[int]
) -> None:
    """Any curve (ties, NaN, zero) and any times, even going backwards."""
    n = len(values)
    gaps = (steps + [1] * n)[:n]
    times = np.cumsum(np.array(gaps, dtype=np.int64)) + 1_600_000_000_000_000_000
    equity = np.array(values, dtype=np.float64)
    assert _longest_underwater(times, equity) == reference_longest_underwater(times, equity)


def test_longest_underwater_of_a_million_points_equals_the_walk() -> None:
    rng = np.random.default_rng(3)
    equity = 1e7 * np.exp(np.cumsum(rng.normal(0, 1e-3, 1_000_000)))
    times = np.arange(len(equity), dtype=np.int64) * 60_000_000_000
    got = _longest_underwater(times, equity)
    assert got == reference_longest_underwater(times, equity)
    assert got > 0


# --- through the engine on the real bars ------------------------------------------------------


@pytest.mark.parametrize("qty", [None, "0.01"])
def test_the_results_of_a_real_run_equal_the_reference_implementations(
    btc_series: BarSeries, qty: str | None
) -> None:
    params: dict[str, Any] = {"fast": 10, "slow": 30} | ({"qty": qty} if qty else {})
    cfg = BacktestConfig.model_validate({"initial_cash": 10_000})
    res = BacktestEngine(cfg).run([btc_series], [SmaCross(["BTCUSDT"], **params)])
    assert len(res.fills) > 1000
    end = int(res.times[-1])
    marks = {"BTCUSDT": Decimal(repr(float(btc_series.close[-1])))}
    assert exact(res.trades) == exact(reference_round_trips(res.fills, marks, end))
    times = np.concatenate([[res.times[0]], res.times])
    series = np.concatenate([[10_000.0], res.equity])
    assert res.metrics["max_drawdown_duration_s"] == reference_longest_underwater(times, series)
    assert res.metrics["max_drawdown_duration_s"] > 0
