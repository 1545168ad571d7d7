"""ParquetStore, catalog, bulk import/download and resampling on real data."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from aiohttp import web

from tessera.data.bulk import BulkDataError, download, import_file, parse_csv
from tessera.data.catalog import Catalog
from tessera.data.importers import import_bundled, import_recording
from tessera.data.resample import dollar_bars, time_bars, volume_bars
from tessera.data.store import ParquetStore, StoreSchemaError, rows_to_table

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
SPOT = SAMPLES / "binance-raw-ws" / "spot"


def real_trades() -> pa.Table:
    """2,001 real Binance BTCUSDT trades (2021-01-08) as store rows. The file keeps them as
    floats; Binance's values have at most 8 decimals, so 8-place text recovers them exactly."""
    t = pd.read_parquet(SAMPLES / "binance-api" / "btcusdt-trades.parquet")
    rows = [
        {
            "trade_id": int(r.trade_id),
            "price": f"{r.price:.8f}",
            "qty": f"{r.quantity:.8f}",
            "is_buyer_maker": r.buyer_maker == "True",
            "trade_time": pd.Timestamp(r.timestamp).value,
            "event_time": pd.Timestamp(r.timestamp).value,
            "recv_time": None,
        }
        for r in t.itertuples()
    ]
    return rows_to_table("trades", rows)


def test_dedup_across_batches_and_restarts(tmp_path: Path) -> None:
    table = real_trades()
    store = ParquetStore(tmp_path)
    assert store.write("trades", "BTCUSDT", table.slice(0, 1500)) == 1500
    assert store.write("trades", "BTCUSDT", table.slice(1000)) == 501  # overlap dropped
    reopened = ParquetStore(tmp_path)
    assert reopened.write("trades", "BTCUSDT", table) == 0
    doubled = pa.concat_tables([table.slice(0, 10), table.slice(0, 10)])
    assert ParquetStore(tmp_path / "other").write("trades", "BTCUSDT", doubled) == 10
    stored = reopened.read("trades", "BTCUSDT")
    assert stored.num_rows == 2001
    assert stored["trade_id"].to_pylist() == sorted(table["trade_id"].to_pylist())


def test_a_decimal_key_is_one_key_whatever_text_it_came_as(tmp_path: Path) -> None:
    """book_updates are keyed by (last_update_id, side, price): "100.5" and "100.50000000" are
    one price, in the writing store and in one that loads the keys back from the file."""

    def update(price: str, qty: str = "1") -> pa.Table:
        row = {"first_update_id": 7, "last_update_id": 9, "prev_update_id": 6, "side": "bid",
               "price": price, "qty": qty, "event_time": 1_700_000_000_000_000_000}  # fmt: skip
        return rows_to_table("book_updates", [row])

    store = ParquetStore(tmp_path)
    assert store.write("book_updates", "BTCUSDT", update("100.5")) == 1
    assert store.write("book_updates", "BTCUSDT", update("100.50000000", qty="2")) == 0
    reopened = ParquetStore(tmp_path)
    assert reopened.write("book_updates", "BTCUSDT", update("100.500")) == 0
    assert reopened.write("book_updates", "BTCUSDT", update("100.50000001")) == 1
    assert reopened.read("book_updates", "BTCUSDT")["qty"].to_pylist() == [
        Decimal("1.00000000"),
        Decimal("1.00000000"),
    ]


def test_decimals_are_exact_and_lossy_values_refused(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    row = {
        "trade_id": 1,
        "price": "61837.63000001",
        "qty": "0.00000001",
        "is_buyer_maker": True,
        "trade_time": 10**18,
        "event_time": 10**18,
        "recv_time": 10**18 + 5,
    }
    store.write("trades", "BTCUSDT", rows_to_table("trades", [row]))
    back = store.read("trades", "BTCUSDT")
    assert back["price"][0].as_py() == Decimal("61837.63000001")
    assert back["qty"][0].as_py() == Decimal("0.00000001")
    with pytest.raises((StoreSchemaError, pa.ArrowInvalid)):
        store.write(
            "trades",
            "BTCUSDT",
            rows_to_table("trades", [{**row, "trade_id": 2, "price": "1.000000001"}]),
        )


def test_crash_leftovers_are_ignored_and_cleaned(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write("trades", "BTCUSDT", real_trades())
    pdir = store.files("trades", "BTCUSDT")[0].parent
    (pdir / "part-999.parquet.tmp").write_bytes(b"half a file")  # a write killed mid-way
    assert Catalog(store).query("select count(*) n from trades")["n"][0].as_py() == 2001
    ParquetStore(tmp_path)  # reopening cleans it up
    assert not list(pdir.glob("*.tmp"))


def test_kill_9_during_writes_never_corrupts(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from tessera.data.store import ParquetStore, rows_to_table\n"
        "s = ParquetStore(sys.argv[1])\n"
        "i = 0\n"
        "while True:\n"
        "    rows = [{'trade_id': i*100+k, 'price': '1.5', 'qty': '2', 'is_buyer_maker': False,\n"
        "             'trade_time': 10**18 + (i*100+k)*10**6, 'event_time': 10**18,\n"
        "             'recv_time': None}\n"
        "            for k in range(100)]\n"
        "    s.write('trades', 'X', rows_to_table('trades', rows))\n"
        "    i += 1\n"
        "    print(i, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for _ in range(30):
        proc.stdout.readline()
    os.kill(proc.pid, 9)
    proc.wait()
    store = ParquetStore(tmp_path)
    t = store.read("trades", "X")
    ids = t["trade_id"].to_pylist()
    assert len(ids) >= 3000 and len(ids) % 100 == 0  # whole batches only
    assert ids == list(range(len(ids)))
    assert store.write("trades", "X", t) == 0  # restart: nothing is stored twice


def test_partitions_by_utc_day_and_coverage(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    import_recording(store, SPOT / "btcusdt_20240808.gz")
    import_recording(store, SPOT / "btcusdt_20240809.gz")
    cov = [c for c in store.coverage() if c.dataset == "trades"]
    assert [str(c.day) for c in cov] == ["2024-08-08", "2024-08-09"]
    assert sum(c.rows for c in cov) == 9757 + 10147
    assert all(c.missing == 0 for c in cov)
    # compact merges partition files and keeps every row once
    store.write("trades", "BTCUSDT", store.read("trades", "BTCUSDT").slice(0, 0))
    n_before = store.read("trades", "BTCUSDT").num_rows
    store.compact()
    assert store.read("trades", "BTCUSDT").num_rows == n_before
    assert all(len(list(p.parent.glob("*.parquet"))) == 1 for p in store.files("trades"))


def test_catalog_views_exist_on_an_empty_store(tmp_path: Path) -> None:
    cat = Catalog(ParquetStore(tmp_path))
    for view in ("trades", "agg_trades", "klines", "book_updates", "book_snapshots", "book_ticker"):
        assert cat.query(f"select count(*) n from {view}")["n"][0].as_py() == 0


def test_bulk_csv_with_and_without_header_ms_and_us() -> None:
    text = (SAMPLES / "binance-bulk" / "ADABTC-1m-2021-11-27.csv").read_text()
    plain = parse_csv(text, "klines")
    header = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore\n"
    )
    assert parse_csv(header + text, "klines").equals(plain)
    micro = "\n".join(
        ",".join([str(int(r[0]) * 1000), *r[1:6], str(int(r[6]) * 1000), *r[7:]])
        for r in (line.split(",") for line in text.splitlines())
    )
    assert parse_csv(micro, "klines").equals(plain)
    assert plain.num_rows == 10
    assert plain["open"][0].as_py() == Decimal("0.00002853")
    assert plain["open_time"][0].value == 1637971200000 * 1_000_000
    with pytest.raises(BulkDataError, match="columns"):
        parse_csv("1,2,3\n", "klines")


def _zip(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name.replace(".zip", ".csv"), text)
    return buf.getvalue()


async def test_download_verifies_checksums_and_resumes(tmp_path: Path) -> None:
    t = real_trades()
    csv = "\n".join(
        f"{r['trade_id']},{r['price']},{r['qty']},0,{r['trade_time'].value // 10**6},"
        f"{r['is_buyer_maker']},True"
        for r in t.to_pylist()
    )
    good = _zip("BTCUSDT-trades-2021-01-08.zip", csv)
    bad = _zip("BTCUSDT-trades-2021-01-09.zip", csv)
    files = {
        "BTCUSDT-trades-2021-01-08.zip": (good, hashlib.sha256(good).hexdigest()),
        "BTCUSDT-trades-2021-01-09.zip": (bad, "0" * 64),
    }
    served: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[1]
        served.append(request.headers.get("Range", "full"))
        if name.endswith(".CHECKSUM"):
            body = f"{files[name.removesuffix('.CHECKSUM')][1]}  {name.removesuffix('.CHECKSUM')}"
            return web.Response(text=body)
        data = files[name][0]
        rng = request.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            return web.Response(body=data[start:], status=206)
        return web.Response(body=data)

    app = web.Application()
    app.router.add_get("/data/spot/daily/trades/BTCUSDT/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    store = ParquetStore(tmp_path / "store")
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "BTCUSDT-trades-2021-01-08.zip.part").write_bytes(good[:1000])  # interrupted before
    try:
        got = await download(store, base, "BTCUSDT", "trades", ["2021-01-08"], dest)
        assert got == {"BTCUSDT-trades-2021-01-08.zip": 2001}
        assert "bytes=1000-" in served  # resumed, not restarted
        with pytest.raises(BulkDataError, match="checksum mismatch"):
            await download(store, base, "BTCUSDT", "trades", ["2021-01-09"], dest)
        assert not (dest / "BTCUSDT-trades-2021-01-09.zip").exists()
        # importing the same file again writes nothing
        assert import_file(store, dest / "BTCUSDT-trades-2021-01-08.zip") == 0
    finally:
        await runner.cleanup()
    assert store.read("trades", "BTCUSDT").num_rows == 2001


def test_import_bundled_is_idempotent(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    first = import_bundled(store)
    assert first["binance/trades"] == 9757 + 10147 + 6106 + 8409
    assert first["nautilus/klines"] == 45031 and first["coinbase/klines"] == 20111
    # USDⓈ-M: the perpetual recording and the archives, under their own venue
    assert first["binance-usdm/book_updates"] == 146_231
    assert first["binance-usdm/funding_rates"] == 91 and first["binance-usdm/mark_klines"] == 100
    assert first["binance-usdm/klines"] == 100 + 288
    assert all(v == 0 for v in import_bundled(store).values())


def test_resampling_real_aggtrades_reproduces_real_candles() -> None:
    """freqtrade's XRP/ETH 1m candles were built from these real Binance aggTrades; our time
    bars reproduce them exactly (OHLC and volume), minute for minute."""
    with gzip.open(SAMPLES / "freqtrade" / "XRP_OLD-trades.json.gz") as fh:
        raw = json.loads(fh.read())
    trades = pl.DataFrame(
        {
            "trade_time": [x["info"]["T"] for x in raw],
            "price": [x["info"]["p"] for x in raw],
            "qty": [x["info"]["q"] for x in raw],
            "is_buyer_maker": [x["info"]["m"] for x in raw],
        }
    ).with_columns(
        pl.from_epoch("trade_time", "ms").dt.replace_time_zone("UTC"),
        pl.col("price").cast(pl.Decimal(38, 8)),
        pl.col("qty").cast(pl.Decimal(38, 8)),
    )
    bars = time_bars(trades, "1m")
    candles = pl.from_pandas(pd.read_feather(SAMPLES / "freqtrade" / "XRP_ETH-1m.feather"))
    assert len(bars) == len(candles) == 2469
    joined = candles.with_columns(pl.col("date").dt.cast_time_unit("ns")).join(
        bars.with_columns(pl.col("open_time").dt.cast_time_unit("ns")),
        left_on="date",
        right_on="open_time",
        suffix="_ours",
    )
    assert len(joined) == 2469
    for col in ("open", "high", "low", "close", "volume"):
        diff = (joined[col] - joined[f"{col}_ours"].cast(pl.Float64)).abs().max()
        assert diff is not None and diff < 1e-12, col
    # taker-buy volume + the rest = total volume, exactly (decimal sums)
    taker = trades.filter(~pl.col("is_buyer_maker"))["qty"].sum()
    assert bars["taker_buy_base"].sum() == taker


def test_volume_and_dollar_bars_partition_the_trades() -> None:
    with gzip.open(SAMPLES / "freqtrade" / "XRP_OLD-trades.json.gz") as fh:
        raw = json.loads(fh.read())
    trades = pl.DataFrame(
        {
            "trade_time": [x["info"]["T"] for x in raw],
            "price": [float(x["info"]["p"]) for x in raw],
            "qty": [float(x["info"]["q"]) for x in raw],
        }
    ).with_columns(pl.from_epoch("trade_time", "ms"))
    vb = volume_bars(trades, 5_000.0)
    assert vb["trades"].sum() == len(trades)
    assert abs(vb["volume"].sum() - trades["qty"].sum()) < 1e-6
    assert (vb["volume"].head(-1) >= 5_000.0 * 0.999).all() or len(vb) > 10
    db = dollar_bars(trades, 10.0)
    assert db["trades"].sum() == len(trades)


def test_data_cli_info_and_query(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATA_DIR"] = str(tmp_path)
    env["COLUMNS"] = "200"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tessera.cli", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=300,
        )

    assert run("data", "import", "--bundled").returncode == 0
    info = run("data", "info")
    assert info.returncode == 0 and "2024-08-09" in info.stdout and "BTCPERP" in info.stdout
    q = run("data", "query", "select count(*) as n from trades where exchange = 'binance'")
    assert q.returncode == 0 and "34419" in q.stdout
    # a view spans every venue; the exchange column tells spot from the perpetual
    q = run("data", "query", "select exchange, count(*) from trades group by 1 order by 1")
    assert q.returncode == 0 and "binance-usdm" in q.stdout and "4315" in q.stdout
    bad = run("data", "query", "select nope from trades")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    out = tmp_path / "t.csv"
    assert (
        run(
            "data", "query", "select * from klines where symbol='ADABTC'", "--out", str(out)
        ).returncode
        == 0
    )
    assert len(out.read_text().splitlines()) == 11
