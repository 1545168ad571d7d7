"""The rich consoles of the command line: terminal-wide on a terminal, wide in a pipe; and the
``--json`` output of the list and status commands.

Rich sizes a console that writes to a pipe or a file at 80 columns (or at the size of whatever
terminal stdin is attached to), so ``tessera orders list | less`` or ``> orders.txt`` cut a
14-column table into ellipses. A console made here decides at each print: on a terminal, the
terminal's width; in a pipe or a file, `PIPE_WIDTH` columns, so tables keep every cell whole.
An explicit ``COLUMNS`` environment variable wins in both cases (rich's own convention).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import typer
from rich.console import Console, ConsoleDimensions

# Wide enough for every table the CLI prints (the widest, `orders list`, needs ~250 columns).
# Tables and text are as wide as their content, not as the console: nothing is padded to it.
PIPE_WIDTH = 1000


class PipeAwareConsole(Console):
    """A `Console` whose width is the terminal's on a terminal and `PIPE_WIDTH` otherwise.

    The choice is made at every print, not at construction: the module-level consoles of the
    CLI are built at import time, before a test runner or a shell redirect swaps the stream.
    """

    def _writes_to_terminal(self) -> bool:
        isatty = getattr(self.file, "isatty", None)
        try:
            return bool(isatty()) if isatty is not None else False
        except ValueError:  # a closed stream (end of a pytest run) is not a terminal
            return False

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if (
            self._width is not None  # COLUMNS at construction, or a width set in code
            or self._environ.get("COLUMNS", "").isdigit()
            or self._writes_to_terminal()
        ):
            return dims
        return ConsoleDimensions(PIPE_WIDTH, dims.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def for_json(self, json_out: bool) -> None:
        """Before a command runs: with ``--json`` (stdout carries one JSON document) print to
        the stderr of the moment; without, to whatever stdout is at each print — so a
        module-level console that one ``--json`` command pointed at stderr does not stay
        there for the next command run in the same process (tests run the CLI in-process,
        and a captured stream that is closed later must not be kept)."""
        self._file = sys.stderr if json_out else None


def make_console(*, stderr: bool = False) -> PipeAwareConsole:
    """The console every CLI module prints with: ``out = make_console()`` at module level.

    ``stderr=True`` for a console of diagnostics (errors, progress of a long-running command).
    """
    return PipeAwareConsole(stderr=stderr)


# --- --json ------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_utc(ns: int | None) -> str | None:
    """An epoch time in nanoseconds as ISO-8601 UTC to the millisecond (``...T12:00:00.123Z``);
    ``None`` for a missing time (0 or ``None``, as the tables show an empty cell)."""
    if not ns:
        return None
    moment = _EPOCH + timedelta(microseconds=ns // 1_000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms(ns: int | None) -> int | None:
    """An epoch time in nanoseconds as integer milliseconds; ``None`` for a missing time."""
    return ns // 1_000_000 if ns else None


def json_plain(value: Any) -> Any:
    """``value`` made of JSON types only, so that any JSON reader (``jq``) parses the output.

    Decimals become strings in plain notation (``"0.5"``, never ``"5E-1"``: a float would lose
    digits of a price or a quantity); NaN and infinities become ``null`` (``json.dumps`` would
    write ``NaN``, which is not JSON); enums their value; datetimes ISO-8601; anything else
    unknown its ``str``.
    """
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value.is_finite() else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return json_plain(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_plain(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def echo_json(document: Any) -> None:
    """Print ``document`` as one JSON document on stdout, with plain ``typer.echo``: a rich
    console would colour, wrap or highlight it, and ``| jq`` must read it as written."""
    typer.echo(json.dumps(json_plain(document), allow_nan=False))
