"""Data import and download: a bad file, a missing network or a bad date is one clear paragraph
(file, line, field; exit 2), never a traceback, and nothing of the bad file is stored.
`data info` counts gaps across the whole series, also those crossing midnight UTC, and says
the same as JSON with `--json`.

Every bad file is made from a real bundled one (samples/): a row cut short, a ninth decimal, a
freqtrade Feather file under a Binance name, a real file under a made-up or wrong interval.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import typer
from test_store import REPO, SAMPLES, SPOT
from typer.testing import CliRunner, Result

from tessera.bootstrap import bootstrap
from tessera.config import ConfigError, load_settings
from tessera.data import cli as data_cli
from tessera.data.bulk import BulkDataError, parse_csv
from tessera.data.importers import _kline_table, import_recording
from tessera.data.store import ParquetStore

ADA = SAMPLES / "binance-bulk" / "ADABTC-1m-2021-11-27.csv"
ADA_LINES = ADA.read_text().splitlines()
FEATHER = SAMPLES / "freqtrade" / "XRP_ETH-1m.feather"
BTC_PERP = SAMPLES / "bars" / "btc-perp-20211231-20220201_1m.csv.gz"
WIDE = {"COLUMNS": "400"}


def cli(tmp_path: Path) -> typer.Typer:
    """The `data` commands under a root that boots like `tessera` (data dir under tmp_path)."""
    (tmp_path / "configs").mkdir(exist_ok=True)
    root = typer.Typer()

    @root.callback()
    def _boot(ctx: typer.Context) -> None:
        settings = load_settings(
            config_dir=tmp_path / "configs", env_file=None, data_dir=tmp_path / "data"
        )
        ctx.obj = bootstrap(settings)

    root.add_typer(data_cli.data_app, name="data")
    return root


def run(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli(tmp_path), ["data", *args], env=WIDE)


def config_error(result: Result) -> str:
    """The one paragraph the `tessera` entry point prints (exit 2) for this result."""
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    text = str(result.exception)
    assert "\n" not in text and "Traceback" not in text
    return text


def store_of(tmp_path: Path) -> ParquetStore:
    return ParquetStore(tmp_path / "data" / "store")


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_row_cut_short_is_refused_naming_its_line_and_nothing_of_the_file_is_stored(
    tmp_path: Path,
) -> None:
    lines = [*ADA_LINES[:5], ADA_LINES[5][:60]]  # the file ends inside line 6
    bad = write(tmp_path / "in" / ADA.name, lines)
    msg = config_error(run(tmp_path, "import", str(bad)))
    assert str(bad) in msg and "line 6 has 6 columns" in msg and "has 12" in msg
    assert "truncated" in msg and "Nothing of this file was stored" in msg
    assert store_of(tmp_path).files("klines") == []  # the 5 good rows were not stored either


def test_a_ninth_decimal_is_refused_not_rounded_but_a_trailing_zero_is_exact(
    tmp_path: Path,
) -> None:
    assert ",0.00002860," in ADA_LINES[2]
    nine = [
        *ADA_LINES[:2],
        ADA_LINES[2].replace(",0.00002860,", ",0.000028601,", 1),
        *ADA_LINES[3:],
    ]
    msg = config_error(run(tmp_path, "import", str(write(tmp_path / "a" / ADA.name, nine))))
    assert "line 3, field high" in msg and "'0.000028601' has 9 decimal places" in msg
    assert "keeps 8" in msg and "never rounds" in msg
    assert store_of(tmp_path).files("klines") == []

    # 0.000028600 has 9 places written but an exact 8-place form: stored as the same number
    zero = [
        *ADA_LINES[:2],
        ADA_LINES[2].replace(",0.00002860,", ",0.000028600,", 1),
        *ADA_LINES[3:],
    ]
    ok = run(tmp_path, "import", str(write(tmp_path / "b" / ADA.name, zero)))
    assert ok.exit_code == 0, ok.output
    highs = store_of(tmp_path).read("klines", "ADABTC")["high"].to_pylist()
    assert highs[2] == Decimal("0.00002860") and len(highs) == 10


def test_a_freqtrade_feather_file_under_a_binance_name_is_refused_as_not_a_csv(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "XRPETH-1m-2019-10-11.csv"
    bad.write_bytes(FEATHER.read_bytes())
    msg = config_error(run(tmp_path, "import", str(bad)))
    assert str(bad) in msg and "not a text CSV" in msg and "Arrow/Feather" in msg
    assert store_of(tmp_path).files("klines") == []
    gz = tmp_path / "BTCUSD-1h-2021-11.csv"
    gz.write_bytes((SAMPLES / "bars" / "Coinbase_BTCUSD_1h.csv.gz").read_bytes())
    assert "looks like a gzip file" in config_error(run(tmp_path, "import", str(gz)))


def test_an_interval_binance_does_not_publish_is_refused_naming_the_allowed_ones(
    tmp_path: Path,
) -> None:
    bad = write(tmp_path / "ADABTC-1x-2021-11-27.csv", ADA_LINES)
    msg = config_error(run(tmp_path, "import", str(bad)))
    assert "ADABTC-1x-2021-11-27.csv" in msg and "'1x' is not a Binance kline interval" in msg
    assert "1s, 1m, 3m, 5m" in msg and "1w, 1M" in msg
    assert not (tmp_path / "data" / "store" / "exchange=binance").exists()


def test_a_real_file_under_the_wrong_interval_is_refused_by_its_bar_lengths(
    tmp_path: Path,
) -> None:
    bad = write(tmp_path / "ADABTC-5m-2021-11-27.csv", ADA_LINES)
    msg = config_error(run(tmp_path, "import", str(bad)))
    assert "line 1, field close_time" in msg and "a 5m bar closes 300,000 ms" in msg
    assert "10 of the file's 10 bars do not" in msg and "a 1m bar" in msg
    assert store_of(tmp_path).files("klines") == []


def test_the_first_bad_file_stops_the_import_and_says_what_was_imported_before_it(
    tmp_path: Path,
) -> None:
    feather = tmp_path / "XRPETH-1m-2019-10-11.csv"
    feather.write_bytes(FEATHER.read_bytes())
    later = write(tmp_path / "later" / "ADABTC-1m-2021-11-28.csv", ADA_LINES)
    msg = config_error(run(tmp_path, "import", str(ADA), str(feather), str(later)))
    assert f"Imported before it: {ADA.name} (10 rows written)." in msg
    assert "Not read (after it): ADABTC-1m-2021-11-28.csv." in msg
    store = store_of(tmp_path)
    assert [f.parent.parent.name for f in store.files("klines")] == ["symbol=ADABTC"]
    assert store.read("klines").num_rows == 10


def test_reimporting_a_file_under_another_symbol_imports_it_and_both_are_queryable(
    tmp_path: Path,
) -> None:
    first = run(tmp_path, "import", str(ADA))
    assert first.exit_code == 0 and "klines ADABTC 1m, 10 rows read, 10 written" in first.output
    other = run(tmp_path, "import", "--symbol", "adaxyz", str(ADA))
    assert other.exit_code == 0 and "klines ADAXYZ 1m, 10 rows read, 10 written" in other.output
    again = run(tmp_path, "import", "--symbol", "ADAXYZ", str(ADA))
    assert again.exit_code == 0 and "already imported as klines ADAXYZ 1m" in again.output
    q = run(tmp_path, "query", "select symbol, count(*) as n from klines group by 1 order by 1")
    assert q.exit_code == 0, q.output
    assert [ln.split()[1:4:2] for ln in q.output.splitlines() if "ADA" in ln] == [
        ["ADABTC", "10"],
        ["ADAXYZ", "10"],
    ]
    manifest = json.loads((tmp_path / "data" / "store" / "_imports.json").read_text())
    assert sorted(k.split(" ", 1)[1] for k in manifest) == ["klines ADABTC 1m", "klines ADAXYZ 1m"]


def test_a_symbol_that_is_not_a_binance_symbol_is_refused_before_it_becomes_a_folder(
    tmp_path: Path,
) -> None:
    msg = config_error(run(tmp_path, "import", "--symbol", "../ADA", str(ADA)))
    assert "'../ADA' is not a Binance symbol" in msg
    assert not (tmp_path / "data" / "store" / "exchange=binance").exists()


def test_times_in_seconds_and_flags_that_are_not_booleans_name_line_and_field() -> None:
    seconds = "\n".join(
        ",".join([str(int(r[0]) // 1000), *r[1:6], str(int(r[6]) // 1000), *r[7:]])
        for r in (line.split(",") for line in ADA_LINES)
    )
    with pytest.raises(BulkDataError, match=r"x.csv: line 1, field open_time .*1637971200 is not"):
        parse_csv(seconds, "klines", source="x.csv")
    word = [*ADA_LINES[:3], ADA_LINES[3].replace(",162305.70000000,", ",lots,")]
    with pytest.raises(BulkDataError, match=r"line 4, field volume .*'lots' is not a number"):
        parse_csv("\n".join(word), "klines", source="x.csv")
    trade = "3735683259,61837.63000000,0.00100000,61.83763000,1723161255342,maybe,True"
    with pytest.raises(BulkDataError, match=r"line 2, field is_buyer_maker .*'maybe' is neither"):
        parse_csv(trade.replace("maybe", "False") + "\n" + trade, "trades", source="t.csv")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def test_download_without_network_names_the_host_says_nothing_was_stored_and_how_to_retry(
    tmp_path: Path,
) -> None:
    port = free_port()
    args = ["download", "--symbol", "ADABTC", "--start", "2021-11-27", "--daily"]
    msg = config_error(run(tmp_path, *args, "--base-url", f"http://127.0.0.1:{port}"))
    assert f"download of ADABTC-1m-2021-11-27.zip from 127.0.0.1:{port} failed" in msg
    assert "Cannot connect" in msg and "Nothing of ADABTC-1m-2021-11-27.zip was stored" in msg
    assert "Nothing was imported by this run" in msg and "run the same command again" in msg
    assert store_of(tmp_path).files("klines") == []
    assert not list((tmp_path / "data" / "downloads").glob("*.zip*"))


def test_download_needs_a_start_date_and_names_the_date_format(tmp_path: Path) -> None:
    missing = run(tmp_path, "download", "--symbol", "ADABTC")
    assert missing.exit_code == 2 and "Missing option '--start'" in missing.output
    msg = config_error(run(tmp_path, "download", "--symbol", "ADABTC", "--start", "27.11.2021"))
    assert "--start '27.11.2021': not a date" in msg and "YYYY-MM-DD" in msg
    msg = config_error(
        run(tmp_path, "download", "--symbol", "ADABTC", "--start", "2021-11", "--interval", "1x")
    )
    assert "--interval: '1x' is not a Binance kline interval" in msg
    msg = config_error(
        run(tmp_path, "download", "--symbol", "ADABTC", "--start", "2021-11-27", "--end", "2021-10")
    )
    assert "--end 2021-10: before --start 2021-11-27" in msg


def test_the_tessera_command_prints_one_paragraph_and_exits_2_without_a_traceback(
    tmp_path: Path,
) -> None:
    bad = write(tmp_path / "in" / ADA.name, [*ADA_LINES[:5], ADA_LINES[5][:60]])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATA_DIR=str(tmp_path / "data"), COLUMNS="400")
    proc = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "data", "import", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "error:" in proc.stderr and "line 6 has 6 columns" in proc.stderr


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, tzinfo=UTC)


def test_data_info_counts_bars_missing_across_midnight_and_says_so_as_json(
    tmp_path: Path,
) -> None:
    """Two real days of BTC-PERP 1-minute bars; the five around midnight (23:58-00:02) taken
    out. Counted day by day, neither day misses a bar; across the series five are missing."""
    bars = (
        pl.read_csv(BTC_PERP)
        .with_columns(
            pl.col("timestamp").str.to_datetime(time_zone="UTC").alias("open_time"),
            pl.col("volume").alias("quote_volume"),
        )
        .drop("volume")
        .filter(pl.col("open_time").is_between(utc(2022, 1, 10), utc(2022, 1, 12), "left"))
    )
    hole = pl.col("open_time").is_between(utc(2022, 1, 10, 23, 58), utc(2022, 1, 11, 0, 2))
    assert bars.filter(hole).height == 5
    whole = ParquetStore(tmp_path / "whole", exchange="nautilus")
    whole.write("klines", "BTCPERP", _kline_table(bars, "1m"))
    base = {str(c.day): c.missing for c in whole.coverage()}

    store = store_of(tmp_path)
    (tmp_path / "data" / "store").mkdir(parents=True, exist_ok=True)
    ParquetStore(store.root, exchange="nautilus").write(
        "klines", "BTCPERP", _kline_table(bars.filter(~hole), "1m")
    )
    got = run(tmp_path, "info", "--json")
    assert got.exit_code == 0, got.output
    doc = json.loads(got.stdout)  # stdout is the JSON document alone
    parts = {p["day"]: p for p in doc["partitions"]}
    assert parts["2022-01-10"]["missing"] == base["2022-01-10"]
    assert parts["2022-01-11"]["missing"] == base["2022-01-11"] + 5  # counted on the next day
    assert parts["2022-01-10"]["last"] == "2022-01-10T23:57:00.000Z"
    assert parts["2022-01-11"]["first"] == "2022-01-11T00:03:00.000Z"
    assert parts["2022-01-11"]["first_ms"] == int(utc(2022, 1, 11, 0, 3).timestamp() * 1000)
    assert doc["store"] == str(store.root) and doc["quarantined"] == []

    table = run(tmp_path, "info")  # the table says the same
    row = next(ln for ln in table.stdout.splitlines() if "2022-01-11" in ln)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[-1] == str(parts["2022-01-11"]["missing"])
    assert cells[4] == f"{parts['2022-01-11']['rows']:,}" and cells[5] == "00:03:00"


def test_trade_ids_missing_across_midnight_are_counted_on_the_next_day(tmp_path: Path) -> None:
    """The real BTCUSDT recordings run from 23:54 to 00:05 with every trade id; a second of
    trades around midnight taken out shows as that many missing ids on 2024-08-09."""
    rec = ParquetStore(tmp_path / "rec")
    import_recording(rec, SPOT / "btcusdt_20240808.gz")
    import_recording(rec, SPOT / "btcusdt_20240809.gz")
    assert all(c.missing == 0 for c in rec.coverage() if c.dataset == "trades")
    trades = rec.read("trades", "BTCUSDT").drop(["exchange", "symbol", "date"])
    t = trades["trade_time"]
    near = pc.and_(
        pc.greater_equal(t, pa.scalar(utc(2024, 8, 8, 23, 59, 59), type=t.type)),
        pc.less(t, pa.scalar(utc(2024, 8, 9, 0, 0, 1), type=t.type)),
    )
    removed = pc.sum(pc.cast(near, "int64")).as_py()
    assert removed > 10
    cut = ParquetStore(tmp_path / "cut")
    cut.write("trades", "BTCUSDT", trades.filter(pc.invert(near)))
    missing = {str(c.day): c.missing for c in cut.coverage()}
    assert missing == {"2024-08-08": 0, "2024-08-09": removed}


def test_query_out_to_a_folder_that_does_not_exist_is_one_paragraph(tmp_path: Path) -> None:
    assert run(tmp_path, "import", str(ADA)).exit_code == 0
    target = tmp_path / "nowhere" / "bars.csv"
    msg = config_error(run(tmp_path, "query", "select * from klines", "--out", str(target)))
    assert msg.startswith(f"--out {target}: cannot write the result")


def test_a_few_bars_of_another_length_are_stored_as_published_and_logged(tmp_path: Path) -> None:
    """Binance's own files hold a few irregular bars (around old maintenance windows): one bar
    of ten closing 15 s early is not a mislabelled file."""
    row = ADA_LINES[4].split(",")
    row[6] = str(int(row[6]) - 15_000)
    odd = write(tmp_path / "in" / ADA.name, [*ADA_LINES[:4], ",".join(row), *ADA_LINES[5:]])
    result = run(tmp_path, "import", str(odd))
    assert result.exit_code == 0, result.output
    assert "kline bars whose length is not their interval" in result.stderr
    assert "bars=1" in result.stderr
    closes = store_of(tmp_path).read("klines", "ADABTC")["close_time"].to_pylist()
    assert closes[4].value == (int(row[6])) * 1_000_000


def test_a_manifest_entry_of_the_old_hash_only_key_still_skips_the_same_import(
    tmp_path: Path,
) -> None:
    """Stores imported before the key had symbol and interval: the hash-only entry matches the
    same file, symbol and kind (not another symbol)."""
    root = tmp_path / "data" / "store"
    root.mkdir(parents=True)
    digest = hashlib.sha256(ADA.read_bytes()).hexdigest()
    old = {"file": ADA.name, "symbol": "ADABTC", "kind": "klines", "rows": 10, "written": 10}
    (root / "_imports.json").write_text(json.dumps({digest: old}))
    assert "already imported as klines ADABTC 1m" in run(tmp_path, "import", str(ADA)).output
    other = run(tmp_path, "import", "--symbol", "ADAXYZ", str(ADA))
    assert "klines ADAXYZ 1m, 10 rows read, 10 written" in other.output
