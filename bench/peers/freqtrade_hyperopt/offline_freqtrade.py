"""Drive freqtrade offline inside bench/.venv-freqtrade: data conversion, hyperopt, backtesting.

Why a wrapper (as bench/peers/freqtrade_futures/offline_backtest.py): freqtrade's Exchange
loads the markets through ccxt over the network when it starts, hyperopt and backtesting
included, and keeps no markets cache. This wrapper replaces that one step
(`Exchange._load_async_markets`) with ccxt's own `parse_market` of the real Binance spot
BTCUSDT object of samples/cryptofeed/BINANCE.0.gz (the spot exchangeInfo of 2021-10-12: tick
0.01, step 0.00001, min notional 10) and blocks every IP connection of the main process; everything
else is freqtrade's unchanged command line (`freqtrade.main.main`).

It also times the hyperopt without changing it: when `Hyperopt.start` begins, when the
data and indicators are ready (`HyperOptimizer.prepare_hyperopt` returned, so the epochs
start) and when the epochs end, so the benchmark can tell start-up from search.

Usage (see run_hyperopt.py):
    python offline_freqtrade.py convert BARS.csv.gz DATADIR
    python offline_freqtrade.py run OUT.json [--result-dir DIR] -- <freqtrade args>
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
EXCHANGE_INFO = REPO / "samples" / "cryptofeed" / "BINANCE.0.gz"
SYMBOL = "BTCUSDT"
PAIR = "BTC/USDT"
T0 = time.time()


_CONNECT = socket.socket.connect


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network blocked by offline_freqtrade.py: the freqtrade run must be offline")


def _local_only(self: socket.socket, address: Any) -> Any:
    """Unix sockets pass (hyperopt's multiprocessing Manager and joblib use them); IP does not."""
    if self.family == socket.AF_UNIX:
        return _CONNECT(self, address)
    return _no_network()


def convert(bars: Path, datadir: Path) -> None:
    """The bundled 1m CSV as freqtrade's own feather file, written by freqtrade's data handler."""
    import pandas as pd
    from freqtrade.data.history.datahandlers import get_datahandler
    from freqtrade.enums import CandleType

    df = pd.read_csv(bars)
    df = df.rename(columns={"timestamp": "date"})
    df["date"] = pd.to_datetime(df["date"], utc=True)
    df = df[["date", "open", "high", "low", "close", "volume"]]
    datadir.mkdir(parents=True, exist_ok=True)
    get_datahandler(datadir, "feather").ohlcv_store(PAIR, "1m", df, CandleType.SPOT)


def _install_hooks(timings: dict[str, float]) -> None:
    from freqtrade.exchange.exchange import Exchange
    from freqtrade.optimize.hyperopt.hyperopt import Hyperopt
    from freqtrade.optimize.hyperopt.hyperopt_optimizer import HyperOptimizer

    with gzip.open(EXCHANGE_INFO, "rt") as fh:
        line = fh.readline()
    payload = json.loads(line[line.index("{") :])
    rows = [s for s in payload["symbols"] if s["symbol"] == SYMBOL]
    if len(rows) != 1:
        raise SystemExit(f"{EXCHANGE_INFO}: expected one symbol {SYMBOL!r}, found {len(rows)}")

    def _load_async_markets(self: Exchange, reload: bool = False) -> None:
        # ccxt's fetch_markets fills these from the margin endpoints first; spot needs none.
        self._api_async.options.setdefault("crossMarginPairsData", [])
        self._api_async.options.setdefault("isolatedMarginPairsData", [])
        self._api_async.set_markets([self._api_async.parse_market(rows[0])])

    Exchange._load_async_markets = _load_async_markets  # type: ignore[method-assign]

    raw_prepare = HyperOptimizer.prepare_hyperopt

    def prepare_hyperopt(self: HyperOptimizer) -> None:
        raw_prepare(self)
        timings["prepared"] = time.time()

    HyperOptimizer.prepare_hyperopt = prepare_hyperopt  # type: ignore[method-assign]

    raw_start = Hyperopt.start

    def start(self: Hyperopt) -> None:
        timings["hyperopt_start"] = time.time()
        raw_start(self)
        timings["epochs_done"] = time.time()

    Hyperopt.start = start  # type: ignore[method-assign]


def _backtest_stats(result_dir: Path) -> dict[str, Any]:
    zips = sorted(result_dir.glob("backtest-result-*.zip"))
    if not zips:
        raise SystemExit(f"{result_dir}: freqtrade wrote no backtest-result-*.zip")
    with zipfile.ZipFile(zips[-1]) as zf:
        names = [n for n in zf.namelist() if n.endswith(".json") and "_config" not in n]
        result = json.loads(zf.read(names[0]))
    (name,) = result["strategy"]
    s = result["strategy"][name]
    return {
        "trades": s["total_trades"],
        "profit_total": s["profit_total"],
        "profit_total_abs": s["profit_total_abs"],
        "sharpe": s["sharpe"],
        "max_drawdown": s.get("max_relative_drawdown"),
        "exit_reasons": {
            r["key"]: r["trades"] for r in s.get("exit_reason_summary", []) if "key" in r
        },
        "trade_profits_abs": [t["profit_abs"] for t in s["trades"]],
        # exits (stop-loss, ROI) on the very candle the trade opened on
        "same_candle_exits": sum(t["open_timestamp"] == t["close_timestamp"] for t in s["trades"]),
        "backtest_start": s["backtest_start"],
        "backtest_end": s["backtest_end"],
    }


def run(out: Path, result_dir: Path | None, ft_args: list[str]) -> None:
    timings: dict[str, float] = {"process_start": T0}
    _install_hooks(timings)
    socket.socket.connect = _local_only  # type: ignore[method-assign]
    socket.getaddrinfo = _no_network  # type: ignore[assignment]

    from freqtrade import __version__ as ft_version
    from freqtrade.main import main as ft_main

    try:
        with contextlib.redirect_stdout(sys.stderr):  # freqtrade prints its tables
            ft_main(ft_args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    timings["end"] = time.time()
    doc: dict[str, Any] = {"freqtrade": ft_version, "timings": timings}
    if result_dir is not None:
        doc["backtest"] = _backtest_stats(result_dir)
    out.write_text(json.dumps(doc, indent=1))


def main() -> None:
    if sys.argv[1] == "convert":
        convert(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    if sys.argv[1] != "run":
        raise SystemExit(__doc__)
    sep = sys.argv.index("--")
    head = sys.argv[2:sep]
    out = Path(head[0])
    result_dir = Path(head[head.index("--result-dir") + 1]) if "--result-dir" in head else None
    run(out, result_dir, sys.argv[sep + 1 :])


if __name__ == "__main__":
    main()
