"""`make demo` runs `python -m tessera.demo`: the README's first command must keep working."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_demo_runs_end_to_end_on_the_bundled_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(TESSERA_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    out = tmp_path / "demo"
    res = subprocess.run(
        # a 15 s paper stage (750 replayed bars) instead of the default minute
        [sys.executable, "-m", "tessera.demo", "--out", str(out), "--paper-seconds", "15"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for stage in ("live ingest", "sweep", "model", "backtest model_signal", "backtest buy & hold"):
        assert stage in res.stdout, stage
    report = (out / "backtest_report.html").read_text()
    # equity + drawdown, the symbol's price and PnL, the trade PnL distribution (the returns
    # calendar is an HTML table)
    assert report.count('class="plotly-graph-div"') == 3
    assert sorted(p.name for p in (out / "models" / "demo-lightgbm").iterdir()) == [
        "v0001",
        "v0002",
    ]
    _check_paper_stage(out, res.stdout)


def _check_paper_stage(out: Path, stdout: str) -> None:
    """The bot traded the replayed held-out bars: its ledger is consistent and summarized."""
    from tessera.execution.orders import OrderStatus
    from tessera.execution.persistence import ExecutionStore

    db = out / "paper.db"
    assert db.exists()
    store = ExecutionStore(f"sqlite:///{db}")
    try:
        orders = store.list_orders(limit=100_000)
        fills = store.all_fills()
        positions = store.positions()
    finally:
        store.close()
    assert orders, "the paper bot sent no order"
    assert fills, "no paper fill"
    by_id = {o.client_order_id: o for o in orders}
    filled_qty: dict[str, Decimal] = {}
    for f in fills:
        assert f.client_order_id in by_id, f"fill {f.trade_id} of an unknown order"
        assert f.strategy == by_id[f.client_order_id].strategy
        filled_qty[f.client_order_id] = filled_qty.get(f.client_order_id, Decimal(0)) + f.qty
    for o in orders:
        assert o.strategy in ("model_signal", "sma_cross")
        if o.status is OrderStatus.FILLED:
            assert filled_qty.get(o.client_order_id) == o.qty == o.filled_qty, o
        assert filled_qty.get(o.client_order_id, Decimal(0)) == o.filled_qty, o
    # positions are the sum of each strategy's fills
    for p in positions:
        net = sum((f.qty * f.side.sign for f in fills if f.strategy == p.strategy), Decimal(0))
        assert p.qty == net, p
    row = re.search(r"paper orders\s*│\s*(\d+) orders \(([^)]*)\), (\d+) fills", stdout)
    assert row, stdout[-4000:]
    assert int(row[1]) == len(orders) and int(row[3]) == len(fills)
    for key in ("paper trading", "paper model_signal", "paper sma_cross", "paper equity"):
        assert key in stdout, key
    assert str(db) in stdout and str(out / "demo.log") in stdout
    assert (out / "demo.log").read_text().count("bot stopped") == 1
