"""`tessera features list|build|check` as a user runs them (a real process each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LEAKY_PLUGIN = '''
import polars as pl
from tessera.features import register_feature
from tessera.features.library import ZScore


@register_feature("future_peek")
class FuturePeek(ZScore):
    """Reads the next bar's close: the check must catch it."""

    def expressions(self):
        return [pl.col("close").shift(-1) / pl.col("close") - 1]
'''


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATA_DIR=str(tmp_path / "data"), COLUMNS="200", PYTHONPATH=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "--config-dir", str(tmp_path / "cfg"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )


def test_list_shows_every_builtin(tmp_path: Path) -> None:
    res = run(tmp_path, "features", "list")
    assert res.returncode == 0, res.stderr
    for name in ("rsi", "macd_12_26_9_line", "taker_imbalance", "spread_bps", "weekday"):
        assert name in res.stdout


def test_build_twice_reuses_the_set(tmp_path: Path) -> None:
    first = run(tmp_path, "features", "build")
    assert first.returncode == 0, first.stderr
    assert "built feature set" in first.stdout and "45,031 bars x 16 features" in first.stdout
    second = run(tmp_path, "features", "build")
    assert second.returncode == 0 and "reused feature set" in second.stdout
    sets = list((tmp_path / "data" / "features").glob("*.parquet"))
    assert len(sets) == 1


@pytest.mark.slow
def test_check_all_passes_and_a_leaky_plugin_fails(tmp_path: Path) -> None:
    ok = run(tmp_path, "features", "check", "--all", "--cuts", "4")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "LEAKS" not in ok.stdout and "skipped" in ok.stdout  # book/flow need other bars
    (tmp_path / "my_features.py").write_text(LEAKY_PLUGIN)
    spec = tmp_path / "leaky.yaml"
    spec.write_text("features:\n- name: rsi\n- name: future_peek\n  params: {window: 5}\n")
    bad = run(tmp_path, "features", "check", "-f", str(spec), "--plugin", "my_features")
    assert bad.returncode == 1
    assert "LEAKS" in bad.stdout and "1 feature(s) failed" in bad.stdout


def test_unknown_feature_is_a_config_error(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("features:\n- name: rsii\n")
    res = run(tmp_path, "features", "build", "-f", str(spec))
    assert res.returncode == 2
    assert "unknown feature 'rsii'" in res.stderr
