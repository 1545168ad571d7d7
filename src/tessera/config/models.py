"""Typed configuration for each module, one YAML file each in ``configs/``.

Every field is typed, defaulted and documented in one line; unknown keys are errors
(``extra="forbid"``) so that a typo never silently falls back to a default.
Money, prices and quantities are ``Decimal``; rates and percentages are floats.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tessera.config.urls import redacted_repr_args

Symbol = Annotated[
    str, Field(pattern=r"^[A-Z0-9]{2,20}$", description="Exchange symbol, e.g. BTCUSDT")
]
SymbolRef = Annotated[
    str,
    Field(
        pattern=r"^([a-z0-9_-]+:)?[A-Z0-9]{2,20}$",
        description="Symbol, optionally with its venue: BTCUSDT, coinbase:BTCUSD",
    ),
]
Interval = Literal["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"]
# markPrice and forceOrder are USDⓈ-M's only: `tessera ingest` refuses them on spot (exit 2)
StreamKind = Literal["trade", "aggTrade", "kline", "depth", "bookTicker", "markPrice", "forceOrder"]
ParamValue = int | float | str | bool
ZERO = Decimal(0)
HUNDRED = Decimal(100)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # a URL with a password (data.rest_url behind a proxy) must not show in a repr
        return redacted_repr_args(super().__repr_args__())


# --- data -----------------------------------------------------------------------------------


class DataConfig(StrictModel):
    """Market data: what to ingest, from where, and where to store it."""

    symbols: list[Symbol] = Field(
        default_factory=lambda: ["BTCUSDT"],
        min_length=1,
        description="Symbols to ingest and import",
    )
    intervals: list[Interval] = Field(
        default_factory=lambda: list[Interval](["1m"]),
        min_length=1,
        description="Kline intervals to subscribe to / import",
    )
    streams: list[StreamKind] = Field(
        default_factory=lambda: list[StreamKind](["trade", "kline", "depth", "bookTicker"]),
        description="Websocket stream kinds per symbol (markPrice, forceOrder: binance-usdm only)",
    )
    rest_url: str = Field("https://api.binance.com", description="Exchange REST base URL")
    ws_url: str = Field("wss://stream.binance.com:9443", description="Exchange websocket base URL")
    bulk_url: str = Field(
        "https://data.binance.vision", description="Base URL of Binance's public bulk-data files"
    )
    store_dir: Path | None = Field(None, description="Parquet store root; default <data_dir>/store")
    flush_rows: int = Field(
        5_000, gt=0, description="Ingest flushes a dataset after this many rows"
    )
    flush_interval_s: float = Field(2.0, gt=0, description="...or after this many seconds")
    backfill: bool = Field(True, description="Fill trade/kline gaps over REST after a reconnect")
    depth_snapshot_limit: int = Field(1000, gt=0, le=5000, description="Levels per /depth snapshot")
    reconnect_max_backoff_s: float = Field(30.0, gt=0, description="Cap of the reconnect backoff")
    planned_reconnect_h: float = Field(
        23.5, gt=0, le=24, description="Reconnect (with overlap) before Binance's 24 h cut"
    )


# --- features -------------------------------------------------------------------------------


class FeatureSpec(StrictModel):
    """One feature: a registered name plus its parameters."""

    name: str = Field(description="Registered feature name, e.g. rsi, macd, log_return")
    params: dict[str, ParamValue] = Field(default_factory=dict, description="Feature parameters")
    alias: str | None = Field(None, description="Column name; default derived from name+params")


def _default_features() -> list[FeatureSpec]:
    specs: list[tuple[str, dict[str, ParamValue]]] = [
        ("log_return", {"window": 1}),
        ("log_return", {"window": 5}),
        ("log_return", {"window": 15}),
        ("realized_vol", {"window": 30}),
        ("zscore", {"window": 60}),
        ("rsi", {"window": 14}),
        ("macd", {"fast": 12, "slow": 26, "signal": 9}),
        ("bbands", {"window": 20, "k": 2.0}),
        ("atr", {"window": 14}),
        ("vwap_distance", {"window": 60}),
        ("volume_zscore", {"window": 60}),
        ("hour", {}),
        ("weekday", {}),
    ]
    return [FeatureSpec(name=n, params=p) for n, p in specs]


class FeatureConfig(StrictModel):
    """Which features to compute, on which bars."""

    interval: Interval = Field("1m", description="Bar interval the features are computed on")
    features: list[FeatureSpec] = Field(
        default_factory=_default_features,
        min_length=1,
        description="Feature list, in output column order",
    )
    output_dir: Path | None = Field(
        None, description="Feature-set cache; default <data_dir>/features"
    )


# --- models ---------------------------------------------------------------------------------


class LabelConfig(StrictModel):
    """What the model learns to predict."""

    kind: Literal["forward_return", "sign", "triple_barrier"] = Field(
        "forward_return", description="Label type"
    )
    horizon: int = Field(15, gt=0, description="Bars ahead (and triple-barrier time limit)")
    dead_zone_bps: float = Field(2.0, ge=0, description="|return| below this is class 0 for `sign`")
    barrier_vol_mult: float = Field(2.0, gt=0, description="Barrier width in units of volatility")
    vol_window: int = Field(60, gt=1, description="Window of the volatility scaling the barriers")


class ValidationConfig(StrictModel):
    """Out-of-sample scheme; purging and embargo keep overlapping labels from leaking."""

    scheme: Literal["walk_forward", "purged_kfold"] = Field("walk_forward", description="Scheme")
    n_splits: int = Field(5, ge=2, description="Folds (walk-forward windows)")
    embargo_bars: int = Field(60, ge=0, description="Bars dropped after each test fold")
    min_train_bars: int = Field(5_000, gt=0, description="Walk-forward: smallest training window")


class LightGBMParams(StrictModel):
    num_leaves: int = Field(31, gt=1, description="Leaves per tree")
    learning_rate: float = Field(0.05, gt=0, description="Shrinkage")
    n_estimators: int = Field(300, gt=0, description="Boosting rounds")
    min_child_samples: int = Field(100, gt=0, description="Min rows per leaf")
    subsample: float = Field(0.8, gt=0, le=1, description="Row subsampling")
    colsample_bytree: float = Field(0.8, gt=0, le=1, description="Feature subsampling")
    reg_lambda: float = Field(1.0, ge=0, description="L2 regularisation")


class MLPParams(StrictModel):
    hidden: list[int] = Field(default_factory=lambda: [64, 32], description="Hidden layer sizes")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout probability")
    epochs: int = Field(20, gt=0, description="Training epochs")
    batch_size: int = Field(512, gt=0, description="Mini-batch size")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-5, ge=0, description="L2 weight decay")


class LinearParams(StrictModel):
    alpha: float = Field(1.0, ge=0, description="Ridge / inverse-C regularisation strength")


class ModelConfig(StrictModel):
    """Which model to train, on what label, validated how."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$", description="Registry name")
    kind: Literal["lightgbm", "mlp", "linear"] = Field("lightgbm", description="Model family")
    label: LabelConfig = Field(default_factory=LabelConfig, description="Prediction target")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="CV scheme")
    lightgbm: LightGBMParams = Field(default_factory=LightGBMParams, description="LightGBM params")
    mlp: MLPParams = Field(default_factory=MLPParams, description="Torch MLP params")
    linear: LinearParams = Field(default_factory=LinearParams, description="Baseline params")
    registry_dir: Path | None = Field(None, description="Model registry; default <data_dir>/models")


# --- backtest -------------------------------------------------------------------------------


class StrategyRef(StrictModel):
    """A strategy by registered name, with its parameters."""

    name: str = Field(description="Registered strategy name, e.g. sma_cross, model_signal")
    params: dict[str, ParamValue] = Field(default_factory=dict, description="Strategy parameters")


class FeeConfig(StrictModel):
    maker_bps: Decimal = Field(Decimal("10"), ge=0, description="Maker fee, basis points")
    taker_bps: Decimal = Field(Decimal("10"), ge=0, description="Taker fee, basis points")


class SlippageConfig(StrictModel):
    kind: Literal["none", "fixed_bps", "volatility", "book"] = Field(
        "fixed_bps", description="Model"
    )
    bps: Decimal = Field(Decimal("1"), ge=0, description="fixed_bps: slippage per fill")
    vol_mult: float = Field(0.1, ge=0, description="volatility: fraction of bar range")


class PerpBacktestConfig(StrictModel):
    """Perpetual futures in a backtest (symbols named ``binance-usdm:SYMBOL``)."""

    leverage: int = Field(
        1,
        ge=1,
        le=125,
        description="Leverage of every perpetual position "
        "unless the strategy sets its own (ctx.set_leverage)",
    )
    margin_mode: Literal["isolated", "cross"] = Field(
        "isolated", description="Isolated margin per position, or one shared cross wallet"
    )
    liquidation_fee_rate: Decimal = Field(
        Decimal("0.005"),
        ge=0,
        lt=1,
        description="Fraction of the liquidated notional charged on a liquidation (Binance's "
        "XRPUSDT/ETHUSDT liquidationFee; BTCUSDT 0.012)",
    )
    mark_file: Path | None = Field(
        None, description="Mark-price klines (freqtrade feather/parquet/csv); --mark overrides"
    )
    funding_file: Path | None = Field(
        None, description="Funding-rate history (freqtrade layout); --funding overrides"
    )
    funding: bool = Field(
        True, description="false: no funding at all (said in the output); --no-funding"
    )


class BacktestConfig(StrictModel):
    """An event-driven backtest run."""

    symbols: list[SymbolRef] = Field(
        default_factory=list,
        description="Symbols traded, read from the Parquet store (VENUE:SYMBOL where two venues "
        "hold one); empty: the bundled real sample. --symbol overrides",
    )
    interval: Interval | None = Field(
        None,
        description="Bar interval (resampled from finer stored bars when needed); empty: as "
        "stored. --timeframe overrides",
    )
    start: str | None = Field(
        None, description="ISO-8601 UTC start; default: first bar. --timerange overrides"
    )
    end: str | None = Field(None, description="ISO-8601 UTC end (exclusive); default: last bar")
    initial_cash: Decimal = Field(Decimal("10000"), gt=0, description="Starting cash, quote ccy")
    quote_currency: str = Field("USDT", description="Currency of cash and PnL")
    fees: FeeConfig = Field(default_factory=FeeConfig, description="Trading fees")
    slippage: SlippageConfig = Field(default_factory=SlippageConfig, description="Slippage model")
    latency_ms: int = Field(0, ge=0, description="Decision-to-order latency")
    fill_at: Literal["next_open", "close"] = Field(
        "next_open", description="Market-order fill price"
    )
    strategy: StrategyRef = Field(
        default_factory=lambda: StrategyRef(name="sma_cross", params={"fast": 10, "slow": 30}),
        description="Strategy under test",
    )
    report_dir: Path | None = Field(None, description="Reports; default <data_dir>/reports")
    perp: PerpBacktestConfig = Field(
        default_factory=PerpBacktestConfig, description="Perpetual futures (binance-usdm:...)"
    )

    @model_validator(mode="after")
    def _check_range(self) -> BacktestConfig:
        from datetime import UTC, datetime

        def parse(name: str, value: str) -> datetime:
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"{name} {value!r} is not an ISO-8601 time (e.g. 2022-01-15 or "
                    "2022-01-15T12:00Z)"
                ) from None
            return when if when.tzinfo else when.replace(tzinfo=UTC)

        start = parse("start", self.start) if self.start else None
        end = parse("end", self.end) if self.end else None
        if start and end and start >= end:
            raise ValueError("start must be before end")
        return self


# --- live -----------------------------------------------------------------------------------


class LiveConfig(StrictModel):
    """The long-running bot."""

    strategies: list[StrategyRef] = Field(
        default_factory=lambda: [StrategyRef(name="model_signal")],
        min_length=1,
        description="Strategies sharing one account, risk engine and rate limiter",
    )
    symbols: list[Symbol] = Field(
        default_factory=lambda: ["BTCUSDT"], min_length=1, description="Symbols traded"
    )
    signal_stream: str = Field("tessera:signals", description="Redis stream of signals")
    signal_maxlen: int = Field(100_000, gt=0, description="Approximate MAXLEN of the stream")
    consumer_group: str = Field("executors", description="Redis consumer group of executors")
    claim_idle_ms: int = Field(30_000, gt=0, description="Claim pending signals idle this long")
    order_timeout_s: float = Field(10.0, gt=0, description="Submit/cancel timeout before querying")
    reconcile_interval_s: float = Field(60.0, gt=0, description="Periodic reconciliation")
    max_bar_age_s: float = Field(
        10.0,
        gt=0,
        description="A closed bar arriving later than this beyond the feed's usual lag (after a "
        "stall, a backlog) is seen by the strategies but not traded on",
    )
    stall_after_s: float | None = Field(
        None,
        gt=0,
        description="A symbol with no market-data frame for this long is a stalled feed: the bot "
        "goes not-ready and reconnects (default: 30 s, or 1.5 bars for bars longer than 20 s)",
    )
    max_strategy_errors: int = Field(
        3,
        gt=0,
        description="A strategy whose code raises this many times in a row is paused (logged, "
        "tessera_strategy_paused); the other strategies trade on and the run exits 1",
    )
    shutdown_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Shutdown ends within this time whatever is in flight; what is left is "
        "logged, the exit code is non-zero, and the next start resolves it",
    )
    i_understand_live_trading: bool = Field(
        False, description="Must be true (or the CLI flag given) to trade real money"
    )
    perp_leverage: int = Field(
        1,
        ge=1,
        le=125,
        description="Perpetuals (exchange.name binance-usdm): the leverage start-up "
        "reconciliation sets on each flat symbol; a position held at another leverage halts",
    )
    perp_margin_mode: Literal["isolated", "cross"] = Field(
        "cross",
        description="Perpetuals: the margin mode set on each flat symbol; a position held in "
        "the other mode halts (Binance refuses the change while a position is open)",
    )


# --- risk -----------------------------------------------------------------------------------


class EquityFraction:
    """A limit written as a share of the current equity: ``"50%"`` is ``EquityFraction(0.5)``.

    A fixed quote amount stops a compounding strategy once its equity outgrows it (a
    ``max_order_notional`` equal to the starting cash lets it trade until its first gain); a
    fraction follows the equity. `limit` resolves it against the equity the caller knows.
    Not a dataclass on purpose: pydantic-settings would then read an environment value as JSON.
    """

    __slots__ = ("fraction",)

    def __init__(self, fraction: Decimal) -> None:
        if not fraction.is_finite() or fraction <= 0:
            raise ValueError(f"a fraction of equity must be above 0%, got {fraction * 100}%")
        self.fraction = fraction

    @classmethod
    def parse(cls, text: str) -> EquityFraction:
        """``"50%"``, ``"2.5 %"``, ``"150%"`` -> the fraction; anything else is a ValueError."""
        body = text.strip()
        if not body.endswith("%"):
            raise ValueError(f"{text!r} is not a percentage like '50%'")
        try:
            pct = Decimal(body[:-1].strip())
        except ArithmeticError:
            raise ValueError(f"{text!r} is not a percentage like '50%'") from None
        return cls(pct / HUNDRED)

    def limit(self, equity: Decimal) -> Decimal:
        """The limit in quote currency at this equity (none at all when equity is <= 0)."""
        return max(equity, ZERO) * self.fraction

    def __str__(self) -> str:
        return f"{format((self.fraction * HUNDRED).normalize(), 'f')}%"

    def __repr__(self) -> str:
        return f"EquityFraction({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EquityFraction) and other.fraction == self.fraction

    def __hash__(self) -> int:
        return hash(self.fraction)


def parse_notional(value: object) -> Decimal | EquityFraction:
    """A notional limit as written in YAML or the environment: a quote amount (``10000``) or a
    fraction of equity (``"50%"``). Booleans and non-positive or non-finite amounts are errors."""
    if isinstance(value, EquityFraction):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        return EquityFraction.parse(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(
            "a notional limit is a quote amount (10000) or a fraction of equity ('50%')"
        )
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError:
        raise ValueError(
            f"{value!r} is neither a quote amount (10000) nor a fraction of equity ('50%')"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"a notional limit must be a finite amount above 0, got {value!r}")
    return amount


def _dump_notional(value: Decimal | EquityFraction) -> str:
    return str(value)


# A notional limit: a quote amount (Decimal) or a fraction of the current equity.
NotionalLimit = Annotated[
    Decimal | EquityFraction,
    PlainValidator(parse_notional),
    PlainSerializer(_dump_notional, return_type=str, when_used="json"),
]
_OFF = frozenset({"null", "none", "off"})


class RiskConfig(StrictModel):
    """Pre-trade limits and the drawdown kill-switch.

    The notional caps take a quote amount or a fraction of the current equity (``"50%"``);
    `RiskEngine` resolves fractions on every check. ``max_drawdown_pct: null`` turns the
    kill-switch off (the default stays 10 % so that live trading is guarded unless a person
    says otherwise).
    """

    max_order_notional: NotionalLimit = Field(
        Decimal("10000"), description="Per order: quote amount, or fraction of equity like '50%'"
    )
    max_position_notional: NotionalLimit = Field(
        Decimal("10000"), description="Per symbol |position|: quote amount or '50%' of equity"
    )
    max_gross_exposure: NotionalLimit = Field(
        Decimal("20000"), description="Sum of |positions|: quote amount or '150%' of equity"
    )
    price_band_pct: float = Field(
        2.0, gt=0, le=100, description="Limit price at most this far from the last price"
    )
    max_open_orders: int = Field(20, gt=0, description="Open orders across all symbols")
    max_orders_per_second: float = Field(5.0, gt=0, description="Order submissions per second")
    max_drawdown_pct: float | None = Field(
        10.0,
        gt=0,
        le=100,
        description="Kill-switch: halt at this drawdown from peak; null turns it off",
    )
    reduce_only_drawdown_pct: float | None = Field(
        None, gt=0, le=100, description="Optional: only reducing orders beyond this drawdown"
    )
    flatten_on_halt: bool = Field(False, description="Close positions when the kill-switch fires")
    # perpetual accounts only (tessera.risk.leverage, docs/futures.md "Leverage risk")
    max_leverage: Decimal | None = Field(
        None,
        description="Perps: a position's notional at the mark over the margin balance behind "
        "it, after the order (5 = 5x); null: off",
    )
    max_gross_leverage: Decimal | None = Field(
        None,
        description="Perps: sum of |notional| at the mark over equity, after the order "
        "(3 = 3x); null: off",
    )
    max_net_leverage: Decimal | None = Field(
        None,
        description="Perps: |sum of signed notional| at the mark over equity, after the order "
        "(1 = 1x); null: off",
    )
    min_liquidation_distance_pct: float | None = Field(
        None,
        description="Perps: percent of the mark between mark and liquidation price below "
        "which adding orders are denied and the position is reduced; null: off",
    )
    margin_ratio_alert: float | None = Field(
        None,
        description="Perps: alert when maintenance margin / margin balance reaches this "
        "(0.8 = 80%; liquidation at 1); null: off",
    )
    on_margin_call: Literal["halt", "flatten", "log"] = Field(
        "halt",
        description="Perps: on the venue's MARGIN_CALL or a margin ratio past "
        "margin_ratio_alert: halt (the kill-switch halt, closing positions when "
        "flatten_on_halt), flatten (halt and close positions), log (an error and the metric "
        "only); always logged, counted and shown by /readyz",
    )

    @field_validator(
        "max_leverage",
        "max_gross_leverage",
        "max_net_leverage",
        "min_liquidation_distance_pct",
        "margin_ratio_alert",
        mode="before",
    )
    @classmethod
    def _off_or_text(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in _OFF:
            return None
        return value

    @field_validator("max_leverage", "max_gross_leverage", "max_net_leverage")
    @classmethod
    def _multiple(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if value is not None and (not value.is_finite() or value <= 0):
            raise ValueError(
                f"{info.field_name} is a leverage multiple above 0 (3 means 3x), got {value}; "
                "null turns it off"
            )
        return value

    @field_validator("min_liquidation_distance_pct")
    @classmethod
    def _distance(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 100:
            raise ValueError(
                "min_liquidation_distance_pct is a percent of the mark price between 0 and "
                f"100 (5 means 5%), got {value}; null turns it off"
            )
        return value

    @field_validator("margin_ratio_alert")
    @classmethod
    def _ratio(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise ValueError(
                "margin_ratio_alert is maintenance margin / margin balance, above 0 and at "
                f"most 1 (0.8 means 80%; Binance liquidates at 1), got {value}; null turns it off"
            )
        return value

    @field_validator("max_drawdown_pct", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        # an environment variable cannot be YAML's null: TESSERA_RISK__MAX_DRAWDOWN_PCT=off
        if isinstance(value, str) and value.strip().lower() in _OFF:
            return None
        return value

    @model_validator(mode="after")
    def _order(self) -> RiskConfig:
        if (
            self.reduce_only_drawdown_pct is not None
            and self.max_drawdown_pct is not None
            and self.reduce_only_drawdown_pct >= self.max_drawdown_pct
        ):
            raise ValueError("reduce_only_drawdown_pct must be below max_drawdown_pct")
        return self


# The YAML file of each section, in ``config_dir``.
# --- control API, web console and notifications --------------------------------------------

ControlRole = Literal["read", "operate"]
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class ControlToken(StrictModel):
    """An API token, stored as the SHA-256 of the token (``tessera control token new`` prints
    both once); ``read`` tokens see everything, ``operate`` tokens may also act."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: ControlRole = "read"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token")


class ControlUser(StrictModel):
    """A console user: the password is stored as an argon2 hash
    (``tessera control password-hash`` makes one)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: ControlRole = "read"
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$", description="argon2 hash")


class ControlConfig(StrictModel):
    """The bot's control API and web console (``configs/control.yaml``): off by default; on
    loopback by default; a non-loopback bind is refused unless tokens or users are set."""

    enabled: bool = Field(False, description="Serve the control API and console in the bot")
    host: str = Field("127.0.0.1", description="Bind address (non-loopback needs auth)")
    port: int = Field(8780, ge=0, le=65535, description="Port (0 = any free)")
    tokens: list[ControlToken] = Field(default_factory=list, description="API tokens (hashed)")
    users: list[ControlUser] = Field(default_factory=list, description="Console users (argon2)")
    session_ttl_s: float = Field(8 * 3600.0, gt=0, description="Console session lifetime")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) allowed to send state-changing requests "
        "besides the server's own, e.g. the public URL behind a reverse proxy",
    )
    login_attempts_per_minute: int = Field(
        5, ge=1, description="Failed logins allowed per client address and per user name"
    )
    max_body_bytes: int = Field(16_384, ge=1_024, description="Largest request body accepted")
    console: bool = Field(True, description="Serve the web console beside the API")

    @property
    def has_auth(self) -> bool:
        return bool(self.tokens or self.users)

    @model_validator(mode="after")
    def _bind_needs_auth(self) -> ControlConfig:
        if self.enabled and self.host not in _LOOPBACK and not self.has_auth:
            raise ValueError(
                f"control.host {self.host!r} is not a loopback address: serving the control API "
                "beyond this machine needs control.tokens or control.users (authentication); "
                "add one, or bind 127.0.0.1 and put a reverse proxy with TLS in front"
            )
        names = [t.name for t in self.tokens] + [u.name for u in self.users]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"control: names must be unique across tokens and users: {dup}")
        return self


NotifyEvent = Literal[
    "fill",
    "halt",
    "kill_switch",
    "reset",
    "strategy_paused",
    "strategy_resumed",
    "reconciliation",
    "control_action",
    "daily_summary",
]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)


class NotifyConfig(StrictModel):
    """Trading events sent to people through Apprise (``configs/notify.yaml``). The URLs carry
    secrets (bot tokens, webhook keys): set them in the environment
    (``TESSERA_NOTIFY__URLS='["tgram://..."]'``) or a secrets file, never in git."""

    urls: list[SecretStr] = Field(
        default_factory=list, description="Apprise URLs (secrets): tgram://, discord://, json://"
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS), description="Which events are sent"
    )
    daily_summary_utc: str = Field(
        "00:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM UTC"
    )
    timeout_s: float = Field(10.0, gt=0, description="Per delivery")
    retries: int = Field(2, ge=0, le=10, description="Retries of a failed delivery")


SECTION_MODELS: dict[str, type[StrictModel]] = {
    "data": DataConfig,
    "features": FeatureConfig,
    "model": ModelConfig,
    "backtest": BacktestConfig,
    "live": LiveConfig,
    "risk": RiskConfig,
    "control": ControlConfig,
    "notify": NotifyConfig,
}
