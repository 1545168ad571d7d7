"""Every built-in strategy in one live bot, end to end, on SQLite and on PostgreSQL, long enough.

Why this test exists (issue 14, defect 1): the bot's signal id ``run_id:strategy:symbol:bar_ns:seq``
outgrew ``orders.signal_id varchar(64)`` for ``mean_reversion`` at once, for ``model_signal``
from the bot's 100th signal and for ``sma_cross`` from its 1000th. PostgreSQL refused every such
order (StringDataRightTruncation), the bot looped "the database answers again: reconciling" and
its exit line counted orders that no table held; SQLite ignores the declared length, and the
existing live tests ran two strategies for a few seconds on one backend, so nothing noticed.

The class of test that would have caught it: run `tessera run` as a real process against the
exchange simulator over sockets with *every* registered strategy at once (parameters chosen so
each trades often on 1s bars), on both backends, for one whole replay pass of the bundled
recordings. Before its end, the bot's signal sequence must be past 1000 and the
``model_signal`` instances must have emitted more than 100 signals — measured from the bot's own
``/metrics`` while it runs, so a run too short fails instead of passing vacuously — and for the
rest of the pass each often-trading strategy must place orders, whose signal ids then carry a
four-digit sequence. Then the database must agree with the simulator's ledger to the last unit,
the exit line must count only orders that reached the exchange, no "database answers again"
loop and no error line may appear, and nothing may be halted.

The bot stops on SIGTERM (graceful: exit code 0) once its /metrics show it has seen the last
bars of the pass, rather than after a ``--duration`` guessed for some machine's speed.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from inprocess_bot import running_simulator
from live_bot_helpers import (
    TESSERA,
    assert_ledger_matches,
    bot_env,
    free_port,
    register_small_model,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

from tessera.execution.persistence import ExecutionStore
from tessera.sim.market import SimMarket
from tessera.sim.recording import BUNDLED_RECORDINGS
from tessera.sim.server import ExchangeSimulator
from tessera.sim.trading import TradingEngine, with_order_limit
from tessera.strategies import registered_strategies

# No `xdist_group` mark: under `pytest -n N`, tests/conftest.py puts every slow test of
# tests/live/ in its "live-processes" group (bots timed against seconds must not run two at
# once on two cores); a group of its own would run beside that one.
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class MatrixEntry:
    """One strategy of the matrix: its instances' ``--strategy`` texts, and whether it trades
    often enough that each instance must place an order after the signal sequence has passed
    ``SEQ_THRESHOLD``."""

    specs: tuple[str, ...]
    trades_often: bool


# Every registered strategy, parameters chosen to trade often on 1s bars with small fixed
# quantities above the 10 USDT minimum notional on both symbols (the simulated account holds
# 1 BTC, 10 ETH and 100,000 USDT). The often-trading ones run twice (ids `sma_cross` and
# `sma_cross-1`, ...): twice the signals per bar, and longer strategy ids in the signal ids.
# A strategy registered later and missing here fails
# `test_the_matrix_covers_every_registered_strategy`.
MATRIX: dict[str, MatrixEntry] = {
    "sma_cross": MatrixEntry(
        ("sma_cross:fast=1,slow=2,qty=0.01", "sma_cross:fast=2,slow=5,qty=0.01"),
        trades_often=True,
    ),
    "mean_reversion": MatrixEntry(
        (
            # out again as soon as the z-score is back above -0.29: in and out every few bars
            "mean_reversion:window=4,entry_z=0.3,exit_z=0.29,qty=0.01",
            "mean_reversion:window=3,entry_z=0.2,exit_z=0.19,qty=0.01,allow_short=true",
        ),
        trades_often=True,
    ),
    "model_signal": MatrixEntry(
        (
            "model_signal:long_threshold=0,qty=0.01",
            "model_signal:long_threshold=0,short_threshold=0,qty=0.01,allow_short=true",
        ),
        trades_often=True,
    ),
    # buys once per symbol, on the first bar after the warm-up, and holds (0.01 of each)
    "buy_and_hold": MatrixEntry(("buy_and_hold:qty=0.02",), trades_often=False),
    # ranks BTC against ETH by their 2-bar return every third second and holds the better one:
    # 0.2 % of the account's equity (a few hundred USDT), rotating whenever the ranking flips
    "cross_sectional": MatrixEntry(
        (
            "cross_sectional:lookback=2,k=1,weight=0.002,rebalance_bars=3,"
            "min_trade=0.0005,qty_step=0.0001",
        ),
        trades_often=True,
    ),
}

# The documentation shows no example strategy of its own that `tessera run` could load
# (docs/backtest.md lists the built-ins; strategies are registered in code with
# `register_strategy`, and the CLI only accepts registered names), so there is none to add.

SEQ_THRESHOLD = 1000  # sma_cross's signal id outgrew varchar(64) from the 1000th signal
MODEL_SIGNALS_THRESHOLD = 100  # model_signal's from the bot's 100th
# Both symbols of the bundled recordings. One replay pass is ~650 one-second bars per symbol,
# and the bot trades one pass only (a looped pass repeats bar times it has seen): the matrix
# above emits ~2,000 signals in it, so the thresholds fall near its middle and the often-trading
# strategies keep placing orders with four-digit sequences for the rest of it.
SYMBOLS = ("BTCUSDT", "ETHUSDT")
SPEED = 20.0  # replay speed: 20 one-second bars per wall-clock second, ~33 s per pass
# The default order-rate limits (5 per second in the risk engine, 50 per 10 s on the exchange)
# would deny most of these signals, and a strategy could then go the rest of the pass without
# an order by chance. Lifted, nearly every signal that changes a position becomes an order:
# hundreds of signal ids through the store, from every strategy.
MAX_ORDERS_PER_SECOND = 30
PASS_TIMEOUT_S = 650 / SPEED + 45  # the bot's start-up, one pass, and room for a loaded machine


def instance_name(strategy_id: str) -> str:
    """``sma_cross-1`` -> ``sma_cross``: a second instance's id is the name and its index."""
    return re.sub(r"-\d+$", "", strategy_id)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registered LightGBM model, so that ``model_signal`` scores the bot's 1s bars early."""
    return register_small_model(tmp_path_factory.mktemp("registry"), "matrix")


@pytest.fixture(scope="module")
def market() -> SimMarket:
    """The bundled recordings, advertising the order limit the simulator enforces (the bot's
    rate limiter follows the exchangeInfo it reads)."""
    base = SimMarket.from_recording(BUNDLED_RECORDINGS)
    base.exchange_info = with_order_limit(base.exchange_info, 10 * MAX_ORDERS_PER_SECOND)
    return base


@pytest.fixture
def sim(market: SimMarket) -> Iterator[tuple[ExchangeSimulator, TradingEngine]]:
    # one pass, no loop: a looped pass repeats bar times the bot has seen (it does not trade
    # them), and the bot's progress is told by the newest event time it has seen
    with running_simulator(
        speed=SPEED, market=market, loop_replay=False, max_orders_10s=10 * MAX_ORDERS_PER_SECOND
    ) as running:
        yield running


def scrape(port: int, counter: str, label: str) -> dict[str, float]:
    """A counter or gauge of the bot's /metrics by one label; empty while it is not serving."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {
        sample.labels[label]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == counter
        for sample in family.samples
        if sample.name in (counter, f"{counter}_total")
    }


def final_bar_times(market: SimMarket) -> dict[str, float]:
    """Open time (unix seconds) of each symbol's last closed 1s bar in the replay."""
    out = {}
    for symbol in SYMBOLS:
        stream = market.stream(f"{symbol.lower()}@kline_1s")
        assert stream is not None, symbol
        closed = [k for k in map(orjson.loads, stream.payloads) if k["k"]["x"]]
        out[symbol] = closed[-1]["k"]["t"] / 1000
    return out


def scrape_signals(port: int) -> dict[str, float]:
    """``tessera_signals`` by strategy id: the bot's signal sequence is their sum."""
    return scrape(port, "tessera_signals", "strategy")


def exchange_order_ids(engine: TradingEngine) -> set[str]:
    """Client order ids the simulator holds. Its thread adds orders while we read: a copy that
    raced a change is simply taken again."""
    while True:
        try:
            return {o.client_order_id for o in list(engine.orders.values())}
        except RuntimeError:  # dictionary changed size during iteration
            continue


# an error-level line in structlog's console or JSON rendering
ERROR_LINE = re.compile(r'\[(error|critical)\s*\]|"level":\s*"(error|critical)"')
# expected noise at this signal rate: the order-rate limit still denies some signals
NOISE = "order denied by risk"


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if ERROR_LINE.search(line)]


def excerpt(path: Path, lines: int = 15) -> str:
    """The first error lines and the last lines of a bot's log, without the expected noise."""
    text = path.read_text(errors="replace") if path.exists() else ""
    errors = error_lines(text)[:5]
    last = [line for line in text.splitlines() if NOISE not in line][-lines:]
    return (
        f"\n--- {path.name}: first error lines ---\n" + "\n".join(errors)
        + f"\n--- {path.name}: last {lines} lines (no '{NOISE}') ---\n" + "\n".join(last)
    )  # fmt: skip


@dataclass
class Bot:
    """`tessera run` in its own process, logging to files: thousands of log lines would fill a
    pipe and stall it."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    port: int

    def logs(self) -> str:
        return excerpt(self.out) + excerpt(self.err)

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the bot exited early ({self.proc.returncode}){self.logs()}")
        return True

    def stop(self) -> int:
        """SIGTERM (graceful), then the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=45)

    def kill(self) -> None:
        if self.proc.poll() is None:  # a failed assertion must not leave the bot running
            self.proc.kill()
            self.proc.wait()


def start_bot(tmp_path: Path, env: dict[str, str]) -> Bot:
    """Every strategy of the matrix on both symbols, in live mode against the simulator."""
    port = free_port()
    args = [a for e in MATRIX.values() for spec in e.specs for a in ("--strategy", spec)]
    args += [a for symbol in SYMBOLS for a in ("--symbol", symbol)]
    out_path, err_path = tmp_path / "bot.out", tmp_path / "bot.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(
            [TESSERA, "--metrics-port", str(port), "run", "--mode", "live",
             "--i-understand-live-trading", "--interval", "1s", "--no-ingest", *args,
             "--model", "matrix", "--duration", str(int(2 * PASS_TIMEOUT_S))],
            env=env, cwd=tmp_path, stdout=out, stderr=err,
        )  # fmt: skip
    return Bot(proc, out_path, err_path, port)


def matrix_env(
    tmp_path: Path, database_url: str, simulator: ExchangeSimulator, registry: Path
) -> dict[str, str]:
    return bot_env(
        tmp_path,
        database_url,
        simulator,
        TESSERA_MODEL__REGISTRY_DIR=str(registry),
        TESSERA_RISK__MAX_ORDERS_PER_SECOND=str(MAX_ORDERS_PER_SECOND),
    )


EXIT_LINE = re.compile(r"stopped: (\d+) signals, (\d+) orders sent")


def test_the_matrix_covers_every_registered_strategy() -> None:
    # the built-ins: strategies other test modules register for themselves are theirs
    builtin = {n for n, c in registered_strategies().items() if c.__module__.startswith("tessera.")}
    assert "sma_cross" in builtin
    assert set(MATRIX) == builtin, (
        "every built-in strategy must run in the end-to-end matrix: add the missing ones to "
        f"MATRIX (built in: {sorted(builtin)}, matrix: {sorted(MATRIX)})"
    )


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_every_builtin_strategy_trades_past_signal_1000_and_the_ledger_matches_the_exchange(
    tmp_path: Path,
    registry: Path,
    database_url: str,
    sim: tuple[ExchangeSimulator, TradingEngine],
) -> None:
    simulator, engine = sim
    bot = start_bot(tmp_path, matrix_env(tmp_path, database_url, simulator, registry))
    logs = bot.logs

    last_bars = final_bar_times(simulator.market)

    def pass_over() -> bool:
        """The strategies have been given the last closed bar of every symbol (a bot lagging
        behind the replay has not, when the simulator's pass ends; one whose websocket was
        cut meanwhile gets the last bars over REST, which no market-data message tells)."""
        seen = scrape(bot.port, "tessera_bar_last_open_timestamp_seconds", "symbol")
        return all(seen.get(sym, 0) >= t for sym, t in last_bars.items())

    def thresholds_passed(counts: dict[str, float]) -> bool:
        models = sum(v for k, v in counts.items() if instance_name(k) == "model_signal")
        return sum(counts.values()) > SEQ_THRESHOLD and models > MODEL_SIGNALS_THRESHOLD

    def thresholds_reached() -> dict[str, float] | None:
        bot.alive()
        counts = scrape_signals(bot.port)
        return counts if thresholds_passed(counts) else None

    try:
        started = time.monotonic()
        # the run is long enough: measured from the bot, not assumed from a duration (a bot
        # lagging behind the replay may pass the thresholds after the pass has ended)
        signals = wait_for(
            f"the bot's signal sequence past {SEQ_THRESHOLD} and more than "
            f"{MODEL_SIGNALS_THRESHOLD} model_signal signals",
            thresholds_reached,
            timeout=PASS_TIMEOUT_S,
            detail=lambda: (
                f"signals {scrape_signals(bot.port)}, replay pass over: {pass_over()}{logs()}"
            ),
        )
        reached_s = time.monotonic() - started
        before = exchange_order_ids(engine)
        # the rest of the pass: orders whose signal ids carry a sequence past 1000
        wait_for(
            "the bot to see the last bars of the replay",
            lambda: bot.alive() and pass_over(),
            timeout=PASS_TIMEOUT_S,
            detail=lambda: f"last bars {last_bars}{logs()}",
        )
        returncode = bot.stop()
    finally:
        bot.kill()
    output = bot.output()

    assert returncode == 0, f"exit code {returncode}{logs()}"
    instances = {name: sorted(k for k in signals if instance_name(k) == name) for name in MATRIX}
    for name, entry in MATRIX.items():
        assert len(instances[name]) == len(entry.specs), f"{name} instances {instances[name]}"
    exit_line = EXIT_LINE.search(output)
    assert exit_line is not None, f"no exit line{logs()}"
    published, sent = int(exit_line[1]), int(exit_line[2])
    assert published > SEQ_THRESHOLD, exit_line[0]

    reconciling = output.count("the database answers again")
    store = ExecutionStore(database_url)
    try:
        ours = {o.client_order_id: o for o in store.list_orders(limit=1_000_000)}
        on_exchange = exchange_order_ids(engine)
        reached = {cid: o for cid, o in ours.items() if cid in on_exchange}
        by_instance = {
            sid: sorted(cid for cid, o in reached.items() if o.strategy == sid) for sid in signals
        }
        summary = (
            f"{len(ours)} orders in the database, {len(on_exchange)} on the exchange, "
            f"{len(reached)} of ours reached it; per strategy "
            f"{ {k: len(v) for k, v in by_instance.items()} }; exit line {exit_line[0]!r}; "
            f"{reconciling} 'database answers again' lines; signals {signals} "
            f"after {reached_s:.0f} s"
        )
        print(summary)  # in the test's captured output: how far the run went
        assert reconciling == 0, f"the bot looped reconciling: {summary}{logs()}"
        errors = error_lines(output)
        assert not errors, f"{len(errors)} error lines: {summary}{logs()}"
        assert sent == len(reached), f"the exit line counts orders no table holds: {summary}"
        for sid, cids in by_instance.items():
            assert cids, f"{sid} placed no order that reached the exchange: {summary}{logs()}"
            if MATRIX[instance_name(sid)].trades_often:
                assert set(cids) - before, (
                    f"{sid} placed no order after the signal sequence passed {SEQ_THRESHOLD} "
                    f"(a signal id too long for the store?): {summary}{logs()}"
                )
        assert_ledger_matches(store, engine)
        assert store.load_halt("main") is None, "reconciliation or the kill-switch halted"
    finally:
        store.close()


DAILY_ORDER_LIMIT = 40


@pytest.fixture(scope="module")
def exhausted_market() -> SimMarket:
    """The bundled recordings, advertising a daily order limit the matrix exhausts within
    seconds (Binance's is 160,000 a day): from then on the bot's rate limiter holds every
    order back until the day rolls over."""
    base = SimMarket.from_recording(BUNDLED_RECORDINGS)
    limits = [
        {**rl, "limit": DAILY_ORDER_LIMIT}
        if (rl.get("rateLimitType"), rl.get("interval")) == ("ORDERS", "DAY")
        else dict(rl)
        for rl in base.exchange_info.get("rateLimits", [])
    ]
    assert any(rl["limit"] == DAILY_ORDER_LIMIT for rl in limits), limits
    base.exchange_info = {**base.exchange_info, "rateLimits": limits}
    return base


def test_an_order_held_back_by_the_rate_limiter_at_shutdown_is_not_left_open_nor_counted_sent(
    tmp_path: Path, registry: Path, exhausted_market: SimMarket
) -> None:
    """Found by the matrix: when the executor waits in the rate limiter (more signals than the
    exchange's order limits admit), the order's intent is already recorded as SUBMITTED, and
    the bot has already counted it as sent. A SIGTERM cancels the wait once the 10 s drain
    gives up: the request never left, yet the exit line counts the order among those sent.
    Worse, in the matrix's run (risk 30 orders/s against Binance's 50 per 10 s, stopped with a
    backlog) the order held back had been recorded less than the 7 s settle time before, and
    shutdown recovery left it SUBMITTED (``checked=1 ... unresolved=0``) behind an exit 0.

    The daily limit makes the wait outlast any drain, so the state at the SIGTERM is certain
    rather than a matter of where in a 10 s window it lands; the order held back is then older
    than the settle time, and the assertion on open orders guards the closing that works."""
    database_url = f"sqlite:///{tmp_path / 'tessera.db'}"
    with running_simulator(speed=SPEED, market=exhausted_market, loop_replay=False) as (
        simulator,
        engine,
    ):
        bot = start_bot(tmp_path, matrix_env(tmp_path, database_url, simulator, registry))
        try:
            # the wait is counted as it begins: stop while an order is held back
            wait_for(
                "the bot's rate limiter holding an order back for the daily order limit",
                lambda: (
                    bot.alive()
                    and scrape(bot.port, "tessera_rate_limit_waits", "scope").get("orders_1d", 0)
                ),
                timeout=PASS_TIMEOUT_S,
                detail=bot.logs,
            )
            returncode = bot.stop()
        finally:
            bot.kill()
        output = bot.output()
        assert returncode == 0, f"exit code {returncode}{bot.logs()}"
        exit_line = EXIT_LINE.search(output)
        assert exit_line is not None, f"no exit line{bot.logs()}"
        store = ExecutionStore(database_url)
        try:
            orders = store.list_orders(limit=1_000_000)
            left_open = [(o.client_order_id, o.status.value) for o in orders if o.status.is_open]
            on_exchange = exchange_order_ids(engine)
            reached = [o for o in orders if o.client_order_id in on_exchange]
            summary = (
                f"{len(orders)} orders in the database, {len(reached)} reached the exchange, "
                f"left open {left_open}; exit line {exit_line[0]!r}"
            )
            print(summary)
            assert len(reached) == DAILY_ORDER_LIMIT, summary
            assert not left_open, f"orders left open by a clean exit: {summary}{bot.logs()}"
            assert int(exit_line[2]) == len(reached), f"orders counted as sent: {summary}"
            assert_ledger_matches(store, engine)
        finally:
            store.close()
