"""`tessera optimize` of a model-driven strategy, end to end through the real entry point.

The bars are a real slice of the bundled one-minute BTC month; the model is the tiny LightGBM
of tests/optimize/test_wfo.py and tests/backtest/test_walkforward.py (30 trees, 2 folds), so
training one takes a second. A registered model's scores give a study whose chosen point is the
very run ``tessera backtest --model NAME`` makes of it; a walk-forward retrains the model per
window on the bars before it; model_signal on bars without scores is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from optimize_cli_helpers import tessera

from tessera.config.models import LightGBMParams, ModelConfig, ValidationConfig
from tessera.models.registry import ModelRegistry

WEEK = ["--timerange", "20220101-20220107"]  # 8,640 one-minute bars: 2 rolling windows fit
SMALL = ModelConfig(
    name="opt-small",
    lightgbm=LightGBMParams(n_estimators=30, num_leaves=15),
    validation=ValidationConfig(n_splits=2, min_train_bars=2_000),
)


@pytest.fixture
def model_yaml(env: Path) -> Path:
    path = env / "model.yaml"
    path.write_text(yaml.safe_dump(SMALL.model_dump(mode="json", exclude_none=True)))
    return path


def test_a_registered_models_chosen_point_reproduces_in_tessera_backtest_model(
    env: Path, model_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = tessera(
        capsys, "train", "-c", str(model_yaml), "--timerange", "20220101-20220104"
    )
    assert code == 0, err[-3000:]
    code, out, err = tessera(
        capsys, "optimize", "-s", "model_signal", "--model", "opt-small", "-n", "6",
        "--seed", "5", "--mc-runs", "50", "--json", *WEEK,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    doc: dict[str, Any] = json.loads(out)
    best = doc["best"]
    # the strategy's declared space: its long threshold, on a forward-return score's scale
    assert doc["space"] == {"long_threshold": "float -0.0005..0.0005"}
    assert doc["model"] == {"model": "opt-small"}
    assert "scores: opt-small on" in " ".join(err.split())
    assert best["metrics"]["trades"] > 0  # the scores moved the strategy

    params = [arg for k, v in best["params"].items() for arg in ("-p", f"{k}={v!r}")]
    code, out, err = tessera(
        capsys, "backtest", "--model", "opt-small", *params, "--no-baselines", "--json",
        "--out", str(env / "bt"), *WEEK,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    metrics = json.loads(out)["metrics"]
    # the same scores, engine, risk, fees and fills: every figure equal, not merely close
    assert metrics == doc["best_metrics"] == best["metrics"]
    assert metrics["sharpe"] == best["values"][0]


def test_a_walk_forward_retrains_the_model_per_window_on_the_bars_before_it(
    env: Path, model_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = tessera(
        capsys, "optimize", "-s", "model_signal", "--walk-forward", "2", "--model-config",
        str(model_yaml), "-n", "4", "--seed", "3", "--mc-runs", "50", "--json", *WEEK,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    doc: dict[str, Any] = json.loads(out)
    text = " ".join(err.split())
    assert "the walk-forward runs first (the model retrained per window)" in text
    windows = doc["walk_forward"]["windows"]
    models = [w["model"] for w in windows]
    # one model per window, versions of one name that says which run made them
    assert len(models) == 2 and models[0].endswith(":v0001") and models[1].endswith(":v0002")
    name = models[0].split(":")[0]
    assert name.startswith("opt-small-wfo-") and doc["run_id"] in name
    registry = ModelRegistry(env / "data" / "models")
    for w, bars_before in zip(windows, (5_184, 6_912), strict=True):
        trained = registry.resolve_ref(w["model"]).manifest()["data"]
        assert trained["bars"] == bars_before  # every bar before its out-of-sample start only
        assert w["oos_metrics"]["trades"] > 0
    # the whole-period study ran on the windows' out-of-sample bars only (3,456 of the 8,640),
    # scored by their own windows' models
    assert "whole-period scores" in doc["model"]
    assert doc["best_metrics"]["bars"] == 8_640 - 5_184
    assert doc["best_metrics"]["trades"] > 0


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        ([], "model_signal trades a model's scores and these bars carry none: give --model NAME"),
        (["--model-config", "m.yaml"], "retrained per window with --walk-forward N only"),
        (["--model", "nope"], "--model nope:"),
    ],
)
def test_model_signal_without_scores_exits_2_with_one_sentence(
    env: Path, capsys: pytest.CaptureFixture[str], args: list[str], sentence: str
) -> None:
    code, out, err = tessera(capsys, "optimize", "-s", "model_signal", "-n", "2", *args, *WEEK)
    assert code == 2, err[-2000:]
    assert sentence in " ".join(err.split()), err
    assert "Traceback" not in err + out
