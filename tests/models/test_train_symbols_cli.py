"""`tessera train` and `tessera predict` over several symbols: one pooled model, each symbol
scored; on the bundled real daily Bitstamp bars."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import typer
import yaml
from typer.testing import CliRunner

from tessera.bootstrap import bootstrap
from tessera.config import ConfigError, load_settings
from tessera.models import cli as models_cli

REPO = Path(__file__).resolve().parents[2]
DAILY = [REPO / "samples" / "bars" / f"bitstamp_{s}USD_1d.csv.gz" for s in ("BTC", "ETH")]
MODEL_YAML = {
    "name": "pooled_daily",
    "kind": "linear",
    "label": {"kind": "forward_return", "horizon": 5},
    "validation": {"scheme": "walk_forward", "n_splits": 2, "min_train_bars": 300},
}


def _root(data_dir: Path, config_dir: Path) -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _boot(ctx: typer.Context) -> None:
        ctx.obj = bootstrap(load_settings(config_dir=config_dir, env_file=None, data_dir=data_dir))

    root.command("train")(models_cli.train)
    root.command("predict")(models_cli.predict)
    return root


def test_train_over_two_symbols_makes_one_pooled_model_that_scores_each(tmp_path: Path) -> None:
    cfg = tmp_path / "model.yaml"
    cfg.write_text(yaml.safe_dump(MODEL_YAML))
    app = _root(tmp_path / "data", tmp_path / "configs")
    runner = CliRunner()
    bars = [a for p in DAILY for a in ("--bars", str(p))]
    trained = runner.invoke(
        app, ["train", "-c", str(cfg), *bars, "--timerange", "20180101-", "--symbol-feature"]
    )
    assert trained.exit_code == 0, trained.output
    assert "pooled over 2 symbols" in trained.output
    assert "BTCUSD (bitstamp, 1d)" in trained.output and "ETHUSD (bitstamp, 1d)" in trained.output
    out = tmp_path / "scores.parquet"
    scored = runner.invoke(
        app, ["predict", "-m", "pooled_daily", *bars, "--timerange", "20190101-", "--out", str(out)]
    )
    assert scored.exit_code == 0, scored.output
    frame = pl.read_parquet(out)
    assert set(frame["symbol"].unique()) == {"BTCUSD", "ETHUSD"}
    assert frame["score"].drop_nulls().len() > 0
    # a model with the symbol as a feature refuses a symbol it was not trained on
    ltc = REPO / "samples" / "bars" / "bitstamp_LTCUSD_1d.csv.gz"
    refused = runner.invoke(app, ["predict", "-m", "pooled_daily", "--bars", str(ltc)])
    # (the root command turns a ConfigError into one paragraph and exit 2)
    assert isinstance(refused.exception, ConfigError)
    assert "cannot score LTCUSD" in str(refused.exception)


def test_symbol_feature_with_one_symbol_is_refused(tmp_path: Path) -> None:
    app = _root(tmp_path / "data", tmp_path / "configs")
    res = CliRunner().invoke(app, ["train", "--bars", str(DAILY[0]), "--symbol-feature"])
    assert isinstance(res.exception, ConfigError)
    assert "--symbol-feature needs several symbols" in str(res.exception)
