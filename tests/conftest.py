"""Shared fixtures. Tests read only the repo (samples/), never ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TESSERA_* variables from the developer's shell, and a cwd without a .env file."""
    for key in list(os.environ):
        if key.upper().startswith("TESSERA_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path
