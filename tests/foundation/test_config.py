from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tessera.config import (
    SECTION_MODELS,
    ConfigError,
    RiskConfig,
    load_settings,
    load_yaml,
)
from tessera.config.loader import example_yaml
from tessera.config.settings import TesseraSettings
from tessera.config.urls import redact_url, url_password

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_any_file(clean_env: Path) -> None:
    s = load_settings(config_dir=clean_env / "nothing-here")
    assert s.mode == "dev"
    assert s.log_json is False  # console in dev
    assert s.metrics_host == "127.0.0.1"
    assert s.metrics_port == 9090
    assert s.redis_url is None
    assert s.database_url == f"sqlite:///{Path('data') / 'tessera.db'}"
    assert s.risk.max_drawdown_pct == 10.0
    assert s.sources()["risk.max_drawdown_pct"] == "default"


@pytest.mark.parametrize(("mode", "json"), [("dev", False), ("paper", True), ("live", True)])
def test_log_json_default_follows_mode(clean_env: Path, mode: str, json: bool) -> None:
    assert load_settings(config_dir=clean_env, mode=mode).log_json is json


def test_explicit_log_json_wins_over_mode_default(clean_env: Path) -> None:
    assert load_settings(config_dir=clean_env, mode="paper", log_json=False).log_json is False


def test_precedence_defaults_yaml_dotenv_env_cli(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = clean_env / "cfg"
    write(cfg / "risk.yaml", "max_drawdown_pct: 20\nmax_open_orders: 7\nprice_band_pct: 3\n")
    write(cfg / "tessera.yaml", "seed: 1\nmetrics_port: 9100\nlog_level: warning\n")
    dotenv = write(
        clean_env / ".env",
        "TESSERA_RISK__MAX_OPEN_ORDERS=8\nTESSERA_RISK__PRICE_BAND_PCT=4\nTESSERA_SEED=2\n"
        "NOT_OURS=1\n",
    )
    monkeypatch.setenv("TESSERA_RISK__PRICE_BAND_PCT", "5")
    monkeypatch.setenv("TESSERA_SEED", "3")

    s = load_settings(config_dir=cfg, env_file=dotenv, log_level="ERROR")
    # default < YAML
    assert s.risk.max_drawdown_pct == 20.0
    assert s.metrics_port == 9100
    # YAML < .env
    assert s.risk.max_open_orders == 8
    # .env < environment
    assert s.risk.price_band_pct == 5.0
    assert s.seed == 3
    # environment < explicit (CLI) override
    assert s.log_level == "ERROR"
    # untouched values keep their defaults
    assert s.risk.max_order_notional == Decimal("10000")

    src = s.sources()
    assert src["risk.max_drawdown_pct"] == str(cfg / "risk.yaml")
    assert src["metrics_port"] == str(cfg / "tessera.yaml")
    assert src["risk.max_open_orders"] == f"{dotenv} TESSERA_RISK__MAX_OPEN_ORDERS"
    assert src["risk.price_band_pct"] == "env TESSERA_RISK__PRICE_BAND_PCT"
    assert src["log_level"] == "cli option"
    assert src["risk.max_order_notional"] == "default"


def test_config_dir_from_environment(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = clean_env / "elsewhere"
    write(cfg / "risk.yaml", "max_drawdown_pct: 33\n")
    monkeypatch.setenv("TESSERA_CONFIG_DIR", str(cfg))
    s = load_settings()
    assert s.risk.max_drawdown_pct == 33.0
    assert s.sources()["risk.max_drawdown_pct"] == str(cfg / "risk.yaml")


def test_secrets_are_secretstr_and_never_dumped(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSERA_EXCHANGE__API_KEY", "key-abcdef")
    monkeypatch.setenv("TESSERA_EXCHANGE__API_SECRET", "sec-123456")
    s = load_settings(config_dir=clean_env)
    assert s.exchange.api_secret is not None
    assert s.exchange.api_secret.get_secret_value() == "sec-123456"
    dumped = s.model_dump_json() + repr(s) + str(s.model_dump(mode="json"))
    assert "sec-123456" not in dumped
    assert "key-abcdef" not in dumped
    assert sorted(s.secret_values()) == ["key-abcdef", "sec-123456"]


def test_bad_environment_value_names_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSERA_RISK__MAX_DRAWDOWN_PCT", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings(config_dir=clean_env)
    msg = str(info.value)
    assert "`risk.max_drawdown_pct`" in msg
    assert "env TESSERA_RISK__MAX_DRAWDOWN_PCT" in msg
    assert "lots" in msg


def test_unknown_prefixed_variable_in_dotenv_is_an_error(clean_env: Path) -> None:
    dotenv = write(clean_env / ".env", "TESSERA_MODEE=paper\n")
    with pytest.raises(ConfigError, match="modee"):
        load_settings(config_dir=clean_env, env_file=dotenv)


def test_load_yaml_wrong_type_names_file_field_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "risk.yaml", "# comment\nmax_open_orders: 3\nmax_drawdown_pct: ten\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path, RiskConfig)
    msg = str(info.value)
    assert str(path) in msg
    assert "`max_drawdown_pct` (line 3)" in msg
    assert "valid number" in msg
    assert "\n" not in msg  # one paragraph


def test_load_yaml_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path / "risk.yaml", "max_drawdown_pct: 5\nmax_drawdwn_pct: 5\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path, RiskConfig)
    assert "`max_drawdwn_pct` (line 2): unknown key" in str(info.value)


def test_load_yaml_broken_syntax_gives_line(tmp_path: Path) -> None:
    path = write(tmp_path / "risk.yaml", "max_drawdown_pct: 5\nlimits: [1, 2\nother: 3\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path, RiskConfig)
    msg = str(info.value)
    assert msg.startswith(f"{path}, line ")
    assert "not valid YAML" in msg


def test_load_yaml_nested_field_path_and_line(tmp_path: Path) -> None:
    from tessera.config import BacktestConfig

    path = write(
        tmp_path / "backtest.yaml",
        "initial_cash: 100\nfees:\n  maker_bps: 1\n  taker_bps: -3\n",
    )
    with pytest.raises(ConfigError) as info:
        load_yaml(path, BacktestConfig)
    assert "`fees.taker_bps` (line 4)" in str(info.value)


def test_load_yaml_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "nope.yaml", RiskConfig)
    path = write(tmp_path / "risk.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(path, RiskConfig)


def test_cross_field_rule(tmp_path: Path) -> None:
    path = write(tmp_path / "risk.yaml", "max_drawdown_pct: 5\nreduce_only_drawdown_pct: 8\n")
    with pytest.raises(ConfigError, match="reduce_only_drawdown_pct must be below"):
        load_yaml(path, RiskConfig)


def test_broken_section_file_fails_settings_with_file_name(clean_env: Path) -> None:
    cfg = clean_env / "cfg"
    write(cfg / "risk.yaml", "max_drawdown_pct: [1]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_dir=cfg)
    assert str(cfg / "risk.yaml") in str(info.value)


@pytest.mark.parametrize("section", sorted(SECTION_MODELS))
def test_repo_configs_are_valid_and_documented(section: str) -> None:
    model = SECTION_MODELS[section]
    path = REPO / "configs" / f"{section}.yaml"
    loaded = load_yaml(path, model)
    assert isinstance(loaded, model)
    text = path.read_text()
    # every top-level field appears in the example with a comment line above it
    for name, info in model.model_fields.items():
        assert f"\n{name}:" in text, f"{name} missing from {path}"
        assert info.description, f"{model.__name__}.{name} has no description"


@pytest.mark.parametrize("section", sorted(SECTION_MODELS))
def test_example_yaml_round_trips_to_defaults(tmp_path: Path, section: str) -> None:
    model = SECTION_MODELS[section]
    path = write(tmp_path / f"{section}.yaml", example_yaml(model))
    assert load_yaml(path, model) == model()


# --- exchange.testnet was removed: its error says how to reach a testnet --------------------


@pytest.mark.parametrize("where", ["env", "yaml"])
def test_a_config_setting_exchange_testnet_is_told_how_to_point_at_a_testnet(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "env":
        monkeypatch.setenv("TESSERA_EXCHANGE__TESTNET", "true")
    else:
        write(clean_env / "configs" / "tessera.yaml", "exchange:\n  testnet: true\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_dir=clean_env / "configs")
    text = str(info.value)
    assert "`exchange.testnet`" in text and "removed" in text
    for step in ("exchange.rest_url", "exchange.ws_url", "--i-understand-live-trading"):
        assert step in text


# --- URL passwords are secrets --------------------------------------------------------------

URL_SETTINGS = {
    "TESSERA_DATABASE_URL": "postgresql+psycopg://tessera:hunter2@db.internal:5432/ledger",
    "TESSERA_REDIS_URL": "redis://:s3cret-redis@cache.internal:6379/0",
    "TESSERA_EXCHANGE__REST_URL": "https://user:rest-pass-77@proxy.internal:8443",
    "TESSERA_EXCHANGE__WS_URL": "wss://user:ws-pass-78@proxy.internal:8443",
    "TESSERA_DATA__REST_URL": "https://u:data-rest-79@mirror.internal",
    "TESSERA_DATA__WS_URL": "wss://u:data-ws-80@mirror.internal",
    "TESSERA_DATA__BULK_URL": "https://u:bulk-81@files.internal",
}


def _url_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_url_fields(annotation, f"{prefix}{name}__"))
        elif name.endswith("url"):
            out.append(f"TESSERA_{prefix}{name}".upper())
    return out


def test_every_url_setting_is_exercised_here() -> None:
    """A URL setting added later must join URL_SETTINGS, and so the test below."""
    assert sorted(_url_fields(TesseraSettings)) == sorted(URL_SETTINGS)


def test_no_url_password_reaches_json_yaml_or_repr_but_the_process_still_has_it(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in URL_SETTINGS.items():
        monkeypatch.setenv(key, value)
    s = load_settings(config_dir=clean_env)
    passwords = [url_password(v) for v in URL_SETTINGS.values()]
    shown = s.model_dump_json() + repr(s) + str(s.model_dump(mode="json")) + str(s.sources())
    for password in passwords:
        assert password and password not in shown
    assert s.model_dump(mode="json")["database_url"] == (
        "postgresql+psycopg://tessera:**********@db.internal:5432/ledger"
    )
    assert s.database_url == URL_SETTINGS["TESSERA_DATABASE_URL"]  # connecting still works
    assert set(passwords) <= set(s.secret_values())  # and the log redactor knows them


_USER = st.text(alphabet=st.characters(codec="ascii", exclude_characters=":@/?#"), max_size=8)
_HOST = st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["postgresql", "postgresql+psycopg", "redis", "rediss", "https"]),
    user=_USER,
    password=st.text(min_size=1, max_size=30).filter(lambda p: p.strip() != ""),
    host=_HOST,
    port=st.none() | st.integers(1, 65535),
    path=st.sampled_from(["", "/", "/db", "/0", "/ledger?sslmode=require"]),
    encode=st.booleans(),
)
# found by this test: an unencoded "@/" ended the authority at the first "/"
@example(scheme="postgresql", user="", password="@/", host="a", port=None, path="", encode=False)
def test_redaction_never_leaks_a_url_password(
    scheme: str, user: str, password: str, host: str, port: int | None, path: str, encode: bool
) -> None:
    written = quote(password, safe="") if encode else password  # unencoded: "@", "/", "#"...
    tail = f"@{host}{'' if port is None else f':{port}'}{path}"
    url = f"{scheme}://{user}:{written}{tail}"
    red = redact_url(url)
    assert url_password(url) == written
    # the password, and only the password, is masked: nothing of it is left in the output
    assert red == f"{scheme}://{user}:**********{tail}"
