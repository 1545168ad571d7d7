"""Materialised feature sets: keyed by (spec, data, code), reused exactly while unchanged."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tessera.config.models import FeatureConfig, FeatureSpec
from tessera.features import build_features
from tessera.features import store as store_mod
from tessera.features.store import FeatureSetStore


@pytest.fixture
def bars(real_bars: pl.DataFrame) -> pl.DataFrame:
    return real_bars.head(5000)


def test_build_then_reuse(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = FeatureSetStore(tmp_path)
    spec = FeatureConfig()
    built = store.get_or_build(bars, spec, source="sample")
    assert not built.reused and built.path.exists()
    assert_frame_equal(built.frame, build_features(bars, spec))
    again = store.get_or_build(bars, spec, source="sample")
    assert again.reused and again.key == built.key
    assert_frame_equal(again.frame, built.frame)
    man = again.manifest
    assert man["data"]["rows"] == 5000 and man["columns"] == built.frame.columns[1:]
    assert man["data"]["first"].startswith("2021-12-31 23:01")
    assert [m["key"] for m in store.list()] == [built.key]
    # the spec's cache location is not part of the key
    moved = FeatureConfig(output_dir=tmp_path / "elsewhere")
    assert store.key(moved, bars)[0] == built.key


def test_any_change_gives_a_new_key(
    tmp_path: Path, bars: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FeatureSetStore(tmp_path)
    spec = FeatureConfig()
    key = store.key(spec, bars)[0]
    other_spec = FeatureConfig(features=[FeatureSpec(name="rsi", params={"window": 15})])
    assert store.key(other_spec, bars)[0] != key
    assert store.key(spec, bars.head(4999))[0] != key  # range
    nudged = bars.with_columns(
        pl.when(pl.int_range(pl.len()) == 2500)
        .then(pl.col("close") + 1)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    assert store.key(spec, nudged)[0] != key  # one value
    monkeypatch.setattr(store_mod, "code_hash", lambda: "0" * 64)
    assert store.key(spec, bars)[0] != key  # code


def test_force_rebuilds_and_no_temp_files_remain(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = FeatureSetStore(tmp_path)
    spec = FeatureConfig(features=[FeatureSpec(name="atr")])
    first = store.get_or_build(bars, spec)
    second = store.get_or_build(bars, spec, force=True)
    assert not second.reused and second.key == first.key
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".parquet"]


def test_a_set_without_its_manifest_is_rebuilt(tmp_path: Path, bars: pl.DataFrame) -> None:
    """A crash between the data and the manifest rename leaves a set that is not trusted."""
    store = FeatureSetStore(tmp_path)
    spec = FeatureConfig(features=[FeatureSpec(name="rsi")])
    first = store.get_or_build(bars, spec)
    (tmp_path / f"{first.key}.json").unlink()
    assert store.list() == []
    assert not store.get_or_build(bars, spec).reused
