"""The documentation site builds strictly, and its generated reference pages are complete.

The expected command paths and environment variable names are computed here from the Typer
app and the pydantic models themselves, not taken from the hook that renders the pages.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel

from tessera.cli import app
from tessera.config.models import SECTION_MODELS
from tessera.config.settings import TesseraSettings

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).with_name("mkdocs")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def page_text(site: Path, page: str) -> str:
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def command_paths() -> list[str]:
    paths = []

    def walk(command: object, path: str) -> None:
        paths.append(path)
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "tessera")
    return paths


def env_names(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        var = f"{prefix}{name.upper()}"
        names.append(var)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names += env_names(ann, var + "__")
    return names


def test_cli_page_lists_every_command(site: Path) -> None:
    text = page_text(site, "reference/cli")
    paths = command_paths()
    assert {"tessera risk halt", "tessera sim serve", "tessera data import"} <= set(paths)
    missing = [p for p in paths if p not in text]
    assert not missing, f"commands missing from the CLI reference: {missing}"


def test_cli_page_shows_help_and_options(site: Path) -> None:
    text = page_text(site, "reference/cli")
    root = typer.main.get_command(app)
    serve = root.commands["sim"].commands["serve"]  # type: ignore[attr-defined]
    assert (serve.help or "").splitlines()[0] in text
    for param in serve.params:
        for opt in param.opts:
            assert opt in text


def test_config_page_lists_every_env_var(site: Path) -> None:
    text = page_text(site, "reference/configuration")
    expected = env_names(TesseraSettings, "TESSERA_")
    assert "TESSERA_MODEL__LIGHTGBM__NUM_LEAVES" in expected
    assert all(f"TESSERA_{s.upper()}" in expected for s in SECTION_MODELS)
    missing = [name for name in expected if name not in text]
    assert not missing, f"settings missing from the configuration reference: {missing}"
    for section in SECTION_MODELS:
        assert f"configs/{section}.yaml" in text
