"""A torch multi-layer perceptron: standardised features, ReLU + dropout, Adam.

Bit-reproducible on CPU: the weights' initialisation, the dropout masks and the mini-batch
order all come from ``seed`` (in a forked RNG, so the process' global torch RNG is left as
it was), deterministic algorithms are enforced and the thread count is fixed while fitting
and predicting, then restored. torch is imported lazily: it costs ~1.5 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from tessera.config.models import MLPParams
from tessera.models.base import FloatArray, Model, Standardizer, Task, require_finite

# One thread: a parallel float reduction may sum in a different order on another machine.
MLP_THREADS = 1
_WEIGHTS_FILE = "mlp.pt"
_PREDICT_BATCH = 65_536


def _import_torch() -> Any:
    import torch

    from tessera.config import seed_torch_if_pending

    seed_torch_if_pending()
    return torch


@contextmanager
def deterministic_torch(num_threads: int) -> Iterator[Any]:
    """Fixed threads and deterministic kernels inside the block; previous settings after."""
    torch = _import_torch()
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield torch
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)


def build_network(n_in: int, hidden: list[int], dropout: float, n_out: int) -> Any:
    torch = _import_torch()
    layers: list[Any] = []
    width = n_in
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        if dropout > 0:
            layers.append(torch.nn.Dropout(dropout))
        width = h
    layers.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*layers)


class MLPModel(Model):
    kind = "mlp"

    def __init__(
        self,
        task: Task,
        params: MLPParams | None = None,
        seed: int = 42,
        num_threads: int = MLP_THREADS,
    ) -> None:
        super().__init__(task)
        self.params = params or MLPParams()
        self.seed = seed
        self.num_threads = num_threads
        self.scaler: Standardizer | None = None
        # Regression targets are standardised for the optimiser and scaled back on predict.
        self.y_mean = 0.0
        self.y_scale = 1.0
        # torch.nn.Module; typed Any because torch is imported lazily, not at module level.
        self.net: Any = None
        self.train_losses: list[float] = []

    def _n_out(self) -> int:
        return 1 if self.task == "regression" else len(self._classes())

    def fit(self, features: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        x, target = self._prepare_fit(features, y)
        require_finite(x, "MLP")
        self.scaler = Standardizer.fit(x)
        xs = self.scaler.transform(x).astype(np.float32)
        p = self.params
        with deterministic_torch(self.num_threads) as torch, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            net = build_network(x.shape[1], p.hidden, p.dropout, self._n_out())
            xt = torch.from_numpy(xs)
            if self.task == "regression":
                t = target.astype(np.float64)
                self.y_mean = float(t.mean())
                self.y_scale = float(t.std()) or 1.0
                yt = torch.from_numpy(((t - self.y_mean) / self.y_scale).astype(np.float32))
                yt = yt.unsqueeze(1)
                loss_fn: Any = torch.nn.MSELoss()
            else:
                yt = torch.from_numpy(target.astype(np.int64))
                loss_fn = torch.nn.CrossEntropyLoss()
            opt = torch.optim.Adam(
                net.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay
            )
            net.train()
            self.train_losses = []
            for _ in range(p.epochs):
                order = torch.randperm(len(xt), generator=gen)
                total = 0.0
                for i in range(0, len(xt), p.batch_size):
                    idx = order[i : i + p.batch_size]
                    opt.zero_grad()
                    loss = loss_fn(net(xt[idx]), yt[idx])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                self.train_losses.append(total / len(xt))
            net.eval()
        self.net = net
        return self

    def _forward(self, x: FloatArray) -> FloatArray:
        if self.net is None or self.scaler is None:
            raise RuntimeError("predict() before fit()")
        require_finite(x, "MLP")
        xs = self.scaler.transform(x).astype(np.float32)
        net = self.net
        outs = []
        with deterministic_torch(self.num_threads) as torch, torch.no_grad():
            net.eval()
            for i in range(0, len(xs), _PREDICT_BATCH):
                chunk = net(torch.from_numpy(xs[i : i + _PREDICT_BATCH]))
                if self.task == "classification":
                    chunk = torch.softmax(chunk, dim=1)
                outs.append(chunk.numpy().astype(np.float64))
        if not outs:
            return np.zeros((0, self._n_out()))
        return np.concatenate(outs)

    def _predict_value(self, x: FloatArray) -> FloatArray:
        return np.asarray(self._forward(x)[:, 0] * self.y_scale + self.y_mean, dtype=np.float64)

    def _predict_proba(self, x: FloatArray) -> FloatArray:
        return self._forward(x)

    def _save_state(self, directory: Path) -> dict[str, Any]:
        if self.net is None or self.scaler is None:
            raise RuntimeError("save() before fit()")
        torch = _import_torch()
        torch.save(self.net.state_dict(), directory / _WEIGHTS_FILE)
        return {
            "params": self.params.model_dump(),
            "seed": self.seed,
            "num_threads": self.num_threads,
            "scaler": self.scaler.to_json(),
            "y_mean": self.y_mean,
            "y_scale": self.y_scale,
            "file": _WEIGHTS_FILE,
        }

    @classmethod
    def _from_state(cls, directory: Path, meta: dict[str, Any]) -> Self:
        torch = _import_torch()
        model = cls(
            meta["task"],
            MLPParams.model_validate(meta["params"]),
            seed=int(meta["seed"]),
            num_threads=int(meta["num_threads"]),
        )
        model.scaler = Standardizer.from_json(meta["scaler"])
        model.y_mean = float(meta["y_mean"])
        model.y_scale = float(meta["y_scale"])
        classes = meta["classes"]
        n_out = 1 if model.task == "regression" else len(classes)
        net = build_network(
            int(meta["n_features"]), model.params.hidden, model.params.dropout, n_out
        )
        # weights_only: a model file is data, never code to unpickle.
        net.load_state_dict(torch.load(directory / meta["file"], weights_only=True))
        net.eval()
        model.net = net
        return model
