"""The cross-sectional strategy on the bundled daily Bitstamp BTC/ETH/LTC bars.

Its choices are checked against a ranking computed here, independently, with polars from the
bar files; its turnover limit against the fills the engine booked.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.bars_io import read_bar_file
from tessera.backtest.results import BacktestResult
from tessera.config import BacktestConfig
from tessera.strategies import StrategyParamError, strategy_class
from tessera.strategies.cross_sectional import CrossSectional

BARS = Path(__file__).resolve().parents[2] / "samples" / "bars"
SYMBOLS = ("BTCUSD", "ETHUSD", "LTCUSD")
LOOKBACK = 20


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return {s: read_bar_file(BARS / f"bitstamp_{s}_1d.csv.gz") for s in SYMBOLS}


@pytest.fixture(scope="module")
def series(frames: dict[str, pl.DataFrame]) -> list[BarSeries]:
    return [BarSeries.from_frame(s, frames[s], interval="1d") for s in SYMBOLS]


def config(**kw: Any) -> BacktestConfig:
    base: dict[str, Any] = {
        "symbols": list(SYMBOLS),
        "interval": "1d",
        "quote_currency": "USD",
        "initial_cash": "100000",
        # decisions fill at the deciding close with no slippage: the traded value the strategy
        # computed is exactly what the engine books
        "fill_at": "close",
        "slippage": {"kind": "none"},
    }
    return BacktestConfig.model_validate({**base, **kw})


def run(
    series: list[BarSeries], cfg: BacktestConfig | None = None, **params: Any
) -> tuple[BacktestResult, CrossSectional]:
    strategy = CrossSectional(list(SYMBOLS), lookback=LOOKBACK, **params)
    return BacktestEngine(cfg or config()).run(series, [strategy]), strategy


def top_k_by_momentum(frames: dict[str, pl.DataFrame], k: int) -> dict[int, set[str]]:
    """Close time (ns) -> the k symbols with the highest return over LOOKBACK bars, ties by
    name; symbols without LOOKBACK bars of history are not ranked."""
    day = 86_400 * 10**9
    moms = pl.concat(
        [
            f.select(
                (pl.col("open_time").dt.epoch("ns") + day - 1).alias("t"),
                pl.lit(s).alias("symbol"),
                (pl.col("close") / pl.col("close").shift(LOOKBACK) - 1).alias("mom"),
            ).drop_nulls()
            for s, f in frames.items()
        ]
    ).sort("t", pl.col("mom"), "symbol", descending=[False, True, False])
    return {
        t: set(g["symbol"].head(k).to_list()) for (t,), g in moms.group_by("t", maintain_order=True)
    }


def holdings_after(result: BacktestResult) -> dict[int, set[str]]:
    """Close time -> the symbols held after that time's fills."""
    pos: dict[str, Decimal] = defaultdict(Decimal)
    out: dict[int, set[str]] = {}
    by_time: dict[int, list[Any]] = defaultdict(list)
    for rec in result.fills:
        by_time[rec.fill.ts_event].append(rec.fill)
    for t in result.times.tolist():
        for f in by_time.get(t, []):
            pos[f.symbol] += f.qty * f.side.sign
        out[t] = {s for s, q in pos.items() if q > 0}
    return out


@pytest.mark.parametrize("k", [1, 2])
def test_it_holds_exactly_the_top_k_by_momentum_after_every_rebalance(
    frames: dict[str, pl.DataFrame], series: list[BarSeries], k: int
) -> None:
    result, strategy = run(series, k=k, weight=0.9)
    expected = top_k_by_momentum(frames, k)
    held = holdings_after(result)
    assert len(strategy.rebalances) == len(result.times)  # one decision per close time
    assert strategy.incomplete_groups == 0 and strategy.late_bars == 0
    checked = 0
    for t, symbols in held.items():
        assert symbols == expected.get(t, set()), t
        checked += bool(symbols)
    assert checked > 1_500
    # the choice changed often: holding the top k is not holding one coin all along
    changes = sum(
        a.chosen != b.chosen
        for a, b in zip(strategy.rebalances, list(strategy.rebalances)[1:], strict=False)
    )
    assert changes > 50
    assert not any(r.cash_limited for r in strategy.rebalances)


def traded_by_time(result: BacktestResult) -> dict[int, Decimal]:
    out: dict[int, Decimal] = defaultdict(Decimal)
    for rec in result.fills:
        out[rec.fill.ts_event] += rec.fill.qty * rec.fill.price
    return out


def test_the_turnover_limit_caps_the_value_traded_per_rebalance(series: list[BarSeries]) -> None:
    limit = Decimal("0.2")
    free, free_strategy = run(series, k=1, weight=0.9)
    capped, strategy = run(series, k=1, weight=0.9, max_turnover=float(limit))
    # without the limit some rebalances trade more than it allows: the limit is not idle
    assert any(r.traded > limit * r.equity for r in free_strategy.rebalances)
    traded = traded_by_time(capped)
    bound = 0
    for r in strategy.rebalances:
        assert traded.get(r.time, Decimal(0)) == r.traded  # the log is what the engine booked
        assert r.traded <= limit * r.equity
        bound += r.scale < 1
    assert bound > 20
    # the limit makes it trade less, not stop: it still follows the ranking over time
    assert len(capped.fills) > 100
    assert sum(traded.values()) < sum(traded_by_time(free).values())


def test_it_rebalances_only_every_rebalance_bars_close_times(series: list[BarSeries]) -> None:
    result, strategy = run(series, k=1, rebalance_bars=7)
    times = result.times.tolist()
    decided = [r.time for r in strategy.rebalances]
    assert decided == times[::7]
    assert {rec.fill.ts_event for rec in result.fills} <= set(decided)


def test_fills_at_the_next_open_rotate_within_the_cash_the_account_has(
    series: list[BarSeries],
) -> None:
    """With fills at the next open a sell's proceeds are not there when the buys are sent:
    the buys are cut to the free cash (cash_limited), and no order is refused for cash."""
    result, strategy = run(series, config(fill_at="next_open"), k=1, weight=1.0)
    assert not [d for d in result.denials if d[2] == "insufficient_balance"]
    assert any(r.cash_limited for r in strategy.rebalances)
    assert len(result.fills) > 100


def test_a_close_time_a_symbol_misses_is_counted_not_decided_and_the_next_one_is(
    frames: dict[str, pl.DataFrame],
) -> None:
    """A hole in one symbol's bars (one real ETH day removed): the close time it misses is
    not decided late; the symbol rejoins at its next bar."""
    eth = frames["ETHUSD"]
    hole = eth["open_time"][100]
    data = [
        BarSeries.from_frame(
            s, f.filter(pl.col("open_time") != hole) if s == "ETHUSD" else f, interval="1d"
        )
        for s, f in frames.items()
    ]
    result, strategy = run(data, k=1)
    assert strategy.incomplete_groups == 1
    decided = {r.time for r in strategy.rebalances}
    missed = set(result.times.tolist()) - decided
    assert len(missed) == 1
    (t,) = missed
    assert t == int(hole.timestamp() * 1e9) + 86_400 * 10**9 - 1


def test_it_is_registered_with_typed_parameters_and_refuses_bad_ones() -> None:
    assert strategy_class("cross_sectional") is CrossSectional
    with pytest.raises(StrategyParamError, match="k=4 is more than the 3 symbol"):
        CrossSectional(list(SYMBOLS), k=4)
    with pytest.raises(StrategyParamError, match="max_turnover"):
        CrossSectional(list(SYMBOLS), max_turnover=0)
    with pytest.raises(StrategyParamError, match="score"):
        CrossSectional(list(SYMBOLS), score="volume")
    assert CrossSectional(list(SYMBOLS), lookback=5).warmup_bars == 6
    assert CrossSectional(list(SYMBOLS), score="model").warmup_bars == 0


def test_model_scores_rank_the_symbols_when_score_is_model(series: list[BarSeries]) -> None:
    """``score="model"`` ranks by ``ctx.prediction``: here each symbol's score is the log of
    its close (a stand-in for a model's output, not market data), so the highest-priced coin
    is the one chosen at every close time."""
    closes = {
        s.symbol: dict(zip(s.close_time.tolist(), s.close.tolist(), strict=True)) for s in series
    }
    scored = [s.with_predictions(np.log(s.close)) for s in series]
    result, strategy = run(scored, k=1, score="model")
    assert len(strategy.rebalances) == len(result.times)
    for r in strategy.rebalances:
        best = max((c[r.time], s) for s, c in closes.items() if r.time in c)[1]
        assert r.chosen == (best,)
