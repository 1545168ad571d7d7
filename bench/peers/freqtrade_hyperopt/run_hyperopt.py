"""freqtrade's hyperopt (and a backtest of one point) on the bundled month, offline, measured.

Usage:
    python bench/peers/freqtrade_hyperopt/run_hyperopt.py --strategy SmaCrossHyperopt \
        [--epochs 100] [-j 2] [--seed 42] [--out FILE]
    python bench/peers/freqtrade_hyperopt/run_hyperopt.py --strategy MyRsiHyperopt \
        --backtest '{"period": 14, "oversold": 30, "overbought": 70}'

What a run is (the freqtrade side of bench/bench_optimize.py, issue 18's "Measure"):
- the bundled real 1-minute BTC bars (samples/bars/btc-perp-20211231-20220201_1m.csv.gz, the
  45,031 bars the Tessera side reads as BTCUSDT) written as freqtrade's BTC/USDT 1m spot feather
  file by freqtrade's own data handler, in a fresh temporary datadir;
- config.json here (spot, one open trade, stake 1000 USDT of a 10,000 wallet, fee 0.001 per
  side) and a strategy of strategies/ (each says how it matches its Tessera twin);
- `freqtrade hyperopt --hyperopt-loss SharpeHyperOptLoss --spaces buy sell -j N
  --random-state SEED --epochs N`, TPE (the strategy's `HyperOpt.generate_estimator`),
  through offline_freqtrade.py (markets from a bundled exchangeInfo, sockets blocked);
- or, with `--backtest PARAMS`, `freqtrade backtesting` of that one point.

It prints one JSON document: wall seconds of the whole process, the seconds of the epochs
alone (after data and indicators are ready), peak RSS of the process tree (freqtrade and its
joblib workers; sampled every 0.1 s with psutil when it is importable, else the largest single
process from getrusage), and every epoch (params, loss, trades, profit) with the best one.
Standard library only (psutil optional), so it runs from our venv or any Python 3.11; the
freqtrade venv (bench/.venv-freqtrade) is created on first use (`make peers`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))

from freqtrade_venv import FREQTRADE_PIN, ensure_freqtrade_venv  # noqa: E402

BARS = REPO / "samples" / "bars" / "btc-perp-20211231-20220201_1m.csv.gz"
STRATEGIES = ("SmaCrossHyperopt", "MyRsiHyperopt")
# The hyperopt space each parameter lives in (the strategies' IntParameter(space=...)).
SPACES = {
    "SmaCrossHyperopt": {"fast": "buy", "slow": "sell"},
    "MyRsiHyperopt": {"period": "buy", "oversold": "buy", "overbought": "sell"},
}


def ensure_hyperopt_venv() -> Path:
    """The freqtrade venv's python, with freqtrade's ``hyperopt`` extra (optuna, cmaes,
    scikit-learn, filelock) added on first use: `make peers` installs plain freqtrade, whose
    backtesting needs none of them."""
    py = ensure_freqtrade_venv()
    if subprocess.run([str(py), "-c", "import optuna, sklearn"], capture_output=True).returncode:
        print(f"adding {FREQTRADE_PIN}[hyperopt] to the freqtrade venv…", file=sys.stderr)
        name, version = FREQTRADE_PIN.split("==")
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", f"{name}[hyperopt]=={version}"],
            check=True,
        )
    return py


def run_measured(cmd: list[str], cwd: Path | None = None) -> tuple[float, float, int, str]:
    """Run ``cmd``; return (wall seconds, peak RSS MB of its process tree, exit code, stderr).

    The peak is the largest *sum* over the tree (parent and workers alive at once), sampled
    every 0.1 s with psutil; without psutil it falls back to ru_maxrss of the children, which
    is the largest single process, not the sum (said in the output as ``rss_method``).
    """
    try:
        import psutil
    except ImportError:  # pragma: no cover - our venv has psutil
        psutil = None
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    stop = threading.Event()
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    if psutil is not None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None and not stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            peak = max(peak, total / 2**20)
            time.sleep(0.1)
    code = proc.wait()
    seconds = time.perf_counter() - t0
    reader.join()
    if psutil is None:
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak, code, b"".join(errors).decode(errors="replace")


def prepare_workdir(wd: Path, py: Path) -> Path:
    """Datadir with the month as freqtrade's feather, user_data with the strategies, config."""
    strategies = wd / "user_data" / "strategies"
    strategies.mkdir(parents=True, exist_ok=True)
    for name in STRATEGIES:
        shutil.copy(HERE / "strategies" / f"{name}.py", strategies)
    subprocess.run(
        [str(py), str(HERE / "offline_freqtrade.py"), "convert", str(BARS), str(wd / "data")],
        check=True,
    )
    config = json.loads((HERE / "config.json").read_text())
    config.pop("$comment", None)
    config["datadir"] = str(wd / "data")
    config["user_data_dir"] = str(wd / "user_data")
    path = wd / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _common(py: Path, wd: Path, config: Path, out: Path, extra: list[str]) -> list[str]:
    return [
        str(py),
        str(HERE / "offline_freqtrade.py"),
        "run",
        str(out),
        *extra,
        "--",
    ]


def hyperopt(
    strategy: str, epochs: int = 100, jobs: int = 2, seed: int = 42, workdir: Path | None = None
) -> dict[str, Any]:
    """Run freqtrade's hyperopt; return the measured document (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    py = ensure_hyperopt_venv()
    with tempfile.TemporaryDirectory(prefix="freqtrade-hyperopt-") as tmp:
        wd = workdir or Path(tmp)
        config = prepare_workdir(wd, py)
        out = wd / "run.json"
        cmd = [
            *_common(py, wd, config, out, []),
            "hyperopt",
            "--config", str(config),
            "--userdir", str(wd / "user_data"),
            "--datadir", str(wd / "data"),
            "--strategy", strategy,
            "--hyperopt-loss", "SharpeHyperOptLoss",
            "--epochs", str(epochs),
            "--spaces", "buy", "sell",
            "-j", str(jobs),
            "--random-state", str(seed),
            "--min-trades", "1",
            "--disable-param-export",
            "--no-color",
            "--logfile", str(wd / "freqtrade.log"),
        ]  # fmt: skip
        seconds, peak, code, err = run_measured(cmd, cwd=wd)
        if code != 0:
            raise RuntimeError(f"freqtrade hyperopt failed (exit {code}):\n{err[-4000:]}")
        run = json.loads(out.read_text())
        files = sorted((wd / "user_data" / "hyperopt_results").glob("*.fthypt"))
        if not files:
            raise RuntimeError(f"freqtrade wrote no .fthypt file; its log:\n{err[-4000:]}")
        epochs_done = [json.loads(line) for line in files[-1].read_text().splitlines() if line]
    rows = [
        {
            "epoch": e["current_epoch"],
            "params": e["params_dict"],
            "loss": e["loss"],
            "trades": e["results_metrics"].get("total_trades", 0),
            "profit_total": e["results_metrics"].get("profit_total", 0.0),
        }
        for e in epochs_done
    ]
    best = min(rows, key=lambda r: r["loss"]) if rows else None
    t = run["timings"]
    return {
        "engine": f"freqtrade {run['freqtrade']} hyperopt",
        "strategy": strategy,
        "epochs_asked": epochs,
        "trials": len(rows),
        "jobs": jobs,
        "seed": seed,
        "seconds": seconds,
        "search_seconds": t["epochs_done"] - t["prepared"],
        "startup_seconds": t["prepared"] - t["process_start"],
        "peak_rss_mb": peak,
        "rss_method": "psutil tree sum" if _has_psutil() else "ru_maxrss (largest process)",
        "best": best,
        "best_objective": -best["loss"] if best else None,  # SharpeHyperOptLoss = -Sharpe
        "epochs": rows,
    }


def backtest(strategy: str, params: dict[str, Any], workdir: Path | None = None) -> dict[str, Any]:
    """`freqtrade backtesting` of one point (the params JSON freqtrade reads beside the file)."""
    py = ensure_hyperopt_venv()
    with tempfile.TemporaryDirectory(prefix="freqtrade-backtest-") as tmp:
        wd = workdir or Path(tmp)
        config = prepare_workdir(wd, py)
        grouped: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            grouped.setdefault(SPACES[strategy][key], {})[key] = value
        (wd / "user_data" / "strategies" / f"{strategy}.json").write_text(
            json.dumps(
                {
                    "strategy_name": strategy,
                    "params": grouped,
                    "ft_stratparam_v": 1,
                    "export_time": datetime.now(UTC).isoformat(),
                }
            )
        )
        results = wd / "user_data" / "backtest_results"
        out = wd / "run.json"
        cmd = [
            *_common(py, wd, config, out, ["--result-dir", str(results)]),
            "backtesting",
            "--config", str(config),
            "--userdir", str(wd / "user_data"),
            "--datadir", str(wd / "data"),
            "--strategy", strategy,
            "--export", "trades",
            "--backtest-directory", str(results),
            "--cache", "none",
            "--no-color",
            "--logfile", str(wd / "freqtrade.log"),
        ]  # fmt: skip
        seconds, _, code, err = run_measured(cmd, cwd=wd)
        if code != 0:
            raise RuntimeError(f"freqtrade backtesting failed (exit {code}):\n{err[-4000:]}")
        doc = json.loads(out.read_text())
    return {"params": params, "seconds": seconds, **doc["backtest"]}


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--strategy", choices=STRATEGIES, required=True)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--backtest", metavar="JSON", help="backtest this one point instead")
    ap.add_argument("--out", type=Path, help="also write the JSON document to this file")
    args = ap.parse_args()
    if args.backtest:
        doc = backtest(args.strategy, json.loads(args.backtest))
    else:
        doc = hyperopt(args.strategy, args.epochs, args.jobs, args.seed)
    text = json.dumps(doc, indent=1) + "\n"
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
