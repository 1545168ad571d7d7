"""Model training time and out-of-sample quality on the real bundled bars.

    .venv/bin/python bench/bench_models.py [--repeat 3] [--kinds lightgbm,mlp,linear]
        [--bars N] [--temporal] [--json out.json]

1. ``tessera.models.train`` with the default configs (LightGBM, forward-return label,
   walk-forward x5, default feature set) on the 45,031 real 1-minute BTC bars: wall time of
   features + 5 validation folds (model and baseline) + the final fit. The demo runs this.
2. The same for the MLP and the linear baseline as the model.
3. ``--temporal``: the experiment deciding whether a small temporal model (a GRU over the
   last 30 feature rows) earns a place next to the MLP: same folds, same features, same
   label, pooled out-of-sample IC / rank IC / MSE. It is only shipped if it beats the MLP.

Honest numbers: nothing here is tuned on the test folds (the configs are the defaults).

Timing on a shared machine: ``--repeat`` interleaved rounds (each kind once per round, the order
reversed every other round); each run prints as it ends, the summary gives the median and
min-max seconds (the ICs are the same every round: the seed is fixed). The feature code is
loaded once, untimed, before the first round; a kind's first run still includes importing its
library (LightGBM, torch). ``--bars N`` trains on
the first N bars only (a quick look; the figures in docs/benchmarks.md use all of them). Nothing
is written to disk but the optional ``--json`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from tessera.config.models import FeatureConfig, ModelConfig
from tessera.features import build_features
from tessera.models import train
from tessera.models.dataset import FORWARD_RETURN
from tessera.models.evaluation import information_coefficient, rank_information_coefficient
from tessera.models.featureset import load_bars
from tessera.models.mlp import MLPModel, deterministic_torch
from tessera.models.pipeline import as_dataset
from tessera.models.training import make_splits

SEED = 42


def bench_train(kind: str, max_bars: int | None = None) -> dict[str, Any]:
    bars, _ = load_bars(None)
    if max_bars:
        bars = bars.head(max_bars)
    cfg = ModelConfig.model_validate({"kind": kind})
    t0 = time.perf_counter()
    result = train(bars, cfg, features=FeatureConfig(), seed=SEED)
    elapsed = time.perf_counter() - t0
    fm = result.fold_metrics
    return {
        "kind": kind,
        "bars": len(bars),
        "rows": int(result.manifest["data"]["rows_used"]),
        "features": len(result.feature_columns),
        "seconds": round(elapsed, 2),
        "fold_seconds": [round(s, 2) for s in fm.filter(fm["model"] == "model")["seconds"]],
        "model": result.overall(),
        "baseline": result.overall("baseline"),
    }


# --- the temporal experiment ------------------------------------------------------------


def _windows(x: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """(len(rows), width, features): the ``width`` dataset rows ending at each row."""
    idx = rows[:, None] - np.arange(width - 1, -1, -1)[None, :]
    return x[np.clip(idx, 0, None)]


def fit_predict_gru(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, width: int = 30
) -> np.ndarray:
    """A one-layer GRU (32 units) over the last ``width`` standardised feature rows."""
    mean, std = x[train].mean(0), x[train].std(0)
    xs = ((x - mean) / np.where(std > 0, std, 1)).astype(np.float32)
    y_mean, y_std = y[train].mean(), y[train].std()
    with deterministic_torch(1) as torch, torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        gen = torch.Generator().manual_seed(SEED)

        class Net(torch.nn.Module):  # type: ignore[misc,name-defined]  # torch is imported lazily: Any
            def __init__(self) -> None:
                super().__init__()
                self.gru = torch.nn.GRU(x.shape[1], 32, batch_first=True)
                self.head = torch.nn.Linear(32, 1)

            def forward(self, seq: Any) -> Any:
                out, _ = self.gru(seq)
                return self.head(out[:, -1])

        net = Net()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
        target = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
        for _ in range(8):
            order = train[torch.randperm(len(train), generator=gen).numpy()]
            for i in range(0, len(order), 512):
                rows = order[i : i + 512]
                batch = torch.from_numpy(_windows(xs, rows, width))
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(net(batch)[:, 0], target[rows])
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            pred: np.ndarray = net(torch.from_numpy(_windows(xs, test, width)))[:, 0].numpy()
    out: np.ndarray = pred.astype(np.float64) * y_std + y_mean
    return out


def temporal_experiment() -> dict[str, Any]:
    bars, _ = load_bars(None)
    cfg = ModelConfig(kind="mlp")
    dataset, _ = as_dataset(bars, cfg, FeatureConfig())
    x, y = dataset.features(), dataset.labels()
    realized = dataset.frame[FORWARD_RETURN].to_numpy()
    scores: dict[str, list[np.ndarray]] = {"mlp": [], "gru": []}
    tests = []
    t = {"mlp": 0.0, "gru": 0.0}
    for split in make_splits(dataset, cfg):
        t0 = time.perf_counter()
        mlp = MLPModel("regression", cfg.mlp, seed=SEED).fit(x[split.train], y[split.train])
        scores["mlp"].append(mlp.predict(x[split.test]))
        t["mlp"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        scores["gru"].append(fit_predict_gru(x, y, split.train, split.test))
        t["gru"] += time.perf_counter() - t0
        tests.append(split.test)
    test = np.concatenate(tests)
    out: dict[str, Any] = {}
    for name, parts in scores.items():
        s = np.concatenate(parts)
        out[name] = {
            "ic": information_coefficient(s, realized[test]),
            "rank_ic": rank_information_coefficient(s, realized[test]),
            "mse": float(np.mean((s - y[test]) ** 2)),
            "fold_ic": [
                round(information_coefficient(p, realized[k]), 4)
                for p, k in zip(parts, tests, strict=True)
            ],
            "seconds": round(t[name], 1),
        }
    return out


def spread(values: list[float]) -> str:
    """``median (min-max)`` seconds."""
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--kinds", default="lightgbm,mlp,linear", help="model kinds to train")
    parser.add_argument("--bars", type=int, help="train on the first N bundled bars only")
    parser.add_argument("--temporal", action="store_true", help="run the GRU-vs-MLP experiment")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if args.repeat < 1 or not kinds:
        parser.error("--repeat must be >= 1 and --kinds name at least one kind")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.repeat} interleaved "
        f"round(s); load average (1, 5, 15 min) {load} on {os.cpu_count()} cores",
        flush=True,
    )
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "load_start": load}
    # untimed: the feature code's imports and compiled loops (numba cache) load once here, not
    # in whichever kind happens to run first
    bars, _ = load_bars(None)
    build_features(bars.head(1_000), FeatureConfig())
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for k in range(args.repeat):
        for kind in kinds if k % 2 == 0 else kinds[::-1]:
            res = bench_train(kind, args.bars)
            runs[kind].append(res)
            print(
                f"round {k + 1}/{args.repeat} {kind:9s} {res['seconds']:6.1f} s  "
                f"rows {res['rows']:,}  features {res['features']}"
                f"  OOS IC {res['model']['ic']:+.4f} (baseline {res['baseline']['ic']:+.4f})"
                f"  rank IC {res['model']['rank_ic']:+.4f}"
                f" (baseline {res['baseline']['rank_ic']:+.4f})",
                flush=True,
            )
    print(f"\nTrain seconds, median (min-max) of {args.repeat}:")
    for kind, rs in runs.items():
        secs = [r["seconds"] for r in rs]
        figures[kind] = {**rs[-1], "seconds": statistics.median(secs), "seconds_all": secs}
        print(f"{kind:9s} {spread(secs)} s", flush=True)
    if args.temporal:
        figures["temporal"] = exp = temporal_experiment()
        for name, r in exp.items():
            print(
                f"{name:4s} pooled OOS IC {r['ic']:+.4f} rank IC {r['rank_ic']:+.4f} "
                f"MSE {r['mse']:.4e} folds {r['fold_ic']} ({r['seconds']} s)",
                flush=True,
            )
    figures["load_end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end {figures['load_end']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
