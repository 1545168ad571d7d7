"""The rich consoles of the command line: terminal-wide on a terminal, wide in a pipe.

Rich sizes a console that writes to a pipe or a file at 80 columns (or at the size of whatever
terminal stdin is attached to), so ``tessera orders list | less`` or ``> orders.txt`` cut a
14-column table into ellipses. A console made here decides at each print: on a terminal, the
terminal's width; in a pipe or a file, `PIPE_WIDTH` columns, so tables keep every cell whole.
An explicit ``COLUMNS`` environment variable wins in both cases (rich's own convention).
"""

from __future__ import annotations

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


def make_console(*, stderr: bool = False) -> Console:
    """The console every CLI module prints with: ``out = make_console()`` at module level.

    ``stderr=True`` for a console of diagnostics (errors, progress of a long-running command).
    """
    return PipeAwareConsole(stderr=stderr)
