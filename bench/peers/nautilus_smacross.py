"""SmaCross in nautilus_trader's BacktestEngine (run in its own venv: it needs pandas < 3).

Usage: python nautilus_smacross.py BARS.parquet FAST SLOW  -> prints JSON {bars, seconds, ...}
The strategy mirrors tessera's SmaCross: strict crossings of two SMAs on bar closes, long/flat,
a fixed quantity, market orders.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from decimal import Decimal

import pandas as pd
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.indicators import SimpleMovingAverage
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId, Venue
from nautilus_trader.model.objects import Money
from nautilus_trader.persistence.wranglers import BarDataWrangler
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy


class SmaCrossConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    trade_size: Decimal
    fast: int = 10
    slow: int = 30


class SmaCross(Strategy):
    def __init__(self, config: SmaCrossConfig) -> None:
        super().__init__(config)
        self.fast = SimpleMovingAverage(config.fast)
        self.slow = SimpleMovingAverage(config.slow)
        self.prev: float | None = None
        self.long = False

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.config.instrument_id)
        self.register_indicator_for_bars(self.config.bar_type, self.fast)
        self.register_indicator_for_bars(self.config.bar_type, self.slow)
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        if not self.slow.initialized:
            return
        diff = self.fast.value - self.slow.value
        prev, self.prev = self.prev, diff
        if prev is None:
            return
        qty = self.instrument.make_qty(self.config.trade_size)
        if prev < 0 < diff and not self.long:
            self.submit_order(
                self.order_factory.market(self.config.instrument_id, OrderSide.BUY, qty)
            )
            self.long = True
        elif prev > 0 > diff and self.long:
            self.submit_order(
                self.order_factory.market(self.config.instrument_id, OrderSide.SELL, qty)
            )
            self.long = False


def main() -> None:
    path, fast, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    df = pd.read_parquet(path)
    df.index = pd.to_datetime(df["open_time"], utc=True)
    df = df[["open", "high", "low", "close", "volume"]]
    instrument = TestInstrumentProvider.btcusdt_binance()
    bar_type = BarType.from_str(f"{instrument.id}-1-MINUTE-LAST-EXTERNAL")
    bars = BarDataWrangler(bar_type, instrument).process(df)
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(log_level="ERROR")))
    engine.add_venue(
        Venue("BINANCE"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.CASH,
        base_currency=None,
        starting_balances=[Money(10_000_000, USDT), Money(100, instrument.base_currency)],
    )
    engine.add_instrument(instrument)
    engine.add_data(bars)
    engine.add_strategy(
        SmaCross(
            SmaCrossConfig(
                instrument_id=instrument.id,
                bar_type=bar_type,
                trade_size=Decimal("0.01"),
                fast=fast,
                slow=slow,
            )
        )
    )
    t0 = time.perf_counter()
    engine.run()
    elapsed = time.perf_counter() - t0
    fills = len(engine.trader.generate_order_fills_report())
    print(
        json.dumps(
            {
                "bars": len(bars),
                "seconds": elapsed,
                "fills": fills,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
