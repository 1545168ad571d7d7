"""``exchange.name: binance-usdm`` before the bot trades perpetuals: the order adapter accepts
it, the bot refuses it in one paragraph (its feed, user-data stream and account speak spot),
and the market-data commands still refuse it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.config import ConfigError, load_settings
from tessera.config.settings import require_supported_exchange
from tessera.live.assembly import bot_options


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
