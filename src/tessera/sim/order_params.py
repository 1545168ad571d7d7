"""The parameters of ``POST /api/v3/order`` and ``POST /api/v3/orderList/oco``, checked as Binance
checks them, before the matching engine sees an order.

Binance's table of "additional mandatory parameters" per type (spot ``New order (TRADE)``):

    LIMIT              timeInForce, quantity, price
    MARKET             quantity
    STOP_LOSS          quantity, stopPrice
    STOP_LOSS_LIMIT    timeInForce, quantity, price, stopPrice
    TAKE_PROFIT        quantity, stopPrice
    TAKE_PROFIT_LIMIT  timeInForce, quantity, price, stopPrice
    LIMIT_MAKER        quantity, price

A missing one is -1102 ``Mandatory parameter '<name>' was not sent, was empty/null, or
malformed.``; one a type does not take is -1106 ``Parameter '<name>' sent when not required.``
A type the symbol's ``orderTypes`` does not list is -2010 (``Stop loss orders are not supported
for this symbol.``). An OCO's legs are named ``above``/``below``: ``aboveType``, ``abovePrice``,
``aboveStopPrice``, ``aboveTimeInForce``, ``aboveClientOrderId`` and the same for ``below``;
their placement rules (-1158, -1165, -1166, -1168, -1196..-1199) are checked here too. What
needs the market (the last price, the book, balances) is the engine's.

Parameters this simulator does not implement (``icebergQty``, ``trailingDelta``,
``quoteOrderQty``, pegged orders) are refused with -1130 rather than ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tessera.sim import payloads as binance
from tessera.sim.rest import BinanceError

ORDER_TYPES = (
    "LIMIT",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
    "LIMIT_MAKER",
)
PRICED = frozenset({"LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
STOPPED = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
NEEDS_TIF = frozenset({"LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
NO_TIF = frozenset({"MARKET", "STOP_LOSS", "TAKE_PROFIT"})
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
UNSUPPORTED_PARAMS = ("icebergQty", "trailingDelta", "quoteOrderQty", "pegPriceType")
# -2010 when the symbol's exchangeInfo "orderTypes" lacks the type (Binance's messages)
NOT_SUPPORTED = {
    "MARKET": "Market orders are not supported for this symbol.",
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
    "LIMIT": "Unsupported order combination",
    "LIMIT_MAKER": "Unsupported order combination",
}
OCO_ABOVE_TYPES = frozenset(
    {"STOP_LOSS_LIMIT", "STOP_LOSS", "LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"}
)
OCO_BELOW_TYPES = OCO_ABOVE_TYPES
OCO_NOT_SUPPORTED = binance.error(-2010, "OCO orders are not supported for this symbol")
OCO_BAD_PRICES = binance.error(
    -2010, "The relationship of the prices for the orders is not correct."
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order as asked for (a single order, or one leg of an OCO)."""

    symbol: str
    side: str
    type: str
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    time_in_force: str  # "GTC" for the types that take none (as Binance reports them)
    client_order_id: str  # "" when the client sent none


@dataclass(frozen=True, slots=True)
class OcoRequest:
    symbol: str
    side: str
    qty: Decimal
    above: OrderRequest
    below: OrderRequest
    client_list_id: str  # "" when the client sent none


def decimal_param(params: Mapping[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise BinanceError(
            binance.error(
                -1100,
                f"Illegal characters found in parameter '{name}'; "
                "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            )
        ) from exc
    if not value.is_finite():
        raise BinanceError(binance.missing_param(name))
    return value


def not_required(name: str) -> dict[str, object]:
    return binance.error(-1106, f"Parameter '{name}' sent when not required.")


def _side(params: Mapping[str, str]) -> str:
    side = params.get("side", "")
    if side not in ("BUY", "SELL"):
        raise BinanceError(binance.missing_param("side"))
    return side


def _refuse_unsupported(params: Mapping[str, str], prefix: str = "") -> None:
    for name in UNSUPPORTED_PARAMS:
        full = f"{prefix}{name[0].upper()}{name[1:]}" if prefix else name
        if params.get(full):
            raise BinanceError(
                binance.error(-1130, f"Data sent for parameter '{full}' is not valid.")
            )


def _typed(
    params: Mapping[str, str],
    symbol: str,
    side: str,
    otype: str,
    qty: Decimal,
    names: tuple[str, str, str, str],
) -> OrderRequest:
    """Check the type's mandatory and forbidden parameters; ``names`` are how this request
    spells (price, stopPrice, timeInForce, clientOrderId)."""
    p_name, s_name, t_name, c_name = names
    price = decimal_param(params, p_name)
    stop = decimal_param(params, s_name)
    tif = params.get(t_name) or None
    if otype in PRICED and price is None:
        raise BinanceError(binance.missing_param(p_name))
    if otype in NEEDS_TIF and tif is None:
        raise BinanceError(binance.missing_param(t_name))
    if otype in STOPPED and stop is None:
        raise BinanceError(binance.missing_param(s_name))
    if otype not in PRICED and price is not None:
        raise BinanceError(not_required(p_name))
    if otype not in STOPPED and stop is not None:
        raise BinanceError(not_required(s_name))
    if otype in NO_TIF and tif is not None:
        raise BinanceError(not_required(t_name))
    if tif is not None and tif not in TIME_IN_FORCE:
        raise BinanceError(binance.error(-1115, "Invalid timeInForce."))
    if stop is not None and stop <= 0:  # a zero stop is no stop at all
        raise BinanceError(binance.missing_param(s_name))
    return OrderRequest(
        symbol, side, otype, qty, price, stop, tif or "GTC", params.get(c_name) or ""
    )


def parse_new_order(params: Mapping[str, str], symbol: str) -> OrderRequest:
    """``POST /api/v3/order``'s parameters (``symbol`` already checked)."""
    side = _side(params)
    otype = params.get("type", "")
    if otype not in ORDER_TYPES:
        raise BinanceError(binance.error(-1116, "Invalid orderType."))
    _refuse_unsupported(params)
    qty = decimal_param(params, "quantity")
    if qty is None or qty <= 0:
        raise BinanceError(binance.missing_param("quantity"))
    names = ("price", "stopPrice", "timeInForce", "newClientOrderId")
    return _typed(params, symbol, side, otype, qty, names)


def parse_oco(params: Mapping[str, str], symbol: str) -> OcoRequest:
    """``POST /api/v3/orderList/oco``'s parameters, with Binance's leg placement rules."""
    side = _side(params)
    qty = decimal_param(params, "quantity")
    if qty is None or qty <= 0:
        raise BinanceError(binance.missing_param("quantity"))
    legs: list[OrderRequest] = []
    for leg, allowed in (("above", OCO_ABOVE_TYPES), ("below", OCO_BELOW_TYPES)):
        otype = params.get(f"{leg}Type", "")
        if not otype:
            raise BinanceError(binance.missing_param(f"{leg}Type"))
        if otype not in allowed:
            raise BinanceError(binance.error(-1158, "Order type not supported in OCO."))
        _refuse_unsupported(params, leg)
        names = (f"{leg}Price", f"{leg}StopPrice", f"{leg}TimeInForce", f"{leg}ClientOrderId")
        legs.append(_typed(params, symbol, side, otype, qty, names))
    above, below = legs
    _check_leg_placement(side, above.type, below.type)
    return OcoRequest(symbol, side, qty, above, below, params.get("listClientOrderId") or "")


def _check_leg_placement(side: str, above: str, below: str) -> None:
    """A sell OCO: the limit/take-profit above, the stop-loss below; a buy OCO the other way."""

    def stop_loss(t: str) -> bool:
        return t.startswith("STOP_LOSS")

    def take_profit(t: str) -> bool:
        return t.startswith("TAKE_PROFIT")

    if above == below == "LIMIT_MAKER":
        raise BinanceError(binance.error(-1168, "At least one OCO order must be contingent."))
    if side == "SELL":
        if stop_loss(above):
            raise BinanceError(
                binance.error(-1197, "A stop loss order in a sell OCO must be below.")
            )
        if below == "LIMIT_MAKER":
            raise BinanceError(binance.error(-1166, "A limit order in a sell OCO must be above."))
        if take_profit(below):
            raise BinanceError(
                binance.error(-1199, "A take profit order in a sell OCO must be above.")
            )
    else:
        if stop_loss(below):
            raise BinanceError(
                binance.error(-1196, "A stop loss order in a buy OCO must be above.")
            )
        if above == "LIMIT_MAKER":
            raise BinanceError(binance.error(-1165, "A limit order in a buy OCO must be below."))
        if take_profit(above):
            raise BinanceError(
                binance.error(-1198, "A take profit order in a buy OCO must be below.")
            )


def oco_prices_ok(req: OcoRequest, last: Decimal) -> bool:
    """Binance's price restrictions against the last traded price:

    SELL: LIMIT_MAKER/TAKE_PROFIT_LIMIT price > last > STOP_LOSS(_LIMIT) stopPrice, and a
    TAKE_PROFIT stopPrice > last; BUY the other way round. A take-profit's stop must not be
    through the last price either (it would trigger at once)."""
    sell = req.side == "SELL"
    profit, loss = (req.above, req.below) if sell else (req.below, req.above)
    levels = [lv for lv in (profit.price, profit.stop_price) if lv is not None]
    assert loss.stop_price is not None
    if sell:
        return all(lv > last for lv in levels) and loss.stop_price < last
    return all(lv < last for lv in levels) and loss.stop_price > last
