"""Tessera: ML-driven crypto trading, from research to live in one system.

``__version__`` is read from the installed distribution on first access (PEP 562), not at
import: ``importlib.metadata`` costs ~50 ms, a quarter of ``tessera --help``, which does not
show the version.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'tessera' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("tessera")
    except PackageNotFoundError:  # running from a source tree without an install
        value = "0.0.0+unknown"
    globals()["__version__"] = value
    return value
