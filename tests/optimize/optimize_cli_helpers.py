"""What the two `tessera optimize` end-to-end test files share: running the real console entry
point in-process, so both see the same root bootstrap, one-paragraph errors and exit codes."""

from __future__ import annotations

import sys

import pytest

from tessera.cli import main


def tessera(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``tessera ARGS`` as the console script does; (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["tessera", "--env-file", "none.env", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
