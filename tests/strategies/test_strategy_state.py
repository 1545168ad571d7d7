"""``ctx.state`` and the order helpers' state survive a restart of the bot: encoded exactly
(Decimal stays Decimal), refused clearly when it holds what JSON cannot, and restored so that a
new context trails the same stop from the same high-water mark."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from test_context_helpers import SYM, FakeContext

from tessera.execution.persistence import ExecutionStore
from tessera.strategies.base import Bar
from tessera.strategies.state import decode_state, encode_state

D = Decimal


def test_state_round_trips_exactly_with_decimals_nested() -> None:
    state = {"entry": "c1", "qty": D("0.00100000"), "levels": [D("1.5"), 2, None], "n": {"a": 1}}
    assert decode_state(encode_state(state)) == state
    assert isinstance(decode_state(encode_state(state))["qty"], Decimal)
    # equal states encode equal: the bot writes only changes
    assert encode_state({"b": 1, "a": 2}) == encode_state({"a": 2, "b": 1})


def test_a_value_json_cannot_hold_is_refused_naming_its_type() -> None:
    with pytest.raises(TypeError, match="set cannot be stored"):
        encode_state({"seen": {1, 2}})


def test_a_restored_context_moves_the_trailing_stop_as_the_first_one_would(tmp_path: Path) -> None:
    first = FakeContext()
    first.pos[SYM] = D("1")
    stop = first.trail_stop(SYM, D("1"), trail_pct=D("1"))
    assert stop is not None and stop.stop_price == D("99.00")
    first.state["entry"] = "c7"
    store = ExecutionStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        store.save_strategy_state(
            "s", encode_state({"strategy": first.state, "helpers": first._sdk_snapshot()}), 1
        )
        text = store.load_strategy_state("s")
    finally:
        store.close()
    assert text is not None
    data = decode_state(text)
    second = FakeContext()
    second.pos[SYM] = D("1")
    second.state = data["strategy"]
    second._sdk_restore(data["helpers"])
    assert second.state == {"entry": "c7"}
    bar = Bar(SYM, 0, 59_999_999_999, 100.0, 102.0, 99.5, 101.0, 1.0)
    for ctx in (first, second):
        ctx._sdk_on_bar(bar)
    # both cancelled the same resting stop and placed the same new one
    assert first.cancelled == second.cancelled == [stop.client_order_id]
    assert first.sent[-1].stop_price == second.sent[-1].stop_price == D("100.98")


MIN = 60_000_000_000


def _bar(minute: int, high: float) -> Bar:
    return Bar(SYM, minute * MIN, (minute + 1) * MIN - 1, high - 1, high, high - 2, high - 1, 1.0)


def _restarted(first: FakeContext, keep_seen: bool = True) -> FakeContext:
    """A new context from what ``first`` stored, through the JSON the bot writes."""
    data = decode_state(encode_state({"strategy": {}, "helpers": first._sdk_snapshot()}))
    if not keep_seen:
        for trail in data["helpers"]["trails"].values():
            del trail["seen"]
    second = FakeContext()
    second.pos[SYM] = D("1")
    second._sdk_restore(data["helpers"])
    return second


def test_a_restarted_trail_takes_in_the_highs_of_bars_it_missed_and_moves_once_trading() -> None:
    """Bars that closed while the bot was down (or arrived as it stopped) reach the restarted
    bot only as warm-up: their highs count, the bars the trail had already taken do not, and
    the stop moves once trading resumes — where an uninterrupted run's stop would be."""
    first = FakeContext()
    first.pos[SYM] = D("1")
    first._sdk_on_bar(_bar(1, 99.0))
    stop = first.trail_stop(SYM, D("1"), trail_pct=D("5"))  # from 100: 95
    assert stop is not None and stop.stop_price == D("95")
    first._sdk_on_bar(_bar(2, 110.0))  # -> 104.5
    moved = first.sent[-1]
    assert moved.stop_price == D("104.5")

    second = _restarted(first)
    for minute, high in ((1, 300.0), (2, 300.0), (3, 120.0), (4, 115.0)):
        second._sdk_catch_up(_bar(minute, high))  # the warm-up: minutes 1, 2 were taken
    assert second.sent == [] and second.cancelled == []  # nothing is sent while warming
    second._sdk_resume()
    assert second.cancelled == [moved.client_order_id]
    assert [o.stop_price for o in second.sent] == [D("114")]  # 120 * 0.95
    # an uninterrupted run: the same stop
    for minute, high in ((3, 120.0), (4, 115.0)):
        first._sdk_on_bar(_bar(minute, high))
    assert first.sent[-1].stop_price == D("114")
    second._sdk_resume()  # nothing new to move
    assert len(second.sent) == 1


def test_a_trail_placed_before_a_bar_it_never_saw_takes_that_bar_in_after_a_restart() -> None:
    """Placed from a fill heard during minute 3 (minute 2 the newest bar seen); the bot stops
    before minute 3's bar: after the restart minute 3 counts, minute 2 does not."""
    first = FakeContext()
    first.pos[SYM] = D("1")
    first._sdk_on_bar(_bar(2, 130.0))
    stop = first.trail_stop(SYM, D("1"), trail_pct=D("5"))
    assert stop is not None and stop.stop_price == D("95")
    second = _restarted(first)
    second._sdk_catch_up(_bar(2, 130.0))
    second._sdk_resume()
    assert second.sent == []
    second._sdk_catch_up(_bar(3, 102.0))
    second._sdk_resume()
    assert [o.stop_price for o in second.sent] == [D("96.9")]


def test_a_trail_stored_without_its_newest_bar_does_not_guess_which_bars_it_missed() -> None:
    """State written before the trail kept its newest bar: warm-up bars are not taken in
    (they may predate the stop); it moves again from the next traded bar, as before."""
    first = FakeContext()
    first.pos[SYM] = D("1")
    first._sdk_on_bar(_bar(1, 99.0))
    first.trail_stop(SYM, D("1"), trail_pct=D("5"))
    second = _restarted(first, keep_seen=False)
    second._sdk_catch_up(_bar(2, 200.0))
    second._sdk_resume()
    assert second.sent == []
    second._sdk_on_bar(_bar(3, 110.0))
    assert [o.stop_price for o in second.sent] == [D("104.5")]
