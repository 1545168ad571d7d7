"""Binance spot's user-data stream events -> the domain's reports.

* ``executionReport`` -> `ExecutionReport` (NEW, TRADE, CANCELED, EXPIRED, REJECTED, ...);
  a TRADE carries one fill (``t`` is the exchange trade id: fills are deduplicated by it);
* ``outboundAccountPosition`` -> `AccountPosition` (balances after a change);
* ``listStatus`` -> `ListStatus`: an order list (OCO) started, or is done.

Every order type parses the same way; a report also names the type (``o``), the stop price
(``P``, stop and take-profit types) and the order list (``g``, -1 when none). Frames arrive
bare, in the combined-stream envelope (``{"stream", "data"}``) or in the WebSocket API's
(``{"subscriptionId", "event"}``). The connection itself is `tessera.execution.userdata`'s.
"""

from __future__ import annotations

from decimal import Decimal

import orjson

from tessera.execution.orders import Fill, Liquidity, OrderSide, OrderType
from tessera.execution.reports import AccountPosition, ExecutionReport, ListStatus
from tessera.venues.binance.user_data import MalformedEventError, unwrap
from tessera.venues.binance_spot.status import SPOT_STATUS

__all__ = ["MalformedEventError", "UserEvent", "parse_user_event"]

MS = 1_000_000

UserEvent = ExecutionReport | AccountPosition | ListStatus


def parse_user_event(raw: str | bytes) -> UserEvent | None:
    """One user-data frame; None for event types we do not use. Raises `MalformedEventError`."""
    try:
        d = unwrap(orjson.loads(raw))
        kind = d["e"]
        if kind == "executionReport":
            exec_type = str(d["x"])
            # a cancel names the canceled order in "C" (its own "c" is the cancel request's id)
            cid = str(d["C"]) if exec_type == "CANCELED" and d.get("C") else str(d["c"])
            side = OrderSide(str(d["S"]))
            stop = Decimal(str(d.get("P") or "0"))
            otype = str(d.get("o", ""))
            fill = None
            if exec_type == "TRADE":
                fill = Fill(
                    trade_id=str(d["t"]),
                    client_order_id=cid,
                    symbol=str(d["s"]),
                    side=side,
                    price=Decimal(str(d["L"])),
                    qty=Decimal(str(d["l"])),
                    fee=Decimal(str(d["n"])),
                    fee_asset=str(d["N"] or ""),
                    liquidity=Liquidity.MAKER if d["m"] else Liquidity.TAKER,
                    ts_event=int(d["T"]) * MS,
                )
            return ExecutionReport(
                symbol=str(d["s"]),
                client_order_id=cid,
                side=side,
                exec_type=exec_type,
                status=SPOT_STATUS[str(d["X"])],
                exchange_order_id=str(d["i"]),
                cum_qty=Decimal(str(d["z"])),
                cum_quote=Decimal(str(d["Z"])),
                event_ms=int(d["E"]),
                fill=fill,
                reject_reason=str(d.get("r", "NONE")),
                order_type=OrderType(otype) if otype in OrderType.__members__ else None,
                stop_price=stop if stop else None,
                order_list_id=int(d.get("g", -1)),
                working=bool(d.get("w", True)),
            )
        if kind == "outboundAccountPosition":
            return AccountPosition(
                int(d["E"]),
                {b["a"]: (Decimal(str(b["f"])), Decimal(str(b["l"]))) for b in d["B"]},
            )
        if kind == "listStatus":
            return ListStatus(
                symbol=str(d["s"]),
                order_list_id=int(d["g"]),
                list_client_order_id=str(d["C"]),
                contingency_type=str(d["c"]),
                list_status_type=str(d["l"]),
                list_order_status=str(d["L"]),
                reject_reason=str(d.get("r", "NONE")),
                event_ms=int(d["E"]),
                orders=tuple((int(o["i"]), str(o["c"])) for o in d["O"]),
            )
        return None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise MalformedEventError(f"{type(exc).__name__}: {exc}") from exc
