"""`tessera control token new` and `tessera control password-hash` as a user runs them (a real
subprocess): the YAML they print is accepted by `ControlConfig` and authenticates the credential
it was made from; the token is printed once, the password never; bad input is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tessera.config.models import ControlConfig
from tessera.control.auth import Authenticator, PasswordVerifier
from tessera.control.cli import app as control_app

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "control", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        input=stdin,
        timeout=60,
    )


def _entry(stdout: str) -> dict[str, Any]:
    # the YAML block follows its "# add under ..." header; the token line above it is not YAML
    # and may itself start with "-" (base64url: one token in 64)
    block = stdout.split("# add under", 1)[1].splitlines()[1:]
    yaml_lines = [line for line in block if line.startswith(("-", " "))]
    entries = yaml.safe_load("\n".join(yaml_lines))
    assert isinstance(entries, list) and len(entries) == 1, stdout
    entry = entries[0]
    assert isinstance(entry, dict)
    return entry


def test_token_new_prints_the_token_once_and_a_config_entry_that_authenticates_it() -> None:
    res = run("token", "new", "ops-bot", "--role", "operate")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    token = lines[lines.index(next(line for line in lines if "shown once" in line)) + 1]
    assert len(token) == 43
    assert res.stdout.count(token) == 1 and token not in res.stderr
    entry = _entry(res.stdout)
    assert entry["name"] == "ops-bot" and entry["role"] == "operate"
    config = ControlConfig(enabled=True, tokens=[entry])
    actor = Authenticator(config).token_actor(token, "")
    assert actor is not None and (actor.name, actor.role) == ("ops-bot", "operate")


def test_two_new_tokens_differ() -> None:
    first, second = run("token", "new", "a"), run("token", "new", "a")
    assert _entry(first.stdout)["sha256"] != _entry(second.stdout)["sha256"]
    assert _entry(first.stdout)["role"] == "read"  # the default role is the safe one


async def test_password_hash_from_stdin_prints_an_entry_that_verifies_the_password() -> None:
    password = "a long console password 5519"
    res = run("password-hash", "olga", "--role", "operate", "--stdin", stdin=password + "\n")
    assert res.returncode == 0, res.stderr
    assert password not in res.stdout and password not in res.stderr
    entry = _entry(res.stdout)
    config = ControlConfig(enabled=True, users=[entry])
    verifier = PasswordVerifier(config.users)
    user = await verifier.verify("olga", password)
    assert user is not None and user.role == "operate"
    assert await verifier.verify("olga", password + "x") is None


def test_password_hash_asks_twice_on_a_hidden_prompt() -> None:
    password = "another long password 77"
    result = CliRunner().invoke(
        control_app, ["password-hash", "rudi"], input=f"{password}\n{password}\n"
    )
    assert result.exit_code == 0, result.output
    assert password not in result.output  # hidden input is not echoed
    entry = _entry(result.stdout)
    assert entry["name"] == "rudi" and entry["password_hash"].startswith("$argon2id$")
    mismatch = CliRunner().invoke(
        control_app, ["password-hash", "rudi"], input=f"{password}\nother\n{password}\n{password}\n"
    )
    assert "do not match" in mismatch.output
    assert mismatch.exit_code == 0  # asked again, then the matching pair was taken


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (["token", "new", "bad name!"], None, "not allowed"),
        (["password-hash", "olga", "--stdin"], "short\n", "too short"),
        (["token", "new", "x", "--role", "admin"], None, "admin"),
    ],
)
def test_bad_input_is_one_clear_error_and_exit_code_2(
    args: list[str], stdin: str | None, words: str
) -> None:
    res = run(*args, stdin=stdin)
    assert res.returncode == 2
    assert words in res.stderr
    assert "Traceback" not in res.stderr
