"""`tessera orders|fills|positions|risk|db`: read and steer the execution database.

A perpetual's funding payments are ledger rows too (``funding_payments``): `tessera fills
funding` lists them, and `tessera positions` adds what each symbol paid or received.

Every list and status command takes ``--json``: one JSON document on stdout (the same rows,
filters and limit as the table; Decimals as strings, times as ISO-8601 UTC and epoch ms).
``tessera risk status`` exits `EXIT_HALTED` when trading is halted, so a script can test it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tessera.console import echo_json, epoch_ms, iso_utc, make_console
from tessera.execution.orders import Order
from tessera.execution.position import Position
from tessera.logging import scrub

if TYPE_CHECKING:  # SQLAlchemy and Alembic load in the commands: `--help` stays fast
    from tessera.bootstrap import AppContext
    from tessera.execution.persistence import ExecutionStore, StoredFill, StoredFunding

out = make_console()
orders_app = typer.Typer(help="Orders recorded in the execution database.", no_args_is_help=True)
fills_app = typer.Typer(help="Fills recorded in the execution database.", no_args_is_help=True)
risk_app = typer.Typer(help="Trading state and the kill-switch.", no_args_is_help=True)
db_app = typer.Typer(help="The execution database schema.", no_args_is_help=True)

ACCOUNT = "main"
# `tessera risk status` exit code when trading is halted (0 when trading); docs/cli.md
EXIT_HALTED = 3

JsonFlag = Annotated[
    bool, typer.Option("--json", help="One JSON document on stdout instead of the table")
]


def _app(ctx: typer.Context) -> AppContext:
    """The root's bootstrap result (imported here: a command's `--help` needs no settings)."""
    from tessera.bootstrap import AppContext

    app = ctx.find_root().obj
    assert isinstance(app, AppContext)
    return app


def _store(ctx: typer.Context) -> ExecutionStore:
    from tessera.execution.persistence import ExecutionStore

    app = _app(ctx)
    url = app.settings.database_url
    assert url is not None
    return ExecutionStore(url)


def _ts(ns: int | None) -> str:
    if not ns:
        return ""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _num(value: Decimal | None) -> str:
    return f"{value.normalize():f}" if value is not None else ""


@orders_app.command("list")
def orders_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Newest N orders")] = 50,
    status: Annotated[str | None, typer.Option(help="Only this status, e.g. FILLED")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List orders, newest first: type, prices, fills, status, the order list (OCO) an order
    belongs to and why it was sent (its exit reason when it closes a position)."""
    store = _store(ctx)
    if as_json:
        echo_json([_order_json(o) for o in store.list_orders(limit, status)])
        store.close()
        return
    table = Table(title="orders")
    for col in (
        "created (UTC)",
        "client order id",
        "strategy",
        "symbol",
        "side",
        "type",
        "qty",
        "price",
        "stop price",
        "filled",
        "avg price",
        "status",
        "list",
        "reason",
    ):
        table.add_column(col)
    for o in store.list_orders(limit, status):
        table.add_row(
            _ts(o.ts_created),
            o.client_order_id,
            o.strategy,
            o.symbol,
            o.side.value,
            o.type.value,
            _num(o.qty),
            _num(o.price),
            _num(o.stop_price),
            _num(o.filled_qty),
            f"{o.avg_price:.8g}" if o.avg_price is not None else "",
            o.status.value,
            o.list_id,
            o.reason.value + (" (reduce only)" if o.reduce_only else ""),
        )
    out.print(table)
    store.close()


@fills_app.command("list")
def fills_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Newest N fills")] = 50,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List fills, newest first (one row per exchange trade id), each with the reason of its
    order: the exit reason (stop_loss, take_profit, ...) when the fill closes a position."""
    store = _store(ctx)
    if as_json:
        echo_json([_fill_json(sf) for sf in store.list_fills(limit, symbol)])
        store.close()
        return
    table = Table(title="fills")
    for col in (
        "time (UTC)",
        "trade id",
        "order",
        "strategy",
        "symbol",
        "side",
        "qty",
        "price",
        "fee",
        "liq",
        "reason",
    ):
        table.add_column(col)
    for sf in store.list_fills(limit, symbol):
        f = sf.fill
        table.add_row(
            _ts(f.ts_event),
            f.trade_id,
            f.client_order_id,
            f.strategy,
            f.symbol,
            f.side.value,
            f"{f.qty.normalize():f}",
            f"{f.price.normalize():f}",
            f"{f.fee.normalize():f} {f.fee_asset}",
            f.liquidity.value,
            sf.reason.value,
        )
    out.print(table)
    store.close()


@fills_app.command("funding")
def fills_funding(
    ctx: typer.Context,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List a perpetual account's funding payments, oldest first (one row per payment,
    whether the user-data stream or /fapi/v1/income reported it); negative: paid."""
    store = _store(ctx)
    try:
        rows = store.funding_payments(ACCOUNT, symbol)
    finally:
        store.close()
    if as_json:
        echo_json([_funding_json(sf) for sf in rows])
        return
    table = Table(title="funding payments")
    for col in ("funding time (UTC)", "symbol", "amount", "asset", "source", "venue id"):
        table.add_column(col)
    for sf in rows:
        r = sf.record
        table.add_row(
            _ts(r.ts_ms * 1_000_000),
            r.symbol,
            _num(r.amount),
            r.asset,
            r.source,
            r.venue_id or "",
        )
    out.print(table)


def _funding_json(sf: StoredFunding) -> dict[str, Any]:
    """A `fills funding` row for ``--json``: the table's columns, unformatted."""
    r = sf.record
    return {
        "time": iso_utc(r.ts_ms * 1_000_000),
        "time_ms": r.ts_ms,
        "symbol": r.symbol,
        "amount": r.amount,
        "asset": r.asset,
        "source": r.source,
        "venue_id": r.venue_id,
    }


def _funding_totals(store: ExecutionStore) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """(symbol, asset) -> (the sum of its funding payments, how many)."""
    totals: dict[tuple[str, str], tuple[Decimal, int]] = {}
    for sf in store.funding_payments(ACCOUNT):
        key = (sf.record.symbol, sf.record.asset)
        total, n = totals.get(key, (Decimal(0), 0))
        totals[key] = (total + sf.record.amount, n + 1)
    return totals


def positions(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Positions per symbol and strategy, with average price and realized PnL."""
    # a perpetual account's table adds the funding each symbol paid or received (``--json``
    # lists the positions only; `tessera fills funding --json` lists the payments)
    store = _store(ctx)
    if as_json:
        echo_json([_position_json(p) for p in store.positions()])
        store.close()
        return
    table = Table(title="positions")
    for col in ("symbol", "strategy", "qty", "avg price", "realized PnL", "fees", "updated (UTC)"):
        table.add_column(col)
    for p in store.positions():
        table.add_row(
            p.symbol,
            p.strategy,
            f"{p.qty.normalize():f}",
            f"{p.avg_price:.8g}" if p.qty else "",
            f"{p.realized_pnl:.8g}",
            f"{p.fees_quote:.8g}",
            _ts(p.ts_last),
        )
    out.print(table)
    totals = _funding_totals(store)
    store.close()
    if totals:  # a perpetual account: what each symbol's funding paid (negative) or received
        funding = Table(title="funding")
        for col in ("symbol", "funding total", "payments"):
            funding.add_column(col)
        for (sym, asset), (total, n) in sorted(totals.items()):
            funding.add_row(sym, f"{_num(total)} {asset}", str(n))
        out.print(funding)


@risk_app.command("status")
def risk_status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show whether trading is halted, since when and why. Exit code 0 when trading is active,
    3 when it is halted (a script can test the state without reading the text)."""
    store = _store(ctx)
    halt = store.load_halt(ACCOUNT)
    store.close()
    if as_json:
        echo_json(_halt_json(halt))
    elif halt is None:
        out.print("trading state: [green]ACTIVE[/] (no persisted halt)")
    else:
        out.print(
            f"trading state: [bold red]HALTED[/] since {_ts(halt['ts'])} UTC — "
            f"reason: {halt['reason']} (drawdown {halt['drawdown_pct']:.2f}%)"
        )
    if halt is not None:
        raise typer.Exit(EXIT_HALTED)


def _order_json(o: Order) -> dict[str, Any]:
    """An `orders list` row for ``--json``: the table's columns, unformatted."""
    return {
        "created": iso_utc(o.ts_created),
        "created_ms": epoch_ms(o.ts_created),
        "client_order_id": o.client_order_id,
        "strategy": o.strategy,
        "symbol": o.symbol,
        "side": o.side,
        "type": o.type,
        "qty": o.qty,
        "price": o.price,
        "stop_price": o.stop_price,
        "filled_qty": o.filled_qty,
        "avg_price": o.avg_price,
        "status": o.status,
        "list_id": o.list_id or None,
        "reason": o.reason,
        "reduce_only": o.reduce_only,
    }


def _fill_json(sf: StoredFill) -> dict[str, Any]:
    """A `fills list` row for ``--json``: the table's columns, the fee and its asset apart."""
    f = sf.fill
    return {
        "time": iso_utc(f.ts_event),
        "time_ms": epoch_ms(f.ts_event),
        "trade_id": f.trade_id,
        "client_order_id": f.client_order_id,
        "strategy": f.strategy,
        "symbol": f.symbol,
        "side": f.side,
        "qty": f.qty,
        "price": f.price,
        "fee": f.fee,
        "fee_asset": f.fee_asset,
        "liquidity": f.liquidity,
        "reason": sf.reason,
    }


def _position_json(p: Position) -> dict[str, Any]:
    """A `positions` row for ``--json``; ``avg_price`` is null when flat, as the table's cell
    is empty."""
    return {
        "symbol": p.symbol,
        "strategy": p.strategy,
        "qty": p.qty,
        "avg_price": p.avg_price if p.qty else None,
        "realized_pnl": p.realized_pnl,
        "fees_quote": p.fees_quote,
        "updated": iso_utc(p.ts_last),
        "updated_ms": epoch_ms(p.ts_last),
    }


def _halt_json(halt: dict[str, Any] | None) -> dict[str, Any]:
    """`risk status --json`: the state, and since when, why and at what drawdown if halted."""
    if halt is None:
        return {"state": "ACTIVE", "halted": False}
    return {
        "state": "HALTED",
        "halted": True,
        "since": iso_utc(halt["ts"]),
        "since_ms": epoch_ms(halt["ts"]),
        "reason": halt["reason"],
        "drawdown_pct": halt["drawdown_pct"],
        "equity_peak": halt["equity_peak"],
    }


@risk_app.command("halt")
def risk_halt(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the audit trail)")],
) -> None:
    """Halt trading now. Running bots cancel their orders and stop; restarts stay halted."""
    from tessera.execution.persistence import now_ns

    store = _store(ctx)
    already = store.load_halt(ACCOUNT) is not None
    store.save_halt(ACCOUNT, f"manual: {reason}", now_ns(), 0.0, _peak(store))
    _record_cli_action(store, _os_user(), "halt", reason, "was halted already" if already else "")
    out.print(f"[bold red]HALTED[/]: {reason}. Undo with `tessera risk reset --by <name>`.")
    store.close()


@risk_app.command("reset")
def risk_reset(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", help="Who re-enables trading (audit trail)")],
) -> None:
    """Re-enable trading after a halt (kill-switch or manual). Requires a person's name."""
    store = _store(ctx)
    if store.clear_halt(ACCOUNT, by=f"reset by {by}"):
        _record_cli_action(store, by, "reset", f"tessera risk reset --by {by}")
        out.print(f"trading re-enabled by {by}; the equity peak restarts from the current equity")
    else:
        _record_cli_action(store, by, "reset", f"tessera risk reset --by {by}", refused=True)
        out.print("trading was not halted; nothing to reset")
    store.close()


def _os_user() -> str:
    """Who ran the command, for the audit trail (``tessera risk halt`` names no person)."""
    import getpass

    try:
        return getpass.getuser()[:64] or "cli"
    except Exception:  # no user name in this environment (a container without one)
        return "cli"


def _record_cli_action(
    store: ExecutionStore,
    actor: str,
    action: str,
    reason: str,
    detail: str = "",
    *,
    refused: bool = False,
) -> None:
    """The command in ``control_actions`` beside the console's and the API's actions (via
    ``cli``), so that one audit trail says who halted and who reset, however they did."""
    store.record_action(
        actor=actor[:64],
        role="operate",
        via="cli",
        address="",
        action=action,
        target=None,
        reason=reason,
        outcome="refused" if refused else "done",
        detail="trading was not halted" if refused else detail,
    )


def _peak(store: ExecutionStore) -> Decimal:
    halt = store.load_halt(ACCOUNT)
    return Decimal(halt["equity_peak"]) if halt else Decimal(0)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the execution database to the newest schema."""
    from tessera.execution.persistence import migrate

    app = _app(ctx)
    assert app.settings.database_url is not None
    migrate(app.settings.database_url)
    out.print(f"database at the newest schema: {scrub(app.settings.database_url)}")
