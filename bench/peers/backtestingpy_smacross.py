"""backtesting.py as a user runs it: SmaCross(10, 30) long/flat all-in on a Parquet of 1m bars.

    .venv/bin/python bench/peers/backtestingpy_smacross.py BARS.parquet [--json OUT.json]

The whole-process twin of `tessera backtest` in bench/bench_backtest.py --whole (its
CLI_BACKTEST_YAML): a 10,000 cash account, 1 bp commission a side, no spread, market orders
filled at the next bar's open (`trade_on_close=False`), each entry `size=0.99` of the equity
(Tessera's `SIZING_BUFFER`: SmaCross with its default size 1.0 commits 99 % of the equity),
long/flat, acting only on strict crossings. It is a plain user script, independent of Tessera:
it reads the bars with pandas, runs the backtest, computes backtesting.py's statistics (as
`Backtest.run` always does) and prints the trades and the final equity.

Two things backtesting.py needs that differ from Tessera's rules, both as small as it allows:
- it trades whole units only, so an all-in BTC position on 10,000 of cash would be 0 units;
  `FractionalBacktest` (its documented answer) scales the prices by ``fractional_unit`` and
  trades whole fractions. The unit here is 2**-17 BTC (~0.0000076), not Tessera's 0.00001 step:
  multiplying by a power of two is exact in floating point, so the averages' crossings are
  those of the unscaled closes, bit for bit (with 1e-5 a near-tie could flip a crossing);
- it sizes a fraction-of-equity order at the fill (the next open, commission included) from the
  cash available; Tessera at the signal bar's close from the equity. The trade count is the same
  when every entry can be bought; the final equity differs a little.

The SMAs are ``(cumsum[i] - cumsum[i-n]) / n``, the float operations of
`tessera.backtest.vectorized.sma` and Tessera's SmaCross, so both see the same crossings (a
pandas ``rolling().mean()`` rounds differently and can move a near-tie by a bar).
Trades still open at the end are not counted (`finalize_trades=False`, the default; Tessera
does not count its open position either).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
from backtesting import Strategy  # type: ignore[import-untyped]
from backtesting.lib import FractionalBacktest  # type: ignore[import-untyped]

FAST, SLOW = 10, 30
CASH = 10_000
COMMISSION = 0.0001  # 1 bp a side
SIZE = 0.99  # Tessera's SmaCross: size 1.0 x SIZING_BUFFER 0.99
UNIT = 2.0**-17  # BTC per traded unit; a power of two so the scaled prices are exact


def sma(close: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    """Rolling mean as (cumsum[i] - cumsum[i-n]) / n, NaN for the first n-1 bars."""
    cs = np.concatenate([[0.0], np.cumsum(close)])
    out = np.full(len(close), np.nan)
    out[n - 1 :] = (cs[n:] - cs[:-n]) / n
    return out


class SmaCross(Strategy):  # type: ignore[misc]  # backtesting.py ships no type hints
    """Long on a strict upward crossing of the SMAs, flat on a strict downward one."""

    def init(self) -> None:
        self.fast = self.I(sma, self.data.Close, FAST)
        self.slow = self.I(sma, self.data.Close, SLOW)

    def next(self) -> None:
        prev = self.fast[-2] - self.slow[-2]
        cur = self.fast[-1] - self.slow[-1]
        if prev < 0 < cur and not self.position:
            self.buy(size=SIZE)
        elif prev > 0 > cur and self.position:
            self.position.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bars", type=Path, help="Parquet: open_time, open, high, low, close, volume")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    t0 = time.perf_counter()
    df = pd.read_parquet(args.bars).set_index("open_time")
    df = df.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "some prices are larger than initial cash"
        bt = FractionalBacktest(
            df,
            SmaCross,
            cash=CASH,
            commission=COMMISSION,
            trade_on_close=False,
            fractional_unit=UNIT,
        )
        stats = bt.run()
    trades = len(stats["_trades"])
    out: dict[str, Any] = {
        "engine": "backtesting.py",
        "bars": len(df),
        "trades": trades,
        "final_equity": float(stats["Equity Final [$]"]),
        "open_at_end": int(stats["_strategy"].position.size != 0),
        "seconds_inside": time.perf_counter() - t0,
    }
    print(f"backtesting.py SmaCross({FAST}, {SLOW}) on {len(df):,} bars: {trades:,} trades,")
    print(f"final equity {out['final_equity']:,.2f}, return {stats['Return [%]']:.2f} %")
    if args.json is not None:
        args.json.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
