"""Shared by the live-bot tests: the bot's environment and the ledger check against the
simulator's own books."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tessera.execution.orders import OrderSide, OrderStatus
from tessera.execution.persistence import ExecutionStore
from tessera.sim.server import ExchangeSimulator
from tessera.sim.trading import TradingConfig, TradingEngine

KEY, SECRET = "e2e-key-7f3a", "e2e-secret-b81c9d"
TESSERA = str(Path(sys.executable).with_name("tessera"))


def bot_env(tmp_path: Path, db: str, sim: ExchangeSimulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        TESSERA_DATA_DIR=str(tmp_path / "data"),
        TESSERA_DATABASE_URL=db,
        TESSERA_EXCHANGE__REST_URL=sim.rest_url,
        TESSERA_EXCHANGE__WS_URL=sim.ws_url,
        TESSERA_DATA__REST_URL=sim.rest_url,
        TESSERA_DATA__WS_URL=sim.ws_url,
        TESSERA_EXCHANGE__API_KEY=KEY,
        TESSERA_EXCHANGE__API_SECRET=SECRET,
    )
    env.update(extra)
    return env


def assets_of(engine: TradingEngine, symbol: str) -> tuple[str, str]:
    """(base, quote) of ``symbol`` as the simulator's exchangeInfo declares them."""
    for info in engine.sim.market.exchange_info["symbols"]:
        if info["symbol"] == symbol:
            return str(info["baseAsset"]), str(info["quoteAsset"])
    raise AssertionError(f"{symbol} is not in the simulator's exchangeInfo")


def assert_ledger_matches(store: ExecutionStore, engine: TradingEngine) -> dict[str, Any]:
    """Our database against the simulator's ledger, unit for unit: every order, every fill
    (by trade id), and every asset's balance change; each fill moves its own symbol's base and
    quote asset, as the exchange books it."""
    ours = {o.client_order_id: o for o in store.list_orders(limit=1_000_000)}
    theirs = {o.client_order_id: o for o in engine.orders.values()}
    assert theirs, "the bot placed no order"
    assert set(theirs) <= set(ours), (
        f"orders on the exchange we do not know: {set(theirs) - set(ours)}"
    )
    for cid, o in ours.items():
        ex = theirs.get(cid)
        if ex is None:  # never reached the exchange: must be closed, never left open
            assert o.status in (OrderStatus.CANCELED, OrderStatus.REJECTED), (cid, o.status)
            continue
        assert o.filled_qty == ex.executed_qty, (cid, o.filled_qty, ex.executed_qty)
        assert o.status.value == {"NEW": "ACCEPTED"}.get(ex.status, ex.status), (
            cid,
            o.status,
            ex.status,
        )
    signal_ids = [o.signal_id for o in ours.values() if o.signal_id]
    assert len(signal_ids) == len(set(signal_ids)), "a signal produced two orders"

    fills = {f.trade_id: f for f in store.all_fills()}
    sim_fills = {str(f.trade_id): f for f in engine.fills}
    assert set(fills) == set(sim_fills), (
        f"fills differ from the exchange's trades: ours only {set(fills) - set(sim_fills)}, "
        f"the exchange's only {set(sim_fills) - set(fills)}"
    )
    for tid, f in fills.items():
        sf = sim_fills[tid]
        assert (f.price, f.qty, f.fee, f.fee_asset) == (
            sf.price,
            sf.qty,
            sf.commission,
            sf.commission_asset,
        ), tid
        assert f.client_order_id == sf.order.client_order_id

    # balances: what our fills explain is exactly what the exchange holds, asset by asset
    start = {a: Decimal(v) for a, v in TradingConfig().balances.items()}
    delta: dict[str, Decimal] = defaultdict(Decimal)
    held_by_symbol: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills.values():
        base, quote = assets_of(engine, f.symbol)
        sign = 1 if f.side is OrderSide.BUY else -1
        delta[base] += sign * f.qty
        delta[quote] -= sign * f.qty * f.price
        delta[f.fee_asset] -= f.fee
        held_by_symbol[f.symbol] += sign * f.qty - (f.fee if f.fee_asset == base else 0)
    for asset in set(delta) | set(start):
        held = engine.free[asset] + engine.locked[asset]
        expected = start.get(asset, Decimal(0)) + delta[asset]
        assert held == expected, (asset, held, expected)
    positions: dict[str, Decimal] = defaultdict(Decimal)
    for p in store.positions():
        positions[p.symbol] += p.qty
    for symbol in set(positions) | set(held_by_symbol):
        # base-asset commissions included: the positions add up to what the account holds
        assert positions[symbol] == held_by_symbol[symbol], (
            symbol,
            positions[symbol],
            held_by_symbol[symbol],
        )
    by_strategy: dict[str, int] = defaultdict(int)
    for o in ours.values():
        by_strategy[o.strategy] += 1
    return {"orders": len(ours), "fills": len(fills), "by_strategy": dict(by_strategy)}


def register_small_model(root: Path, name: str) -> Path:
    """A registered LightGBM model on short-warm-up features of the real 1m bars, so that
    ``model_signal`` scores the bot's 1s bars within a few bars of the start. The tests check
    the plumbing (model -> strategy -> signal -> risk -> order), not an edge."""
    from tessera.backtest.bars_io import SAMPLE_BARS, read_bar_file
    from tessera.config.models import (
        FeatureConfig,
        FeatureSpec,
        LabelConfig,
        LightGBMParams,
        ModelConfig,
        ValidationConfig,
    )
    from tessera.models import train

    bars = read_bar_file(SAMPLE_BARS).head(12_000)
    features = FeatureConfig(
        features=[
            FeatureSpec(name="log_return", params={"window": 1}),
            FeatureSpec(name="log_return", params={"window": 5}),
            FeatureSpec(name="rsi", params={"window": 14}),
            FeatureSpec(name="zscore", params={"window": 20}),
        ]
    )
    config = ModelConfig(
        name=name,
        kind="lightgbm",
        label=LabelConfig(horizon=5),
        validation=ValidationConfig(n_splits=2, min_train_bars=4_000, embargo_bars=5),
        lightgbm=LightGBMParams(n_estimators=40, min_child_samples=50),
    )
    train(bars, config, features=features, registry_dir=root)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 30.0,
    detail: Callable[[], object] = lambda: "",
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {detail()}")
