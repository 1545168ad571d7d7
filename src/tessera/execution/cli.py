"""`tessera orders|fills|positions|risk|db`: read and steer the execution database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tessera.bootstrap import AppContext
from tessera.execution.persistence import ExecutionStore, migrate, now_ns
from tessera.logging import scrub

out = Console()
orders_app = typer.Typer(help="Orders recorded in the execution database.", no_args_is_help=True)
fills_app = typer.Typer(help="Fills recorded in the execution database.", no_args_is_help=True)
risk_app = typer.Typer(help="Trading state and the kill-switch.", no_args_is_help=True)
db_app = typer.Typer(help="The execution database schema.", no_args_is_help=True)

ACCOUNT = "main"


def _store(ctx: typer.Context) -> ExecutionStore:
    app = ctx.find_root().obj
    assert isinstance(app, AppContext)
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
) -> None:
    """List orders, newest first: type, prices, fills, status, the order list (OCO) an order
    belongs to and why it was sent (its exit reason when it closes a position)."""
    store = _store(ctx)
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
) -> None:
    """List fills, newest first (one row per exchange trade id), each with the reason of its
    order: the exit reason (stop_loss, take_profit, ...) when the fill closes a position."""
    store = _store(ctx)
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


def positions(ctx: typer.Context) -> None:
    """Positions per symbol and strategy, with average price and realized PnL."""
    store = _store(ctx)
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
    store.close()


@risk_app.command("status")
def risk_status(ctx: typer.Context) -> None:
    """Show whether trading is halted, since when and why."""
    store = _store(ctx)
    halt = store.load_halt(ACCOUNT)
    if halt is None:
        out.print("trading state: [green]ACTIVE[/] (no persisted halt)")
    else:
        out.print(
            f"trading state: [bold red]HALTED[/] since {_ts(halt['ts'])} UTC — "
            f"reason: {halt['reason']} (drawdown {halt['drawdown_pct']:.2f}%)"
        )
    store.close()


@risk_app.command("halt")
def risk_halt(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the audit trail)")],
) -> None:
    """Halt trading now. Running bots cancel their orders and stop; restarts stay halted."""
    store = _store(ctx)
    store.save_halt(ACCOUNT, f"manual: {reason}", now_ns(), 0.0, _peak(store))
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
        out.print(f"trading re-enabled by {by}; the equity peak restarts from the current equity")
    else:
        out.print("trading was not halted; nothing to reset")
    store.close()


def _peak(store: ExecutionStore) -> Decimal:
    halt = store.load_halt(ACCOUNT)
    return Decimal(halt["equity_peak"]) if halt else Decimal(0)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the execution database to the newest schema."""
    app = ctx.find_root().obj
    assert isinstance(app, AppContext)
    assert app.settings.database_url is not None
    migrate(app.settings.database_url)
    out.print(f"database at the newest schema: {scrub(app.settings.database_url)}")
