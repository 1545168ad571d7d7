"""A corrupt Parquet file never takes the store down: it is quarantined, said, counted, and every
reader (DuckDB views, `data info`, `data query`, `scan`, the writer) works on the rest.

The damage is real: files written by the store, then truncated or overwritten on disk.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_store import real_trades
from typer.testing import CliRunner

from tessera import metrics
from tessera.bootstrap import bootstrap
from tessera.config import load_settings
from tessera.data import cli as data_cli
from tessera.data.catalog import Catalog
from tessera.data.store import ParquetStore

SLICES = ((0, 700), (700, 1400), (1400, 2001))  # three files in one partition
WIDE = {"COLUMNS": "400"}  # no wrapped paths in the console output


def three_file_store(root: Path) -> tuple[ParquetStore, list[Path]]:
    store = ParquetStore(root)
    table = real_trades()
    for lo, hi in SLICES:
        assert store.write("trades", "BTCUSDT", table.slice(lo, hi - lo)) == hi - lo
    files = sorted(store.dataset_dir("trades").rglob("*.parquet"))
    assert len(files) == 3
    return store, files


def truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def ids_of(path: Path) -> list[int]:
    ids: list[int] = pq.read_table(path, columns=["trade_id"])["trade_id"].to_pylist()
    return ids


def quarantined_count() -> float:
    return float(metrics.STORE_FILES_QUARANTINED.labels(dataset="trades")._value.get())


def _root_app(data_dir: Path, config_dir: Path) -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _boot(ctx: typer.Context) -> None:
        ctx.obj = bootstrap(load_settings(config_dir=config_dir, env_file=None, data_dir=data_dir))

    root.add_typer(data_cli.data_app, name="data")
    return root


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(victim=st.sampled_from([0, 1, 2]), cut=st.floats(0.0, 0.999))
def test_any_truncation_of_a_file_is_quarantined_and_the_views_read_exactly_the_rest(
    victim: int, cut: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _, files = three_file_store(Path(tmp))
        bad = files[victim]
        want = sorted(i for f in files if f != bad for i in ids_of(f))
        truncate(bad, int(bad.stat().st_size * cut))

        catalog = Catalog(ParquetStore(Path(tmp)))  # a reader opening the store afterwards
        got = catalog.query("select trade_id from trades order by trade_id")
        assert got["trade_id"].to_pylist() == want
        assert sum(c.rows for c in catalog.store.coverage()) == len(want)

        moved = Path(tmp) / "_quarantine" / bad.relative_to(Path(tmp))
        assert moved.exists() and not bad.exists()  # moved aside, never deleted
        note = json.loads(moved.with_name(moved.name + ".note.json").read_text())
        assert note["original"] == str(bad.relative_to(Path(tmp)))
        assert "magic" in note["reason"].lower() or "size" in note["reason"].lower()
        assert [q.original for q in catalog.store.quarantined] == [bad]


def test_data_info_and_data_query_work_on_the_rest_and_say_what_was_quarantined(
    tmp_path: Path,
) -> None:
    (tmp_path / "configs").mkdir()
    _, files = three_file_store(tmp_path / "data" / "store")
    truncate(files[1], 100)
    app = _root_app(tmp_path / "data", tmp_path / "configs")
    before = quarantined_count()

    info = CliRunner().invoke(app, ["data", "info"], env=WIDE, catch_exceptions=False)
    assert info.exit_code == 0, info.output
    assert "1 corrupt file(s) quarantined" in info.output
    assert files[1].name in info.output
    assert "1,301" in info.stdout  # the other two files' rows
    assert quarantined_count() == before + 1
    # one error line in the log, naming the file
    errors = [ln for ln in info.stderr.splitlines() if "[error" in ln]
    assert len(errors) == 1 and f"path='{files[1]}'" in errors[0]
    assert "moved to quarantine" in errors[0]

    query = CliRunner().invoke(
        app, ["data", "query", "select count(*) as n from trades"], env=WIDE, catch_exceptions=False
    )
    assert query.exit_code == 0, query.output
    assert "1301" in query.output
    # the file is already aside: nothing new, but the user is reminded it is there
    assert "1 file(s) quarantined earlier" in query.output


def test_a_file_damaged_after_the_views_were_made_is_quarantined_and_the_query_rerun(
    tmp_path: Path,
) -> None:
    store, files = three_file_store(tmp_path)
    catalog = Catalog(store)
    assert catalog.query("select count(*) n from trades")["n"][0].as_py() == 2001
    truncate(files[2], 50)  # the disk changes under a running catalog
    n = catalog.query("select count(*) n from trades")["n"][0].as_py()
    assert n == 1400
    assert [q.original for q in store.quarantined] == [files[2]]


def test_scan_used_by_features_and_backtests_skips_only_the_corrupt_file(tmp_path: Path) -> None:
    _, files = three_file_store(tmp_path)
    truncate(files[0], 0)  # an empty file: a crash of a copy tool, a full disk
    got = ParquetStore(tmp_path).read("trades", "BTCUSDT")["trade_id"].to_pylist()
    assert got == sorted(ids_of(files[1]) + ids_of(files[2]))


def test_the_writer_quarantines_a_corrupt_file_in_its_partition_and_still_writes(
    tmp_path: Path,
) -> None:
    """The ingest writing into a partition with a truncated file: before, every write of that
    partition failed (and the embedded ingest died); now the file goes aside and the rows it
    held can be written again."""
    _, files = three_file_store(tmp_path)
    lost_ids = ids_of(files[1])
    truncate(files[1], 300)
    fresh = ParquetStore(tmp_path)  # a restarted ingest: keys are loaded from the files
    assert fresh.max_value("trades", "BTCUSDT", "trade_id") == max(ids_of(files[2]))
    assert fresh.write("trades", "BTCUSDT", real_trades()) == len(lost_ids)
    assert fresh.read("trades", "BTCUSDT")["trade_id"].to_pylist() == sorted(
        real_trades()["trade_id"].to_pylist()
    )
    assert len(fresh.quarantined) == 1


def test_data_check_finds_damage_inside_a_file_by_its_page_checksums(tmp_path: Path) -> None:
    """Damage the footer check cannot see (a page overwritten in the middle) is found by the
    deep check, because the store writes page checksums; `data check` exits 1 and says so."""
    (tmp_path / "configs").mkdir()
    _, files = three_file_store(tmp_path / "data" / "store")
    meta = pq.read_metadata(files[0])
    col = meta.row_group(0).column(0)  # trade_id's data page
    start = col.data_page_offset + 20  # inside the page body, past its header
    data = bytearray(files[0].read_bytes())
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    files[0].write_bytes(bytes(data))
    assert ParquetStore(tmp_path / "data" / "store").check(deep=False) == []

    app = _root_app(tmp_path / "data", tmp_path / "configs")
    res = CliRunner().invoke(app, ["data", "check"], env=WIDE, catch_exceptions=False)
    assert res.exit_code == 1, res.output
    assert "1 corrupt file(s) quarantined" in res.output and files[0].name in res.output
    again = CliRunner().invoke(app, ["data", "check"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    t = ParquetStore(tmp_path / "data" / "store").read("trades", "BTCUSDT")
    assert t.num_rows == 2001 - 700


def test_nothing_in_the_quarantine_is_read_or_deleted_by_later_writes(tmp_path: Path) -> None:
    store, files = three_file_store(tmp_path)
    truncate(files[0], 10)
    store.files("trades")  # quarantines it
    aside = store.quarantined[0].moved_to
    content = aside.read_bytes()
    store.write("trades", "BTCUSDT", real_trades())
    store.compact()
    ParquetStore(tmp_path)  # recovery on open leaves the quarantine alone
    assert aside.read_bytes() == content
    assert ParquetStore(tmp_path).read("trades", "BTCUSDT").num_rows == 2001
    assert len(ParquetStore(tmp_path).quarantine_contents()) == 1


@pytest.mark.parametrize("damage", ["truncate", "not_parquet"])
def test_a_corrupt_file_of_another_exchange_does_not_break_the_views(
    tmp_path: Path, damage: str
) -> None:
    ParquetStore(tmp_path, exchange="other").write("trades", "X", real_trades().slice(0, 10))
    three_file_store(tmp_path)
    (bad,) = (tmp_path / "exchange=other").rglob("*.parquet")
    if damage == "truncate":
        truncate(bad, 40)
    else:
        bad.write_bytes(b"PAR1 this is not parquet at all PAR1")
    got = Catalog(ParquetStore(tmp_path)).query("select count(*) n from trades")
    assert got["n"][0].as_py() == 2001
    assert isinstance(got, pa.Table)
