"""The bar-file reader, re-exported where research code has always found it.

The reader lives in `tessera.data.barfile` (features, models, the simulator and the backtest all
read bars; a data concern should not sit above them in ``backtest/``).
"""

from __future__ import annotations

from tessera.data.barfile import REPO_ROOT, SAMPLE_BARS, BarFileError, read_bar_file

__all__ = ["REPO_ROOT", "SAMPLE_BARS", "BarFileError", "read_bar_file"]
