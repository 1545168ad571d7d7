from __future__ import annotations

import http.client
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tessera import metrics as m


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.fixture
def server() -> m.MetricsServer:
    srv = m.start_metrics_server(port=0, host="127.0.0.1")
    yield srv
    srv.stop()


EXPECTED = {
    "tessera_orders_submitted",
    "tessera_orders_acked",
    "tessera_orders_rejected",
    "tessera_orders_canceled",
    "tessera_fills",
    "tessera_fill_ratio",
    "tessera_signal_latency_seconds",
    "tessera_order_latency_seconds",
    "tessera_position_size",
    "tessera_position_notional",
    "tessera_pnl_realized",
    "tessera_pnl_unrealized",
    "tessera_equity",
    "tessera_drawdown_pct",
    "tessera_kill_switch_engaged",
    "tessera_ws_messages",
    "tessera_ws_reconnects",
    "tessera_ws_gaps",
    "tessera_build_info",
}


def test_scrape_over_a_socket_and_parse(server: m.MetricsServer) -> None:
    m.ORDERS_SUBMITTED.labels(symbol="BTCUSDT", side="buy", type="limit").inc()
    m.DRAWDOWN_PCT.set(3.5)
    m.ORDER_LATENCY.labels(stage="send_to_ack").observe(0.0042)
    m.set_build_info("9.9.9", "3.11", "dev")
    status, body = scrape(server.port)
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert EXPECTED <= set(families)
    dd = families["tessera_drawdown_pct"]
    assert dd.documentation and dd.samples[0].value == 3.5
    submitted = [
        s
        for s in families["tessera_orders_submitted"].samples
        if s.name == "tessera_orders_submitted_total"
    ]
    assert any(
        s.labels == {"symbol": "BTCUSDT", "side": "buy", "type": "limit"} and s.value >= 1
        for s in submitted
    )
    buckets = [
        s
        for s in families["tessera_order_latency_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["stage"] == "send_to_ack"
    ]
    les = sorted(float(s.labels["le"]) for s in buckets if s.labels["le"] != "+Inf")
    assert les[0] == 0.0001 and les[-1] == 10.0  # 100 µs .. 10 s
    info = families["tessera_build_info"].samples[0]
    assert info.labels["version"] == "9.9.9"


def test_every_metric_has_help_text() -> None:
    from prometheus_client import REGISTRY

    names = m.all_metric_names()
    assert EXPECTED <= set(names)
    for family in REGISTRY.collect():
        if family.name.startswith("tessera_"):
            assert family.documentation, family.name


def test_health_endpoints(server: m.MetricsServer) -> None:
    assert scrape(server.port, "/healthz") == (200, "ok\n")
    status, body = scrape(server.port, "/readyz")
    assert status == 503 and "not ready" in body
    server.health.ready = True
    server.health.checks["market_data"] = lambda: True
    status, body = scrape(server.port, "/readyz")
    assert status == 200 and "market_data ok" in body
    server.health.checks["database"] = lambda: False
    status, body = scrape(server.port, "/readyz")
    assert status == 503 and "database failing" in body
    assert scrape(server.port, "/nope")[0] == 404


def test_port_in_use_gives_a_clear_error() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        with pytest.raises(m.MetricsServerError, match=r"already in use.*--metrics-port"):
            m.start_metrics_server(port=port, host="127.0.0.1")
    finally:
        blocker.close()


def test_labels_stay_bounded() -> None:
    assert m.bounded("buy", m.SIDES) == "buy"
    assert m.bounded("BUY!", m.SIDES) == "other"
    m.record_order_rejected("BTCUSDT", "sell", "limit", "some-new-binance-code")
    value = m.ORDERS_REJECTED.labels(
        symbol="BTCUSDT", side="sell", type="limit", reason="other"
    )._value.get()
    assert value >= 1


def test_fill_ratio_and_trading_state() -> None:
    m.record_order_quantity("ETHUSDT", "buy", 2.0)
    m.record_fill("ETHUSDT", "buy", "taker", 0.5, 0.01)
    m.record_fill("ETHUSDT", "buy", "maker", 0.5, 0.01)
    assert m.FILL_RATIO.labels(symbol="ETHUSDT")._value.get() == pytest.approx(0.5)
    m.set_trading_state("HALTED")
    states = {s: m.TRADING_STATE.labels(state=s)._value.get() for s in m.TRADING_STATES}
    assert states == {"ACTIVE": 0.0, "REDUCING": 0.0, "HALTED": 1.0}
    with pytest.raises(ValueError, match="unknown trading state"):
        m.set_trading_state("PAUSED")
