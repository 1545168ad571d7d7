"""Leverage risk of perpetual accounts: the measures, the pre-trade checks, the monitor, the
engine hook, the settings and the metrics publisher.

Brackets are the REAL BTCUSDT / ETHUSDT ones bundled in samples/binance-usdm/
leverage_brackets.json (see samples/SOURCES.md). BTCUSDT bracket 1: notional 0..50,000,
mmr 0.004, cum 0, 125x; bracket 2: 50,000..600,000, mmr 0.005, cum 50, 100x; ETHUSDT's first
two brackets are the same (the numbers below are worked by hand with them).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from pydantic import ValidationError

from tessera.config import RiskConfig
from tessera.execution.orders import OrderSide, OrderType
from tessera.execution.perp.funding import FundingEntry
from tessera.execution.perp.margin import MarginMode, PerpPosition, liquidation_price
from tessera.metrics import RISK_DENIAL_REASONS
from tessera.risk import AccountView, DenialReason, OrderIntent, RiskEngine
from tessera.risk.engine import RiskAction
from tessera.risk.leverage import (
    MarginRatioAlert,
    PerpAccountSnapshot,
    PerpSymbol,
    ReduceOrder,
    check_order,
    monitor,
)
from tessera.risk.listeners import publish_perp
from tessera.venues.binance_usdm.brackets import parse_leverage_brackets

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
ISO, CROSS = MarginMode.ISOLATED, MarginMode.CROSS
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
BRACKETS = parse_leverage_brackets(
    json.loads((SAMPLES / "binance-usdm" / "leverage_brackets.json").read_text())
)
TOL = D("1e-20")


def sym(
    symbol: str,
    mark: str,
    qty: str | None = None,
    entry: str | None = None,
    leverage: int = 10,
    mode: MarginMode = CROSS,
    margin: str | None = None,
    liq: str | None = None,
    step: str | None = None,
) -> PerpSymbol:
    position = None
    if qty is not None:
        position = PerpPosition(
            symbol,
            D(qty),
            D(entry or mark),
            leverage,
            mode,
            D(margin) if margin is not None else None,
        )
    return PerpSymbol(
        symbol,
        D(mark),
        BRACKETS[symbol],
        leverage,
        mode,
        position,
        D(liq) if liq is not None else None,
        D(step) if step is not None else None,
    )


def account(wallet: str, *symbols: PerpSymbol) -> PerpAccountSnapshot:
    return PerpAccountSnapshot(D(wallet), {s.symbol: s for s in symbols})


def risk(**kw: object) -> RiskConfig:
    # the spot caps out of the way: these tests are about the leverage checks
    base: dict[str, object] = {
        "max_order_notional": 10**9,
        "max_position_notional": 10**9,
        "max_gross_exposure": 10**9,
        "max_open_orders": 100,
        "max_orders_per_second": 1000,
    }
    base.update(kw)
    return RiskConfig.model_validate(base)


def order(
    side: OrderSide, qty: str, symbol: str = "BTCUSDT", price: str | None = None
) -> OrderIntent:
    kind = OrderType.LIMIT if price else OrderType.MARKET
    return OrderIntent(symbol, side, D(qty), kind, D(price) if price else None)


# --- the measures -----------------------------------------------------------------------------


def test_an_isolated_long_at_10x_has_the_measures_worked_by_hand() -> None:
    # 1 BTC long at 30,000, 10x, isolated margin 3,000, marked at 30,000:
    #   maintenance margin = 30,000 * 0.004 = 120; margin ratio = 120 / 3,000 = 0.04
    #   leverage = 30,000 / 3,000 = 10; LP = -27,000 / -0.996 = 27,108.43373493975903614...
    #   distance = (30,000 - LP) / 30,000 * 100 = 9.638554216867469879518...%
    snap = account("10000", sym("BTCUSDT", "30000", "1", leverage=10, mode=ISO, margin="3000"))
    assert snap.equity == D(10000)
    assert snap.margin_ratio("BTCUSDT") == D("0.04")
    assert snap.position_leverage("BTCUSDT") == D(10)
    distance = snap.liquidation_distance_pct("BTCUSDT")
    assert distance is not None and abs(distance - D("9.638554216867469879518072289")) < TOL


def test_a_cross_account_shares_one_margin_ratio_and_counts_the_loss_elsewhere() -> None:
    # Wallet 10,000; long 1 BTC at 30,000 marked 30,000; short 10 ETH at 2,000 marked 2,100:
    #   equity = 10,000 - 1,000 = 9,000; MM = 120 + 21,000 * 0.004 = 204
    #   margin ratio = 204 / 9,000 on both symbols
    #   gross = 30,000 + 21,000 = 51,000 -> 5.6667x; net = 30,000 - 21,000 = 9,000 -> 1x
    snap = account(
        "10000",
        sym("BTCUSDT", "30000", "1"),
        sym("ETHUSDT", "2100", "-10", entry="2000"),
    )
    assert snap.equity == D(9000)
    assert snap.margin_ratio("BTCUSDT") == snap.margin_ratio("ETHUSDT") == D(204) / D(9000)
    assert snap.net_leverage == D(1)
    assert abs(snap.gross_leverage - D(51000) / D(9000)) < TOL
    assert snap.position_leverage("BTCUSDT") == D(30000) / D(9000)


def test_the_venues_liquidation_price_wins_over_the_formula() -> None:
    snap = account("10000", sym("BTCUSDT", "30000", "-1", liq="31500"))
    assert snap.liquidation_price("BTCUSDT") == D(31500)
    assert snap.liquidation_distance_pct("BTCUSDT") == D(5)


@settings(max_examples=60, deadline=None)
@given(
    qty=st.decimals("0.001", "15", places=3),
    entry=st.integers(10_000, 60_000),
    leverage=st.integers(1, 50),
    side=st.sampled_from([1, -1]),
)
def test_the_margin_ratio_is_one_at_the_liquidation_price(
    qty: Decimal, entry: int, leverage: int, side: int
) -> None:
    position = PerpPosition("BTCUSDT", qty * side, D(entry), leverage, ISO, qty * entry / leverage)
    lp = liquidation_price(position, BRACKETS["BTCUSDT"])
    if lp is None or lp <= 0:
        return  # a 1x long is never liquidated
    at_lp = PerpSymbol("BTCUSDT", lp, BRACKETS["BTCUSDT"], leverage, ISO, position)
    ratio = PerpAccountSnapshot(D(0), {"BTCUSDT": at_lp}).margin_ratio("BTCUSDT")
    assert ratio is not None and abs(ratio - 1) < D("1e-12")


def test_after_an_add_averages_the_entry_and_posts_isolated_margin() -> None:
    snap = account("10000", sym("BTCUSDT", "31000", "1", entry="30000", mode=ISO, margin="3000"))
    post = snap.after("BTCUSDT", D(1), D(32000))
    p = post.get("BTCUSDT").position
    assert p is not None and p.qty == 2 and p.entry_price == D(31000)
    assert p.isolated_margin == D(3000) + D(3200)
    assert post.wallet_balance == D(10000)


def test_after_a_flip_realizes_the_closed_part_and_opens_the_rest_at_the_price() -> None:
    snap = account("10000", sym("BTCUSDT", "31000", "1", entry="30000"))
    post = snap.after("BTCUSDT", D(-3), D(31000))
    p = post.get("BTCUSDT").position
    assert post.wallet_balance == D(11000)  # +1 * (31,000 - 30,000)
    assert p is not None and p.qty == -2 and p.entry_price == D(31000)


# --- pre-trade --------------------------------------------------------------------------------

# Cross wallet 10,000, flat BTCUSDT (10x) at 30,000 unless the account says otherwise.
FLAT = account("10000", sym("BTCUSDT", "30000"), sym("ETHUSDT", "2000"))
LONG = account("10000", sym("BTCUSDT", "30000", "1"), sym("ETHUSDT", "2000"))


@pytest.mark.parametrize(
    ("limits", "snap", "intent", "reason"),
    [
        # position leverage = notional / cross margin balance
        ({"max_leverage": 3}, FLAT, order(BUY, "1"), None),  # 30,000 / 10,000 = 3x
        ({"max_leverage": 3}, FLAT, order(BUY, "1.001"), DenialReason.MAX_LEVERAGE),
        ({"max_leverage": 3}, LONG, order(BUY, "0.01"), DenialReason.MAX_LEVERAGE),
        # a limit buy above the mark books its loss at the mark: 30,000 / (10,000 - 300) > 3x
        ({"max_leverage": 3}, FLAT, order(BUY, "1", price="30300"), DenialReason.MAX_LEVERAGE),
        # gross: 30,000 + 10 * 2,000 = 50,000 = 5x
        ({"max_gross_leverage": 5}, LONG, order(SELL, "10", "ETHUSDT"), None),
        (
            {"max_gross_leverage": 5},
            LONG,
            order(SELL, "11", "ETHUSDT"),
            DenialReason.MAX_GROSS_LEVERAGE,
        ),
        # net: a short ETH hedges the long BTC; a long ETH adds to it
        ({"max_net_leverage": 3}, LONG, order(SELL, "10", "ETHUSDT"), None),
        ({"max_net_leverage": 3}, LONG, order(BUY, "1", "ETHUSDT"), DenialReason.MAX_NET_LEVERAGE),
        # 3 BTC long on a 10,000 cross wallet, bracket 2 at the LP: LP = (10,000 + 50 -
        # 90,000) / (3 * 0.005 - 3) = 26,783.92: 10.7 % below the mark; 2 BTC: LP = 25,100.50
        # (16.3 %)
        (
            {"min_liquidation_distance_pct": 15},
            FLAT,
            order(BUY, "3"),
            DenialReason.LIQUIDATION_DISTANCE,
        ),
        ({"min_liquidation_distance_pct": 15}, FLAT, order(BUY, "2"), None),
        # every limit exceeded already: a reducing order still passes
        (
            {
                "max_leverage": 1,
                "max_gross_leverage": 1,
                "max_net_leverage": 1,
                "min_liquidation_distance_pct": 50,
            },
            account("10000", sym("BTCUSDT", "30000", "3")),
            order(SELL, "1"),
            None,
        ),
        # the leverage setting above what the brackets allow for the notional: 125x up to
        # 50,000, 100x above
        (
            {},
            account("10000", sym("BTCUSDT", "30000", leverage=125)),
            order(BUY, "1.7"),
            DenialReason.MAX_LEVERAGE,
        ),
        ({}, account("10000", sym("BTCUSDT", "30000", leverage=125)), order(BUY, "1.6"), None),
        # all off: nothing leverage-related denies
        ({}, FLAT, order(BUY, "20"), None),
    ],
)
def test_the_leverage_checks(
    limits: dict[str, object],
    snap: PerpAccountSnapshot,
    intent: OrderIntent,
    reason: DenialReason | None,
) -> None:
    decision = check_order(risk(**limits), snap, intent)
    assert decision.reason is reason, decision.detail
    # the engine calls the same checks for a perpetual account
    view = AccountView(snap.positions, {k: s.mark for k, s in snap.symbols.items()}, perp=snap)
    assert RiskEngine(risk(**limits)).check(intent, view, now_ns=0).reason is reason
    if reason is not None:
        assert reason.value in RISK_DENIAL_REASONS


def test_a_cross_order_is_denied_when_it_brings_another_cross_position_near_liquidation() -> None:
    # short 10 ETH at 2,000 on a 2,000 cross wallet: LP = 22,000 / 10.04 = 2,191.24 (9.56 %).
    # 0.1 BTC long adds 12 of maintenance margin on the same wallet: LP = 21,988 / 10.04 =
    # 2,190.04 (9.50 %), while the BTC position itself is far from its own.
    snap = account("2000", sym("BTCUSDT", "30000"), sym("ETHUSDT", "2000", "-10"))
    eth_alone = snap.liquidation_distance_pct("ETHUSDT")
    assert eth_alone is not None and eth_alone > D("9.55")
    limits = risk(min_liquidation_distance_pct=9.55)
    decision = check_order(limits, snap, order(BUY, "0.1"))
    assert decision.reason is DenialReason.LIQUIDATION_DISTANCE
    assert decision.detail.startswith("ETHUSDT")


def _accounts() -> st.SearchStrategy[PerpAccountSnapshot]:
    def build(
        wallet: int, qty: Decimal, side: int, entry: int, move: int, leverage: int, iso: bool
    ) -> PerpAccountSnapshot:
        mark = D(entry + move)
        mode = ISO if iso else CROSS
        margin = str(qty * entry / leverage) if iso else None
        position = PerpPosition(
            "BTCUSDT", qty * side, D(entry), leverage, mode, D(margin) if margin else None
        )
        s = PerpSymbol("BTCUSDT", mark, BRACKETS["BTCUSDT"], leverage, mode, position)
        return PerpAccountSnapshot(D(wallet), {"BTCUSDT": s})

    return st.builds(
        build,
        wallet=st.integers(100, 100_000),
        qty=st.decimals("0.001", "10", places=3),
        side=st.sampled_from([1, -1]),
        entry=st.integers(20_000, 40_000),
        move=st.integers(-5_000, 5_000),
        leverage=st.integers(1, 20),
        iso=st.booleans(),
    )


@settings(max_examples=80, deadline=None)
@given(
    snap=_accounts(),
    fraction=st.decimals("0.001", "1", places=3),
    limit=st.decimals("0.1", "5", places=2),
    distance=st.floats(0.5, 60),
)
def test_a_reducing_order_is_never_denied(
    snap: PerpAccountSnapshot, fraction: Decimal, limit: Decimal, distance: float
) -> None:
    position = snap.get("BTCUSDT").qty
    qty = max(abs(position) * fraction, D("0.001")).quantize(D("0.001"))
    side = SELL if position > 0 else BUY
    limits = risk(
        max_leverage=limit,
        max_gross_leverage=limit,
        max_net_leverage=limit,
        min_liquidation_distance_pct=distance,
    )
    assert check_order(limits, snap, order(side, str(qty))).allowed


@settings(max_examples=80, deadline=None)
@given(
    wallet=st.integers(1_000, 100_000),
    held=st.decimals("0", "3", places=3),
    entry=st.integers(20_000, 40_000),
    mark=st.integers(20_000, 40_000),
    qty=st.decimals("0.001", "5", places=3),
    limit=st.decimals("0.5", "10", places=2),
)
def test_an_order_is_denied_iff_the_position_leverage_after_it_is_above_the_maximum(
    wallet: int, held: Decimal, entry: int, mark: int, qty: Decimal, limit: Decimal
) -> None:
    # a cross long of `held` BTC at `entry`, marked at `mark`, adds `qty` at the mark:
    # leverage after = (held + qty) * mark / (wallet + held * (mark - entry)), by hand
    balance = wallet + held * (mark - entry)
    if balance <= 0:
        return
    s = sym("BTCUSDT", str(mark), str(held) if held else None, entry=str(entry), leverage=5)
    snap = account(str(wallet), s)
    after = (held + qty) * mark / balance
    decision = check_order(risk(max_leverage=limit), snap, order(BUY, str(qty)))
    assert decision.allowed is (after <= limit), (after, decision.detail)


# --- the monitor ------------------------------------------------------------------------------


def test_a_position_too_close_to_liquidation_gets_the_smallest_cut_that_restores_the_distance() -> (
    None
):
    # 3 BTC long on a 10,000 cross wallet: 10.7 % from liquidation, under a 15 % minimum.
    # With q BTC left (bracket 2): LP = (30,000 q - 10,050) / (0.995 q) <= 25,500 iff
    # q <= 2.17180...: the smallest cut in steps of 0.001 is 0.829.
    snap = account("10000", sym("BTCUSDT", "30000", "3", step="0.001"))
    limits = risk(min_liquidation_distance_pct=15)
    (action,) = monitor(limits, snap)
    assert isinstance(action, ReduceOrder)
    assert action.side is SELL and action.reduce_only and action.reason == "liquidation_distance"
    assert action.qty == D("0.829")
    for cut, enough in ((action.qty, True), (action.qty - D("0.001"), False)):
        distance = snap.after("BTCUSDT", -cut, D(30000)).liquidation_distance_pct("BTCUSDT")
        assert distance is not None and (distance >= 15) is enough
    # the cut itself passes the engine (it reduces)
    view = AccountView(snap.positions, {"BTCUSDT": D(30000)}, perp=snap)
    assert RiskEngine(limits).check(action.intent(), view, now_ns=0).allowed


def test_an_isolated_position_too_close_is_closed_whole() -> None:
    # an isolated cut releases margin pro rata: the liquidation price does not move, so only
    # the whole position restores the distance. 1 BTC at 20x: LP 28,614 (4.6 % away).
    snap = account(
        "10000", sym("BTCUSDT", "30000", "1", leverage=20, mode=ISO, margin="1500", step="0.001")
    )
    (action,) = monitor(risk(min_liquidation_distance_pct=10), snap)
    assert isinstance(action, ReduceOrder) and action.qty == D(1)


def test_a_margin_ratio_at_the_alert_raises_one_alert_for_the_cross_wallet() -> None:
    # wallet 1,000, long 1 BTC at 30,000 marked 29,200 (-800) and short 10 ETH at 2,000:
    # margin balance 200; MM = 29,200 * 0.004 + 20,000 * 0.004 = 196.8 -> ratio 0.984
    snap = account(
        "1000",
        sym("BTCUSDT", "29200", "1", entry="30000"),
        sym("ETHUSDT", "2000", "-10"),
    )
    actions = monitor(risk(margin_ratio_alert=0.8), snap)
    assert actions == [
        MarginRatioAlert(("BTCUSDT", "ETHUSDT"), D("196.8") / D(200), D("0.8"), CROSS)
    ]
    assert monitor(risk(), snap) == []  # both settings off


def test_mark_perp_feeds_the_drawdown_the_equity_at_the_mark() -> None:
    engine = RiskEngine(risk(max_drawdown_pct=10))
    entry = account("10000", sym("BTCUSDT", "30000", "1"))
    assert engine.mark_perp(entry, ts=1) == ([], [])
    # the mark falls 1,000: unrealized -1,000 on a 10,000 wallet, a 10 % drawdown
    down = account("10000", sym("BTCUSDT", "29000", "1", entry="30000"))
    actions, leverage_actions = engine.mark_perp(down, ts=2)
    assert engine.drawdown_pct == pytest.approx(10.0)
    assert actions == [RiskAction.CANCEL_ALL] and leverage_actions == []


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_leverage", 0, "max_leverage is a leverage multiple above 0"),
        ("max_gross_leverage", -2, "max_gross_leverage is a leverage multiple above 0"),
        ("max_net_leverage", "-0.5", "max_net_leverage is a leverage multiple above 0"),
        ("min_liquidation_distance_pct", 0, "between 0 and 100"),
        ("min_liquidation_distance_pct", 100, "between 0 and 100"),
        ("margin_ratio_alert", 1.5, "at most 1"),
        ("margin_ratio_alert", -0.1, "above 0"),
    ],
)
def test_a_zero_or_negative_leverage_setting_is_an_error_that_says_what_is_allowed(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        RiskConfig.model_validate({field: value})
    assert message in str(refused.value) and "null turns it off" in str(refused.value)


@pytest.mark.parametrize("written", [None, "null", "off"])
def test_the_leverage_settings_are_off_by_default_and_can_be_turned_off(written: object) -> None:
    fields = (
        "max_leverage",
        "max_gross_leverage",
        "max_net_leverage",
        "min_liquidation_distance_pct",
        "margin_ratio_alert",
    )
    assert all(getattr(RiskConfig(), f) is None for f in fields)
    cfg = RiskConfig.model_validate(dict.fromkeys(fields, written))
    assert all(getattr(cfg, f) is None for f in fields)


# --- metrics ----------------------------------------------------------------------------------


def _sample(name: str, symbol: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"symbol": symbol})


def test_the_publisher_sets_the_gauges_removes_flat_symbols_and_splits_funding_by_sign() -> None:
    snap = account(
        "10000",
        sym("BTCUSDT", "30000", "1", leverage=10, mode=ISO, margin="3000"),
        sym("ETHUSDT", "2000"),
    )
    paid_before = _sample("tessera_funding_paid_total", "BTCUSDT") or 0.0
    received_before = _sample("tessera_funding_received_total", "BTCUSDT") or 0.0
    funding = [
        FundingEntry(0, "BTCUSDT", D(1), D(30000), D("0.0001"), D(-3)),  # a long pays
        FundingEntry(1, "BTCUSDT", D(1), D(30000), D("-0.00005"), D("1.5")),  # and receives
    ]
    publish_perp(snap, funding)
    assert _sample("tessera_margin_ratio", "BTCUSDT") == pytest.approx(0.04)
    assert _sample("tessera_liquidation_distance_pct", "BTCUSDT") == pytest.approx(9.6385542)
    assert _sample("tessera_margin_ratio", "ETHUSDT") is None
    assert _sample("tessera_funding_paid_total", "BTCUSDT") == paid_before + 3
    assert _sample("tessera_funding_received_total", "BTCUSDT") == received_before + 1.5
    publish_perp(account("10000", sym("BTCUSDT", "30000"), sym("ETHUSDT", "2000")))
    assert _sample("tessera_margin_ratio", "BTCUSDT") is None
    assert _sample("tessera_liquidation_distance_pct", "BTCUSDT") is None
