"""Re-lay the bundled real XRP/USDT perpetual data as Binance's USDⓈ-M bulk archives.

Why: no USDⓈ-M archive from data.binance.vision is bundled, and the importer of those archives
must be tested on real values. This script takes the real Binance XRP/USDT perpetual candles,
mark candles and funding rates that freqtrade stores (``samples/freqtrade/futures/``) and writes
them in Binance's archive layout under ``samples/binance-usdm/archives/data/futures/um/``:

- ``monthly/klines/XRPUSDT/1h/XRPUSDT-1h-2021-11.zip``: the 100 1h trade candles, no header row
  (as Binance's 2021 files);
- ``daily/klines/XRPUSDT/5m/XRPUSDT-5m-2021-11-15.zip``: the 288 5m trade candles of that day,
  with the header row Binance added to its files in 2022;
- ``monthly/markPriceKlines/XRPUSDT/1h/XRPUSDT-1h-2021-11.zip``: the 100 1h mark candles, header;
- ``monthly/fundingRate/XRPUSDT/XRPUSDT-fundingRate-2021-{11,12}``: the 91 funding rates split
  by month (November zipped, December as a plain ``.csv``), header
  ``calc_time,funding_interval_hours,last_funding_rate``.

Each zip gets a ``.CHECKSUM`` sibling (``<sha256>  <name>``) as Binance publishes them.

Nothing is invented: every number comes from the source files (floats written back as the
decimals they were stored from, `as_decimal`); a column the source does not have (quote
volume, trade count, taker volumes; a mark candle's volume) is left **empty**, never zero.
``close_time`` is ``open_time + interval - 1 ms`` (Binance's definition), ``calc_time`` the raw
``fundingTime`` in ms, ``funding_interval_hours`` 8 (the files' spacing: every row 8 h apart).
Zips are written with a fixed timestamp so that a re-run gives the same bytes.

Usage: ``python scripts/bundle_usdm_archives.py [SOURCE_DIR] [OUT_DIR]``
"""

from __future__ import annotations

import hashlib
import itertools
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "samples" / "freqtrade" / "futures"
OUT = REPO / "samples" / "binance-usdm" / "archives"
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate"
MS_PER = {"5m": 300_000, "1h": 3_600_000}


def dec(value: float | None) -> str:
    """A stored float as its decimal text (15 significant digits, as `as_decimal`); '' if
    the source has no value."""
    if value is None:
        return ""
    return format(Decimal(f"{value:.15g}"), "f")


def rate8(value: float) -> str:
    """A funding rate with Binance's 8 decimals; refuses one that would need rounding."""
    d = Decimal(f"{value:.15g}")
    q = d.quantize(Decimal("0.00000001"))
    if q != d:
        raise SystemExit(f"funding rate {value!r} has more than 8 decimals")
    return format(q, "f")


def kline_lines(path: Path, interval: str, day: str | None = None) -> list[str]:
    frame = pl.read_ipc(path).sort("date")
    if day is not None:
        frame = frame.filter(pl.col("date").dt.strftime("%Y-%m-%d") == day)
    step = MS_PER[interval]
    lines = []
    for r in frame.iter_rows(named=True):
        ms = int(r["date"].timestamp() * 1000)
        lines.append(
            ",".join(
                [
                    str(ms),
                    dec(r["open"]),
                    dec(r["high"]),
                    dec(r["low"]),
                    dec(r["close"]),
                    dec(r["volume"]),
                    str(ms + step - 1),
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
        )
    return lines


def funding_lines(path: Path) -> dict[str, list[str]]:
    frame = pl.read_ipc(path).sort("date")
    for col in ("high", "low", "close", "volume"):
        assert frame[col].fill_null(0).abs().max() == 0, f"{path}: {col} is not all zero"
    times = [int(d.timestamp() * 1000) for d in frame["date"]]
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert all(abs(s - 8 * 3_600_000) < 1_000 for s in steps), "not every 8 h"
    by_month: dict[str, list[str]] = {}
    for d, ms, rate in zip(frame["date"], times, frame["open"], strict=True):
        by_month.setdefault(d.strftime("%Y-%m"), []).append(f"{ms},8,{rate8(rate)}")
    return by_month


def write(path: Path, lines: list[str], header: str | None, zipped: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(([header] if header else []) + lines) + "\n"
    if not zipped:
        path.with_suffix(".csv").write_text(text)
        return
    zpath = path.with_suffix(".zip")
    info = zipfile.ZipInfo(path.with_suffix(".csv").name, date_time=(2021, 12, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(info, text)
    digest = hashlib.sha256(zpath.read_bytes()).hexdigest()
    zpath.with_name(zpath.name + ".CHECKSUM").write_text(f"{digest}  {zpath.name}\n")


def main(source: Path = SOURCE, out: Path = OUT) -> None:
    um = out / "data" / "futures" / "um"
    sym = "XRPUSDT"
    write(
        um / "monthly" / "klines" / sym / "1h" / f"{sym}-1h-2021-11",
        kline_lines(source / "XRP_USDT_USDT-1h-futures.feather", "1h"),
        None,
        True,
    )
    write(
        um / "daily" / "klines" / sym / "5m" / f"{sym}-5m-2021-11-15",
        kline_lines(source / "XRP_USDT_USDT-5m-futures.feather", "5m", "2021-11-15"),
        HEADER,
        True,
    )
    write(
        um / "monthly" / "markPriceKlines" / sym / "1h" / f"{sym}-1h-2021-11",
        kline_lines(source / "XRP_USDT_USDT-1h-mark.feather", "1h"),
        HEADER,
        True,
    )
    months = funding_lines(source / "XRP_USDT_USDT-8h-funding_rate.feather")
    for month, lines in months.items():
        write(
            um / "monthly" / "fundingRate" / sym / f"{sym}-fundingRate-{month}",
            lines,
            FUNDING_HEADER,
            zipped=month == "2021-11",
        )
    for f in sorted(out.rglob("*.*")):
        print(f.relative_to(out))


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:3]]
    main(*args)
