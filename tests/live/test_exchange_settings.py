"""The ``exchange.*`` settings and ``live.order_timeout_s`` take effect in the bot's exchange
client (`bot_options` -> `exchange_client`), against the simulator over real sockets.

``exchange.name`` selects the venue and is refused before anything starts when Tessera cannot
trade there; ``exchange.recv_window_ms`` goes out as ``recvWindow`` with every signed request
(the simulator enforces it as Binance does); ``live.order_timeout_s`` is how long a submit waits
before its outcome is unknown and the order is looked up by client order id.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tessera.config import ConfigError, load_settings
from tessera.config.settings import TesseraSettings
from tessera.execution.exchange import ClockSkewError
from tessera.execution.manager import OrderManager
from tessera.execution.orders import Order, OrderSide, OrderStatus, OrderType
from tessera.execution.persistence import ExecutionStore
from tessera.live.assembly import bot_options, exchange_client
from tessera.live.bot import BotOptions, TradingBot
from tessera.live.clock import ExchangeClock
from tessera.sim import ExchangeSimulator, SimMarket
from tessera.sim.trading import TradingConfig, TradingEngine
from tessera.venues.binance_spot.exchange import CcxtExchange

REPO = Path(__file__).resolve().parents[2]
BTC_0808 = REPO / "samples/binance-raw-ws/spot/btcusdt_20240808.gz"
KEY, SECRET = "test-key", "test-secret"


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket.from_recording([BTC_0808])


@pytest.fixture
async def venue(market: SimMarket) -> AsyncIterator[tuple[ExchangeSimulator, TradingEngine]]:
    sim = ExchangeSimulator(market, speed=None, autostart=False)
    engine = TradingEngine(sim, TradingConfig(api_key=KEY, api_secret=SECRET))
    async with sim:
        sim.release(4000)
        yield sim, engine


def settings_with(config_dir: Path, **files: str) -> TesseraSettings:
    for name, text in files.items():
        (config_dir / f"{name}.yaml").write_text(text)
    return load_settings(config_dir=config_dir, env_file=None, data_dir=config_dir)


def options_for(settings: TesseraSettings, rest_url: str = "http://127.0.0.1:1") -> BotOptions:
    return bot_options(
        settings,
        mode="dev",
        strategies=[],
        symbols=["BTCUSDT"],
        rest_url=rest_url,
        ws_url="",
        database_url="sqlite://",
        run_id="r-exchange",
        api_key=KEY,
        api_secret=SECRET,
    )


def far_below(sim: ExchangeSimulator) -> Decimal:
    """A buy price that rests (a tenth below the bid)."""
    sim.state.advance_to(sim.head)
    bid = max(sim.state.books["BTCUSDT"].bids)
    return (bid * Decimal("0.9")).quantize(Decimal("0.01"))


# --- exchange.name ---------------------------------------------------------------------------


def test_exchange_name_binance_is_the_venue_of_the_bot(tmp_path: Path) -> None:
    options = options_for(settings_with(tmp_path, tessera="exchange:\n  name: binance\n"))
    assert options.exchange_id == "binance"


def test_an_exchange_name_tessera_cannot_trade_on_is_a_config_error_before_the_bot_is_built(
    tmp_path: Path,
) -> None:
    settings = settings_with(tmp_path, tessera="exchange:\n  name: kraken\n")
    with pytest.raises(ConfigError) as refused:
        options_for(settings)
    text = str(refused.value)
    assert "exchange.name 'kraken' is not supported for trading" in text
    assert "binance (spot)" in text and "exchange.rest_url" in text
    with pytest.raises(ConfigError, match=r"exchange\.name 'kraken'"):
        CcxtExchange("http://127.0.0.1:1", exchange_id="kraken")


def test_tessera_run_with_an_unsupported_exchange_name_exits_2_naming_the_setting(
    tmp_path: Path,
) -> None:
    """Paper mode too: its market data is Binance's. Refused before anything connects."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TESSERA_")}
    env |= {"TESSERA_EXCHANGE__NAME": "kraken", "TESSERA_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "--metrics-port",
            "0",
            "run",
            "--mode",
            "paper",
            "--strategy",
            "sma_cross",
            "--duration",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "exchange.name 'kraken' is not supported" in done.stderr
    assert "Traceback" not in done.stderr


# --- exchange.recv_window_ms -----------------------------------------------------------------


async def local_time_ms() -> int:
    """A "server time" that is our own: a clock that never corrects a skew of the exchange."""
    return time.time_ns() // 1_000_000


@pytest.mark.parametrize(("recv_window_ms", "accepted"), [(9_000, True), (5_000, False)])
async def test_signed_requests_carry_the_configured_recv_window(
    venue: tuple[ExchangeSimulator, TradingEngine],
    tmp_path: Path,
    recv_window_ms: int,
    accepted: bool,
) -> None:
    """The exchange's clock runs 7 s ahead and ours is not corrected: our timestamps are 7 s
    old when they arrive. A 9 s recvWindow accepts them, the 5 s default refuses them (-1021,
    again after the resync and one more try): the window is in the signed request."""
    sim, _ = venue
    settings = settings_with(tmp_path, tessera=f"exchange:\n  recv_window_ms: {recv_window_ms}\n")
    options = options_for(settings, sim.rest_url)
    assert options.recv_window_ms == recv_window_ms
    clock = ExchangeClock(local_time_ms)
    ex = exchange_client(options, limiter=None, clock=clock)
    try:
        await ex.balances()  # markets loaded, the clock synchronised (to our own time)
        sim.faults.clock_skew_ms = 7_000
        sent = sim.stats.rest_requests["/api/v3/account"]
        if accepted:
            assert (await ex.balances())["USDT"].free > 0
            assert sim.stats.rest_requests["/api/v3/account"] == sent + 1
        else:
            with pytest.raises(ClockSkewError):
                await ex.balances()
            assert sim.stats.rest_requests["/api/v3/account"] == sent + 2
    finally:
        await ex.close()
        await clock.close()


@pytest.mark.parametrize(("recv_window_ms", "final_after_s"), [(5_000, 7), (9_000, 11)])
def test_an_unknown_order_is_closed_as_never_placed_only_after_the_recv_window_and_2_s(
    tmp_path: Path, recv_window_ms: int, final_after_s: int
) -> None:
    """Until the recvWindow has passed the exchange may still accept the request: a longer
    window makes the bot wait longer before "not found" is final."""
    settings = settings_with(tmp_path, tessera=f"exchange:\n  recv_window_ms: {recv_window_ms}\n")
    bot = TradingBot(options_for(settings))
    assert bot.unknown_after_ns == final_after_s * 1_000_000_000


# --- live.order_timeout_s --------------------------------------------------------------------


async def test_a_submit_unanswered_for_order_timeout_s_is_resolved_by_client_order_id(
    venue: tuple[ExchangeSimulator, TradingEngine], tmp_path: Path
) -> None:
    """The simulator places the order at once and holds its answer back for 6 s; with
    ``live.order_timeout_s: 1.0`` the submit gives up after about a second, and the order
    manager finds the order by its client order id (the documented unknown-outcome path)
    instead of waiting for the answer (the 10 s default would have waited for it)."""
    sim, engine = venue
    engine.config.response_delay_s = 6.0
    settings = settings_with(tmp_path, live="order_timeout_s: 1.0\n")
    ex = exchange_client(options_for(settings, sim.rest_url), limiter=None, clock=None)
    store = ExecutionStore(f"sqlite:///{tmp_path / 'orders.db'}")
    try:
        await ex.balances()  # markets and clock first: the timing below is the submit's alone
        manager = OrderManager(store, ex, "run-timeout")
        order = Order(
            "run-timeout-1",
            "BTCUSDT",
            OrderSide.BUY,
            OrderType.LIMIT,
            Decimal("0.00100"),
            price=far_below(sim),
        )
        started = time.monotonic()
        await manager.submit(order)
        waited = time.monotonic() - started
        assert 1.0 <= waited < 3.0, waited
        assert order.status is OrderStatus.ACCEPTED
        (placed,) = [o for o in engine.orders.values() if o.client_order_id == "run-timeout-1"]
        assert order.exchange_order_id == str(placed.order_id)
        stored = store.get_order("run-timeout-1")
        assert stored is not None and stored.status is OrderStatus.ACCEPTED
    finally:
        await ex.close()
        store.close()
