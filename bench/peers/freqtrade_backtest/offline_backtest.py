"""Inside bench/.venv-freqtrade: write the bars as freqtrade's data, run `freqtrade backtesting`.

Usage (see ft_backtest.py, which calls this with freqtrade's venv python):
    python offline_backtest.py convert BARS.parquet DATADIR
    python offline_backtest.py run OUT.json -- <freqtrade args>

``convert`` writes bench_backtest.py's synthetic bars (the Parquet file the Tessera side
reads) as freqtrade's BTC/USDT 1m spot feather file, through freqtrade's own data handler, so
both engines read the same float64 prices.

``run`` is freqtrade's unchanged command line (`freqtrade.main.main`) with two additions that
change nothing it computes:
- sockets may only connect to the loopback host (and Unix sockets): the markets come from
  `tessera sim serve` through the config's ``exchange.ccxt_config.urls.api``, and anything
  else reaching for the network fails loudly instead of measuring someone's internet;
- timestamps of freqtrade's phases (`Backtesting.start` entered, the data loaded, the
  backtest loop with its signals begun and ended, the results stored), so the benchmark can
  tell start-up, data loading, the loop and the reports apart. The trade count, the profit
  and every round trip are read from freqtrade's own results (``Backtesting.results``) when
  `start` returns.
OUT.json gets ``{"freqtrade": version, "timings": {...}, "backtest": {...}}``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.time()  # as early as this process can see; the caller also times the whole process
PAIR = "BTC/USDT"
_CONNECT = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    """Unix sockets and 127.0.0.0/8 or ::1 pass; every other address is refused."""
    if self.family == socket.AF_UNIX:
        return _CONNECT(self, address)
    host = address[0]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return _CONNECT(self, address)
    raise OSError(f"network blocked by offline_backtest.py: {host} is not the loopback host")


def convert(bars: Path, datadir: Path) -> None:
    import pandas as pd
    from freqtrade.data.history.datahandlers import get_datahandler
    from freqtrade.enums import CandleType

    df = pd.read_parquet(bars).rename(columns={"open_time": "date"})
    df["date"] = pd.to_datetime(df["date"], utc=True)
    df = df[["date", "open", "high", "low", "close", "volume"]]
    datadir.mkdir(parents=True, exist_ok=True)
    get_datahandler(datadir, "feather").ohlcv_store(PAIR, "1m", df, CandleType.SPOT)


def _install_hooks(timings: dict[str, float], stats: dict[str, Any]) -> None:
    from freqtrade.optimize.backtesting import Backtesting

    raw_load, raw_backtest, raw_start = (
        Backtesting.load_bt_data,
        Backtesting.backtest,
        Backtesting.start,
    )

    def load_bt_data(self: Backtesting) -> Any:
        out = raw_load(self)
        timings["data_loaded"] = time.time()
        return out

    def backtest(self: Backtesting, *args: Any, **kwargs: Any) -> Any:
        timings["loop_start"] = time.time()
        out = raw_backtest(self, *args, **kwargs)
        timings["loop_end"] = time.time()
        return out

    def start(self: Backtesting) -> None:
        timings["backtesting_start"] = time.time()
        raw_start(self)
        timings["results_done"] = time.time()
        (name,) = self.results["strategy"]
        s = self.results["strategy"][name]
        stats.update(
            {
                "strategy": name,
                "trades": s["total_trades"],
                "profit_total": s["profit_total"],
                "final_balance": s["final_balance"],
                "backtest_start": s["backtest_start"],
                "backtest_end": s["backtest_end"],
                # every round trip: open and close time (ms) and rate, for the cross-check
                # test (tests/backtest/test_freqtrade_spot_crosscheck.py)
                "round_trips": [
                    [t["open_timestamp"], t["close_timestamp"], t["open_rate"], t["close_rate"]]
                    for t in s["trades"]
                ],
                "exit_reasons": {
                    r["key"]: r["trades"]
                    for r in s.get("exit_reason_summary", [])
                    if r.get("key") not in (None, "TOTAL")
                },
            }
        )

    Backtesting.load_bt_data = load_bt_data  # type: ignore[method-assign]
    Backtesting.backtest = backtest  # type: ignore[method-assign]
    Backtesting.start = start  # type: ignore[method-assign]


def run(out: Path, ft_args: list[str]) -> None:
    timings: dict[str, float] = {"process_start": T0}
    stats: dict[str, Any] = {}
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    _install_hooks(timings, stats)
    from freqtrade import __version__ as ft_version
    from freqtrade.main import main as ft_main

    try:
        with contextlib.redirect_stdout(sys.stderr):  # freqtrade prints its tables
            ft_main(ft_args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    timings["end"] = time.time()
    if not stats:
        raise SystemExit("freqtrade returned without backtest results")
    out.write_text(json.dumps({"freqtrade": ft_version, "timings": timings, "backtest": stats}))


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "convert":
        convert(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "run" and sys.argv[3] == "--":
        run(Path(sys.argv[2]), sys.argv[4:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
