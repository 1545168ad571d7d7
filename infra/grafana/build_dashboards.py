"""Generate the Grafana dashboards in infra/grafana/dashboards/ from one description.

    .venv/bin/python infra/grafana/build_dashboards.py   # rewrites the JSON files

The JSON files are committed: users import them as they are. A test regenerates them and fails
if they differ, and the real-Prometheus test evaluates every `expr` below against a bot that has
traded. Metric names come from src/tessera/metrics.py and the recording rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # = provisioning/datasources uid
SCHEMA_VERSION = 39

# title, type, [(expr, legend)], options
Panel = tuple[str, str, list[tuple[str, str]], dict[str, Any]]


def or0(expr: str) -> str:
    """``expr``, or a single 0 while it has no series (a counter that never moved yet: no
    rejection, reconnect, gap since start). ``on()`` keeps the 0 out once real series exist."""
    return f"{expr} or on() vector(0)"


def _panel(pid: int, x: int, y: int, w: int, h: int, spec: Panel) -> dict[str, Any]:
    title, kind, targets, opts = spec
    panel: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
             "legendFormat": legend, "range": True}
            for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {"unit": opts.get("unit", "short")}, "overrides": []},
        "options": {},
    }
    if "description" in opts:
        panel["description"] = opts["description"]
    if kind == "stat":
        panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": ""},
                            "colorMode": "background", "graphMode": "none"}
        if "thresholds" in opts:
            panel["fieldConfig"]["defaults"]["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": c, "value": v} for v, c in opts["thresholds"]],
            }
    return panel


def dashboard(uid: str, title: str, panels: list[Panel], tags: list[str]) -> dict[str, Any]:
    built = []
    for i, spec in enumerate(panels):
        w = 12 if spec[1] != "stat" else 6
        built.append(_panel(i + 1, (i % 2) * 12, (i // 2) * 8, w, 8, spec))
    return {
        "uid": uid,
        "title": title,
        "tags": ["tessera", *tags],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": built,
    }


TRADING: list[Panel] = [
    ("Equity (quote)", "timeseries", [("tessera_equity", "equity"),
                                      ("tessera_equity_peak", "peak")], {"unit": "currencyUSD"}),
    ("Drawdown vs kill-switch limit", "timeseries",
     [("tessera_drawdown_pct", "drawdown %"), ("tessera_drawdown_limit_pct", "limit %")],
     {"unit": "percent"}),
    ("PnL by strategy", "timeseries",
     [("sum by (strategy) (tessera_pnl_realized)", "{{strategy}} realized"),
      ("sum by (strategy) (tessera_pnl_unrealized)", "{{strategy}} unrealized")],
     {"unit": "currencyUSD"}),
    ("Positions (base units)", "timeseries",
     [("tessera_position_size", "{{symbol}} {{strategy}}")], {}),
    ("Exposure", "timeseries",
     [("tessera_gross_exposure", "gross"),
      ("sum by (symbol) (tessera_position_notional)", "{{symbol}} net")],
     {"unit": "currencyUSD"}),
    ("Fees paid", "timeseries",
     [(or0("sum by (symbol) (tessera_fees_paid_total)"), "{{symbol}}")], {"unit": "currencyUSD"}),
    ("Signals per minute by strategy", "timeseries",
     [("sum by (strategy) (rate(tessera_signals_total[5m])) * 60", "{{strategy}}")], {}),
]

EXECUTION: list[Panel] = [
    ("Order flow (per second)", "timeseries",
     [(or0("sum(rate(tessera_orders_submitted_total[1m]))"), "submitted"),
      (or0("sum(rate(tessera_orders_acked_total[1m]))"), "acked"),
      (or0("sum(rate(tessera_orders_canceled_total[1m]))"), "canceled/expired"),
      (or0("sum(rate(tessera_orders_rejected_total[1m]))"), "rejected")], {"unit": "ops"}),
    ("Fill ratio", "timeseries", [("tessera_fill_ratio", "{{symbol}}")], {"unit": "percentunit"}),
    ("Signal latency (event -> signal)", "timeseries",
     [("histogram_quantile(0.5, sum by (le) (rate(tessera_signal_latency_seconds_bucket[5m])))",
       "p50"),
      ("histogram_quantile(0.99, sum by (le) (rate(tessera_signal_latency_seconds_bucket[5m])))",
       "p99")], {"unit": "s"}),
    ("Order latency by stage", "timeseries",
     [("tessera:order_latency_seconds:p50_5m", "{{stage}} p50"),
      ("tessera:order_latency_seconds:p99_5m", "{{stage}} p99")], {"unit": "s"}),
    ("Rejections by reason (5 m)", "timeseries",
     [(or0("sum by (reason) (increase(tessera_orders_rejected_total[5m]))"), "{{reason}}")],
     {}),
    ("Rate-limit usage", "timeseries",
     [("tessera_rate_limit_used / tessera_rate_limit_limit", "{{scope}}")],
     {"unit": "percentunit"}),
    ("Orders in flight / open", "timeseries",
     [("tessera_orders_in_flight", "in flight"), ("sum(tessera_orders_open)", "open")], {}),
    ("Fills (per second)", "timeseries", [("tessera:fills:rate5m", "{{symbol}} {{side}}")],
     {"unit": "ops"}),
    ("Event loop: lag and garbage-collector pauses, p99", "timeseries",
     [("histogram_quantile(0.99, sum by (le) (rate(tessera_event_loop_lag_seconds_bucket[5m])))",
       "loop lag"),
      ("histogram_quantile(0.99, "
       "sum by (le, generation) (rate(tessera_gc_pause_seconds_bucket[5m])))",
       "gc generation {{generation}}")], {"unit": "s"}),
]

MARKET_DATA: list[Panel] = [
    ("Messages per second", "timeseries", [("tessera:ws_messages:rate1m", "{{stream_type}}")],
     {"unit": "ops"}),
    ("Bytes per second", "timeseries", [("rate(tessera_ws_bytes_total[1m])", "bytes")],
     {"unit": "Bps"}),
    ("Lag (receive - event time), p99", "timeseries",
     [("histogram_quantile(0.99, "
       "sum by (le, stream_type) (rate(tessera_ws_lag_seconds_bucket[5m])))",
       "{{stream_type}}")], {"unit": "s"}),
    ("Age of the newest event", "timeseries",
     [("tessera:market_data_age_seconds", "{{symbol}} event time"),
      ("tessera:market_data_silence_seconds", "{{symbol}} since received")], {"unit": "s"}),
    ("Reconnects (15 m)", "timeseries",
     [(or0("sum by (reason) (increase(tessera_ws_reconnects_total[15m]))"), "{{reason}}")],
     {}),
    ("Gaps found / filled (15 m)", "timeseries",
     [(or0("sum by (dataset, action) (increase(tessera_ws_gaps_total[15m]))"),
       "{{dataset}} {{action}}")], {}),
    ("Malformed messages skipped (15 m)", "timeseries",
     [(or0("sum by (stream_type) (increase(tessera_ws_malformed_total[15m]))"),
       "{{stream_type}}")], {}),
    ("Rows written per second", "timeseries",
     [("sum by (dataset) (rate(tessera_rows_written_total[1m]))", "{{dataset}}")],
     {"unit": "ops"}),
    ("Websocket connected", "timeseries",
     [("tessera_ws_connected", "{{instance}} {{source}}")],
     {"description": "1 while the market-data websocket is connected, one line per connection: "
                     "source=feed is a bot's (its embedded ingest shares it), source=ingest a "
                     "standalone `tessera ingest`"}),
]

RISK: list[Panel] = [
    ("Kill-switch", "stat", [("tessera_kill_switch_engaged", "engaged")],
     {"thresholds": [(None, "green"), (1, "red")],
      "description": "1 = HALTED by the drawdown kill-switch; reset with `tessera risk reset`"}),
    ("Drawdown of limit", "stat", [("tessera:drawdown_of_limit:ratio", "of limit")],
     {"unit": "percentunit", "thresholds": [(None, "green"), (0.8, "orange"), (1, "red")]}),
    ("Trading state", "timeseries", [("tessera_trading_state", "{{state}}")], {}),
    ("Denials by reason (5 m)", "timeseries",
     [(or0("sum by (reason) (increase(tessera_risk_denials_total[5m]))"), "{{reason}}")], {}),
    ("Kill-switch history", "timeseries",
     [("max_over_time(tessera_kill_switch_engaged[5m])", "engaged")], {}),
    ("Drawdown", "timeseries", [("tessera_drawdown_pct", "drawdown %")], {"unit": "percent"}),
    # perpetual accounts (tessera.risk.leverage; published by tessera.risk.listeners.publish_perp)
    ("Margin ratio", "timeseries", [("tessera_margin_ratio", "{{symbol}}")],
     {"unit": "percentunit",
      "description": "Maintenance margin / margin balance (Binance); liquidation at 100%. Cross "
                     "positions all show the cross wallet's ratio"}),
    ("Liquidation distance", "timeseries",
     [("tessera_liquidation_distance_pct", "{{symbol}}")],
     {"unit": "percent",
      "description": "How far the mark may move against the position before liquidation, % of "
                     "the mark"}),
    ("Funding paid and received", "timeseries",
     [("sum by (symbol) (tessera_funding_paid_total)", "paid {{symbol}}"),
      ("sum by (symbol) (tessera_funding_received_total)", "received {{symbol}}")],
     {"description": "Funding payments since the bot started, quote currency; the net cost is "
                     "paid minus received"}),
]

DASHBOARDS = {
    "trading.json": dashboard("tessera-trading", "Tessera · Trading", TRADING, ["trading"]),
    "execution.json": dashboard("tessera-execution", "Tessera · Execution", EXECUTION,
                                ["execution"]),
    "market-data.json": dashboard("tessera-market-data", "Tessera · Market data", MARKET_DATA,
                                  ["market-data"]),
    "risk.json": dashboard("tessera-risk", "Tessera · Risk", RISK, ["risk"]),
}


def render() -> dict[str, str]:
    return {name: json.dumps(d, indent=2) + "\n" for name, d in DASHBOARDS.items()}


def main() -> None:
    out = HERE / "dashboards"
    out.mkdir(exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
