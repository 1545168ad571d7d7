"""`PortDouble`: an in-memory `ControlPort` for the API and console tests.

It behaves like a small bot: two strategies on BTCUSDT/ETHUSDT, a few orders (two open), fills
and positions, an equity history, and a trading state that the actions change. Every action is
recorded in `recorded` (with its `Actor`, so tests can check attribution) and in the page that
`actions()` returns; an unknown strategy, order or position is a `ControlError` 404, a reset
while trading a 409, like the bot's own port.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from tessera.config.models import ControlConfig
from tessera.control.app import ConsoleMount, create_app
from tessera.control.auth import hash_password, token_sha256
from tessera.control.events import EventHub
from tessera.control.port import Actor, ControlError
from tessera.control.schemas import (
    ActionOut,
    ActionRecord,
    Balance,
    Balances,
    EquityPoint,
    FillOut,
    HaltOut,
    LogLine,
    MarketDataStatus,
    OrderOut,
    Page,
    PositionOut,
    RiskOut,
    Status,
    StrategyPnl,
    StrategyStatus,
)
from tessera.control.server import ControlServer, start_control_server

T0 = 1_767_225_600_000_000_000  # 2026-01-01 00:00:00 UTC


@dataclass(frozen=True)
class RecordedAction:
    action: str
    actor: Actor
    target: str | None
    reason: str


def _order(
    coid: str, symbol: str, strategy: str, side: str, status: str, i: int, price: str = "50000"
) -> OrderOut:
    return OrderOut(
        client_order_id=coid,
        exchange_order_id=str(1000 + i),
        symbol=symbol,
        strategy=strategy,
        side=side,
        type="LIMIT",
        status=status,
        qty="0.01000000",
        filled_qty="0.01000000" if status == "FILLED" else "0",
        price=price,
        stop_price=None,
        reduce_only=False,
        reason="signal",
        ts_created=T0 + i * 60_000_000_000,
    )


@dataclass
class PortDouble:
    """A `ControlPort` over lists in memory."""

    trading: str = "trading"
    halt_info: HaltOut | None = None
    paused: dict[str, tuple[str, str]] = field(default_factory=dict)  # strategy -> (by, why)
    recorded: list[RecordedAction] = field(default_factory=list)  # every action, in order
    records: list[ActionRecord] = field(default_factory=list)
    read_calls: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    fail_next_read: Exception | None = None
    strategies: tuple[str, ...] = ("trend_btc", "mr_eth")
    orders_list: list[OrderOut] = field(
        default_factory=lambda: [
            _order("tdemo-1", "BTCUSDT", "trend_btc", "BUY", "FILLED", 1),
            _order("tdemo-2", "ETHUSDT", "mr_eth", "SELL", "FILLED", 2, "3000"),
            _order("tdemo-3", "BTCUSDT", "trend_btc", "SELL", "NEW", 3, "52000"),
            _order("tdemo-4", "ETHUSDT", "mr_eth", "BUY", "NEW", 4, "2900"),
            _order("tdemo-5", "BTCUSDT", "trend_btc", "BUY", "CANCELED", 5),
        ]
    )
    fills_list: list[FillOut] = field(
        default_factory=lambda: [
            FillOut(
                trade_id="9001",
                client_order_id="tdemo-1",
                symbol="BTCUSDT",
                strategy="trend_btc",
                side="BUY",
                qty="0.01000000",
                price="50000.00",
                fee="0.50000000",
                fee_asset="USDT",
                liquidity="maker",
                ts=T0 + 61_000_000_000,
            ),
            FillOut(
                trade_id="9002",
                client_order_id="tdemo-2",
                symbol="ETHUSDT",
                strategy="mr_eth",
                side="SELL",
                qty="0.01000000",
                price="3000.00",
                fee="0.03000000",
                fee_asset="USDT",
                liquidity="taker",
                ts=T0 + 121_000_000_000,
            ),
        ]
    )
    positions_list: list[PositionOut] = field(
        default_factory=lambda: [
            PositionOut(
                symbol="BTCUSDT",
                strategy="trend_btc",
                qty="0.01000000",
                entry_price="50000.00",
                mark_price="50500.00",
                unrealized_pnl="5.00",
            ),
            PositionOut(
                symbol="ETHUSDT",
                strategy="mr_eth",
                qty="-0.01000000",
                entry_price="3000.00",
                mark_price="2990.00",
                unrealized_pnl="0.10",
            ),
        ]
    )

    # --- reads ----------------------------------------------------------------------------------

    def _read(self, name: str, **kwargs: object) -> None:
        self.read_calls.append((name, kwargs))
        if self.fail_next_read is not None:
            exc, self.fail_next_read = self.fail_next_read, None
            raise exc

    def status(self) -> Status:
        self._read("status")
        return Status(
            mode="paper",
            venue="sim",
            run_id="run-demo",
            version="0.0.0-test",
            trading="halted" if self.trading == "halted" else "trading",
            ready=True,
            started_ns=T0,
            uptime_s=60.0,
            symbols=["BTCUSDT", "ETHUSDT"],
            strategies=[
                StrategyStatus(
                    strategy=s,
                    state="paused" if s in self.paused else "running",
                    paused_by=self.paused[s][0] if s in self.paused else None,
                    paused_reason=self.paused[s][1] if s in self.paused else None,
                )
                for s in self.strategies
            ],
            market_data=[
                MarketDataStatus(symbol="BTCUSDT", last_event_ns=T0, age_s=1.5),
                MarketDataStatus(symbol="ETHUSDT", last_event_ns=None, age_s=None),
            ],
        )

    def balances(self) -> Balances:
        self._read("balances")
        return Balances(
            quote_asset="USDT",
            equity="10005.10",
            assets=[
                Balance(asset="USDT", free="9500.00", locked="520.00"),
                Balance(asset="BTC", free="0.01000000", locked="0"),
            ],
        )

    def positions(self) -> list[PositionOut]:
        self._read("positions")
        return list(self.positions_list)

    def open_orders(self) -> list[OrderOut]:
        self._read("open_orders")
        return [o for o in self.orders_list if o.status in ("NEW", "PARTIALLY_FILLED")]

    async def orders(
        self,
        *,
        status: str | None = None,
        symbol: str | None = None,
        strategy: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[OrderOut]:
        self._read(
            "orders", status=status, symbol=symbol, strategy=strategy, limit=limit, offset=offset
        )
        rows = [
            o
            for o in reversed(self.orders_list)
            if (status is None or o.status == status)
            and (symbol is None or o.symbol == symbol)
            and (strategy is None or o.strategy == strategy)
        ]
        return Page[OrderOut](
            items=rows[offset : offset + limit], total=len(rows), limit=limit, offset=offset
        )

    async def fills(
        self,
        *,
        symbol: str | None = None,
        strategy: str | None = None,
        since_ns: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[FillOut]:
        self._read(
            "fills", symbol=symbol, strategy=strategy, since_ns=since_ns, limit=limit, offset=offset
        )
        rows = [
            f
            for f in reversed(self.fills_list)
            if (symbol is None or f.symbol == symbol)
            and (strategy is None or f.strategy == strategy)
            and (since_ns is None or f.ts >= since_ns)
        ]
        return Page[FillOut](
            items=rows[offset : offset + limit], total=len(rows), limit=limit, offset=offset
        )

    async def pnl(self) -> list[StrategyPnl]:
        self._read("pnl")
        return [
            StrategyPnl(
                strategy="trend_btc", realized_net="-0.50", fees="0.50", unrealized="5.00", trades=1
            ),
            StrategyPnl(
                strategy="mr_eth", realized_net="-0.03", fees="0.03", unrealized="0.10", trades=1
            ),
        ]

    async def equity_history(
        self, *, since_ns: int | None = None, limit: int = 1_000
    ) -> list[EquityPoint]:
        self._read("equity_history", since_ns=since_ns, limit=limit)
        points = [
            EquityPoint(ts=T0 + i * 60_000_000_000, equity=str(10_000 + i), drawdown_pct=0.0)
            for i in range(10)
        ]
        return [p for p in points if since_ns is None or p.ts >= since_ns][:limit]

    def risk(self) -> RiskOut:
        self._read("risk")
        return RiskOut(
            state="halted" if self.trading == "halted" else "trading",
            halt=self.halt_info,
            equity="10005.10",
            equity_peak="10010.00",
            drawdown_pct=0.05,
            max_drawdown_pct=10.0,
            limits={"max_drawdown_pct": "10", "max_order_notional": "1000"},
        )

    def recent_logs(self, limit: int = 200, level: str | None = None) -> list[LogLine]:
        self._read("recent_logs", limit=limit, level=level)
        lines = [
            LogLine(ts=T0, level="info", event="bot started", logger="tessera.live.bot"),
            LogLine(
                ts=T0 + 1,
                level="warning",
                event="order rejected",
                logger="tessera.execution",
                fields={"client_order_id": "tdemo-9"},
            ),
        ]
        if level == "warning":
            lines = [line for line in lines if line.level == "warning"]
        return lines[-limit:]

    async def actions(self, *, limit: int = 100, offset: int = 0) -> Page[ActionRecord]:
        self._read("actions", limit=limit, offset=offset)
        rows = list(reversed(self.records))
        return Page[ActionRecord](
            items=rows[offset : offset + limit], total=len(rows), limit=limit, offset=offset
        )

    # --- actions --------------------------------------------------------------------------------

    def _done(self, action: str, actor: Actor, target: str | None, reason: str) -> ActionOut:
        self.recorded.append(RecordedAction(action, actor, target, reason))
        record = ActionRecord(
            id=len(self.records) + 1,
            action=action,
            target=target,
            actor=actor.name,
            reason=reason,
            ts=time.time_ns(),
            outcome="done",
            role=actor.role,
            via=actor.via,
        )
        self.records.append(record)
        return ActionOut.model_validate(record.model_dump(exclude={"role", "via"}))

    def _strategy(self, strategy: str) -> None:
        if strategy not in self.strategies:
            raise ControlError(404, f"no strategy {strategy!r} in this bot")

    async def halt(self, actor: Actor, reason: str) -> ActionOut:
        if self.trading == "halted":
            raise ControlError(409, "trading is already halted")
        self.trading = "halted"
        self.halt_info = HaltOut(reason=reason, ts=time.time_ns(), by=actor.name)
        return self._done("halt", actor, None, reason)

    async def reset(self, actor: Actor, reason: str) -> ActionOut:
        if self.trading != "halted":
            raise ControlError(409, "trading is not halted: nothing to reset")
        self.trading = "trading"
        self.halt_info = None
        return self._done("reset", actor, None, reason)

    async def pause(self, actor: Actor, strategy: str, reason: str) -> ActionOut:
        self._strategy(strategy)
        self.paused[strategy] = (actor.name, reason)
        return self._done("pause", actor, strategy, reason)

    async def resume(self, actor: Actor, strategy: str, reason: str) -> ActionOut:
        self._strategy(strategy)
        if strategy not in self.paused:
            raise ControlError(409, f"strategy {strategy!r} is not paused")
        del self.paused[strategy]
        return self._done("resume", actor, strategy, reason)

    async def cancel(self, actor: Actor, client_order_id: str, reason: str) -> ActionOut:
        for i, order in enumerate(self.orders_list):
            if order.client_order_id == client_order_id:
                if order.status not in ("NEW", "PARTIALLY_FILLED"):
                    raise ControlError(409, f"order {client_order_id} is {order.status}")
                self.orders_list[i] = order.model_copy(update={"status": "CANCELED"})
                return self._done("cancel", actor, client_order_id, reason)
        raise ControlError(404, f"no order {client_order_id!r}")

    async def close_position(
        self, actor: Actor, symbol: str, strategy: str, reason: str
    ) -> ActionOut:
        for i, pos in enumerate(self.positions_list):
            if pos.symbol == symbol and pos.strategy == strategy:
                del self.positions_list[i]
                return self._done("close_position", actor, f"{symbol}/{strategy}", reason)
        raise ControlError(404, f"no {symbol} position of strategy {strategy!r}")


# --- a running API over the double, for tests -------------------------------------------------


@dataclass
class RunningApi:
    """A control API served on 127.0.0.1 over real sockets; `url` is its base URL."""

    app: FastAPI
    server: ControlServer
    port: PortDouble
    hub: EventHub
    config: ControlConfig

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.asynccontextmanager
async def running_api(
    config: ControlConfig | None = None,
    port: PortDouble | None = None,
    console: ConsoleMount | None = None,
) -> AsyncIterator[RunningApi]:
    """Start `create_app` over a `PortDouble` on a free loopback port; stop it afterwards."""
    config = config or ControlConfig(enabled=True, port=0)
    port = port or PortDouble()
    hub = EventHub()
    app = create_app(port, hub, config, version="0.0.0-test", console=console)
    server = await start_control_server(app, "127.0.0.1", 0)
    try:
        yield RunningApi(app, server, port, hub, config)
    finally:
        await server.stop()


# --- credentials for tests (made here, never real ones) ---------------------------------------

OPERATE_TOKEN = "op-" + "A" * 40
READ_TOKEN = "rd-" + "B" * 40
OPERATOR = ("olga", "olga's long test password")
READER = ("rudi", "rudi's long test password")
_HASHES: dict[str, str] = {}


def password_hash_for(password: str) -> str:
    """argon2 is slow on purpose: hash each test password once per process."""
    if password not in _HASHES:
        _HASHES[password] = hash_password(password)
    return _HASHES[password]


def auth_config(**overrides: Any) -> ControlConfig:
    """An enabled config with an operate and a read token and an operate and a read user."""
    values: dict[str, Any] = {
        "enabled": True,
        "port": 0,
        "tokens": [
            {"name": "ops-bot", "role": "operate", "sha256": token_sha256(OPERATE_TOKEN)},
            {"name": "grafana", "role": "read", "sha256": token_sha256(READ_TOKEN)},
        ],
        "users": [
            {
                "name": OPERATOR[0],
                "role": "operate",
                "password_hash": password_hash_for(OPERATOR[1]),
            },
            {"name": READER[0], "role": "read", "password_hash": password_hash_for(READER[1])},
        ],
    }
    values.update(overrides)
    return ControlConfig.model_validate(values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
