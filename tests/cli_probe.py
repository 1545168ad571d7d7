"""`tessera ARGS` in a fresh interpreter, reporting the modules it loaded (start-up tests).

Shared by `tests/foundation/test_startup_imports.py` (the commands) and
`tests/live/test_bot_startup_imports.py` (a bot's run). The probe runs the CLI's ``main`` in
``python -c`` and prints, after whatever the command printed, one line with its exit code and
``sorted(sys.modules)``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

_PROBE = textwrap.dedent(
    """
    import json, sys
    sys.argv = ["tessera", *json.loads(sys.argv[1])]
    import tessera.cli
    try:
        tessera.cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    print("\\nIMPORTED " + json.dumps({"code": code, "modules": sorted(sys.modules)}))
    """
)


@dataclass(frozen=True)
class Run:
    code: object
    stdout: str
    stderr: str
    modules: frozenset[str]

    def loaded(self, names: tuple[str, ...]) -> list[str]:
        """The packages of ``names`` that were imported (any of their submodules counts)."""
        tops = {m.partition(".")[0] for m in self.modules}
        return sorted(set(names) & tops)


def probe(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> Run:
    """`tessera ARGS` run in a new interpreter: its exit code, output and loaded modules."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    shown, sep, tail = proc.stdout.rpartition("\nIMPORTED ")
    assert sep, f"tessera {' '.join(args)} did not finish:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(tail)
    return Run(report["code"], shown, proc.stderr, frozenset(report["modules"]))
