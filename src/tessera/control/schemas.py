"""What the control API returns and accepts.

Money, prices and quantities are decimal *strings* (as the exchange sends them), never floats;
times are integer nanoseconds since the epoch (UTC) with an ISO-8601 copy for people. These
models are the published OpenAPI schema: change them as an API change.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

# a decimal number as text, e.g. "0.00100000" (published as {"type": "string", "format": "decimal"})
Dec = Annotated[str, Field(json_schema_extra={"format": "decimal"})]
T = TypeVar("T")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StrategyStatus(_Out):
    strategy: str
    state: Literal["running", "paused", "paused_by_errors"]
    paused_by: str | None = None
    paused_reason: str | None = None
    errors: int = 0


class MarketDataStatus(_Out):
    symbol: str
    last_event_ns: int | None
    age_s: float | None


class Status(_Out):
    mode: str
    venue: str
    run_id: str
    version: str
    trading: Literal["trading", "halted", "warming_up", "stopping"]
    ready: bool
    started_ns: int
    uptime_s: float
    symbols: list[str]
    strategies: list[StrategyStatus]
    market_data: list[MarketDataStatus]


class Balance(_Out):
    asset: str
    free: Dec
    locked: Dec


class Balances(_Out):
    quote_asset: str
    equity: Dec
    assets: list[Balance]


class PositionOut(_Out):
    symbol: str
    strategy: str
    qty: Dec  # signed: negative is short
    entry_price: Dec | None
    mark_price: Dec | None
    unrealized_pnl: Dec | None


class OrderOut(_Out):
    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    strategy: str
    side: str
    type: str
    status: str
    qty: Dec
    filled_qty: Dec
    price: Dec | None
    stop_price: Dec | None
    reduce_only: bool
    reason: str
    ts_created: int


class FillOut(_Out):
    trade_id: str
    client_order_id: str
    symbol: str
    strategy: str
    side: str
    qty: Dec
    price: Dec
    fee: Dec
    fee_asset: str
    liquidity: str
    ts: int


class Page(_Out, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class StrategyPnl(_Out):
    strategy: str
    realized_net: Dec  # realized PnL net of fees, in the quote asset
    fees: Dec
    unrealized: Dec  # at the mark price
    trades: int


class EquityPoint(_Out):
    ts: int
    equity: Dec
    drawdown_pct: float


class HaltOut(_Out):
    reason: str
    ts: int
    by: str | None = None
    drawdown_pct: float | None = None


class RiskOut(_Out):
    state: Literal["trading", "halted"]
    halt: HaltOut | None
    equity: Dec
    equity_peak: Dec
    drawdown_pct: float
    max_drawdown_pct: float | None  # the kill-switch limit; None = off
    limits: dict[str, str]  # every RiskConfig limit, as text


class LogLine(_Out):
    ts: int
    level: str
    event: str
    logger: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)


class ActionRequest(BaseModel):
    """The body of every action: why (required, kept with who and when)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class ActionOut(_Out):
    id: int  # the control_actions row
    action: str
    target: str | None
    actor: str
    reason: str
    ts: int
    outcome: Literal["done", "refused", "failed"]
    detail: str = ""


class ActionRecord(ActionOut):
    """A stored action, as `GET /api/v1/actions` lists them."""

    role: str
    via: str


class Health(_Out):
    """``GET /healthz``: the control server answers (no authentication)."""

    status: Literal["ok"]
    version: str


class WhoAmI(_Out):
    """``GET /api/v1/whoami``: who the request authenticates as."""

    name: str
    role: Literal["read", "operate"]
    via: str  # token | session | local
