"""The perpetual backtest reads the mark and the funding from the store when its bars come
from there: the bundled real XRP/USDT USDⓈ-M archives (samples/binance-usdm/archives, the
freqtrade files re-laid in Binance's layout: samples/SOURCES.md) imported into a tmp store give
the same backtest as the freqtrade files they were made from, and the output names the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tessera.backtest import BarSeries
from tessera.backtest.engine import BacktestEngine
from tessera.backtest.perp_inputs import (
    PerpInputError,
    PerpInputs,
    StoreSeries,
    load_perp_inputs,
)
from tessera.backtest.results import BacktestResult
from tessera.config.models import BacktestConfig
from tessera.data.barfile import read_bar_file
from tessera.data.bulk import import_bulk_file
from tessera.data.futures_files import SAMPLE_FUNDING, SAMPLE_FUTURES, SAMPLE_MARK_1H
from tessera.data.store import ParquetStore
from tessera.strategies.builtin import SmaCross

REPO = Path(__file__).resolve().parents[2]
UM = REPO / "samples" / "binance-usdm" / "archives" / "data" / "futures" / "um"
KLINES_1H = UM / "monthly" / "klines" / "XRPUSDT" / "1h" / "XRPUSDT-1h-2021-11.zip"
MARK_1H = UM / "monthly" / "markPriceKlines" / "XRPUSDT" / "1h" / "XRPUSDT-1h-2021-11.zip"
FUNDING = sorted((UM / "monthly" / "fundingRate" / "XRPUSDT").glob("XRPUSDT-fundingRate-*"))
BARS_1H = SAMPLE_FUTURES / "XRP_USDT_USDT-1h-futures.feather"
SYM = "XRPUSDT"
USDM = "binance-usdm"


def imported(root: Path, *paths: Path) -> ParquetStore:
    store = ParquetStore(root)
    for path in paths:
        if path.suffix in (".zip", ".csv"):
            import_bulk_file(store, path)
    return store


def store_bars(store: ParquetStore) -> BarSeries:
    frame = (
        store.venue(USDM)
        .scan("klines", SYM)
        .filter(pl.col("interval") == "1h")
        .drop("symbol", "date", "exchange", strict=False)
        .collect()
    )
    return BarSeries.from_frame(SYM, frame, "1h")


def run(series: BarSeries, inputs: PerpInputs) -> BacktestResult:
    config = BacktestConfig.model_validate({"initial_cash": "10000", "perp": {"leverage": 3}})
    strat = SmaCross([SYM], fast=5, slow=20, qty=Decimal(2000))
    return BacktestEngine(config, None, perp=inputs).run([series], [strat])


def test_a_backtest_from_the_store_equals_the_one_from_the_freqtrade_files(
    tmp_path: Path,
) -> None:
    store = imported(tmp_path / "store", KLINES_1H, MARK_1H, *FUNDING)
    bars = store_bars(store)
    # the same candles as the freqtrade file, but for its float noise: 3 of its 100 closes
    # read 1.0854300000000001 where the archive (and the store) hold 1.08543
    feather = BarSeries.from_frame(SYM, read_bar_file(BARS_1H), "1h")
    assert np.allclose(bars.close, feather.close, rtol=1e-15, atol=0)
    # so both runs trade the store's bars; only the mark and funding source differs
    stored = load_perp_inputs(
        [bars],
        mark_files={SYM: None},
        funding_files={SYM: None},
        stores={SYM: StoreSeries(store, USDM, "1h")},
    )
    files = load_perp_inputs(
        [bars], mark_files={SYM: SAMPLE_MARK_1H}, funding_files={SYM: SAMPLE_FUNDING}
    )
    s, f = stored.symbols[SYM], files.symbols[SYM]
    assert s.mark_source == "store binance-usdm XRPUSDT 1h mark_klines for 57 of 100 bars, " + (
        "the trade price for 43"
    )
    assert s.funding_source.startswith("store binance-usdm XRPUSDT funding_rates: 10 funding ")
    assert s.mark_bars == f.mark_bars == 57
    # the freqtrade mark file has the same float noise (1.0854300000000001): equal to 1e-15
    for col in ("mark_open", "mark_high", "mark_low", "mark_close"):
        assert np.allclose(getattr(s, col), getattr(f, col), rtol=1e-15, atol=0), col
    # the funding times, rates and marks are the same (the store's exact decimals)
    assert s.funding.due == f.funding.due
    a, b = run(bars, stored), run(bars, files)
    assert len(a.fills) >= 2
    assert [(r.fill.ts_event, r.fill.side, r.fill.qty, r.fill.price) for r in a.fills] == [
        (r.fill.ts_event, r.fill.side, r.fill.qty, r.fill.price) for r in b.fills
    ]
    assert a.perp is not None and b.perp is not None
    assert a.perp.funding_total == b.perp.funding_total != 0
    assert a.perp.liquidations == b.perp.liquidations
    assert np.allclose(a.equity, b.equity, rtol=1e-12, atol=0)
    assert abs(a.final_equity - b.final_equity) < Decimal("1e-9")


def test_a_store_without_funding_rows_is_refused_naming_the_store(tmp_path: Path) -> None:
    store = imported(tmp_path / "store", KLINES_1H, MARK_1H)
    with pytest.raises(PerpInputError, match=r"no funding_rates of XRPUSDT on venue"):
        load_perp_inputs(
            [store_bars(store)],
            mark_files={SYM: None},
            funding_files={SYM: None},
            stores={SYM: StoreSeries(store, USDM, "1h")},
        )


def test_the_backtest_command_reads_mark_and_funding_from_the_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "300"
    imported(tmp_path / "data" / "store", KLINES_1H, MARK_1H, *FUNDING)
    res = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "backtest", "--no-baselines",
         "--symbol", "binance-usdm:XRPUSDT", "--timeframe", "1h", "--strategy", "sma_cross",
         "-p", "fast=5", "-p", "slow=20", "--out", str(tmp_path / "out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    text = " ".join(res.stdout.split())
    assert "XRPUSDT mark: store binance-usdm XRPUSDT 1h mark_klines for 57 of 100 bars" in text
    assert "XRPUSDT funding: store binance-usdm XRPUSDT funding_rates: 10 funding times" in text
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["perp"]["sources"][0].startswith("XRPUSDT mark: store binance-usdm XRPUSDT 1h")
