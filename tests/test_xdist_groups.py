"""The suite's own parallel scheduling (tests/conftest.py), run on a small suite of its own.

`make test` runs ``pytest -n N --dist loadgroup`` and counts on two promises: a file's tests run
on one worker (module fixtures once, module-level names never used by two tests at once), and
the heaviest bot-process tests run on one worker, one after another, first. xdist 3.8 keeps
them by rewriting node ids, which pytest 9.2 ignores — nothing fails, the tests are simply
spread one by one — so the promises are checked here, on what actually ran where. And a
worker's environment is the one the run was started with (COLUMNS, LINES).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
FAST = "\n".join(f"def test_{i}():\n    pass\n" for i in range(6))
SLOW = "import pytest\n\npytestmark = pytest.mark.slow\n\n" + FAST
MIXED = (
    "import pytest\n\n"
    + FAST.replace("test_", "test_fast_")
    + "".join(f"\n@pytest.mark.slow\ndef test_slow_{i}():\n    pass\n" for i in range(6))
)  # the file's slow tests with the heaviest, the others a file of their own


def test_loadgroup_keeps_a_file_on_one_worker_and_the_heaviest_bot_tests_together_first(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: long\n")
    pytester.makeconftest(CONFTEST.read_text())
    for name, text in {
        "tests/risk/test_a.py": FAST,
        "tests/risk/test_b.py": FAST,
        "tests/models/test_c.py": FAST,
        "tests/live/test_chaos.py": MIXED,
        "tests/live/test_shared_limits.py": SLOW,
        "tests/live/test_bot_e2e.py": SLOW,  # a bot test, not one of the heaviest: its own file
    }.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    result = pytester.runpytest_subprocess("-n", "2", "-v", "-p", "no:cacheprovider")  # loadgroup
    result.assert_outcomes(passed=42)

    ran = re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED (\S+::test_\w+)", result.stdout.str())
    assert len(ran) == 42, result.stdout.str()
    heavy = {"tests/live/test_chaos.py::test_slow", "tests/live/test_shared_limits.py::test"}
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, test in ran:
        name = test.rsplit("_", 1)[0]
        workers[name if name in heavy else test.split("::")[0]].add(worker)
    assert all(len(w) == 1 for w in workers.values()), dict(workers)  # a file on one worker
    bots = workers["tests/live/test_chaos.py::test_slow"]
    assert bots == workers["tests/live/test_shared_limits.py::test"], dict(workers)
    (bot_worker,) = bots  # the heaviest bot-process tests on one worker...
    on_it = [test.rsplit("_", 1)[0] for worker, test in ran if worker == bot_worker]
    assert set(on_it[:12]) == heavy, on_it  # ... and first there


def test_a_worker_has_the_terminal_width_of_the_run_that_started_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xdist starts its workers with COLUMNS=80 and LINES=24; every CLI a test runs would
    inherit them and wrap its output where a run without xdist does not."""
    monkeypatch.setenv("COLUMNS", "321")
    monkeypatch.delenv("LINES", raising=False)
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_env="import os\n\n\ndef test_width():\n"
        "    assert (os.environ.get('COLUMNS'), os.environ.get('LINES')) == ('321', None)\n"
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
