"""Package names loaded on first use (PEP 562), for packages the CLI imports on its way to a
submodule: `tessera.backtest`, `tessera.models`, `tessera.features` export their classes without
importing NumPy, polars or the engine until one of them is asked for."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` is imported from ``where[name]`` on
    first access and kept in the package, so later accesses are plain attribute reads."""

    def getattr_(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return getattr_
