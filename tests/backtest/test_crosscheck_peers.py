"""SmaCross in our engine vs backtesting.py and vectorbt on the same real bars.

Comparable settings (documented in docs/backtest.md): a fixed size of 1 BTC (so that no sizing
convention differs), 1,000,000 cash (never short of cash), 10 bps commission on entry and exit,
no slippage, market orders filled at the next bar's open, long/flat, the same SMA definition
(`tessera.backtest.vectorized.sma`, fed to the peers as their indicator) and strict crossings.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.vectorized import crossings, sma, sma_cross
from tessera.config import BacktestConfig
from tessera.strategies import SmaCross

FAST, SLOW = 10, 30
CASH = 1_000_000
FEE = 0.001
CFG = BacktestConfig.model_validate(
    {
        "initial_cash": CASH,
        "fees": {"maker_bps": 10, "taker_bps": 10},
        "slippage": {"kind": "none"},
        "fill_at": "next_open",
    }
)


@pytest.fixture(scope="module")
def ours(btc_series: BarSeries) -> Any:
    return BacktestEngine(CFG).run(
        [btc_series], [SmaCross(["BTCUSDT"], fast=FAST, slow=SLOW, qty=1)]
    )


@pytest.fixture(scope="module")
def frame(btc_bars: pl.DataFrame) -> pd.DataFrame:
    pdf = btc_bars.select("open_time", "open", "high", "low", "close", "volume").to_pandas()
    pdf = pdf.set_index("open_time")
    pdf.columns = ["Open", "High", "Low", "Close", "Volume"]
    return pdf


def test_against_backtesting_py(ours: Any, frame: pd.DataFrame) -> None:
    from backtesting import Backtest, Strategy

    class PeerSma(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.f = self.I(sma, self.data.Close, FAST)
            self.s = self.I(sma, self.data.Close, SLOW)

        def next(self) -> None:
            prev = self.f[-2] - self.s[-2]
            cur = self.f[-1] - self.s[-1]
            if prev < 0 < cur and not self.position:
                self.buy(size=1)
            elif prev > 0 > cur and self.position:
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(frame, PeerSma, cash=CASH, commission=FEE).run()
    peer_trades = stats["_trades"]
    closed = [t for t in ours.trades if t.closed_by_order]  # not the end_of_data one
    assert len(peer_trades) in (len(closed), len(ours.trades))
    n = len(closed)
    np.testing.assert_array_equal(
        pd.to_datetime(peer_trades["EntryTime"], utc=True)
        .dt.as_unit("ns")
        .astype("int64")
        .to_numpy()[:n],
        np.array([t.entry_time for t in closed], dtype=np.int64),
    )
    np.testing.assert_array_equal(
        pd.to_datetime(peer_trades["ExitTime"], utc=True)
        .dt.as_unit("ns")
        .astype("int64")
        .to_numpy()[:n],
        np.array([t.exit_time for t in closed], dtype=np.int64),
    )
    np.testing.assert_allclose(
        peer_trades["EntryPrice"].to_numpy()[:n], [float(t.entry_price) for t in closed], rtol=1e-12
    )
    np.testing.assert_allclose(
        peer_trades["PnL"].to_numpy()[:n], [float(t.pnl) for t in closed], rtol=1e-6, atol=1e-6
    )
    assert float(ours.final_equity) == pytest.approx(stats["Equity Final [$]"], rel=1e-6)


def test_against_vectorbt(ours: Any, frame: pd.DataFrame, btc_series: BarSeries) -> None:
    import vectorbt as vbt

    up, down = crossings(sma(btc_series.close, FAST), sma(btc_series.close, SLOW))
    # Signals known at bar i's close execute at bar i+1's open.
    entries = pd.Series(np.concatenate([[False], up[:-1]]), index=frame.index)
    exits = pd.Series(np.concatenate([[False], down[:-1]]), index=frame.index)
    pf = vbt.Portfolio.from_signals(
        frame["Close"],
        entries,
        exits,
        price=frame["Open"],
        size=1.0,
        size_type="amount",
        fees=FEE,
        init_cash=CASH,
        freq="1min",
    )
    orders = pf.orders.records_readable
    assert len(orders) == len(ours.fills)
    np.testing.assert_allclose(
        orders["Price"].to_numpy(), [float(r.fill.price) for r in ours.fills], rtol=1e-12
    )
    np.testing.assert_allclose(
        orders["Fees"].to_numpy(), [float(r.fill.fee) for r in ours.fills], rtol=1e-9
    )
    assert float(ours.final_equity) == pytest.approx(float(pf.final_value()), rel=1e-6)


def test_vectorized_path_matches_event_engine(ours: Any, btc_series: BarSeries) -> None:
    vec = sma_cross(btc_series, FAST, SLOW, CFG, qty=Decimal(1))
    assert [(f.side, f.qty, f.price, f.fee) for f in vec.fills] == [
        (r.fill.side.value, r.fill.qty, r.fill.price, r.fill.fee) for r in ours.fills
    ]
    assert vec.final_equity == ours.final_equity
    np.testing.assert_allclose(vec.equity, ours.equity, rtol=1e-9)


def test_vectorized_path_matches_with_equity_sizing_and_slippage(btc_series: BarSeries) -> None:
    cfg = BacktestConfig()  # 10 bps fees, 1 bp slippage, 10,000 cash, fraction-of-equity sizing
    event = BacktestEngine(cfg).run([btc_series], [SmaCross(["BTCUSDT"], fast=7, slow=25)])
    vec = sma_cross(btc_series, 7, 25, cfg)
    assert len(vec.fills) == len(event.fills) > 100
    assert vec.final_equity == event.final_equity
