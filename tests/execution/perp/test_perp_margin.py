"""Leverage brackets, maintenance margin and Binance's one-way liquidation price.

The worked examples use the REAL BTCUSDT / ETHUSDT brackets bundled in
samples/binance-usdm/leverage_brackets.json (Binance's /fapi/v1/leverageBracket, see
samples/SOURCES.md). Binance's formula (one-way mode):

    LP = (WB - TMM + UPNL + cum - side*|Q|*EP) / (|Q|*MMR - side*|Q|)

BTCUSDT brackets used below (notional range: mmr, cum, max leverage):
    1: 0 .. 50,000           0.004   0       125x
    2: 50,000 .. 600,000     0.005   50      100x
    3: 600,000 .. 3,000,000  0.0065  950     75x
    4: 3,000,000 .. 12e6     0.01    11,450  50x
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.execution.perp.margin import (
    LeverageBrackets,
    MarginMode,
    MarginTier,
    MarkedPosition,
    PerpPosition,
    cross_margin_balance,
    liquidation_price,
    liquidation_price_from_terms,
)
from tessera.venues.binance_usdm.brackets import parse_leverage_brackets

D = Decimal
SAMPLES = Path(__file__).resolve().parents[3] / "samples"
BRACKETS = parse_leverage_brackets(
    json.loads((SAMPLES / "binance-usdm" / "leverage_brackets.json").read_text())
)
BTC = BRACKETS["BTCUSDT"]
ETH = BRACKETS["ETHUSDT"]
# Hand-computed quotients are written to 30 significant digits.
TOL = D("1e-24")


def isolated(qty: str, entry: str, leverage: int, margin: str) -> PerpPosition:
    return PerpPosition("BTCUSDT", D(qty), D(entry), leverage, MarginMode.ISOLATED, D(margin))


def cross(symbol: str, qty: str, entry: str, leverage: int) -> PerpPosition:
    return PerpPosition(symbol, D(qty), D(entry), leverage, MarginMode.CROSS)


def near(value: Decimal | None, expected: str) -> bool:
    assert value is not None
    return abs(value - D(expected)) < TOL


# --- worked examples, by hand, with the real BTCUSDT brackets ------------------------------


def test_isolated_long_at_10x_liquidates_where_the_first_bracket_formula_says() -> None:
    # 1 BTC long at 30,000, 10x: isolated margin = 30,000 / 10 = 3,000.
    # Bracket 1 (mmr 0.004, cum 0): LP = (3000 + 0 - 1*1*30000) / (1*0.004 - 1*1)
    #                                  = -27000 / -0.996 = 27108.4337349397590361445783132...
    # Notional at LP = 27,108.43 <= 50,000: bracket 1 holds it, so this is the answer.
    lp = liquidation_price(isolated("1", "30000", 10, "3000"), BTC)
    assert near(lp, "27108.4337349397590361445783132")


def test_isolated_short_at_20x_liquidates_above_the_entry() -> None:
    # 1 BTC short at 30,000, 20x: isolated margin 1,500.
    # Bracket 1: LP = (1500 + 0 - (-1)*1*30000) / (1*0.004 - (-1)*1) = 31500 / 1.004
    #               = 31374.5019920318725099601593625...   (notional 31,374 <= 50,000)
    lp = liquidation_price(isolated("-1", "30000", 20, "1500"), BTC)
    assert near(lp, "31374.5019920318725099601593625")


def test_isolated_long_of_300k_notional_uses_the_second_bracket() -> None:
    # 10 BTC long at 30,000 (notional 300,000), 20x: isolated margin 15,000.
    # Bracket 2 (mmr 0.005, cum 50): LP = (15000 + 50 - 10*30000) / (10*0.005 - 10)
    #                                   = -284950 / -9.95 = 28638.1909547738693467336683417...
    # Notional at LP = 286,381.9, inside (50,000, 600,000]: bracket 2 is consistent.
    lp = liquidation_price(isolated("10", "30000", 20, "15000"), BTC)
    assert near(lp, "28638.1909547738693467336683417")


def test_the_bracket_is_the_one_at_the_liquidation_price_not_at_entry() -> None:
    # 100 BTC short at 30,000: notional 3,000,000 at entry, exactly bracket 3's cap. 10x:
    # isolated margin 300,000. With bracket 3 (mmr 0.0065, cum 950):
    #   LP = (300000 + 950 + 3000000) / (100*0.0065 + 100) = 3300950 / 100.65 = 32796.32...
    #   notional 3,279,632 > 3,000,000: outside bracket 3, inconsistent.
    # With bracket 4 (mmr 0.01, cum 11,450):
    #   LP = (300000 + 11450 + 3000000) / (100*0.01 + 100) = 3311450 / 101
    #      = 32786.6336633663366336633663366...  notional 3,278,663 in (3e6, 12e6]: the answer.
    position = PerpPosition("BTCUSDT", D(-100), D(30000), 10, MarginMode.ISOLATED, D(300000))
    lp = liquidation_price(position, BTC)
    assert near(lp, "32786.6336633663366336633663366")
    assert lp is not None and BTC.tier_for(position.notional(lp)).maintenance_margin_rate == D(
        "0.01"
    )


def test_cross_long_counts_the_other_positions_margin_and_loss() -> None:
    # Cross wallet 10,000 USDT. Long 1 BTC at 30,000 (10x) and, on the same wallet, short
    # 10 ETH at 2,000 now marked at 2,100:
    #   UPNL (others) = -10 * (2100 - 2000) = -1,000
    #   TMM (others)  = ETH notional 21,000 in ETH bracket 1: 21000*0.004 - 0 = 84
    # BTC bracket 1: LP = (10000 - 84 + (-1000) + 0 - 30000) / (0.004 - 1) = -21084 / -0.996
    #                   = 21168.6746987951807228915662650...
    btc = cross("BTCUSDT", "1", "30000", 10)
    eth = MarkedPosition(cross("ETHUSDT", "-10", "2000", 10), ETH, D(2100))
    lp = liquidation_price(btc, BTC, cross_wallet_balance=D(10000), others=[eth])
    assert near(lp, "21168.6746987951807228915662650")


def test_cross_short_crosses_into_the_second_bracket() -> None:
    # Cross wallet 5,000, short 2 BTC at 30,000, nothing else open.
    # Bracket 1: (5000 + 0 + 2*30000) / (2*0.004 + 2) = 65000 / 2.008 = 32370.5
    #            -> notional 64,741 > 50,000: inconsistent.
    # Bracket 2: (5000 + 50 + 60000) / (2*0.005 + 2) = 65050 / 2.01
    #            = 32363.1840796019900497512437811...  notional 64,726 in (50,000, 600,000].
    lp = liquidation_price(cross("BTCUSDT", "-2", "30000", 20), BTC, cross_wallet_balance=D(5000))
    assert near(lp, "32363.1840796019900497512437811")


def test_a_liquidation_price_exactly_on_a_bracket_edge_is_the_same_from_both_brackets() -> None:
    # Long 1 BTC at 60,000, isolated margin 10,200 (6x plus 200 added).
    # Bracket 1: (10200 - 60000) / (0.004 - 1) = -49800 / -0.996 = 50,000 exactly;
    # bracket 2: (10200 + 50 - 60000) / (0.005 - 1) = -49750 / -0.995 = 50,000 exactly.
    lp = liquidation_price(isolated("1", "60000", 6, "10200"), BTC)
    assert lp == D(50000)


def test_a_fully_collateralised_long_has_no_liquidation_price() -> None:
    # 1x long, margin = the whole notional: (30000 - 30000) / (0.004 - 1) = 0 -> none.
    assert liquidation_price(isolated("1", "30000", 1, "30000"), BTC) is None
    # More margin than notional: the formula's price is negative -> none.
    assert liquidation_price(isolated("1", "30000", 1, "45000"), BTC) is None


def test_a_1x_short_still_has_a_liquidation_price() -> None:
    # (30000 + 30000) / (0.004 + 1) = 60000 / 1.004 = 59760.9561752988047808764940239...
    # notional 59,761 > 50,000 -> bracket 2: (30000 + 50 + 30000) / 1.005
    #                                       = 59751.2437810945273631840796019...
    lp = liquidation_price(isolated("-1", "30000", 1, "30000"), BTC)
    assert near(lp, "59751.2437810945273631840796019")


def test_a_cross_short_underwater_at_every_price_is_liquidated_now() -> None:
    # Wallet 100, another position losing 40,000: (100 - 40000 + 30000) / 1.004 < 0 -> 0.
    lp = liquidation_price_from_terms(
        qty=D(-1),
        entry_price=D(30000),
        wallet_balance=D(100),
        brackets=BTC,
        other_unrealized_pnl=D(-40000),
    )
    assert lp == D(0)


# --- the defining property ------------------------------------------------------------------

sizes = st.decimals(min_value=D("0.001"), max_value=D("500"), places=3)
prices = st.decimals(min_value=D("100"), max_value=D("100000"), places=2)


def _surplus_and_mm(
    position: PerpPosition,
    brackets: LeverageBrackets,
    mark: Decimal,
    wallet: Decimal | None,
    others: list[MarkedPosition],
) -> tuple[Decimal, Decimal]:
    """(margin balance, maintenance margin) of what the liquidation is about, at ``mark``."""
    if position.mode is MarginMode.ISOLATED:
        return position.margin_balance(mark), position.maintenance_margin(mark, brackets)
    assert wallet is not None
    me = MarkedPosition(position, brackets, mark)
    balance = cross_margin_balance(wallet, [me, *others])
    mm = sum((o.position.maintenance_margin(o.mark, o.brackets) for o in [me, *others]), D(0))
    return balance, mm


@settings(max_examples=300, deadline=None)
@given(
    symbol=st.sampled_from(["BTCUSDT", "ETHUSDT", "XRPUSDT"]),
    size=sizes,
    short=st.booleans(),
    entry=prices,
    leverage=st.integers(min_value=1, max_value=125),
    extra=st.decimals(min_value=D(0), max_value=D(5000), places=2),
    use_cross=st.booleans(),
    other_size=sizes,
    other_move=st.decimals(min_value=D("-0.3"), max_value=D("0.3"), places=3),
)
def test_at_the_liquidation_price_margin_balance_equals_maintenance_margin(
    symbol: str,
    size: Decimal,
    short: bool,
    entry: Decimal,
    leverage: int,
    extra: Decimal,
    use_cross: bool,
    other_size: Decimal,
    other_move: Decimal,
) -> None:
    brackets = BRACKETS[symbol]
    qty = -size if short else size
    wallet: Decimal | None = None
    others: list[MarkedPosition] = []
    if use_cross:
        position = PerpPosition(symbol, qty, entry, leverage, MarginMode.CROSS)
        other_symbol = "ETHUSDT" if symbol != "ETHUSDT" else "BTCUSDT"
        other = PerpPosition(other_symbol, -other_size, D(2000), 10, MarginMode.CROSS)
        others = [MarkedPosition(other, BRACKETS[other_symbol], D(2000) * (1 + other_move))]
        wallet = position.initial_margin() + other.initial_margin() + extra
        lp = liquidation_price(position, brackets, cross_wallet_balance=wallet, others=others)
    else:
        position = PerpPosition(
            symbol, qty, entry, leverage, MarginMode.ISOLATED, size * entry / leverage + extra
        )
        lp = liquidation_price(position, brackets)
    if lp is None:
        # Only a long can be safe at every price: its balance beats its maintenance margin
        # even at a price of (almost) zero.
        assert not short
        balance, mm = _surplus_and_mm(position, brackets, D("1e-9"), wallet, others)
        assert balance > mm
        return
    if lp == 0:
        assert short and use_cross
        balance, mm = _surplus_and_mm(position, brackets, D("1e-9"), wallet, others)
        assert balance < mm
        return
    balance, mm = _surplus_and_mm(position, brackets, lp, wallet, others)
    # equal to Decimal's 28 digits, relative to the largest amount in play (the cross wallet
    # can dwarf the position's notional)
    scale = max(D(1), position.notional(lp), abs(balance), abs(mm))
    assert abs(balance - mm) <= D("1e-25") * scale
    # ...and it is the boundary: 1% on the safe side the position survives, 1% beyond it not.
    up, down = lp * D("1.01"), lp * D("0.99")
    safe, doomed = (down, up) if short else (up, down)
    b_safe, mm_safe = _surplus_and_mm(position, brackets, safe, wallet, others)
    b_doomed, mm_doomed = _surplus_and_mm(position, brackets, doomed, wallet, others)
    assert b_safe > mm_safe
    assert b_doomed < mm_doomed


# --- brackets: selection at the edges and refusals ----------------------------------------


def test_bracket_selection_at_the_first_edge_keeps_the_lower_bracket_up_to_its_cap() -> None:
    assert BTC.tier_for(D(0)) is BTC.tiers[0]
    assert BTC.max_leverage(D(50000)) == 125
    assert BTC.max_leverage(D("50000.01")) == 100
    assert BTC.tier_for(D("600000")).maintenance_margin_rate == D("0.005")
    assert BTC.tier_for(D("600000.01")).maintenance_margin_rate == D("0.0065")


def test_maintenance_margin_is_continuous_across_a_bracket_edge() -> None:
    # At 50,000: bracket 1 gives 50000*0.004 - 0 = 200; bracket 2 gives 50000*0.005 - 50 = 200.
    assert BTC.maintenance_margin(D(50000)) == D(200)
    assert BTC.tiers[1].maintenance_margin(D(50000)) == D(200)
    # 100,000 (bracket 2): 100000*0.005 - 50 = 450.
    assert BTC.maintenance_margin(D(100000)) == D(450)


def test_a_notional_above_the_last_cap_or_negative_has_no_bracket() -> None:
    assert BTC.max_leverage(D(1_800_000_000)) == 1
    with pytest.raises(ValueError, match="above the last bracket"):
        BTC.tier_for(D("1800000000.01"))
    with pytest.raises(ValueError, match=">= 0"):
        BTC.tier_for(D(-1))


def _tier(floor: int, cap: int, mmr: str, cum: str, lev: int = 10) -> MarginTier:
    return MarginTier(D(floor), D(cap), D(mmr), D(cum), lev)


def test_brackets_refuse_unordered_overlapping_gapped_or_jumping_tiers() -> None:
    first = _tier(0, 100, "0.01", "0")
    second, third = _tier(100, 200, "0.02", "1"), _tier(200, 300, "0.03", "3")
    with pytest.raises(ValueError, match="out of order"):
        LeverageBrackets("X", (first, third, second))
    with pytest.raises(ValueError, match="start at notional 0"):
        LeverageBrackets("X", (second, first))
    with pytest.raises(ValueError, match="overlaps"):
        LeverageBrackets("X", (first, _tier(50, 200, "0.02", "0.5")))
    with pytest.raises(ValueError, match="gap"):
        LeverageBrackets("X", (first, _tier(150, 200, "0.02", "1.5")))
    with pytest.raises(ValueError, match="jumps"):
        LeverageBrackets("X", (first, _tier(100, 200, "0.02", "7")))
    with pytest.raises(ValueError, match="start at notional 0"):
        LeverageBrackets("X", (_tier(10, 100, "0.01", "0"),))
    with pytest.raises(ValueError, match="at least one"):
        LeverageBrackets("X", ())
    # the consistent version is accepted: cum 1 = 0 + 100 * (0.02 - 0.01)
    assert LeverageBrackets("X", (first, second, third)).max_notional == 300


# --- positions ------------------------------------------------------------------------------


def test_position_pnl_notional_and_initial_margin_follow_the_sign() -> None:
    long = isolated("2", "30000", 10, "6000")
    short = isolated("-2", "30000", 10, "6000")
    assert long.unrealized_pnl(D(31000)) == D(2000)
    assert short.unrealized_pnl(D(31000)) == D(-2000)
    assert long.notional(D(31000)) == short.notional(D(31000)) == D(62000)
    assert long.initial_margin() == D(6000)
    assert short.margin_balance(D(31000)) == D(4000)


def test_position_refuses_a_zero_qty_and_margin_that_does_not_fit_its_mode() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        isolated("0", "30000", 10, "1")
    with pytest.raises(ValueError, match="needs isolated_margin"):
        PerpPosition("BTCUSDT", D(1), D(30000), 10, MarginMode.ISOLATED)
    with pytest.raises(ValueError, match="no isolated_margin"):
        PerpPosition("BTCUSDT", D(1), D(30000), 10, MarginMode.CROSS, D(5))
    with pytest.raises(ValueError, match="no margin balance"):
        cross("BTCUSDT", "1", "30000", 10).margin_balance(D(1))


def test_liquidation_price_refuses_mixed_modes_and_two_positions_on_one_symbol() -> None:
    with pytest.raises(ValueError, match="isolated margin only"):
        liquidation_price(isolated("1", "30000", 10, "3000"), BTC, cross_wallet_balance=D(1))
    with pytest.raises(ValueError, match="needs cross_wallet_balance"):
        liquidation_price(cross("BTCUSDT", "1", "30000", 10), BTC)
    twin = MarkedPosition(cross("BTCUSDT", "1", "30000", 10), BTC, D(30000))
    with pytest.raises(ValueError, match="one-way mode"):
        liquidation_price(
            cross("BTCUSDT", "1", "30000", 10), BTC, cross_wallet_balance=D(1), others=[twin]
        )
