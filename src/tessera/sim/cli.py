"""`tessera sim ...`: run the local Binance spot exchange simulator from the command line."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tessera.console import make_console

if TYPE_CHECKING:  # the simulator (aiohttp, pyarrow) loads in `serve`: `--help` stays fast
    from tessera.sim.server import ExchangeSimulator

app = typer.Typer(
    help="A local Binance spot exchange (REST + websockets) replaying recorded real market data.",
    no_args_is_help=True,
)
out = make_console()


@app.callback()
def sim() -> None:
    """A local Binance spot exchange (REST + websockets) replaying recorded real market data."""


def parse_speed(text: str) -> float | None:
    """``"1x"`` -> 1.0, ``"60x"`` -> 60.0, ``"2.5"`` -> 2.5, ``"max"`` -> None (as fast as
    the clients take it)."""
    raw = text.strip().lower()
    if raw == "max":
        return None
    try:
        value = float(raw.removesuffix("x"))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: use 1x, 60x, max or a positive number") from exc
    if not value > 0:
        raise typer.BadParameter(f"{text!r}: the speed must be positive")
    return value


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind (REST and websockets).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port for both REST and websockets (0 = any).")] = 8765,
    speed: Annotated[
        str,
        typer.Option(
            metavar="SPEED",
            help="Replay speed against the recorded exchange clock: 1x (real time), 60x, any "
            "number, or max (as fast as the slowest subscriber reads, with backpressure).",
        ),
    ] = "1x",
    recording: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="PATH",
            help="Raw Binance websocket recording (hftbacktest .gz format) to replay; repeat "
            "the option for several. Default: the bundled BTCUSDT and ETHUSDT recordings.",
        ),
    ] = None,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop/--no-loop", help="Start the replay over when it reaches the end of the data."
        ),
    ] = True,
    trading: Annotated[
        bool,
        typer.Option(
            "--trading/--no-trading",
            help="Serve the signed order endpoints (order, openOrders, account, myTrades) with "
            "a matching engine against the replayed market.",
        ),
    ] = True,
    api_key: Annotated[
        str, typer.Option("--api-key", help="API key the order endpoints accept.")
    ] = "tessera-sim-key",
    api_secret: Annotated[
        str, typer.Option("--api-secret", help="Secret that signs requests (HMAC-SHA256).")
    ] = "tessera-sim-secret",
    max_orders_10s: Annotated[
        int,
        typer.Option(
            "--max-orders-10s",
            min=1,
            help="New orders per 10 seconds before 429 / -1015 (advertised in exchangeInfo).",
        ),
    ] = 50,
    bars: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Replay a file of OHLCV bars (.csv, .csv.gz, .parquet, .feather; 1m, e.g. the "
            "bundled samples/bars/btc-perp-20211231-20220201_1m.csv.gz, or longer: the interval "
            "is read from the open times) as closed @kline_<interval> events and REST klines, "
            "instead of the recordings. With --trading, orders are matched bar by "
            "bar by the backtest's rules (bar mode: the same fills as a backtest on the file).",
        ),
    ] = None,
    symbol: Annotated[
        str | None,
        typer.Option(
            help="With --bars: the symbol the bars are served as (default BTCUSDT; with --usdm, "
            "read from a freqtrade file name such as XRP_USDT_USDT-1h-futures.feather)"
        ),
    ] = None,
    mark: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="With --usdm --bars: mark-price klines of the same symbol (e.g. the bundled "
            "samples/freqtrade/futures/XRP_USDT_USDT-1h-mark.feather); candles it does not "
            "cover, or all without it, are marked at their close",
        ),
    ] = None,
    funding: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="With --usdm --bars: funding-rate history (freqtrade's file, e.g. "
            "samples/freqtrade/futures/XRP_USDT_USDT-8h-funding_rate.feather): served as "
            "fundingRate/premiumIndex and settled on open positions at each funding time",
        ),
    ] = None,
    history: Annotated[
        int,
        typer.Option(
            help="With --bars: bars already visible over REST before the replay starts (the "
            "history a bot warms up on)",
        ),
    ] = 200,
    usdm: Annotated[
        bool,
        typer.Option(
            "--usdm",
            help="Serve Binance USDⓈ-M futures (/fapi) instead of spot: the bundled BTCUSDT "
            "perpetual recording (or --recording files of USDⓈ-M frames, or --bars candles "
            "with --mark and --funding) with the real fapi exchangeInfo; with --trading, "
            "one-way positions, leverage and margin, funding settled in bar mode (ccxt "
            "binanceusdm: point its fapi urls at the REST address).",
        ),
    ] = False,
    start_now: Annotated[
        bool,
        typer.Option(
            "--start-now/--wait-for-client",
            help="Start the replay at once, or (default) with the first websocket subscription, "
            "so that the first client sees the data from its first frame.",
        ),
    ] = False,
) -> None:
    """Serve Binance's spot market-data API on one port, replaying real recorded frames.

    REST: /api/v3/ping, time, exchangeInfo, depth, trades, historicalTrades, aggTrades, klines.

    Websockets: /ws/<stream>, /stream?streams=<a>/<b>, SUBSCRIBE on /ws or /stream, and
    /stream/ws for ccxt.pro (set exchange.urls['api']['ws']['spot'] to <ws url>/stream/ws).

    Ctrl-C (SIGINT) or SIGTERM stops it cleanly.
    """
    from tessera.bootstrap import AppContext
    from tessera.sim.market import SimMarket
    from tessera.sim.recording import recording_paths
    from tessera.sim.server import ExchangeSimulator

    factor = parse_speed(speed)
    if (mark is not None or funding is not None) and not (usdm and bars is not None):
        raise typer.BadParameter(
            "--mark and --funding go with --usdm --bars (a perpetual replayed from candles)",
            param_hint="--mark/--funding",
        )
    if usdm:
        if bars is not None and recording:
            raise typer.BadParameter(
                "--usdm replays either --recording files or --bars, not both", param_hint="--bars"
            )
        _serve_usdm(recording, factor, loop, start_now, trading, api_key, api_secret, host, port,
                    speed, bars, symbol, mark, funding, history)  # fmt: skip
        return
    if bars is not None:
        from tessera.sim.bars import market_from_bar_file

        try:
            market = market_from_bar_file(bars, symbol or "BTCUSDT")
        except (FileNotFoundError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--bars") from exc
    else:
        try:
            market = SimMarket.from_recording(recording_paths(recording))
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="--recording") from exc
    if isinstance(ctx.obj, AppContext):
        ctx.obj.start_metrics()
    if trading:
        from tessera.sim.trading import with_order_limit

        # this market is the command's own: it may advertise the limit the engine enforces
        market.exchange_info = with_order_limit(market.exchange_info, max_orders_10s)
    sim = ExchangeSimulator(market, speed=factor, loop_replay=loop, autostart=not start_now)
    if bars is not None and history > 0:
        sim.release(min(history, len(market.frames)))
    if trading:
        from tessera.sim.trading import TradingConfig, TradingEngine

        TradingEngine(
            sim,
            TradingConfig(api_key=api_key, api_secret=api_secret, max_orders_10s=max_orders_10s),
        )
    asyncio.run(_serve(sim, host, port, speed, start_now, api_key if trading else None))


def _serve_usdm(
    recording: list[Path] | None,
    factor: float | None,
    loop: bool,
    start_now: bool,
    trading: bool,
    api_key: str,
    api_secret: str,
    host: str,
    port: int,
    speed: str,
    bars: Path | None = None,
    symbol: str | None = None,
    mark: Path | None = None,
    funding: Path | None = None,
    history: int = 0,
) -> None:
    from tessera.sim.market import SimMarket
    from tessera.sim.usdm import usdm_market, usdm_trading_config, usdm_venue

    notes: list[str] = []
    market: SimMarket
    if bars is not None:
        from tessera.sim.usdm.bars import symbol_from_file_name, usdm_bar_market

        sym = symbol or symbol_from_file_name(bars)
        if sym is None:
            raise typer.BadParameter(
                f"{bars}: cannot tell the symbol from the file name; give --symbol",
                param_hint="--symbol",
            )
        try:
            bar_mkt = usdm_bar_market(bars, sym, mark, funding)
        except (FileNotFoundError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--bars/--mark/--funding") from exc
        notes = [
            f"  bars       {sym} {bar_mkt.interval} candles from {bars.name} (bar mode)",
            f"  mark       {bar_mkt.mark_source}",
            f"  funding    {bar_mkt.funding_source}",
        ]
        market = bar_mkt
    else:
        try:
            market = usdm_market(recording)
        except (FileNotFoundError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--recording") from exc
    config = usdm_trading_config(api_key=api_key, api_secret=api_secret) if trading else None
    venue = usdm_venue(
        market, trading=config, speed=factor, loop_replay=loop, autostart=not start_now
    )
    if bars is not None and history > 0:
        venue.sim.release(min(history, len(market.frames)))
    asyncio.run(_serve(venue.sim, host, port, speed, start_now, api_key if trading else None,
                       usdm=True, notes=notes))  # fmt: skip


async def _serve(
    sim: ExchangeSimulator,
    host: str,
    port: int,
    speed: str,
    start_now: bool,
    key: str | None,
    usdm: bool = False,
    notes: list[str] | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start(host, port)
    except OSError as exc:
        out.print(f"[bold red]error:[/] cannot listen on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(2) from exc
    try:
        streams = ", ".join(sim.market.base_streams())
        kind, api = ("USDⓈ-M futures", "fapi/v1") if usdm else ("spot", "api/v3")
        out.print(f"[bold]Binance {kind} simulator[/] replaying {len(sim.market.frames):,} frames")
        out.print(f"  REST       [cyan]{sim.rest_url}/{api}/...[/]")
        out.print(f"  raw WS     [cyan]{sim.ws_url}/ws/<stream>[/]")
        out.print(f"  combined   [cyan]{sim.ws_url}/stream?streams=<a>/<b>[/]")
        if usdm:
            out.print(f"  ccxt.pro   urls['api']['ws']['linear'] = [cyan]{sim.ws_url}/ws[/]")
        else:
            out.print(f"  ccxt.pro   urls['api']['ws']['spot'] = [cyan]{sim.ws_url}/stream/ws[/]")
        derived = "@aggTrade, @kline_<interval>" + ("" if usdm else ", @depth")
        out.print(f"  streams    {streams} (+ {derived})")
        for note in notes or []:
            out.print(note)
        if key:
            out.print(f"  trading    POST/GET/DELETE /{api}/order ... signed with key {key}")
        out.print(
            f"  speed {speed}; replay "
            + ("started" if start_now else "starts with the first subscription")
            + ". Ctrl-C stops."
        )
        if start_now:
            sim.start_replay()
        await stop.wait()
    finally:
        await sim.stop()
        out.print(
            f"stopped: {sim.stats.total_messages:,} messages sent to "
            f"{sim.stats.connections} connection(s)"
        )
