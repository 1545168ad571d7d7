"""Seed every random number generator a run touches, so a seed reproduces a run."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import random
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Literal

TorchPolicy = Literal["eager", "lazy", "off"]
NumpyPolicy = Literal["eager", "on_import"]

# The seed torch still has to receive, under the "lazy" policy (see seed_everything).
_pending_torch_seed: int | None = None


def seed_everything(
    seed: int, torch: TorchPolicy = "eager", numpy: NumpyPolicy = "eager"
) -> dict[str, bool]:
    """Seed Python's `random`, NumPy's global RNG and torch (when installed).

    ``torch="eager"`` imports torch (if installed) and seeds it now. ``"lazy"`` seeds it now only
    if it is already imported, and otherwise leaves the seed for :func:`seed_torch_if_pending`,
    which every module that imports torch calls: the CLI uses this so that commands which never
    touch torch do not pay its 1-2 s import. Returns which generators were seeded now.

    ``numpy="eager"`` imports NumPy and seeds it now. ``"on_import"`` seeds it now if it is
    already imported, and otherwise the moment anything imports it (a one-shot import hook,
    `_SeedNumpyOnImport`): the CLI uses this so that a command that never touches NumPy does not
    pay its ~0.2 s import at start, while one that does gets the same draws as with "eager".

    Code should still prefer explicit generators (``np.random.default_rng(seed)``); this covers
    libraries that use the global ones. ``PYTHONHASHSEED`` is set for child processes only.
    """
    global _pending_torch_seed
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(seed)
    _SeedNumpyOnImport.uninstall()  # a pending seed of an earlier call is replaced by this one
    if numpy == "eager" or "numpy" in sys.modules:
        _seed_numpy(importlib.import_module("numpy"), seed)
    else:
        sys.meta_path.insert(0, _SeedNumpyOnImport(seed))
    os.environ["PYTHONHASHSEED"] = str(seed)
    seeded = {"random": True, "numpy": "numpy" in sys.modules, "torch": False}
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


def _seed_numpy(np: ModuleType, seed: int) -> None:
    np.random.seed(seed % 2**32)


class _SeedNumpyOnImport(importlib.abc.MetaPathFinder):
    """Seeds NumPy's global RNG right after NumPy's first import, then removes itself.

    It finds ``numpy`` with the finders after it on ``sys.meta_path`` and wraps that loader
    (`_SeedingLoader`): the module, its spec and its resources are the real ones.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    @classmethod
    def uninstall(cls) -> None:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, cls)]

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "numpy":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if isinstance(spec.loader, importlib.abc.Loader) and hasattr(
                spec.loader, "exec_module"
            ):
                spec.loader = _SeedingLoader(spec.loader, self)
            return spec
        return None


class _SeedingLoader(importlib.abc.Loader):
    """NumPy's own loader; after it has executed the module, NumPy is seeded."""

    def __init__(self, loader: importlib.abc.Loader, hook: _SeedNumpyOnImport) -> None:
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _SeedNumpyOnImport.uninstall()
        _seed_numpy(module, self._hook.seed)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)
