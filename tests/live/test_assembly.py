"""`bot_options`: every ``live.*`` setting reaches the bot, whichever entry point builds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.config import load_settings
from tessera.config.models import StrategyRef
from tessera.live.assembly import _FROM_LIVE, bot_options


def test_every_live_setting_and_the_risk_limits_reach_the_bot(tmp_path: Path) -> None:
    (tmp_path / "live.yaml").write_text(
        "order_timeout_s: 3.5\n"
        "max_bar_age_s: 4.0\n"
        "max_strategy_errors: 7\n"
        "shutdown_timeout_s: 12.0\n"
        "claim_idle_ms: 1234\n"
    )
    (tmp_path / "risk.yaml").write_text("max_drawdown_pct: 3.0\n")
    settings = load_settings(config_dir=tmp_path, env_file=None, data_dir=tmp_path)
    options = bot_options(
        settings,
        mode="paper",
        strategies=[StrategyRef(name="sma_cross")],
        symbols=["btcusdt"],
        rest_url="http://127.0.0.1:1",
        ws_url="ws://127.0.0.1:1",
        database_url="sqlite:///x.db",
        run_id="r1",
    )
    for name in _FROM_LIVE:
        assert getattr(options, name) == getattr(settings.live, name), name
    assert (options.order_timeout_s, options.max_bar_age_s) == (3.5, 4.0)
    assert options.max_strategy_errors == 7 and options.claim_idle_ms == 1234
    assert options.risk.max_drawdown_pct == 3.0
    assert options.symbols == ["BTCUSDT"]
    assert options.interval == settings.features.interval


def test_an_override_that_names_no_option_is_an_error(tmp_path: Path) -> None:
    settings = load_settings(config_dir=tmp_path, env_file=None, data_dir=tmp_path)
    with pytest.raises(TypeError, match="order_timeout"):
        bot_options(
            settings,
            mode="dev",
            strategies=[],
            symbols=["BTCUSDT"],
            rest_url="",
            ws_url="",
            database_url="",
            run_id="r",
            order_timeout=1.0,
        )
