"""One model across symbols, on the bundled daily Bitstamp BTC and ETH bars.

The linear family keeps these fast; the pooling (per-symbol features and labels, the
(time, symbol) validation grid, the symbol columns, scoring per symbol) is the same for every
family, as training and scoring are `pipeline.train`'s and `pipeline.predict`'s.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.bars_io import read_bar_file
from tessera.config import BacktestConfig
from tessera.config.models import (
    FeatureConfig,
    FeatureSpec,
    LabelConfig,
    ModelConfig,
    ValidationConfig,
)
from tessera.models import Dataset, featureset, load_artifact, predict
from tessera.models.pooled import (
    SYMBOL,
    PooledDataset,
    model_symbols,
    pooled_dataset,
    pooled_scores,
    pooled_validation,
    train_pooled,
)
from tessera.models.training import make_splits
from tessera.strategies.cross_sectional import CrossSectional

BARS = Path(__file__).resolve().parents[2] / "samples" / "bars"
PAIR = ("BTCUSD", "ETHUSD")
HORIZON = 5
FEATURES = FeatureConfig(
    interval="1d",
    features=[
        FeatureSpec(name="log_return", params={"window": 1}),
        FeatureSpec(name="log_return", params={"window": 5}),
        FeatureSpec(name="log_return", params={"window": 20}),
        FeatureSpec(name="realized_vol", params={"window": 20}),
        FeatureSpec(name="rsi", params={"window": 14}),
        FeatureSpec(name="zscore", params={"window": 20}),
    ],
)
LABEL = LabelConfig(horizon=HORIZON)


def model_config(scheme: str = "walk_forward") -> ModelConfig:
    return ModelConfig(
        name="pooled",
        kind="linear",
        label=LABEL,
        validation=ValidationConfig(
            scheme=scheme,  # type: ignore[arg-type]
            n_splits=3,
            min_train_bars=300,
            embargo_bars=10,
        ),
    )


@pytest.fixture(scope="module")
def bars() -> dict[str, pl.DataFrame]:
    return {s: read_bar_file(BARS / f"bitstamp_{s}_1d.csv.gz") for s in (*PAIR, "LTCUSD")}


@pytest.fixture(scope="module")
def pair(bars: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {s: bars[s] for s in PAIR}


def test_each_symbols_rows_are_its_own_single_symbol_dataset(
    pair: dict[str, pl.DataFrame],
) -> None:
    """No feature window and no label reaches across symbols: a symbol's pooled rows are
    exactly the dataset its bars give alone."""
    pooled = pooled_dataset(pair, FEATURES, LABEL, symbol_feature=True)
    assert isinstance(pooled, PooledDataset) and pooled.symbols == PAIR
    assert pooled.feature_columns[-2:] == ["symbol_is_BTCUSD", "symbol_is_ETHUSD"]
    for symbol, frame in pair.items():
        alone = Dataset.from_frame(*featureset.build_dataset_frame(frame, FEATURES, LABEL))
        rows = pooled.frame.filter(pl.col(SYMBOL) == symbol)
        assert rows.select(alone.frame.columns).equals(alone.frame)
        assert rows[f"symbol_is_{symbol}"].to_list() == [1.0] * len(rows)
        other = next(s for s in PAIR if s != symbol)
        assert rows[f"symbol_is_{other}"].to_list() == [0.0] * len(rows)
    assert pooled.rows_total == len(pair["BTCUSD"]) + len(pair["ETHUSD"])
    times = pooled.frame["open_time"].dt.epoch("ns").to_numpy()
    assert (np.diff(times) >= 0).all()  # sorted by time, symbols interleaved
    assert (np.diff(pooled.start_positions()) > 0).all()


@pytest.mark.parametrize("scheme", ["walk_forward", "purged_kfold"])
def test_no_fold_trains_on_a_row_whose_label_overlaps_its_test_days_in_any_symbol(
    pair: dict[str, pl.DataFrame], scheme: str
) -> None:
    """Checked in real time, across symbols: a training row's [open, label end] never meets
    the span of the test fold, and (purged k-fold) none starts within the embargo after it."""
    pooled = pooled_dataset(pair, FEATURES, LABEL)
    config = pooled_validation(model_config(scheme), len(PAIR))
    start = pooled.frame["open_time"].dt.epoch("ns").to_numpy()
    end = pooled.frame["event_end"].dt.epoch("ns").to_numpy()
    day = 86_400 * 10**9
    splits = make_splits(pooled, config)
    assert len(splits) == 3
    for split in splits:
        lo, hi = start[split.test].min(), end[split.test].max()
        train_s, train_e = start[split.train], end[split.train]
        assert not ((train_s <= hi) & (train_e >= lo)).any()
        if scheme == "purged_kfold":
            embargo_end = hi + 10 * day  # 10 bars, whatever the number of symbols
            assert not ((train_s > hi) & (train_s <= embargo_end)).any()
        # both symbols are in the test folds that cover ETH's years
        tested = set(pooled.frame[SYMBOL].gather(split.test).to_list())
        assert tested == set(PAIR) or scheme == "purged_kfold"


def test_a_pooled_model_trains_on_two_real_symbols_and_scores_both(
    tmp_path: Path, bars: dict[str, pl.DataFrame], pair: dict[str, pl.DataFrame]
) -> None:
    result = train_pooled(
        pair, model_config(), features=FEATURES, symbol_feature=True, registry_dir=tmp_path
    )
    assert result.artifact is not None
    manifest = result.manifest
    assert manifest["data"]["rows_used"] == len(pooled_dataset(pair, FEATURES, LABEL))
    assert "pooled over BTCUSD" in manifest["data"]["source"]
    assert manifest["validation"]["min_train_bars"] == 600  # 300 bars, 2 rows a bar
    loaded = load_artifact(result.artifact)
    assert model_symbols(loaded) == list(PAIR)
    scores = pooled_scores("pooled", pair, tmp_path)
    for symbol, frame in pair.items():
        s = scores[symbol]
        assert len(s) == len(frame)
        # NaN exactly where a feature is still warming up (the first 20 bars), then scored
        assert np.isnan(s[:20]).all() and np.isfinite(s[20:]).all()
    # the symbol columns matter: the same bars scored as the other symbol score otherwise
    as_eth = pooled_scores(loaded, {"ETHUSD": pair["BTCUSD"]})["ETHUSD"]
    assert not np.allclose(as_eth[20:], scores["BTCUSD"][20:])
    with pytest.raises(ValueError, match="cannot score LTCUSD"):
        pooled_scores(loaded, {"LTCUSD": bars["LTCUSD"]})


def test_a_symbol_agnostic_pooled_model_scores_any_symbol_as_predict_does(
    tmp_path: Path, bars: dict[str, pl.DataFrame], pair: dict[str, pl.DataFrame]
) -> None:
    result = train_pooled(pair, model_config(), features=FEATURES, registry_dir=tmp_path)
    assert result.artifact is not None
    loaded = load_artifact(result.artifact)
    assert model_symbols(loaded) == []
    scores = pooled_scores(loaded, {"LTCUSD": bars["LTCUSD"]})  # a coin it never saw
    direct = predict(loaded, bars["LTCUSD"])["score"].fill_null(np.nan).to_numpy()
    np.testing.assert_array_equal(scores["LTCUSD"], direct)
    assert np.isfinite(scores["LTCUSD"]).sum() > 800


def test_pooled_scores_drive_a_cross_sectional_backtest(
    tmp_path: Path, pair: dict[str, pl.DataFrame]
) -> None:
    """The model -> strategy path: each series carries its pooled scores, and at every
    rebalance the strategy holds the symbol the model scored higher."""
    result = train_pooled(
        pair, model_config(), features=FEATURES, symbol_feature=True, registry_dir=tmp_path
    )
    assert result.artifact is not None
    scores = pooled_scores(load_artifact(result.artifact), pair)
    series = [
        BarSeries.from_frame(s, pair[s], interval="1d").with_predictions(scores[s]) for s in PAIR
    ]
    config = BacktestConfig(
        symbols=list(PAIR),
        interval="1d",
        quote_currency="USD",
        initial_cash=Decimal(100_000),
        fill_at="close",
    )
    strategy = CrossSectional(list(PAIR), score="model", k=1)
    run = BacktestEngine(config).run(series, [strategy])
    by_time = {
        s.symbol: dict(zip(s.close_time.tolist(), scores[s.symbol].tolist(), strict=True))
        for s in series
    }
    decided = [r for r in strategy.rebalances if r.chosen]
    assert len(decided) > 1_000
    for r in decided:
        scored = {s: v[r.time] for s, v in by_time.items() if np.isfinite(v.get(r.time, np.nan))}
        assert r.chosen == (max(scored, key=lambda s: (scored[s], s)),) or (
            len(scored) == 2 and scored["BTCUSD"] == scored["ETHUSD"]
        )
    assert {rec.fill.symbol for rec in run.fills} == set(PAIR)
