"""Our orders as the simulated exchange holds them, and every wire form Binance gives them.

`SimOrder` is one order (any spot type), `SimFill` one of its executions, `SimOrderList` an OCO
pair. Each renders itself the way Binance spells it, so the REST handlers and the user-data
stream cannot disagree about a field:

* ``rest()`` — ``GET /api/v3/order``, ``openOrders`` (``stopPrice``, ``isWorking``,
  ``workingTime``: a stop is not working, ``workingTime`` -1, until it triggers);
* ``ack()`` — the ``POST /api/v3/order`` / ``DELETE`` answers (ACK, RESULT, FULL); ``stopPrice``
  appears for stop and take-profit types only, as Binance's conditional fields;
* ``report()`` — the ``executionReport`` event (``o`` type, ``P`` stop price, ``g`` order list
  id, -1 when none; ``w``/``W`` only while the order is on the book);
* `SimOrderList.rest` / ``ack`` / ``event`` — ``GET /api/v3/orderList``, the ``orderList/oco``
  answer with its ``orderReports``, and the ``listStatus`` event.

Field order follows the real payloads in ``samples/binance-api/spot-http`` and
``samples/binance-api/spot-user-data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tessera.sim.payloads import fmt8

ZERO = Decimal(0)
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
MARKET_ON_TRIGGER = frozenset({"STOP_LOSS", "TAKE_PROFIT"})


@dataclass
class SimOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    type: str  # MARKET, LIMIT, LIMIT_MAKER, STOP_LOSS(_LIMIT), TAKE_PROFIT(_LIMIT)
    time_in_force: str  # GTC / IOC / FOK
    price: Decimal  # 0 for MARKET, STOP_LOSS and TAKE_PROFIT
    orig_qty: Decimal
    time_ms: int
    stop_price: Decimal = ZERO
    list_id: int = -1  # orderListId: the OCO it belongs to, -1 when none
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_ms: int = 0
    locked: Decimal = ZERO  # balance held for the open remainder (quote for BUY, base for SELL)
    # when it started working on the book; -1 for a stop or take-profit not triggered yet
    working_ms: int = -1
    # index of the first replayed trade (of its symbol) it may meet: trades printed before it
    # reached the exchange never touch it
    active_from: int = 0

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def has_stop(self) -> bool:
        return self.type in STOP_TYPES

    @property
    def is_working(self) -> bool:
        """On the book (or walking it): not a stop waiting for its trigger."""
        return self.working_ms >= 0

    @property
    def rests_as_limit(self) -> bool:
        """Waits at its limit price for trades to reach it (as a maker)."""
        if not self.is_working or not self.is_open:
            return False
        return self.type in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")

    def triggers_above(self) -> bool:
        """A stop-loss buys on the way up and sells on the way down; a take-profit the other way
        round (Binance's rule, the same as `OrderType.trigger_above`)."""
        rising = self.side == "BUY"
        return rising if self.type.startswith("STOP_LOSS") else not rising

    def would_trigger(self, price: Decimal) -> bool:
        return price >= self.stop_price if self.triggers_above() else price <= self.stop_price

    def rest(self) -> dict[str, Any]:
        """``GET /api/v3/order`` form."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": self.list_id,
            "clientOrderId": self.client_order_id,
            "price": fmt8(self.price),
            "origQty": fmt8(self.orig_qty),
            "executedQty": fmt8(self.executed_qty),
            "cummulativeQuoteQty": fmt8(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt8(self.stop_price),
            "icebergQty": fmt8(ZERO),
            "time": self.time_ms,
            "updateTime": self.update_ms or self.time_ms,
            "isWorking": self.is_working,
            "workingTime": self.working_ms,
            "origQuoteOrderQty": "0.000000",
            "selfTradePreventionMode": "NONE",
        }

    def ack(self, resp_type: str, fills: list[SimFill]) -> dict[str, Any]:
        """``POST /api/v3/order`` response (ACK, RESULT or FULL); also an OCO's order report."""
        body: dict[str, Any] = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": self.list_id,
            "clientOrderId": self.client_order_id,
            "transactTime": self.update_ms or self.time_ms,
        }
        if resp_type == "ACK":
            return body
        body.update(
            {
                "price": fmt8(self.price),
                "origQty": fmt8(self.orig_qty),
                "executedQty": fmt8(self.executed_qty),
                "origQuoteOrderQty": "0.000000",
                "cummulativeQuoteQty": fmt8(self.cum_quote),
                "status": self.status,
                "timeInForce": self.time_in_force,
                "type": self.type,
                "side": self.side,
            }
        )
        if self.has_stop:
            body["stopPrice"] = fmt8(self.stop_price)
        body["workingTime"] = self.working_ms
        body["selfTradePreventionMode"] = "NONE"
        if resp_type == "FULL":
            body["fills"] = [f.short() for f in fills]
        return body

    def cancel_ack(self, client_order_id: str = "") -> dict[str, Any]:
        """The ``DELETE /api/v3/order`` answer (see cancel_order_response.json): the order as it
        ended, under the cancel request's own client id (``clientOrderId``, default the
        order's) and the order's (``origClientOrderId``)."""
        body = self.ack("RESULT", [])
        body.pop("workingTime")
        return {
            "symbol": self.symbol,
            "origClientOrderId": self.client_order_id,
            **body,
            "clientOrderId": client_order_id or self.client_order_id,
        }

    def report(self, exec_type: str, now_ms: int, fill: SimFill | None = None) -> dict[str, Any]:
        """An ``executionReport`` as Binance sends it (see samples/binance-api/spot-user-data)."""
        event: dict[str, Any] = {
            "e": "executionReport",
            "E": now_ms,
            "s": self.symbol,
            "c": self.client_order_id,
            "S": self.side,
            "o": self.type,
            "f": self.time_in_force,
            "q": fmt8(self.orig_qty),
            "p": fmt8(self.price),
            "P": fmt8(self.stop_price),
            "F": fmt8(ZERO),
            "g": self.list_id,
            "C": self.client_order_id if exec_type == "CANCELED" else "",
            "x": exec_type,
            "X": self.status,
            "r": "NONE",
            "i": self.order_id,
            "l": fmt8(fill.qty if fill else ZERO),
            "z": fmt8(self.executed_qty),
            "L": fmt8(fill.price if fill else ZERO),
            "n": fmt8(fill.commission) if fill else "0",
            "N": fill.commission_asset if fill else None,
            "T": fill.time_ms if fill else (self.update_ms or self.time_ms),
            "t": fill.trade_id if fill else -1,
            "I": 0,
            "w": self.is_open and self.is_working,
            "m": fill.is_maker if fill else False,
            "M": False,
            "O": self.time_ms,
            "Z": fmt8(self.cum_quote),
            "Y": fmt8(fill.price * fill.qty) if fill else fmt8(ZERO),
            "Q": fmt8(ZERO),
        }
        if self.is_working:  # Binance: "only visible if the order has been placed on the book"
            event["W"] = self.working_ms
        event["V"] = "NONE"
        return event


@dataclass
class SimFill:
    trade_id: int
    order: SimOrder
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool

    def short(self) -> dict[str, Any]:
        return {
            "price": fmt8(self.price),
            "qty": fmt8(self.qty),
            "commission": fmt8(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.trade_id,
        }

    def my_trade(self) -> dict[str, Any]:
        """``GET /api/v3/myTrades`` form."""
        return {
            "symbol": self.order.symbol,
            "id": self.trade_id,
            "orderId": self.order.order_id,
            "orderListId": self.order.list_id,
            "price": fmt8(self.price),
            "qty": fmt8(self.qty),
            "quoteQty": fmt8(self.price * self.qty),
            "commission": fmt8(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time_ms,
            "isBuyer": self.order.side == "BUY",
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass
class SimOrderList:
    """An OCO: two legs on one symbol, side and quantity. The balance it needs is held once, by
    the list (a sell OCO locks its quantity once, not twice), until one leg acts: then the other
    expires and the acting leg takes the hold over."""

    list_id: int
    client_list_id: str
    symbol: str
    above: SimOrder
    below: SimOrder
    time_ms: int
    status_type: str = "EXEC_STARTED"  # listStatusType: EXEC_STARTED -> ALL_DONE
    order_status: str = "EXECUTING"  # listOrderStatus: EXECUTING -> ALL_DONE
    update_ms: int = 0
    locked: Decimal = ZERO
    lock_asset: str = ""
    legs: list[SimOrder] = field(default_factory=list)  # in orderId order

    def __post_init__(self) -> None:
        if not self.legs:
            self.legs = sorted((self.above, self.below), key=lambda o: o.order_id)

    @property
    def is_open(self) -> bool:
        return self.order_status == "EXECUTING"

    def other(self, leg: SimOrder) -> SimOrder:
        return self.below if leg is self.above else self.above

    def _head(self) -> dict[str, Any]:
        return {
            "orderListId": self.list_id,
            "contingencyType": "OCO",
            "listStatusType": self.status_type,
            "listOrderStatus": self.order_status,
            "listClientOrderId": self.client_list_id,
            "transactionTime": self.update_ms or self.time_ms,
            "symbol": self.symbol,
            "orders": [
                {"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id}
                for o in self.legs
            ],
        }

    def rest(self) -> dict[str, Any]:
        """``GET /api/v3/orderList`` and ``openOrderList`` form."""
        return self._head()

    def ack(self, resp_type: str = "FULL", canceled: bool = False) -> dict[str, Any]:
        """The ``POST /api/v3/orderList/oco`` answer (or ``DELETE /api/v3/orderList``'s)."""
        body = self._head()
        body["orderReports"] = [
            o.cancel_ack() if canceled else o.ack(resp_type, []) for o in self.legs
        ]
        return body

    def event(self, now_ms: int) -> dict[str, Any]:
        """The ``listStatus`` user-data event (see list_status_wrapped.json)."""
        return {
            "e": "listStatus",
            "E": now_ms,
            "s": self.symbol,
            "g": self.list_id,
            "c": "OCO",
            "l": self.status_type,
            "L": self.order_status,
            "r": "NONE",
            "C": self.client_list_id,
            "T": self.update_ms or self.time_ms,
            "O": [{"s": o.symbol, "i": o.order_id, "c": o.client_order_id} for o in self.legs],
        }
