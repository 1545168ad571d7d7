"""``tessera control``: make the credentials of the control API.

Both commands print a YAML entry for ``configs/control.yaml`` holding only what the bot needs
to *check* a credential (a SHA-256, an argon2 hash), never the credential itself. The token is
printed once, to stdout, for the person to store; nothing is written to disk and nothing logged.
"""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from typing import Annotated

import typer

from tessera.console import make_console

app = typer.Typer(
    help="The control API and console: make API tokens and password hashes.",
    no_args_is_help=True,
)
token_app = typer.Typer(help="API tokens (Authorization: Bearer <token>).", no_args_is_help=True)
app.add_typer(token_app, name="token")

err = make_console(stderr=True)
NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


class RoleChoice(StrEnum):
    read = "read"
    operate = "operate"


NameArg = Annotated[
    str, typer.Argument(help="Who holds it (letters, digits, _ . @ -), kept in the audit trail")
]
RoleOpt = Annotated[
    RoleChoice, typer.Option("--role", help="read: see everything; operate: also act")
]


def _check_name(name: str) -> None:
    if not re.match(NAME_PATTERN, name):
        err.print(
            f"[red]error:[/] the name {name!r} is not allowed: use 1-64 letters, digits or "
            "_ . @ - (it appears in the audit trail and in configs/control.yaml)"
        )
        raise typer.Exit(2)


@token_app.command("new")
def token_new(name: NameArg, role: RoleOpt = RoleChoice.read) -> None:
    """Make a new API token: prints the token once and the entry for configs/control.yaml
    (which keeps only its SHA-256)."""
    from tessera.control.auth import new_token, token_sha256

    _check_name(name)
    token = new_token()
    typer.echo(f"# the token (shown once; store it in your password manager):\n{token}\n")
    typer.echo("# add under control.tokens in configs/control.yaml:")
    typer.echo(f'- name: "{name}"\n  role: {role.value}\n  sha256: "{token_sha256(token)}"')


@app.command("password-hash")
def password_hash(
    name: NameArg,
    role: RoleOpt = RoleChoice.read,
    from_stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from stdin (one line), no prompt")
    ] = False,
) -> None:
    """Hash a console user's password (argon2id): prints the entry for configs/control.yaml.
    The password is read from a hidden prompt (asked twice) or, with --stdin, from stdin."""
    from tessera.control.auth import hash_password

    _check_name(name)
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        err.print("[red]error:[/] the password is too short: use at least 8 characters")
        raise typer.Exit(2)
    typer.echo("# add under control.users in configs/control.yaml:")
    hashed = hash_password(password)
    typer.echo(f'- name: "{name}"\n  role: {role.value}\n  password_hash: "{hashed}"')
