"""Backtests on model scores: every walk-forward score comes from a model trained on the past.

On the real bundled bars. The leak test is direct: changing every bar from a window's start on
must not change the model trained for that window (same training-data digest, same model
bytes), while it does change the scores inside the window (they depend on those bars).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
from tessera.backtest.walkforward import scores_from_model, walk_forward_scores
from tessera.config.models import FeatureConfig, LightGBMParams, ModelConfig, ValidationConfig
from tessera.models.registry import ModelRegistry

SMALL = ModelConfig(
    name="wf",
    lightgbm=LightGBMParams(n_estimators=30, num_leaves=15),
    validation=ValidationConfig(n_splits=2, min_train_bars=2_000),
)


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return read_bar_file(SAMPLE_BARS).head(12_000)


def _model_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((path / "model").rglob("*")) if p.is_file())


def test_every_score_comes_from_a_model_trained_before_it(
    bars: pl.DataFrame, tmp_path: Path
) -> None:
    scores, windows = walk_forward_scores(
        bars, SMALL, FeatureConfig(), tmp_path, windows=3, min_train_bars=6_000, seed=3
    )
    assert np.isnan(scores[:6_000]).all()
    assert np.isfinite(scores[6_000:]).all()
    reg = ModelRegistry(tmp_path)
    assert [w.model for w in windows] == ["wf:v0001", "wf:v0002", "wf:v0003"]
    times = bars["open_time"]
    for w in windows:
        man = reg.resolve_ref(w.model).manifest()
        # the model's data ends before the window; its last label settles before the window
        assert man["data"]["last_bar"] < times[w.test_start].isoformat()
        assert man["data"]["last_row"] <= times[w.test_start - 1 - 15].isoformat()
        assert man["data"]["bars"] == w.test_start
        # the window's scores are that model's scores
        again = scores_from_model(w.model, bars.slice(0, w.test_end), tmp_path)
        np.testing.assert_array_equal(again[w.test_start :], scores[w.test_start : w.test_end])


def test_the_future_cannot_change_a_window_model(bars: pl.DataFrame, tmp_path: Path) -> None:
    cut = 8_000
    rng = np.random.default_rng(0)
    scale = pl.Series(np.exp(np.cumsum(rng.normal(0, 0.01, len(bars) - cut))))
    changed = pl.concat(
        [
            bars.head(cut),
            bars.slice(cut).with_columns(
                *(pl.col(c) * scale for c in ("open", "high", "low", "close")),
                pl.col("volume") * 3.0,
            ),
        ]
    )
    kw = {"windows": 1, "min_train_bars": cut, "seed": 3}
    a_scores, (a,) = walk_forward_scores(bars, SMALL, FeatureConfig(), tmp_path / "a", **kw)
    b_scores, (b,) = walk_forward_scores(changed, SMALL, FeatureConfig(), tmp_path / "b", **kw)
    man_a = ModelRegistry(tmp_path / "a").resolve_ref(a.model)
    man_b = ModelRegistry(tmp_path / "b").resolve_ref(b.model)
    assert man_a.manifest()["data"]["sha256"] == man_b.manifest()["data"]["sha256"]
    assert _model_bytes(man_a.path) == _model_bytes(man_b.path)
    assert not np.allclose(a_scores[cut + 100 :], b_scores[cut + 100 :])


@pytest.mark.slow
def test_cli_walk_forward_and_registered_model_backtests(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    cfg = tmp_path / "model.yaml"
    cfg.write_text(yaml.safe_dump(SMALL.model_dump(mode="json", exclude_none=True)))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tessera.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )

    wf = run("backtest", "--walk-forward", "2", "--model-config", str(cfg),
             "--report", str(tmp_path / "wf.html"))  # fmt: skip
    assert wf.returncode == 0, wf.stderr[-3000:]
    assert "retrained on the past only" in wf.stdout and "model_signal" in wf.stdout
    assert "35,031 bars" in wf.stdout  # the scored windows only: 45,031 - 10,000
    assert "walk-forward" in (tmp_path / "wf.html").read_text()

    trained = run("train", "-c", str(cfg))
    assert trained.returncode == 0, trained.stderr[-3000:]
    bt = run("backtest", "--model", "wf", "-p", "long_threshold=0.0002")
    assert bt.returncode == 0, bt.stderr[-3000:]
    assert "scores: wf on" in bt.stdout and "model_signal" in bt.stdout
    missing = run("backtest", "--model", "nope")
    assert missing.returncode == 2 and "nope" in missing.stderr
