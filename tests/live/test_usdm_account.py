"""`perp_book_balances`: the spot `AccountBook`, started from a USDⓈ-M account this way,
values it at wallet + unrealized PnL, and after fills at wallet + realized PnL - fees +
unrealized (pure; hypothesis over positions, entries, prices and fills)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tessera.execution.filters import SymbolFilters
from tessera.execution.orders import Fill, Liquidity, OrderSide
from tessera.execution.perp.margin import MarginMode
from tessera.execution.perp_reconcile import PerpBalance, VenuePosition
from tessera.live.account import AccountBook
from tessera.live.perp_account import perp_book_balances

D = Decimal
FILTERS = {"BTCUSDT": SymbolFilters("BTCUSDT", "BTC", "USDT")}
qtys = st.integers(-2000, 2000).map(lambda n: D(n) / 1000)
prices = st.integers(20_000, 90_000).map(D)


@given(qtys, prices, prices, st.integers(0, 20_000).map(D))
def test_the_book_is_worth_wallet_plus_unrealized_at_any_price(
    qty: Decimal, entry: Decimal, price: Decimal, wallet: Decimal
) -> None:
    positions = [VenuePosition("BTCUSDT", qty, entry, 5, MarginMode.CROSS, None)]
    wallets = {"USDT": PerpBalance("USDT", wallet, qty * (price - entry), wallet)}
    book = AccountBook(FILTERS, "USDT", perp_book_balances(wallets, positions, FILTERS))
    assert book.equity({"BTCUSDT": price}) == wallet + qty * (price - entry)


@given(qtys, prices, prices, prices, qtys)
def test_after_a_fill_the_book_is_worth_wallet_plus_realized_less_fees_plus_unrealized(
    qty: Decimal, entry: Decimal, fill_price: Decimal, mark: Decimal, traded: Decimal
) -> None:
    if not qty or not traded:
        return
    positions = [VenuePosition("BTCUSDT", qty, entry, 5, MarginMode.CROSS, None)]
    wallet = D(10_000)
    book = AccountBook(
        FILTERS,
        "USDT",
        perp_book_balances({"USDT": PerpBalance("USDT", wallet, D(0), wallet)}, positions, FILTERS),
    )
    fee = abs(traded) * fill_price * D("0.0005")
    side = OrderSide.BUY if traded > 0 else OrderSide.SELL
    book.apply_fill(
        Fill("t1", "c1", "BTCUSDT", side, fill_price, abs(traded), fee, "USDT", Liquidity.TAKER, 0)
    )
    # Binance's one-way position: the part that reduces realizes PnL against the entry; the
    # rest (a flip or an increase) opens at the fill price (an average entry when increasing)
    after = qty + traded
    reduces = min(abs(traded), abs(qty)) if (qty > 0) != (traded > 0) else D(0)
    realized = reduces * (fill_price - entry) * (1 if qty > 0 else -1)
    if reduces == abs(qty):  # closed, perhaps flipped: what is left opened at the fill price
        unrealized = after * (mark - fill_price)
    elif reduces:  # reduced: the rest keeps its entry
        unrealized = after * (mark - entry)
    else:  # increased: the average entry
        new_entry = (qty * entry + traded * fill_price) / after
        unrealized = after * (mark - new_entry)
    expected = wallet + realized - fee + unrealized
    assert abs(book.equity({"BTCUSDT": mark}) - expected) < D("1e-12")
