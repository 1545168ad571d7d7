"""Binance USDⓈ-M's user-data stream events -> the domain's reports.

* ``ORDER_TRADE_UPDATE`` -> `FuturesExecutionReport`: an `ExecutionReport` (the same fields as
  spot's, so the order manager reads both alike) plus what only futures have: reduce-only,
  position side, realized PnL of the fill, average price, the venue's own order type and
  whether the exchange placed the order itself (liquidation, ADL, settlement). A fill comes
  with execution type ``TRADE`` or ``CALCULATED`` (a liquidation) when ``l`` > 0.
* ``ACCOUNT_UPDATE`` -> `FuturesAccountUpdate`: the changed balances (wallet, cross wallet,
  change) and positions (signed amount, entry and break-even price, unrealized PnL, margin
  mode, isolated wallet, position side), with the reason (``m``: ORDER, FUNDING_FEE, ...).
* ``ALGO_UPDATE`` -> `FuturesExecutionReport` too, for a stop or take-profit of Binance's
  algo order service (``/fapi/v1/algoOrder``) before it becomes a matching-engine order: the
  client id is the ``clientAlgoId`` (``caid``), ``exchange_order_id`` ``algo-<aid>``, never a
  fill, ``working`` False. ``X`` NEW and TRIGGERING -> ACCEPTED, CANCELED, EXPIRED,
  REJECTED as named; TRIGGERED -> ACCEPTED with ``exchange_order_id`` the order it became
  (``ai``), working. FINISHED gives None: the order it became reports its fills and its end
  with ``ORDER_TRADE_UPDATE`` (an ALGO_UPDATE carries no trade, and "finished" does not say
  filled or canceled).
* ``MARGIN_CALL`` -> `MarginCall`: the positions near liquidation.
* ``listenKeyExpired`` -> `ListenKeyExpired`: the stream is dead; open a new listen key.

Other events (``TRADE_LITE``, ``ACCOUNT_CONFIG_UPDATE``, ...) give None:
nothing in them is needed to keep orders and positions right (``TRADE_LITE`` repeats a fill
that ``ORDER_TRADE_UPDATE`` also reports).

Two differences from spot to know: a futures order update has no cumulative quote quantity, so
``cum_quote`` is the cumulative quantity times the average price ``ap`` (as exact as Binance's
rounding of ``ap``); and it has no "on the book" flag, so ``working`` is True until the order's
status is terminal. Binance leaves out the commission fields of a fill that paid none (a
delivery settlement): its fee is then 0 with no asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from tessera.execution.orders import Fill, Liquidity, OrderSide, OrderStatus, OrderType
from tessera.execution.perp.margin import MarginMode
from tessera.execution.reports import ExecutionReport
from tessera.venues.binance.user_data import MalformedEventError, unwrap
from tessera.venues.binance_usdm.status import USDM_STATUS

__all__ = [
    "FuturesAccountUpdate",
    "FuturesBalance",
    "FuturesExecutionReport",
    "FuturesPosition",
    "ListenKeyExpired",
    "MalformedEventError",
    "MarginCall",
    "MarginCallPosition",
    "UsdmUserEvent",
    "parse_user_event",
]

MS = 1_000_000
ZERO = Decimal(0)
# client order id prefixes of the orders Binance places itself
EXCHANGE_ORDER_PREFIXES = (
    "autoclose-",
    "adl_autoclose",
    "settlement_autoclose-",
    "delivery_autoclose-",
)
_MARGIN_MODES = {
    "isolated": MarginMode.ISOLATED,
    "cross": MarginMode.CROSS,
    "crossed": MarginMode.CROSS,  # MARGIN_CALL spells it CROSSED
}


@dataclass(frozen=True)
class FuturesExecutionReport(ExecutionReport):
    """An order update of USDⓈ-M: the spot fields, then futures' own."""

    reduce_only: bool = False  # R
    position_side: str = "BOTH"  # ps: BOTH (one-way mode), LONG or SHORT (hedge mode)
    realized_pnl: Decimal = ZERO  # rp: of this fill
    average_price: Decimal = ZERO  # ap
    venue_order_type: str = ""  # o: LIMIT, MARKET, STOP, STOP_MARKET, TRAILING_STOP_MARKET, ...
    time_in_force: str = ""  # f: GTC, IOC, FOK, GTX, GTD
    by_exchange: bool = False  # a liquidation, ADL or settlement order Binance placed itself


@dataclass(frozen=True)
class FuturesBalance:
    wallet: Decimal  # wb
    cross_wallet: Decimal  # cw
    change: Decimal  # bc: balance change except PnL and commission


@dataclass(frozen=True)
class FuturesPosition:
    symbol: str
    qty: Decimal  # pa: signed, long > 0, short < 0
    entry_price: Decimal  # ep
    breakeven_price: Decimal  # bep
    accumulated_realized: Decimal  # cr: realized PnL accumulated before this update
    unrealized_pnl: Decimal  # up
    margin_mode: MarginMode  # mt
    isolated_wallet: Decimal  # iw: 0 in cross mode
    position_side: str  # ps: BOTH, LONG, SHORT


@dataclass(frozen=True)
class FuturesAccountUpdate:
    event_ms: int
    transaction_ms: int
    reason: str  # m: ORDER, FUNDING_FEE, DEPOSIT, WITHDRAW, MARGIN_TRANSFER, ...
    balances: dict[str, FuturesBalance]
    positions: tuple[FuturesPosition, ...]


@dataclass(frozen=True)
class MarginCallPosition:
    symbol: str
    position_side: str
    qty: Decimal
    margin_mode: MarginMode
    isolated_wallet: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    maintenance_margin: Decimal


@dataclass(frozen=True)
class MarginCall:
    event_ms: int
    cross_wallet: Decimal | None  # cw: only with a cross position's margin call
    positions: tuple[MarginCallPosition, ...]


@dataclass(frozen=True)
class ListenKeyExpired:
    event_ms: int
    listen_key: str  # "" when the event does not name it


UsdmUserEvent = FuturesExecutionReport | FuturesAccountUpdate | MarginCall | ListenKeyExpired


def _dec(d: dict[str, Any], key: str) -> Decimal:
    value = Decimal(str(d[key]))
    if not value.is_finite():
        raise ValueError(f"field {key!r} is not finite: {d[key]!r}")
    return value


def _margin_mode(raw: Any) -> MarginMode:
    try:
        return _MARGIN_MODES[str(raw).lower()]
    except KeyError:
        raise ValueError(f"unknown margin type {raw!r}") from None


def _order_update(d: dict[str, Any]) -> FuturesExecutionReport:
    o = d["o"]
    exec_type = str(o["x"])
    cid = str(o["c"])
    side = OrderSide(str(o["S"]))
    last_qty = _dec(o, "l")
    fill = None
    if exec_type in ("TRADE", "CALCULATED") and last_qty > 0:
        fee_given = "n" in o or "N" in o
        fill = Fill(
            trade_id=str(o["t"]),
            client_order_id=cid,
            symbol=str(o["s"]),
            side=side,
            price=_dec(o, "L"),
            qty=last_qty,
            fee=_dec(o, "n") if fee_given else ZERO,
            fee_asset=str(o["N"] or "") if fee_given else "",
            liquidity=Liquidity.MAKER if o["m"] else Liquidity.TAKER,
            ts_event=int(o["T"]) * MS,
        )
    status = USDM_STATUS[str(o["X"])]
    cum_qty = _dec(o, "z")
    average = _dec(o, "ap")
    stop = _dec(o, "sp")
    otype = str(o["o"])
    return FuturesExecutionReport(
        symbol=str(o["s"]),
        client_order_id=cid,
        side=side,
        exec_type=exec_type,
        status=status,
        exchange_order_id=str(o["i"]),
        cum_qty=cum_qty,
        cum_quote=cum_qty * average,
        event_ms=int(d["E"]),
        fill=fill,
        order_type=OrderType(otype) if otype in OrderType.__members__ else None,
        stop_price=stop if stop else None,
        working=not status.is_terminal,
        reduce_only=bool(o["R"]),
        position_side=str(o.get("ps", "BOTH")),
        realized_pnl=_dec(o, "rp") if "rp" in o else ZERO,
        average_price=average,
        venue_order_type=otype,
        time_in_force=str(o["f"]),
        by_exchange=cid.startswith(EXCHANGE_ORDER_PREFIXES),
    )


_ALGO_STATUS = {
    "NEW": OrderStatus.ACCEPTED,
    "TRIGGERING": OrderStatus.ACCEPTED,
    "TRIGGERED": OrderStatus.ACCEPTED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}


def _algo_update(d: dict[str, Any]) -> FuturesExecutionReport | None:
    o = d["o"]
    wire = str(o["X"])
    if wire == "FINISHED":
        return None
    status = _ALGO_STATUS.get(wire)
    if status is None:
        raise ValueError(f"unknown algo status {wire!r}")
    triggered = wire == "TRIGGERED"
    otype = str(o["o"])
    stop = _dec(o, "tp")
    return FuturesExecutionReport(
        symbol=str(o["s"]),
        client_order_id=str(o["caid"]),
        side=OrderSide(str(o["S"])),
        exec_type=wire,
        status=status,
        exchange_order_id=str(o["ai"]) if triggered else f"algo-{o['aid']}",
        cum_qty=ZERO,
        cum_quote=ZERO,
        event_ms=int(d["E"]),
        fill=None,
        reject_reason=str(o.get("rm") or "NONE") if status is OrderStatus.REJECTED else "NONE",
        order_type=OrderType(otype) if otype in OrderType.__members__ else None,
        stop_price=stop if stop else None,
        working=triggered,
        reduce_only=bool(o["R"]),
        position_side=str(o.get("ps", "BOTH")),
        venue_order_type=otype,
        time_in_force=str(o["f"]),
    )


def _account_update(d: dict[str, Any]) -> FuturesAccountUpdate:
    a = d["a"]
    balances = {
        str(b["a"]): FuturesBalance(
            _dec(b, "wb"), _dec(b, "cw"), _dec(b, "bc") if "bc" in b else ZERO
        )
        for b in a["B"]
    }
    positions = tuple(
        FuturesPosition(
            symbol=str(p["s"]),
            qty=_dec(p, "pa"),
            entry_price=_dec(p, "ep"),
            breakeven_price=_dec(p, "bep"),
            accumulated_realized=_dec(p, "cr"),
            unrealized_pnl=_dec(p, "up"),
            margin_mode=_margin_mode(p["mt"]),
            isolated_wallet=_dec(p, "iw"),
            position_side=str(p["ps"]),
        )
        for p in a["P"]
    )
    return FuturesAccountUpdate(int(d["E"]), int(d["T"]), str(a["m"]), balances, positions)


def _margin_call(d: dict[str, Any]) -> MarginCall:
    positions = tuple(
        MarginCallPosition(
            symbol=str(p["s"]),
            position_side=str(p["ps"]),
            qty=_dec(p, "pa"),
            margin_mode=_margin_mode(p["mt"]),
            isolated_wallet=_dec(p, "iw"),
            mark_price=_dec(p, "mp"),
            unrealized_pnl=_dec(p, "up"),
            maintenance_margin=_dec(p, "mm"),
        )
        for p in d["p"]
    )
    return MarginCall(int(d["E"]), _dec(d, "cw") if "cw" in d else None, positions)


def parse_user_event(raw: str | bytes) -> UsdmUserEvent | None:
    """One USDⓈ-M user-data frame; None for event types we do not use. Raises
    `MalformedEventError` naming the event type and the error."""
    kind = "?"
    try:
        d = unwrap(orjson.loads(raw))
        kind = str(d["e"])
        if kind == "ORDER_TRADE_UPDATE":
            return _order_update(d)
        if kind == "ACCOUNT_UPDATE":
            return _account_update(d)
        if kind == "ALGO_UPDATE":
            return _algo_update(d)
        if kind == "MARGIN_CALL":
            return _margin_call(d)
        if kind == "listenKeyExpired":
            return ListenKeyExpired(int(d["E"]), str(d.get("listenKey", "")))
        return None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise MalformedEventError(f"{kind}: {type(exc).__name__}: {exc}") from exc
