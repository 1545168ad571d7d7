"""Seed every random number generator a run touches, so a seed reproduces a run."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from typing import Literal

import numpy as np

TorchPolicy = Literal["eager", "lazy", "off"]

# The seed torch still has to receive, under the "lazy" policy (see seed_everything).
_pending_torch_seed: int | None = None


def seed_everything(seed: int, torch: TorchPolicy = "eager") -> dict[str, bool]:
    """Seed Python's `random`, NumPy's global RNG and torch (when installed).

    ``torch="eager"`` imports torch (if installed) and seeds it now. ``"lazy"`` seeds it now only
    if it is already imported, and otherwise leaves the seed for :func:`seed_torch_if_pending`,
    which every module that imports torch calls: the CLI uses this so that commands which never
    touch torch do not pay its 1-2 s import. Returns which generators were seeded now.

    Code should still prefer explicit generators (``np.random.default_rng(seed)``); this covers
    libraries that use the global ones. ``PYTHONHASHSEED`` is set for child processes only.
    """
    global _pending_torch_seed
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    seeded = {"random": True, "numpy": True, "torch": False}
    if torch == "off":
        return seeded
    if torch == "eager" and importlib.util.find_spec("torch") is not None:
        import torch as _torch  # noqa: F401 - imported so that _seed_torch finds it

    if "torch" in sys.modules:
        _seed_torch(seed)
        seeded["torch"] = True
    elif torch == "lazy":
        _pending_torch_seed = seed
    return seeded


def seed_torch_if_pending() -> bool:
    """Seed torch with the seed a lazy `seed_everything` left; call right after importing torch."""
    global _pending_torch_seed
    if _pending_torch_seed is None:
        return False
    _seed_torch(_pending_torch_seed)
    _pending_torch_seed = None
    return True


def _seed_torch(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    # warn_only: a few CPU ops have no deterministic variant; we want to know, not crash.
    torch.use_deterministic_algorithms(True, warn_only=True)
