from __future__ import annotations

from decimal import Decimal

from tessera.execution.orders import Fill, Liquidity, OrderSide
from tessera.execution.portfolio import Instrument, Portfolio

D = Decimal
BTC = Instrument("BTCUSDT", "BTC", "USDT")
ETH = Instrument("ETHUSDT", "ETH", "USDT")


def f(
    sym: str,
    side: OrderSide,
    qty: str,
    price: str,
    fee: str,
    fee_asset: str = "USDT",
    strategy: str = "a",
    tid: str = "1",
) -> Fill:
    return Fill(
        tid, "c", sym, side, D(price), D(qty), D(fee), fee_asset, Liquidity.TAKER, 1, strategy
    )


def test_equity_cash_fees_and_attribution() -> None:
    p = Portfolio.with_cash("USDT", D("10000"), [BTC, ETH])
    p.apply_fill(f("BTCUSDT", OrderSide.BUY, "0.1", "50000", "5", strategy="trend"))
    p.apply_fill(f("ETHUSDT", OrderSide.BUY, "1", "3000", "0.001", "ETH", strategy="meanrev"))
    assert p.cash == {"USDT": D("2000.0") - D("5"), "ETH": D("-0.001")}
    assert p.fees_paid == D("5") + D("3.000")
    assert p.equity() == D("10000") - D("5") - D("3.000")  # marked at the fill prices
    p.mark("BTCUSDT", D("51000"))
    p.mark("ETHUSDT", D("2900"))
    assert p.equity() == D("1995.0") + D("0.1") * 51000 + (D("1") - D("0.001")) * 2900
    # attribution
    assert p.strategy_position("BTCUSDT", "trend").qty == D("0.1")
    assert p.strategy_position("ETHUSDT", "meanrev").qty == D("1")
    assert p.net_positions() == {"BTCUSDT": D("0.1"), "ETHUSDT": D("1")}
    assert p.gross_exposure() == D("5100.0") + D("2900")


def test_two_strategies_net_on_one_symbol() -> None:
    p = Portfolio.with_cash("USDT", D("1000"), [BTC])
    p.apply_fill(f("BTCUSDT", OrderSide.BUY, "0.01", "100", "0", strategy="a"))
    p.apply_fill(f("BTCUSDT", OrderSide.SELL, "0.004", "110", "0", strategy="b"))
    assert p.position("BTCUSDT").qty == D("0.006")
    assert p.strategy_position("BTCUSDT", "a").qty == D("0.01")
    assert p.strategy_position("BTCUSDT", "b").qty == D("-0.004")
    assert p.position("BTCUSDT").realized_pnl == D("0.040")
    assert p.cash["USDT"] == D("1000") - D("1.00") + D("0.440")


def test_position_books_a_base_asset_fee_as_units_the_account_no_longer_holds() -> None:
    """Binance takes a buy's commission in the base asset: the position is what is held."""
    from tessera.execution.position import Position

    p = Position("BTCUSDT", "s")
    p.apply_fill(f("BTCUSDT", OrderSide.BUY, "0.1", "50000", "0.0001", "BTC"), "USDT", "BTC")
    assert p.qty == Decimal("0.0999")
    assert p.fees_quote == Decimal("5.0000")  # 0.0001 BTC at the fill price
    assert p.turnover == Decimal("5000.0")
    p.apply_fill(f("BTCUSDT", OrderSide.SELL, "0.0999", "51000", "5.0949", "USDT"), "USDT", "BTC")
    assert p.qty == 0
    assert p.realized_pnl == Decimal("0.0999") * 1000
    assert p.fees_quote == Decimal("5.0000") + Decimal("5.0949")
