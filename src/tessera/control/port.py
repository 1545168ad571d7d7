"""`ControlPort`: what the control API and console need from a running bot, and `Actor`.

The API layer (`tessera.control.app`) knows nothing of the bot's insides; the bot's
implementation (`tessera.live.control_port.BotControl`) reads its own state and acts through
the same objects as everything else: a halt is the `HaltGuard`'s halt (persisted, survives a
restart), a close is a reduce-only order through the `OrderGateway` and the risk engine, a
pause is the strategy's guard. Every action is recorded (who, role, via, when, why, outcome) in
the ``control_actions`` table and logged before it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from tessera.control.schemas import (
    ActionOut,
    ActionRecord,
    Balances,
    EquityPoint,
    FillOut,
    LogLine,
    OrderOut,
    Page,
    PositionOut,
    RiskOut,
    Status,
    StrategyPnl,
)

Role = Literal["read", "operate"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a token's or user's name, its role, and how they came in
    (``token`` | ``session`` | ``cli``); ``address`` is the client's address, for the record."""

    name: str
    role: Role
    via: str
    address: str = ""

    @property
    def can_operate(self) -> bool:
        return self.role == "operate"


class ControlError(Exception):
    """An action or query the bot refuses: ``status`` is the HTTP status to answer with
    (404 unknown order/strategy/position, 409 not possible in this state, 422 bad input);
    ``message`` is one sentence for a person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ControlPort(Protocol):
    # --- reads -----------------------------------------------------------------------------
    def status(self) -> Status: ...

    def balances(self) -> Balances: ...

    def positions(self) -> list[PositionOut]: ...

    def open_orders(self) -> list[OrderOut]: ...

    async def orders(
        self,
        *,
        status: str | None = None,
        symbol: str | None = None,
        strategy: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[OrderOut]: ...

    async def fills(
        self,
        *,
        symbol: str | None = None,
        strategy: str | None = None,
        since_ns: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[FillOut]: ...

    async def pnl(self) -> list[StrategyPnl]: ...

    async def equity_history(
        self, *, since_ns: int | None = None, limit: int = 1_000
    ) -> list[EquityPoint]: ...

    def risk(self) -> RiskOut: ...

    def recent_logs(self, limit: int = 200, level: str | None = None) -> list[LogLine]: ...

    async def actions(self, *, limit: int = 100, offset: int = 0) -> Page[ActionRecord]: ...

    # --- actions: each is recorded and logged; ControlError when refused --------------------
    async def halt(self, actor: Actor, reason: str) -> ActionOut: ...

    async def reset(self, actor: Actor, reason: str) -> ActionOut: ...

    async def pause(self, actor: Actor, strategy: str, reason: str) -> ActionOut: ...

    async def resume(self, actor: Actor, strategy: str, reason: str) -> ActionOut: ...

    async def cancel(self, actor: Actor, client_order_id: str, reason: str) -> ActionOut: ...

    async def close_position(
        self, actor: Actor, symbol: str, strategy: str, reason: str
    ) -> ActionOut: ...
