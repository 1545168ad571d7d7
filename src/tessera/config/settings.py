"""`TesseraSettings`: the one settings object of a process.

Precedence, lowest to highest (each layer overrides the ones before it):

1. defaults in the models,
2. YAML files in ``config_dir``: ``tessera.yaml`` (top-level keys) and one file per section
   (``data.yaml``, ``features.yaml``, ``model.yaml``, ``backtest.yaml``, ``live.yaml``,
   ``risk.yaml``),
3. the ``.env`` file,
4. environment variables ``TESSERA_*`` (nested with ``__``: ``TESSERA_RISK__MAX_DRAWDOWN_PCT``),
5. explicit overrides (CLI options such as ``--mode``).

`load_settings` records where every value came from, for ``tessera config show``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tessera.config.errors import ConfigError, _line_of, _loc_to_path, _short
from tessera.config.loader import load_yaml, read_yaml_mapping
from tessera.config.models import (
    SECTION_MODELS,
    BacktestConfig,
    ControlConfig,
    DataConfig,
    FeatureConfig,
    LiveConfig,
    ModelConfig,
    NotifyConfig,
    RiskConfig,
)
from tessera.config.urls import redact_urls, redacted_repr_args, url_secrets

Mode = Literal["dev", "paper", "live"]
DatabaseSync = Literal["full", "normal"]  # how durable a commit is: see `make_engine`
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ENV_PREFIX = "TESSERA_"
_SECRETISH = re.compile(r"secret|password|passwd|api_key|token|exchange$", re.IGNORECASE)
TOP_LEVEL_YAML = "tessera.yaml"
# Settings that existed once: what to do instead, said where the unknown-key error is.
REMOVED_SETTINGS = {
    "exchange.testnet": "this setting was removed: it was never read, and a testnet cannot be "
    "checked from here. To trade on a testnet, set exchange.rest_url and exchange.ws_url to "
    "the testnet's URLs (Binance spot: https://testnet.binance.vision and "
    "wss://stream.testnet.binance.vision), set exchange.api_key/api_secret to the testnet's "
    "keys, and run `tessera run --mode live --i-understand-live-trading`: every endpoint that "
    "receives signed requests goes through the live gate",
    "data.exchange": "this setting was removed: it was never read. Data ingested or downloaded "
    "from Binance is stored under exchange=binance; the venue Tessera connects to is "
    "exchange.name (in tessera.yaml or TESSERA_EXCHANGE__NAME)",
}
# exchange.name values Tessera can trade on and ingest market data from, and what each one
# means: binance (spot) and binance-usdm (Binance USDⓈ-M perpetuals: the bot in dev, paper and
# live mode through tessera.venues.binance_usdm.exchange; `tessera ingest` of its trades, klines,
# depth, mark prices and liquidations into the store's binance-usdm venue). Another venue
# needs its own adapter, not a different id.
SUPPORTED_EXCHANGES: dict[str, str] = {
    "binance": "binance (spot)",
    "binance-usdm": "binance-usdm (USDⓈ-M perpetuals)",
}
# exchange.name -> ccxt's exchange id
CCXT_IDS: dict[str, str] = {"binance": "binance", "binance-usdm": "binanceusdm"}
# exchange.name values only the order adapter speaks, refused for any other use (market data):
# none today — binance-usdm's market data is ingested too (tessera.data.ingest, venue
# binance-usdm). Kept so that a venue added for trading first is refused where it is not read.
TRADING_ONLY_EXCHANGES: frozenset[str] = frozenset()


def require_supported_exchange(name: str, use: str = "trading") -> str:
    """``name`` (the ``exchange.name`` setting) as the ccxt exchange id, or `ConfigError`.

    ``use`` says what it is for ("trading", "market data") in the message; a venue of
    `TRADING_ONLY_EXCHANGES` is refused for any other use. Called where a command starts
    trading (`tessera.live.assembly.bot_options`), by `CcxtExchange` and by `tessera ingest`
    ("market data"), so an unsupported venue stops the start instead of being ignored.
    """
    if name in SUPPORTED_EXCHANGES and (use == "trading" or name not in TRADING_ONLY_EXCHANGES):
        return CCXT_IDS[name]
    usable = [n for n in SUPPORTED_EXCHANGES if use == "trading" or n not in TRADING_ONLY_EXCHANGES]
    venues = ", ".join(SUPPORTED_EXCHANGES[n] for n in usable)
    raise ConfigError(
        f"exchange.name {name!r} is not supported for {use}: Tessera supports {venues} for "
        f"{use} (each venue needs its own adapter, not only a different name). Set "
        f"exchange.name to one of {sorted(usable)} in {TOP_LEVEL_YAML} or "
        "TESSERA_EXCHANGE__NAME (or remove it: binance is the default); for a Binance-compatible "
        "endpoint such as the testnet, set exchange.rest_url and exchange.ws_url instead."
    )


class ExchangeSettings(BaseModel):
    """Exchange connection and credentials; secrets are `SecretStr` and print as asterisks."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "binance",
        description="the venue: binance (spot) or binance-usdm (USDⓈ-M perpetuals: `tessera "
        "run` trades it in dev, paper and live mode, one-way positions only; its "
        "hosts default to fapi.binance.com and fstream.binance.com); `tessera run` refuses any "
        "other (exit 2)",
    )
    api_key: SecretStr | None = Field(
        None, description="API key (needed for paper-on-exchange/live)"
    )
    api_secret: SecretStr | None = Field(None, description="API secret")
    rest_url: str | None = Field(
        None,
        description="REST base URL of the exchange; dev mode: a `tessera sim serve` simulator "
        "(checked at start), live mode: any endpoint (a testnet too), behind the live gate",
    )
    ws_url: str | None = Field(None, description="Websocket base URL of the exchange")
    recv_window_ms: int = Field(
        5000,
        gt=0,
        le=60000,
        description="Signed-request validity window (ms), sent as recvWindow with every signed "
        "request; an order whose answer is lost is closed as never placed only after it (+2 s)",
    )

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return redacted_repr_args(super().__repr_args__())


class TesseraSettings(BaseSettings):
    """Process-wide settings. Build it with :func:`load_settings`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        # A .env shared with docker compose holds other variables: read only TESSERA_* ones.
        dotenv_filtering="match_prefix",
        extra="forbid",
        validate_default=True,
    )

    mode: Mode = Field(
        "dev", description="dev (simulator), paper (real data, simulated fills), live"
    )
    seed: int = Field(42, ge=0, description="Seed for random, NumPy and torch")
    log_level: LogLevel = Field("INFO", description="Minimum log level")
    log_json: bool | None = Field(
        None, description="JSON log lines; default false in dev, true in paper/live"
    )
    metrics_host: str = Field("127.0.0.1", description="Bind address of /metrics")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Port of /metrics (0 = any free)")
    data_dir: Path = Field(Path("data"), description="Root of the store, database, models, reports")
    config_dir: Path = Field(Path("configs"), description="Folder of the YAML config files")
    strategies_path: Path | None = Field(
        None,
        description="Folder (or .py file) of your own strategies, loaded by every command that "
        "takes --strategy (must exist when set); default: ./strategies when it exists",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/tessera.db"
    )
    database_sync: DatabaseSync = Field(
        "full",
        description="full: every commit fsynced (survives power loss); normal: survives a kill "
        "of the bot, the last commits may be lost if the machine goes down",
    )
    redis_url: str | None = Field(None, description="Redis URL; none = in-process queue/limiter")
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings, description="Exchange")
    data: DataConfig = Field(default_factory=DataConfig, description="configs/data.yaml")
    features: FeatureConfig = Field(
        default_factory=FeatureConfig, description="configs/features.yaml"
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="configs/model.yaml")
    backtest: BacktestConfig = Field(
        default_factory=BacktestConfig, description="configs/backtest.yaml"
    )
    live: LiveConfig = Field(default_factory=LiveConfig, description="configs/live.yaml")
    risk: RiskConfig = Field(default_factory=RiskConfig, description="configs/risk.yaml")
    control: ControlConfig = Field(
        default_factory=ControlConfig, description="configs/control.yaml"
    )
    notify: NotifyConfig = Field(default_factory=NotifyConfig, description="configs/notify.yaml")

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_serializer(mode="wrap")
    def _hide_url_passwords(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        """JSON output (``config show``, ``model_dump_json``) is for people and files: every URL
        with a password, whatever the field (database_url, redis_url, any URL added later),
        shows it masked. Python-mode dumps keep the values the process needs to connect."""
        data = handler(self)
        return redact_urls(data) if info.mode_is_json() else data

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return redacted_repr_args(super().__repr_args__())

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _derived_defaults(self) -> TesseraSettings:
        if self.log_json is None:
            self.log_json = self.mode != "dev"
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'tessera.db'}"
        return self

    @property
    def json_logs(self) -> bool:
        return bool(self.log_json)

    def sources(self) -> dict[str, str]:
        """Where each leaf value came from: ``{"risk.max_drawdown_pct": "configs/risk.yaml"}``."""
        return dict(self._sources)

    def secret_values(self) -> list[str]:
        """Plain values of every secret, for the log redactor. Never print these.

        The API key and secret, and the password of every URL setting (as written and
        percent-decoded): a log line that quotes a database or Redis URL must not leak it.
        """
        out = []
        for secret in (self.exchange.api_key, self.exchange.api_secret):
            if secret is not None and secret.get_secret_value():
                out.append(secret.get_secret_value())
        out.extend(url_secrets(self.model_dump(mode="python")))
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: overrides > env > .env > YAML > defaults.
        return (init_settings, env_settings, dotenv_settings, YamlConfigSource(settings_cls))


class YamlConfigSource(PydanticBaseSettingsSource):
    """Reads ``tessera.yaml`` and the per-section YAML files of the resolved ``config_dir``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ builds the whole mapping at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        config_dir = Path(self.current_state.get("config_dir") or "configs")
        return read_yaml_layers(config_dir)[0]


def read_yaml_layers(config_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Merged YAML values of ``config_dir`` and, per top-level key, the file it came from.

    Each section file is validated on its own first, so that an error names that file.
    """
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    top = config_dir / TOP_LEVEL_YAML
    if top.is_file():
        data, _ = read_yaml_mapping(top)
        for key, val in data.items():
            values[key] = val
            origin[key] = str(top)
    for section, model in SECTION_MODELS.items():
        path = config_dir / f"{section}.yaml"
        if not path.is_file():
            continue
        data, node = read_yaml_mapping(path)
        removed = [key for key in data if f"{section}.{key}" in REMOVED_SETTINGS]
        if removed:  # before the model's "unknown key": say what replaced it
            raise ConfigError(
                f"{path}: "
                + "; ".join(
                    f"`{section}.{key}` (line {_line_of(node, (key,))}): "
                    + REMOVED_SETTINGS[f"{section}.{key}"]
                    for key in removed
                )
                + "."
            )
        load_yaml(path, model)  # raises ConfigError naming this file
        values[section] = data
        origin[section] = str(path)
    return values, origin


# --- provenance -----------------------------------------------------------------------------


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in data.items():
        path = f"{prefix}{key}"
        if isinstance(val, Mapping) and val and not path.endswith(".params"):
            out.update(_flatten(val, path + "."))
        else:
            out[path] = val
    return out


def _env_layer(env: Mapping[str, str | None]) -> dict[str, str]:
    """``TESSERA_RISK__MAX_DRAWDOWN_PCT`` -> ``{"risk.max_drawdown_pct": "<var name>"}``."""
    out = {}
    for name in env:
        if name.upper().startswith(ENV_PREFIX):
            out[name[len(ENV_PREFIX) :].lower().replace("__", ".")] = name
    return out


def _source_of(path: str, layers: list[tuple[str, Mapping[str, str]]]) -> str:
    for _layer_name, layer in layers:
        probe = path
        while True:
            if probe in layer:
                return layer[probe]
            if "." not in probe:
                break
            probe = probe.rsplit(".", 1)[0]
    return "default"


def load_settings(
    config_dir: str | Path | None = None,
    env_file: str | Path | None = ".env",
    **overrides: Any,
) -> TesseraSettings:
    """Build `TesseraSettings` from all layers; raise `ConfigError` with a readable message.

    ``overrides`` are the highest layer (CLI options); ``None`` values are ignored so that an
    option the user did not give does not mask the environment.
    """
    environ = os.environ
    init = {k: v for k, v in overrides.items() if v is not None}
    if config_dir is not None:
        init["config_dir"] = Path(config_dir)
    env_path = Path(env_file) if env_file is not None else None
    dotenv = {
        k: v
        for k, v in (dotenv_values(env_path) if env_path and env_path.is_file() else {}).items()
        if k.upper().startswith(ENV_PREFIX)
    }

    # Resolve config_dir the way the settings will, to attribute YAML values and errors.
    resolved_dir = Path(
        init.get("config_dir")
        or _lookup(environ, "CONFIG_DIR")
        or _lookup(dotenv, "CONFIG_DIR")
        or "configs"
    )
    yaml_values, yaml_origin = read_yaml_layers(resolved_dir)

    layers: list[tuple[str, Mapping[str, str]]] = [
        ("cli", {k: "cli option" for k in _flatten(init)}),
        ("env", {k: f"env {v}" for k, v in _env_layer(environ).items()}),
        ("dotenv", {k: f"{env_path} {v}" for k, v in _env_layer(dotenv).items()}),
        ("yaml", {k: yaml_origin[k.split(".", 1)[0]] for k in _flatten(yaml_values)}),
    ]
    try:
        settings = TesseraSettings(_env_file=env_path, **init)
    except ValidationError as exc:
        raise ConfigError(_describe_settings_error(exc, layers)) from exc

    sources = {}
    for path in _flatten(settings.model_dump(mode="json")):
        src = _source_of(path, layers)
        if src == "default" and path in ("log_json", "database_url"):
            src = "default (derived)"
        sources[path] = src
    settings._sources = sources
    return settings


def _lookup(env: Mapping[str, str | None], name: str) -> str | None:
    for key, val in env.items():
        if key.upper() == ENV_PREFIX + name:
            return val
    return None


def _describe_settings_error(
    exc: ValidationError, layers: list[tuple[str, Mapping[str, str]]]
) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        path = _loc_to_path(tuple(err["loc"]))
        src = _source_of(path, layers)
        where = "" if src == "default" else f" (from {src})"
        if err["type"] == "extra_forbidden" and path in REMOVED_SETTINGS:
            msg = REMOVED_SETTINGS[path]
        elif err["type"] == "extra_forbidden":
            msg = "unknown setting; check the spelling against `tessera config show`"
        else:
            got = "***" if _SECRETISH.search(path) else _short(err.get("input"))
            msg = f"{err['msg']} (got {got})"
        problems.append(f"`{path}`{where}: {msg}")
    n = len(problems)
    return f"settings: {n} invalid value{'s' if n != 1 else ''}: " + "; ".join(problems) + "."
