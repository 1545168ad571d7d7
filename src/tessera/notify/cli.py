"""`tessera notify test` (send a test message to every configured URL, say which took it) and
`tessera notify relay` (Alertmanager's webhook receiver, forwarding alerts to the same URLs)."""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from tessera.console import make_console

if TYPE_CHECKING:  # settings and Apprise: only when a command runs, never for --help
    from tessera.config.models import NotifyConfig
    from tessera.notify.delivery import Delivery

app = typer.Typer(
    help="Notifications to people: test the Apprise URLs, relay Alertmanager's alerts to them.",
    no_args_is_help=True,
)
out = make_console()
err = make_console(stderr=True)


def _config(ctx: typer.Context) -> NotifyConfig:
    from tessera.bootstrap import AppContext

    root = ctx.find_root().obj
    if isinstance(root, AppContext):
        return root.settings.notify
    from tessera.config import load_settings

    return load_settings().notify


def _delivery_or_exit(config: NotifyConfig, *, allow_none: bool = False) -> Delivery:
    from tessera.notify.delivery import Delivery, NotifyError

    if not config.urls and not allow_none:
        err.print(
            "notify: no URLs configured. Set TESSERA_NOTIFY__URLS='[\"json://host/path\"]' "
            "(a secret: environment or infra/.env) or notify.urls in configs/notify.yaml."
        )
        raise typer.Exit(2)
    try:
        return Delivery(
            [u.get_secret_value() for u in config.urls],
            timeout_s=config.timeout_s,
            retries=config.retries,
        )
    except NotifyError as exc:
        err.print(f"notify: {exc}")
        raise typer.Exit(2) from exc


@app.command("test")
def send_test(
    ctx: typer.Context,
    message: Annotated[
        str, typer.Option("--message", "-m", help="The text to send")
    ] = "Test notification from Tessera: if you read this, this URL works.",
) -> None:
    """Send a test message to every notify URL and say which took it (exit 1 if any failed)."""
    from tessera.notify.messages import Message

    delivery = _delivery_or_exit(_config(ctx))
    title = f"[{socket.gethostname()}] Tessera notification test"
    try:
        results = asyncio.run(delivery.deliver(Message("test", title, message)))
    finally:
        delivery.close()
    for name, ok in results.items():
        out.print(f"  {name:<16} {'sent' if ok else 'FAILED'}")
    failed = [n for n, ok in results.items() if not ok]
    if failed:
        err.print(
            f"notify: {len(failed)} of {len(results)} URLs failed ({', '.join(failed)}); "
            "the log says why (URLs are named by scheme and position, never shown)"
        )
        raise typer.Exit(1)
    out.print(f"notify: all {len(results)} URLs took the test message")


@app.command("relay")
def relay(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port)")] = 9095,
) -> None:
    """Receive Alertmanager's webhook on POST /alertmanager and send each alert group to the
    notify URLs (until Ctrl-C / SIGTERM)."""
    # Without URLs it still serves (a stack without notifications must not crash-loop) and
    # answers every alert 503, which Alertmanager logs as a failed notification.
    delivery = _delivery_or_exit(_config(ctx), allow_none=True)
    if not delivery.targets:
        err.print("notify relay: no notify URLs configured: every alert will be refused (503)")
    from tessera.bootstrap import AppContext

    root = ctx.find_root().obj
    if isinstance(root, AppContext):
        root.start_metrics()
    try:
        asyncio.run(_serve_relay(delivery, host, port))
    except OSError as exc:
        err.print(f"notify relay: cannot listen on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(2) from exc
    finally:
        delivery.close()


async def _serve_relay(delivery: Delivery, host: str, port: int) -> None:
    from tessera.notify.relay import PATH, start_relay  # aiohttp: only for this command

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner, bound = await start_relay(delivery, host, port)
    out.print(
        f"notify relay: Alertmanager webhook at http://{host}:{bound}{PATH} -> "
        f"{', '.join(t.name for t in delivery.targets) or '(no URLs)'}. Ctrl-C stops."
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
