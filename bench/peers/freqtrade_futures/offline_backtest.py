"""Run `freqtrade backtesting` offline (inside bench/.venv-freqtrade) and print its result as JSON.

Why a wrapper and not the `freqtrade` command: freqtrade's Exchange loads the markets through
ccxt (`load_markets(reload=True)`: Binance's exchangeInfo endpoints) when it starts,
backtesting included, and keeps no markets cache on disk, so a plain `freqtrade backtesting`
needs the network (without it: "Could not load markets", then the pair is refused). This
wrapper replaces that one step (`Exchange._load_async_markets`) with ccxt's own
`parse_market` of the real XRPUSDT object in samples/binance-usdm/exchange_info.json (fapi
exchangeInfo of 2021-07-22: tick 0.0001, step 0.1, min notional 5) and blocks every socket, so
the run is proven offline; everything else is freqtrade's unchanged command line
(`freqtrade.main.main`). Leverage tiers need no network in backtesting: freqtrade reads the
binance_leverage_tiers.json it ships (dry-run path of `Binance.load_leverage_tiers`).

It also records, without changing them, two things freqtrade computes but does not export:
each trade's liquidation price (raw Binance formula and after freqtrade's 5 % buffer, with the
tier used) and the funding rows (time, mark, rate) behind each trade's funding total.

Usage (see bench/peers/freqtrade_venv.py):
    python offline_backtest.py EXCHANGE_INFO.json SYMBOL RESULT_DIR -- <freqtrade args>
Prints one JSON document on stdout (freqtrade's own log goes to the log file it is given).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

LIQUIDATIONS: list[dict[str, Any]] = []
FUNDING_CALLS: dict[int, dict[str, Any]] = {}


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network blocked by offline_backtest.py: the freqtrade run must be offline")


def _ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def _install_hooks(exchange_info: Path, symbol: str) -> dict[str, Any]:
    from freqtrade.exchange.binance import Binance
    from freqtrade.exchange.exchange import Exchange
    from freqtrade.persistence.trade_model import LocalTrade

    payload = json.loads(exchange_info.read_text())
    rows = [s for s in payload["symbols"] if s["symbol"] == symbol]
    if len(rows) != 1:
        raise SystemExit(f"{exchange_info}: expected one symbol {symbol!r}, found {len(rows)}")
    seen: dict[str, Any] = {}

    def _load_async_markets(self: Exchange, reload: bool = False) -> None:
        market = self._api_async.parse_market(rows[0])
        self._api_async.set_markets([market])
        seen["market"] = {k: v for k, v in market.items() if k != "info"}

    Exchange._load_async_markets = _load_async_markets  # type: ignore[method-assign]

    raw_liq = Binance.dry_run_liquidation_price

    def dry_run_liquidation_price(self: Binance, **kw: Any) -> float | None:
        value = raw_liq(self, **kw)
        mmr, cum = self.get_maintenance_ratio_and_amt(kw["pair"], kw["stake_amount"])
        LIQUIDATIONS.append(
            {
                "open_rate": kw["open_rate"],
                "is_short": kw["is_short"],
                "amount": kw["amount"],
                "stake_amount": kw["stake_amount"],
                "wallet_balance": kw["wallet_balance"],
                "leverage": kw["leverage"],
                "maintenance_margin_rate": mmr,
                "maintenance_amount": cum,
                "liquidation_price_raw": value,
                "liquidation_buffer": self.liquidation_buffer,
            }
        )
        return value

    Binance.dry_run_liquidation_price = dry_run_liquidation_price  # type: ignore[method-assign]

    raw_set = LocalTrade.set_liquidation_price

    def set_liquidation_price(self: LocalTrade, liquidation_price: float | None) -> None:
        raw_set(self, liquidation_price)
        if LIQUIDATIONS and "trade_open_ms" not in LIQUIDATIONS[-1]:
            LIQUIDATIONS[-1]["trade_open_ms"] = _ms(self.open_date_utc)
            LIQUIDATIONS[-1]["liquidation_price"] = self.liquidation_price

    LocalTrade.set_liquidation_price = set_liquidation_price  # type: ignore[method-assign]

    raw_ff = Exchange.calculate_funding_fees

    def calculate_funding_fees(
        self: Exchange,
        df: Any,
        amount: float,
        is_short: bool,
        open_date: datetime,
        close_date: datetime,
    ) -> float:
        fee = raw_ff(self, df, amount, is_short, open_date, close_date)
        sel = df[(df["date"] >= open_date) & (df["date"] <= close_date)]
        FUNDING_CALLS[_ms(open_date)] = {
            "close_ms": _ms(close_date),
            "amount": amount,
            "is_short": is_short,
            "total": fee,
            "rows": [
                {"time_ms": _ms(d.to_pydatetime()), "mark": float(m), "rate": float(r)}
                for d, m, r in zip(sel["date"], sel["open_mark"], sel["open_fund"], strict=True)
            ],
        }
        return fee

    Exchange.calculate_funding_fees = calculate_funding_fees  # type: ignore[method-assign]
    return seen


def _load_result(result_dir: Path) -> dict[str, Any]:
    zips = sorted(result_dir.glob("backtest-result-*.zip"))
    if not zips:
        raise SystemExit(f"{result_dir}: freqtrade wrote no backtest-result-*.zip")
    with zipfile.ZipFile(zips[-1]) as zf:
        names = [n for n in zf.namelist() if n.endswith(".json") and "_config" not in n]
        if len(names) != 1:
            raise SystemExit(f"{zips[-1]}: expected one result JSON, found {names}")
        return dict(json.loads(zf.read(names[0])))


def main() -> None:
    sep = sys.argv.index("--")
    exchange_info, symbol, result_dir = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    ft_args = sys.argv[sep + 1 :]
    seen = _install_hooks(exchange_info, symbol)
    socket.socket.connect = _no_network  # type: ignore[method-assign]
    socket.getaddrinfo = _no_network

    import ccxt
    from freqtrade import __version__ as ft_version
    from freqtrade.main import main as ft_main

    try:
        with contextlib.redirect_stdout(sys.stderr):  # freqtrade prints its report tables
            ft_main(ft_args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    result = _load_result(result_dir)
    (strategy_name,) = result["strategy"]
    stats = result["strategy"][strategy_name]
    liq_by_open = {liq["trade_open_ms"]: liq for liq in LIQUIDATIONS if "trade_open_ms" in liq}
    trades = []
    for t in stats["trades"]:
        trades.append(
            {
                **t,
                "liquidation": liq_by_open.get(t["open_timestamp"]),
                "funding_rows": FUNDING_CALLS.get(t["open_timestamp"], {}).get("rows"),
            }
        )
    doc = {
        "freqtrade": ft_version,
        "ccxt": ccxt.__version__,
        "strategy": strategy_name,
        "market": seen.get("market"),
        "starting_balance": stats["starting_balance"],
        "final_balance": stats["final_balance"],
        "profit_total_abs": stats["profit_total_abs"],
        "total_trades": stats["total_trades"],
        "total_funding_fees": sum(t["funding_fees"] for t in stats["trades"]),
        "backtest_start": stats["backtest_start"],
        "backtest_end": stats["backtest_end"],
        "trading_mode": stats["trading_mode"],
        "margin_mode": stats["margin_mode"],
        "stake_amount": stats["stake_amount"],
        "trades": trades,
    }
    print(json.dumps(doc, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
