"""Playwright helpers for the console's browser tests: Debian's Chromium (no downloaded
browser), every console error and page error collected (a CSP violation is a console error),
and screenshots kept under the test's tmp_path and, when ``TESSERA_ARTIFACTS`` is set, copied
to ``test-artifacts/console/`` at the repo root (git-ignored) for CI to keep."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_required import missing

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"


def require_chromium() -> None:
    """Skip when Chromium is missing on a developer's machine (``make tools`` installs it);
    in CI (``CI`` set) a missing browser fails instead: the test must run there."""
    if CHROMIUM.is_file():
        return
    missing(f"{CHROMIUM} is missing: `make tools` installs Debian's chromium")


async def launch(playwright: Any) -> Any:
    """Headless Chromium from Debian. ``--no-sandbox``: the tests may run as root in a
    container, where Chromium's sandbox cannot start."""
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
    )


@dataclass
class PageErrors:
    """Console errors, uncaught exceptions and failed requests of one page."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("response", self._response)
        page.on("requestfailed", self._failed)

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def _failed(self, request: Any) -> None:
        # the page's own navigation aborts its event stream and any fragment still loading
        # (ERR_ABORTED): not an error; anything else (refused, reset, timed out) is
        if "ERR_ABORTED" not in str(request.failure):
            self.errors.append(f"request failed: {request.method} {request.url} {request.failure}")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "assert"):
            self.errors.append(f"console {message.type}: {message.text}")
        elif "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.errors.append(f"CSP: {message.text}")

    def assert_none(self) -> None:
        assert not self.errors, "the browser reported errors:\n" + "\n".join(self.errors)


@dataclass
class Screens:
    """Numbered full-page screenshots."""

    directory: Path
    taken: list[Path] = field(default_factory=list)

    async def shot(self, page: Any, name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        if os.environ.get("TESSERA_ARTIFACTS"):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, ARTIFACTS / path.name)
        return path
