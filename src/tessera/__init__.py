"""Tessera: ML-driven crypto trading, from research to live in one system."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tessera")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
