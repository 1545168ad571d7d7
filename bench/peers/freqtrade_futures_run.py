"""Print freqtrade's futures backtest of the cross-check strategy as one JSON document.

Usage:
    python bench/peers/freqtrade_futures_run.py [--scenario mark8h|mark1h] [--leverage 3]
        [--out FILE]

Creates bench/.venv-freqtrade on first use (pinned freqtrade from PyPI), lays out the bundled
real XRP/USDT:USDT data as a freqtrade datadir in a temporary directory, runs
`freqtrade backtesting` offline and prints: freqtrade's and ccxt's versions, the market it
used, starting and final balance, total funding, and every trade as freqtrade exports it
(side, open/close dates and rates, amount, stake, leverage, fees, funding_fees, profit_abs,
orders) plus what freqtrade computes but does not export: the liquidation price (with the
tier and buffer) and the funding rows (time, mark, rate) behind each trade's funding.
`--out` also writes it to FILE (the committed fixtures
tests/backtest/fixtures/freqtrade_futures_*.json are this command's output, the command in each).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from freqtrade_venv import SCENARIOS, run_freqtrade_futures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenario", choices=SCENARIOS, default="mark8h")
    ap.add_argument("--leverage", type=int, default=3, help="the strategy's leverage (3)")
    ap.add_argument("--out", type=Path, help="also write the JSON document to this file")
    args = ap.parse_args()
    doc = run_freqtrade_futures(args.scenario, args.leverage)
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
