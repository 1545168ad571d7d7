"""``exchange.name: binance-usdm`` before the bot trades perpetuals: the order adapter accepts
it, the bot refuses it in one paragraph (its feed, user-data stream and account speak spot),
and the market-data commands still refuse it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.config import ConfigError, load_settings
from tessera.config.models import RiskConfig
from tessera.config.settings import require_supported_exchange
from tessera.live.assembly import bot_options
from tessera.live.bot import BotOptions, LiveRefusedError, TradingBot


def test_binance_usdm_is_refused_by_the_bot_and_accepted_by_the_adapter(tmp_path: Path) -> None:
    (tmp_path / "tessera.yaml").write_text("exchange:\n  name: binance-usdm\n")
    settings = load_settings(config_dir=tmp_path, env_file=None, data_dir=tmp_path)
    with pytest.raises(ConfigError) as refused:
        bot_options(
            settings,
            mode="dev",
            strategies=[],
            symbols=["BTCUSDT"],
            rest_url="http://127.0.0.1:1",
            ws_url="",
            database_url="sqlite://",
            run_id="r-usdm",
        )
    text = str(refused.value)
    assert "the bot does not trade binance-usdm (USDⓈ-M perpetuals" in text
    assert "TESSERA_EXCHANGE__NAME" in text and "\n" not in text
    assert require_supported_exchange("binance-usdm", "trading") == "binanceusdm"
    with pytest.raises(ConfigError, match="not supported for market data"):
        require_supported_exchange("binance-usdm", "market data")


async def test_a_bot_built_for_binance_usdm_without_bot_options_refuses_to_start(
    tmp_path: Path,
) -> None:
    options = BotOptions(
        mode="dev",
        strategies=[],
        symbols=["BTCUSDT"],
        interval="1m",
        rest_url="http://127.0.0.1:1",
        ws_url="",
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        run_id="r-usdm",
        risk=RiskConfig(),
        exchange_id="binance-usdm",
    )
    with pytest.raises(LiveRefusedError, match="the bot does not trade it yet"):
        await TradingBot(options)._setup()
