"""`tessera train / predict / models list|show` end to end on the real bars, through the
feature library, mounted on a root app the way the lead mounts them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import typer
import yaml
from typer.testing import CliRunner

from tessera.bootstrap import bootstrap
from tessera.config import ConfigError, load_settings
from tessera.models import cli as models_cli
from tessera.models import featureset, load_artifact
from tessera.models.registry import ModelRegistry

# Small enough for a test, the default feature set and the real 45k bars.
MODEL_YAML = {
    "name": "btc_fast",
    "kind": "lightgbm",
    "label": {"kind": "forward_return", "horizon": 15},
    "validation": {"scheme": "walk_forward", "n_splits": 3, "min_train_bars": 10_000},
    "lightgbm": {"n_estimators": 30, "num_leaves": 15},
}


def _root_app(data_dir: Path, config_dir: Path) -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _boot(ctx: typer.Context) -> None:
        ctx.obj = bootstrap(load_settings(config_dir=config_dir, env_file=None, data_dir=data_dir))

    root.command("train")(models_cli.train)
    root.command("predict")(models_cli.predict)
    root.add_typer(models_cli.models_app, name="models")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One `tessera train` run, shared by the tests below (it is the slow part)."""
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "configs").mkdir()
    model_yaml = tmp / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(MODEL_YAML))
    app = _root_app(tmp / "data", tmp / "configs")
    res = CliRunner().invoke(app, ["train", "-c", str(model_yaml)], catch_exceptions=False)
    return {"app": app, "tmp": tmp, "output": res.output, "code": res.exit_code}


def _run(trained: dict[str, object], *args: str) -> typer.testing.Result:
    app = trained["app"]
    assert isinstance(app, typer.Typer)
    return CliRunner().invoke(app, list(args))


def test_train_prints_folds_against_the_baseline_and_the_artifact(
    trained: dict[str, object],
) -> None:
    out = str(trained["output"])
    assert trained["code"] == 0, out
    assert "lightgbm vs linear baseline" in out
    assert "baseline" in out and "rank IC" in out and "all" in out
    path = Path(out.split("artifact:")[1].split()[0])
    tmp = trained["tmp"]
    assert isinstance(tmp, Path)
    assert path == tmp / "data" / "models" / "btc_fast" / "v0001"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["data"]["bars"] == 45_031
    assert manifest["validation"]["n_splits"] == 3
    assert manifest["features"]["code_hash"] == featureset.code_hash()
    assert len(manifest["metrics"]["folds"]) == 8  # 3 folds + pooled, model and baseline
    assert (path / "model" / "lightgbm.txt").is_file() and (path / "features.json").is_file()


def test_models_list_and_show(trained: dict[str, object]) -> None:
    listing = _run(trained, "models", "list")
    assert listing.exit_code == 0 and "btc_fast" in listing.output and "v0001" in listing.output
    show = _run(trained, "models", "show", "btc_fast")
    assert show.exit_code == 0, show.output
    assert "feature code hash" in show.output and "Out-of-sample fold metrics" in show.output
    raw = _run(trained, "models", "show", "btc_fast", "v0001", "--json")
    assert json.loads(raw.output)["version"] == "v0001"
    missing = _run(trained, "models", "show", "nope")
    assert isinstance(missing.exception, ConfigError) and "no model named" in str(missing.exception)


def test_predict_recomputes_the_features_and_scores_every_ready_bar(
    trained: dict[str, object],
) -> None:
    tmp = trained["tmp"]
    assert isinstance(tmp, Path)
    res = _run(trained, "predict", "--model", "btc_fast:v0001", "--out", str(tmp / "p.parquet"))
    assert res.exit_code == 0, res.output
    preds = pl.read_parquet(tmp / "p.parquet")
    assert len(preds) == 45_031 and preds.columns == ["open_time", "score"]
    # The same scores as the artifact's model on features computed here independently.
    loaded = load_artifact(ModelRegistry(tmp / "data" / "models").resolve("btc_fast"))
    bars, _ = featureset.load_bars(None)
    spec = featureset.spec_from_document(loaded.manifest["features"]["spec"])
    x = featureset.compute_features(bars, spec).select(loaded.feature_columns).to_numpy()
    ready = np.isfinite(x).all(axis=1)
    assert preds["score"].is_not_null().to_numpy().tolist() == ready.tolist()
    assert np.array_equal(preds["score"].to_numpy()[ready], loaded.model.predict(x[ready]))


def test_predict_refuses_changed_feature_code_unless_allowed(trained: dict[str, object]) -> None:
    tmp = trained["tmp"]
    assert isinstance(tmp, Path)
    # Record a different code hash in a copy of the artifact: as if the feature code had
    # changed since training.
    reg = ModelRegistry(tmp / "data" / "models")
    src = reg.resolve("btc_fast").path

    def copy(target: Path) -> dict[str, Any]:
        shutil.copytree(src / "model", target / "model")
        shutil.copy(src / "features.json", target / "features.json")
        shutil.copy(src / "folds.parquet", target / "folds.parquet")
        man: dict[str, Any] = json.loads((src / "manifest.json").read_text())
        man["features"]["code_hash"] = "0" * 64
        return man

    drifted = reg.publish("btc_fast", copy)
    refused = _run(trained, "predict", "--model", f"btc_fast:{drifted.version}")
    assert isinstance(refused.exception, ConfigError)
    assert "feature code changed" in str(refused.exception)
    assert "--allow-feature-drift" in str(refused.exception)
    allowed = _run(
        trained, "predict", "--model", f"btc_fast:{drifted.version}", "--allow-feature-drift"
    )
    assert allowed.exit_code == 0, allowed.output
    assert "scored" in allowed.output


def test_predict_unknown_model_is_a_clear_error(trained: dict[str, object]) -> None:
    res = _run(trained, "predict", "--model", "btc_fast:v0099")
    assert isinstance(res.exception, ConfigError)
    assert "has no version v0099" in str(res.exception)
