"""Bundle the real Binance USDⓈ-M leverage brackets and exchangeInfo the perp tests read.

Usage::

    .venv/bin/python scripts/bundle_usdm_brackets.py ../shared/data samples/binance-usdm

Writes two files:

* ``leverage_brackets.json``: the raw Binance brackets (the ``info`` object of every tier) of
  BTC/USDT:USDT, ETH/USDT:USDT and XRP/USDT:USDT from ``binance-usdm/binance_leverage_tiers.json``
  (freqtrade's copy, parsed by ccxt), put back into Binance's own ``/fapi/v1/leverageBracket``
  shape ``[{"symbol": "BTCUSDT", "brackets": [...]}, ...]``. The bracket objects are copied as
  they are (their numbers are strings there; Binance sends JSON numbers).
* ``exchange_info.json``: the body of the fapi ``/fapi/v1/exchangeInfo`` recorded by cryptofeed
  (``cryptofeed-binance-raw/BINANCE_FUTURES.0``, line 1, ``URL -> ts: JSON``, 2021-07-22).
  The source body is 140 KB for 122 symbols, so it is trimmed: every top-level field is kept
  as is, and ``symbols`` keeps only BTCUSDT, ETHUSDT, XRPUSDT and the quarterly BTCUSDT_210924
  (a real non-perpetual, so the parser's skipping of those is tested on real data), in the
  source's order, each symbol object unchanged.

Why a script: the samples can be rebuilt and checked against the source byte for byte; the
JSON is re-serialised with a fixed layout (indent 1, keys in source order), so reruns give the
same bytes. The source holds no JSON floats (refused here), so no number changes on the way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BRACKET_MARKETS = {
    "BTC/USDT:USDT": "BTCUSDT",
    "ETH/USDT:USDT": "ETHUSDT",
    "XRP/USDT:USDT": "XRPUSDT",
}
EXCHANGE_INFO_SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT", "BTCUSDT_210924")
EXCHANGE_INFO_URL = "https://fapi.binance.com/fapi/v1/exchangeInfo"


def _no_floats(text: str) -> Any:
    def refuse(value: str) -> Any:
        raise SystemExit(f"a JSON float {value!r} in the source would not survive a round trip")

    return json.loads(text, parse_float=refuse)


def leverage_brackets(tiers_file: Path) -> list[dict[str, Any]]:
    # ccxt's parsed fields are floats, but only the string-valued raw `info` objects are copied
    tiers = json.loads(tiers_file.read_text())
    out: list[dict[str, Any]] = []
    for market, symbol in BRACKET_MARKETS.items():
        infos = [tier["info"] for tier in tiers[market]]
        for info in infos:
            for key, value in info.items():
                if not isinstance(value, str):
                    raise SystemExit(f"{market}: info field {key}={value!r} is not a string")
        out.append({"symbol": symbol, "brackets": infos})
    return out


def exchange_info(recording: Path) -> dict[str, Any]:
    line = recording.read_text().splitlines()[0]
    url, _, rest = line.partition(" -> ")
    if url != EXCHANGE_INFO_URL:
        raise SystemExit(f"{recording}: line 1 is {url!r}, not {EXCHANGE_INFO_URL}")
    _, _, body = rest.partition(": ")
    payload: dict[str, Any] = _no_floats(body)
    by_symbol = {s["symbol"]: s for s in payload["symbols"]}
    missing = [s for s in EXCHANGE_INFO_SYMBOLS if s not in by_symbol]
    if missing:
        raise SystemExit(f"{recording}: no {missing} in exchangeInfo")
    kept = [s for s in payload["symbols"] if s["symbol"] in EXCHANGE_INFO_SYMBOLS]
    print(f"exchangeInfo: kept {len(kept)} of {len(payload['symbols'])} symbols", file=sys.stderr)
    return {**payload, "symbols": kept}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared_data", type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("out_dir", type=Path, help="where to write (samples/binance-usdm)")
    args = parser.parse_args(argv)
    src: Path = args.shared_data
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    brackets = leverage_brackets(src / "binance-usdm" / "binance_leverage_tiers.json")
    info = exchange_info(src / "cryptofeed-binance-raw" / "BINANCE_FUTURES.0")
    for name, data in (("leverage_brackets.json", brackets), ("exchange_info.json", info)):
        path = out / name
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
