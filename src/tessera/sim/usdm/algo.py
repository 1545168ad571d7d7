"""USDⓈ-M conditional orders through Binance's algo order service (``/fapi/v1/algoOrder``).

Why a separate record and not a second trigger engine: since late 2025 Binance takes STOP,
STOP_MARKET, TAKE_PROFIT and TAKE_PROFIT_MARKET on USDⓈ-M only through the algo endpoints
(ccxt 4.5.90 sends them there), but what happens when the price gets there is what our
``/fapi/v1/order`` conditionals already do (`UsdmTradingEngine._trigger`: a replayed trade at or
through the trigger, closePosition, reduce-only, the margin check). So an algo order here is a
handle (``algoId``, ``clientAlgoId``, its times) on one `UsdmOrder` that the engine triggers
like any other; the handle decides what the venue shows of it:

* before its trigger the order is the algo service's: only the algo endpoints find it, and the
  user-data stream reports it with ``ALGO_UPDATE`` (``X`` NEW, then CANCELED or EXPIRED);
* at the trigger it becomes the matching engine's order (``actualOrderId`` = its orderId, its
  client id = the ``clientAlgoId``): ``ALGO_UPDATE`` TRIGGERED, then ``ORDER_TRADE_UPDATE``
  NEW/TRADE of that order as for any order, and ``ALGO_UPDATE`` FINISHED once it is done.

Field names and letters follow ccxt's documented algo answer (``binance.parse_order``) and the
bundled real ``ALGO_UPDATE`` payloads (``samples/binance-api/futures-user-data/algo_update_*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tessera.sim.usdm.rest import UsdmPublicApi
    from tessera.sim.usdm.trading import UsdmOrder

ZERO = Decimal(0)
ALGO_STATUSES = ("NEW", "CANCELED", "EXPIRED", "TRIGGERED", "FINISHED")


@dataclass
class AlgoOrder:
    """One conditional order of the algo service and the order it triggers."""

    algo_id: int
    client_algo_id: str
    order: UsdmOrder
    create_ms: int
    trigger_ms: int = 0

    @property
    def status(self) -> str:
        """NEW until triggered (then CANCELED by the user, EXPIRED by the system: a
        closePosition with nothing to close, no margin at the trigger, a liquidation's
        cancel counts as CANCELED); TRIGGERED while the triggered order is open, FINISHED
        after."""
        o = self.order
        if not o.is_working:
            if o.is_open:
                return "NEW"
            return "CANCELED" if o.status == "CANCELED" else "EXPIRED"
        return "TRIGGERED" if o.is_open else "FINISHED"

    @property
    def triggered(self) -> bool:
        return self.order.is_working

    def render(self, public: UsdmPublicApi) -> dict[str, Any]:
        """The REST form (place, query, open and all algo orders)."""
        o, sym = self.order, self.order.symbol
        px, qty = public.px, public.qty
        avg = o.cum_quote / o.executed_qty if o.executed_qty else ZERO
        return {
            "algoId": self.algo_id,
            "clientAlgoId": self.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": o.type,
            "symbol": sym,
            "side": o.side,
            "positionSide": "BOTH",
            "timeInForce": o.time_in_force,
            "quantity": qty(sym, o.orig_qty),
            "algoStatus": self.status,
            "actualOrderId": str(o.order_id) if self.triggered else "",
            "actualPrice": f"{avg:f}" if o.executed_qty else "0",
            "triggerPrice": px(sym, o.stop_price),
            "price": px(sym, o.price),
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": "CONTRACT_PRICE",
            "priceMatch": "NONE",
            "closePosition": o.close_position,
            "priceProtect": False,
            "reduceOnly": o.reduce_only and not o.close_position,
            "createTime": self.create_ms,
            "updateTime": o.update_ms or self.create_ms,
            "triggerTime": self.trigger_ms,
            "goodTillDate": 0,
        }

    def event(self, public: UsdmPublicApi, now_ms: int) -> dict[str, Any]:
        """``ALGO_UPDATE`` with the letters of Binance's real payloads."""
        o, sym = self.order, self.order.symbol
        px, qty = public.px, public.qty
        avg = o.cum_quote / o.executed_qty if o.executed_qty else ZERO
        return {
            "e": "ALGO_UPDATE",
            "T": now_ms,
            "E": now_ms,
            "o": {
                "caid": self.client_algo_id,
                "aid": self.algo_id,
                "at": "CONDITIONAL",
                "o": o.type,
                "s": sym,
                "S": o.side,
                "ps": "BOTH",
                "f": o.time_in_force,
                "q": qty(sym, o.orig_qty),
                "X": self.status,
                "ai": str(o.order_id) if self.triggered else "",
                "ap": f"{avg:f}" if o.executed_qty else "0",
                "aq": qty(sym, o.executed_qty),
                "act": "0",
                "tp": px(sym, o.stop_price),
                "p": px(sym, o.price),
                "V": "EXPIRE_MAKER",
                "wt": "CONTRACT_PRICE",
                "pm": "NONE",
                "cp": o.close_position,
                "pP": False,
                "R": o.reduce_only and not o.close_position,
                "tt": self.trigger_ms,
                "gtd": 0,
                "rm": "",
            },
        }
