"""`tessera sim serve`: options, help, a real process serving and stopping on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import typer
from sim_helpers import BTC_0808, recorded_lines
from typer.testing import CliRunner

from tessera.sim.cli import app, parse_speed


@pytest.mark.parametrize(
    ("text", "value"), [("1x", 1.0), ("60x", 60.0), ("2.5", 2.5), ("MAX", None), ("max", None)]
)
def test_speed_option(text: str, value: float | None) -> None:
    assert parse_speed(text) == value


@pytest.mark.parametrize("text", ["fast", "0x", "-1", ""])
def test_bad_speed_is_a_usage_error(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_speed(text)


def test_help_explains_the_options() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--host", "--port", "--speed", "--recording", "--loop", "--no-loop"):
        assert option in result.output
    assert "ccxt.pro" in result.output and "max" in result.output
    bad = CliRunner().invoke(app, ["serve", "--speed", "fast"])
    assert bad.exit_code == 2


def test_serve_runs_a_simulator_until_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tessera.sim.cli import app; app(prog_name='tessera sim')",
            "serve",
            "--port",
            "0",
            "--speed",
            "max",
            "--no-loop",
            "--recording",
            str(BTC_0808),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        rest = None
        deadline = time.monotonic() + 30
        lines = []
        while rest is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            m = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)", line)
            rest = m.group(1) if m else None
        assert rest is not None, "".join(lines)
        with urllib.request.urlopen(f"{rest}/api/v3/trades?symbol=BTCUSDT&limit=1") as r:
            assert json.loads(r.read()) == []  # nothing replayed before a subscriber
        first = next(json.loads(d) for s, d in recorded_lines(BTC_0808) if s == "btcusdt@trade")
        with urllib.request.urlopen(f"{rest}/api/v3/exchangeInfo?symbol=BTCUSDT") as r:
            assert json.loads(r.read())["symbols"][0]["symbol"] == first["s"]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_usdm_answers_the_fapi_with_the_bundled_perpetual_recording() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tessera.sim.cli import app; app(prog_name='tessera sim')",
            "serve",
            "--usdm",
            "--port",
            "0",
            "--speed",
            "max",
            "--no-loop",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        rest = None
        deadline = time.monotonic() + 30
        lines = []
        while rest is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            m = re.search(r"REST\s+(http://127\.0\.0\.1:\d+)/fapi/v1", line)
            rest = m.group(1) if m else None
        assert rest is not None, "".join(lines)
        with urllib.request.urlopen(f"{rest}/fapi/v1/exchangeInfo") as r:
            info = json.loads(r.read())
        assert [(s["symbol"], s["contractType"]) for s in info["symbols"]] == [
            ("BTCUSDT", "PERPETUAL")
        ]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "USDⓈ-M" in "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_usdm_refuses_bars_with_recordings_in_one_paragraph() -> None:
    result = CliRunner().invoke(app, ["serve", "--usdm", "--bars", "x.csv", "--recording", "y.gz"])
    assert result.exit_code == 2
    assert "not both" in result.output and "Traceback" not in result.output
