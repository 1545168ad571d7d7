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
