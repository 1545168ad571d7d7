"""What a test needs from outside the Python environment (a browser, a peer's venv, a
Prometheus binary): ``make test`` installs all of it, so in CI (``CI`` set) its absence is a
failure; on a workstation without it the test is skipped, saying how to get it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Fail in CI, skip elsewhere, with ``message`` (what is missing and the make target)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
