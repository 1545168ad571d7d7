"""`tessera run`: the long-running trading bot (dev, paper or live)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tessera.config.errors import ConfigError
from tessera.config.models import ParamValue, StrategyRef
from tessera.config.urls import redact_url
from tessera.console import make_console
from tessera.logging import configure_logging, get_logger, register_secret, scrub
from tessera.strategies.cli import StrategyPathOption, load_user_strategies

if TYPE_CHECKING:
    from tessera.bootstrap import AppContext
    from tessera.sim.server import SimulatorThread

out = make_console(stderr=True)
log = get_logger(__name__)

SIM_KEY = "tessera-sim-key"
SIM_SECRET = "tessera-sim-secret"


class RunMode(str, Enum):
    dev = "dev"
    paper = "paper"
    live = "live"


def parse_strategy(text: str) -> StrategyRef:
    """``NAME`` or ``NAME:key=value,key=value`` -> `StrategyRef` (values typed like YAML)."""
    name, _, rest = text.partition(":")
    params: dict[str, ParamValue] = {}
    for item in filter(None, rest.split(",")):
        key, eq, raw = item.partition("=")
        if not eq:
            raise typer.BadParameter(f"{item!r}: parameters are key=value", param_hint="--strategy")
        params[key.strip()] = _typed(raw.strip())
    return StrategyRef(name=name.strip(), params=params)


def _typed(raw: str) -> ParamValue:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            pass
    return raw


def run(
    ctx: typer.Context,
    mode: Annotated[
        RunMode | None,
        typer.Option(
            "--mode",
            help="dev: an in-process simulator replays real recorded data and the bot trades it "
            "through its signed API; paper: real market data from the configured exchange, "
            "fills simulated locally; live: real orders with real money. Default: the "
            "configured mode.",
        ),
    ] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "-s",
            metavar="NAME[:k=v,...]",
            help="Strategy to run; repeat for several. They share one account, risk engine, "
            "rate limiter and kill-switch; every order, fill and position is attributed to its "
            "strategy. Default: the strategies of configs/live.yaml.",
        ),
    ] = None,
    strategy_path: StrategyPathOption = None,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol to trade; repeat for several")
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="Bar interval the strategies and features run on")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Registered model (NAME or NAME:VERSION) scoring every closed bar"
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: run until Ctrl-C)")
    ] = None,
    paper_cash: Annotated[
        str, typer.Option(help="Paper mode: starting quote balance of a new paper account")
    ] = "10000",
    ingest: Annotated[
        bool,
        typer.Option("--ingest/--no-ingest", help="Also persist the market data to the store"),
    ] = True,
    speed: Annotated[
        str, typer.Option(help="Dev mode: replay speed of the in-process simulator (e.g. 10x)")
    ] = "10x",
    i_understand_live_trading: Annotated[
        bool,
        typer.Option(
            "--i-understand-live-trading",
            help="Required for --mode live (or live.i_understand_live_trading: true)",
        ),
    ] = False,
) -> None:
    """Run the trading bot: market data -> features -> model -> strategies -> signals -> risk
    -> orders, until Ctrl-C / SIGTERM (graceful: queued signals are executed, in-flight
    orders resolved, data flushed) or --duration.

    /metrics, /healthz and /readyz are served on the metrics port. Live mode refuses to start
    without credentials, without --i-understand-live-trading, or when reconciliation with the
    exchange finds anything unexplained. Dev mode trades only against a Tessera simulator (its
    own, or the one at exchange.rest_url, which must identify itself as one); paper mode never
    sends the configured credentials anywhere.
    """
    from tessera.bootstrap import AppContext
    from tessera.live.settings_check import check_trading_settings

    app = ctx.find_root().obj
    assert isinstance(app, AppContext)
    s = app.settings
    chosen = (mode.value if mode else s.mode) or "dev"
    if chosen != s.mode:
        if s.log_json is None:
            configure_logging(s.log_level, json=chosen != "dev")
        import platform

        from tessera import __version__
        from tessera.metrics import set_build_info

        set_build_info(__version__, platform.python_version(), chosen)
    load_user_strategies(s, strategy_path)  # registered in this process: the bot finds them
    refs = [parse_strategy(t) for t in strategy] if strategy else list(s.live.strategies)
    if model is None and not strategy:
        refs = [r for r in refs if r.name != "model_signal"] or refs
    check_strategies(refs)  # before anything starts or connects
    check_trading_settings(s)  # so too the exchange and the leverage limits
    bar_interval = interval or s.features.interval
    _check_run_options(bar_interval, duration)
    from tessera.models.cli import registry_root

    registry_dir = registry_root(app, None)
    if model is not None:
        _check_model(model, registry_dir)
    from tessera.live.assembly import bot_options
    from tessera.live.bot import BotStartError, LiveRefusedError, TradingBot

    symbols = [x.upper() for x in symbol] if symbol else list(s.live.symbols)
    api_key = s.exchange.api_key.get_secret_value() if s.exchange.api_key else ""
    api_secret = s.exchange.api_secret.get_secret_value() if s.exchange.api_secret else ""
    usdm = s.exchange.name == "binance-usdm"  # the perpetuals simulator and its /fapi paths
    from tessera.venues.contract import exchange_hosts

    rest_url, ws_url = exchange_hosts(s)
    if chosen == "live" and not (i_understand_live_trading or s.live.i_understand_live_trading):
        raise ConfigError(
            "live mode trades real money: pass --i-understand-live-trading "
            "(or set live.i_understand_live_trading: true in configs/live.yaml)"
        )
    if chosen == "paper":
        # Paper fills are simulated here; the exchange only provides public market data. With
        # no credentials handed to the bot, nothing in it can sign a request.
        if api_key or api_secret:
            log.info("paper mode: the configured exchange credentials are not used")
        api_key = api_secret = ""
    sim_thread: SimulatorThread | None = None
    if chosen == "dev" and not s.exchange.rest_url:
        sim_thread, rest_url, ws_url = _start_dev_simulator(speed, usdm=usdm)
        api_key, api_secret = SIM_KEY, SIM_SECRET
        register_secret(SIM_SECRET)
    elif chosen == "dev":
        # The configured keys will sign requests to exchange.rest_url: only a simulator may
        # get them without the live gate.
        version = require_simulator(rest_url, ping="/fapi/v1/ping" if usdm else "/api/v3/ping")
        log.info("dev mode: simulator found", rest=redact_url(rest_url), version=version)
    options = bot_options(
        s,
        mode=chosen,
        strategies=refs,
        symbols=symbols,
        rest_url=rest_url,
        ws_url=ws_url,
        database_url=_database_url(app, sim_thread is not None),
        run_id=app.run_id,
        interval=bar_interval,
        api_key=api_key,
        api_secret=api_secret,
        model_ref=model,
        registry_dir=registry_dir,
        paper_balances={"USDT": str(Decimal(paper_cash))},
        end_of_data=(
            (lambda: sim_thread.sim.stats.replay_done) if sim_thread is not None else None
        ),
        ingest_store=(s.data.store_dir or s.data_dir / "store") if ingest else None,
        duration_s=duration,
    )
    bot = TradingBot(options)
    server = app.start_metrics()
    bot.health = server.health  # the endpoint's handler reads this object: /readyz is the bot's
    out.print(
        f"[bold]tessera run[/] mode={chosen} strategies={[r.name for r in refs]} "
        f"symbols={symbols} exchange={scrub(redact_url(rest_url))} "
        f"db={scrub(redact_url(options.database_url))} "
        f"metrics={server.url}"
    )
    try:
        code = asyncio.run(bot.run())
    except LiveRefusedError as exc:
        out.print(f"[bold red]refused:[/] {exc}")
        raise typer.Exit(3) from exc
    except BotStartError as exc:
        out.print(f"[bold red]could not start:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        if sim_thread is not None:
            sim_thread.stop()
    ended = " (the replay ended)" if bot.ended_by_data else ""
    out.print(f"stopped{ended}: {bot.signals_published} signals, {bot.orders_sent} orders sent")
    for problem in bot.problems:
        out.print(f"[bold red]problem:[/] {problem}")
    if code:
        raise typer.Exit(code)


def _check_run_options(interval: str, duration: float | None) -> None:
    """The bar interval and the duration, or `ConfigError` (exit 2) before anything starts: an
    unknown interval was refused only once the bot ran (exit 3, after dev mode's simulator had
    loaded its replay), and a duration of 0 or less ran a bot that stopped at once."""
    from tessera.data.intervals import INTERVAL_NS

    if interval not in INTERVAL_NS:
        known = ", ".join(INTERVAL_NS)
        raise ConfigError(f"--interval {interval!r} (or features.interval): use one of {known}")
    if duration is not None and not duration > 0:
        raise ConfigError(
            f"--duration {duration:g}: give the seconds to run, above 0 (or leave it out to run "
            "until Ctrl-C / SIGTERM)"
        )


def _check_model(model: str, registry_dir: Path) -> None:
    """``--model NAME[:VERSION]`` names a registered model, or `ConfigError` (exit 2) naming
    what the registry holds — before anything starts, not a traceback from the bot's set-up."""
    from tessera.models.registry import ModelRegistry, RegistryError

    try:
        ModelRegistry(registry_dir).resolve_ref(model)
    except (RegistryError, ValueError) as exc:
        raise ConfigError(f"--model {model}: {exc}") from exc


def check_strategies(refs: list[StrategyRef]) -> None:
    """Every strategy name and parameter valid, or `ConfigError` (exit 2) with the sentence that
    names the strategy, the parameter, the value and what it accepts."""
    from tessera.strategies import StrategyParamError, validate_strategy_params

    for ref in refs:
        try:
            validate_strategy_params(ref.name, ref.params)
        except StrategyParamError as exc:
            raise ConfigError(f"--strategy: {exc}") from None
        except KeyError as exc:
            raise ConfigError(f"--strategy: {exc.args[0]}") from None


def require_simulator(rest_url: str, timeout_s: float = 10.0, ping: str = "/api/v3/ping") -> str:
    """The version of the Tessera simulator answering at ``rest_url``, or `ConfigError`.

    Dev mode signs requests with the configured credentials, which may be real exchange keys.
    Before any of them is sent, an unsigned ``GET /api/v3/ping`` (``ping``: USDⓈ-M's
    ``/fapi/v1/ping``) must come back with the
    simulator's ``X-Tessera-Simulator`` header; anything else (a real exchange, a testnet, a
    proxy, nothing at all) is refused: trading there is what live mode and its gate are for.
    """
    from tessera.sim.identity import SIMULATOR_HEADER

    url = rest_url.rstrip("/") + ping
    shown = redact_url(rest_url)
    version: str | None = None
    if not rest_url.lower().startswith(("http://", "https://")):
        raise ConfigError(
            f"exchange.rest_url={shown}: an http:// or https:// URL is expected (for dev mode, "
            "the address `tessera sim serve` prints)."
        )
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            version = resp.headers.get(SIMULATOR_HEADER)
    except urllib.error.HTTPError as exc:  # a simulator answering 429/5xx still says so
        version = exc.headers.get(SIMULATOR_HEADER)
    except (OSError, ValueError) as exc:
        log.error("dev mode: the simulator does not answer", rest=shown, error=str(exc))
        raise ConfigError(
            f"dev mode: cannot reach a simulator at exchange.rest_url={shown} ({exc}). Start "
            "one with `tessera sim serve` there, or unset exchange.rest_url to let dev mode "
            "start its own."
        ) from None
    if not version:
        log.error("dev mode refused: not a Tessera simulator", rest=shown)
        raise ConfigError(
            f"dev mode trades only against a Tessera simulator, and exchange.rest_url={shown} "
            f"is not one (its answer to GET {ping} has no {SIMULATOR_HEADER} header); "
            "nothing was sent to it with the configured API key. To trade there with the "
            "configured credentials (a real exchange or a testnet), run --mode live "
            "--i-understand-live-trading; for dev mode, unset exchange.rest_url (an in-process "
            "simulator starts) or point it at `tessera sim serve`."
        )
    return version


def _database_url(app: AppContext, fresh_exchange: bool) -> str:
    """The configured database; with the embedded dev simulator (a new exchange account every
    run) a database of the run's own, unless one is configured explicitly: an old ledger
    would not reconcile with a new exchange."""
    s = app.settings
    if fresh_exchange and s.sources().get("database_url", "default").startswith("default"):
        path = s.data_dir / "dev" / f"tessera-{app.run_id}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return s.database_url or f"sqlite:///{s.data_dir / 'tessera.db'}"


def _start_dev_simulator(speed: str, usdm: bool = False) -> tuple[SimulatorThread, str, str]:
    from tessera.sim.cli import parse_speed
    from tessera.sim.server import ExchangeSimulator, SimulatorThread
    from tessera.sim.trading import TradingConfig, TradingEngine

    # no loop: a second pass would replay bar times the bot has seen, and it would sit idle
    # (and ready) on data it skips. The run ends with the replay instead (`end_of_data`).
    if usdm:  # the bundled BTCUSDT perpetual recording, USDⓈ-M's trading and fees
        from tessera.sim.usdm import usdm_trading_config, usdm_venue

        sim = usdm_venue(
            speed=parse_speed(speed),
            loop_replay=False,
            trading=usdm_trading_config(api_key=SIM_KEY, api_secret=SIM_SECRET),
        ).sim
    else:
        sim = ExchangeSimulator(speed=parse_speed(speed), loop_replay=False)
        TradingEngine(sim, TradingConfig(api_key=SIM_KEY, api_secret=SIM_SECRET))
    thread = SimulatorThread(sim)
    started = thread.start()
    log.info("dev simulator started", rest=started.rest_url, speed=speed)
    return thread, started.rest_url, started.ws_url
