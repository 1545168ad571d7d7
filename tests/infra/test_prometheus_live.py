"""A real Prometheus scraping real paper bots: every dashboard panel and recording rule has data.

One run, 10-20 s on two cores (time limits total about 3 minutes):

* the exchange simulator (in this process, so that faults can be injected) replays recorded
  BTCUSDT data at 10x;
* bot ``trader`` (`tessera run --mode paper`, two strategies, embedded ingest on the feed's
  connection) trades it;
* bot ``halted`` (`--no-ingest`) trades the same market
  with a tiny ``max_drawdown_pct``: its kill-switch engages and later signals are denied;
* once both traded, the simulator sends malformed frames and drops every websocket, so the
  bots count malformed messages and reconnect;
* Prometheus (the Debian binary, loopback port, 1 s scrapes) loads the recording and alert
  rules of infra/prometheus/rules/ and scrapes both bots.

Then every PromQL ``expr`` of every panel of every dashboard in infra/grafana/dashboards/ and
every recording rule (its expression and its recorded series) is evaluated through the HTTP
API; an empty result is a failure, and all failures are reported together. Scenario checks make
sure the data came from what happened (fills, a kill-switch, denials, reconnects), not only from
the ``or on() vector(0)`` fallbacks of counters that may legitimately not have moved; each such
fallback's own expression must have data too (except canceled orders: paper market orders
never rest). The results of the last evaluation are written to ``query-results.txt`` in the
test's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TESSERA = Path(sys.executable).with_name("tessera")
SCRAPE_S = 1
# Values for Grafana's built-in variables, as Grafana would substitute them for a short range.
GRAFANA_VARS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def wait_for(what: str, check: Callable[[], bool], timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{tail(p)}" for p in logs)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def scrape_value(port: int, name: str, labels: str = "") -> float:
    """Sum of the samples of ``name`` (optionally whose label text contains ``labels``)."""
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if m and labels in (m.group(1) or ""):
            total += float(m.group(2))
    return total


# --- the processes ----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, grace: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def spawn(name: str, cmd: list[str], env: dict[str, str], log: Path) -> Proc:
    with log.open("wb") as out:
        popen = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(name, popen, log)


def bot_env(workdir: Path, rest_url: str, ws_url: str, extra: dict[str, str]) -> dict[str, str]:
    # Nothing from the developer's environment leaks in (a TESSERA_REDIS_URL would make both
    # bots share one signal stream, a TESSERA_DATABASE_URL one ledger).
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    workdir.mkdir(parents=True, exist_ok=True)
    env.update(
        TESSERA_DATABASE_URL=f"sqlite:///{workdir / 'tessera.db'}",
        TESSERA_DATA_DIR=str(workdir / "data"),
        TESSERA_DATA__REST_URL=rest_url,
        TESSERA_DATA__WS_URL=ws_url,
        TESSERA_LOG_LEVEL="INFO",
        **extra,
    )
    return env


def bot_cmd(metrics_port: int, strategies: list[str], *extra: str) -> list[str]:
    cmd = [str(TESSERA), "--metrics-port", str(metrics_port), "run", "--mode", "paper"]
    for s in strategies:
        cmd += ["--strategy", s]
    return [*cmd, "--interval", "1s", "--duration", "240", *extra]


def prometheus_config(tmp: Path, targets: dict[str, int]) -> Path:
    """infra/prometheus's rules and the infra job name, 1 s scrapes of the local bots."""
    rules = []
    for src in sorted((INFRA / "prometheus" / "rules").glob("*.yml")):
        doc = yaml.safe_load(src.read_text())
        for group in doc["groups"]:
            group["interval"] = f"{SCRAPE_S}s"
        dst = tmp / src.name
        dst.write_text(yaml.safe_dump(doc, sort_keys=False))
        rules.append(str(dst))
    infra_job = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    job = infra_job["scrape_configs"][0]["job_name"]
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_S}s",
            "scrape_timeout": f"{SCRAPE_S}s",
            "evaluation_interval": f"{SCRAPE_S}s",
        },
        "rule_files": rules,
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"bot": name}}
                    for name, port in targets.items()
                ],
            }
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class PromAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        status, body = http_get(url, timeout=10)
        if status == 0:
            raise ConnectionError(body)
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise ValueError(f"{doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else float("nan")


# --- what is checked --------------------------------------------------------------------------


def substitute(expr: str, variables: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in variables:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return variables[name]

    # $var, ${var}, ${var:format}, [[var]]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


def dashboard_variables(dash: dict[str, Any]) -> dict[str, str]:
    """Grafana's built-ins plus each templating variable's current (or first) value; an
    "All" selection becomes the regex ``.*``."""
    out = dict(GRAFANA_VARS)
    for var in dash.get("templating", {}).get("list", []):
        current = (var.get("current") or {}).get("value")
        if current is None and var.get("options"):
            current = var["options"][0].get("value")
        if isinstance(current, list):
            current = "|".join(current)
        if current in (None, "", "$__all"):
            current = var.get("allValue") or ".*"
        out[var["name"]] = str(current)
    return out


def panel_queries() -> Iterator[tuple[str, str]]:
    """(where, expr) of every target of every panel (rows' nested panels too)."""
    for path in sorted((INFRA / "grafana" / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        variables = dashboard_variables(dash)
        panels = list(dash["panels"])
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("hide"):
                    continue
                where = f"{path.name} / {panel['title']!r} / {target.get('refId', '?')}"
                yield where, substitute(target["expr"], variables)


def rule_queries() -> Iterator[tuple[str, str]]:
    """(where, expr) of every recording rule: its expression, then its recorded series."""
    for path in sorted((INFRA / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    yield f"{path.name} / {rule['record']} (expr)", rule["expr"]
                    yield f"{path.name} / {rule['record']} (recorded)", rule["record"]


FALLBACK = " or on() vector(0)"
# Counters whose "or on() vector(0)" fallback may be all a paper run shows: paper orders are
# market orders that fill at once, so nothing is ever left to cancel. Every other fallback's
# own expression must have data too (the run makes it happen), so that a fallback cannot hide
# a metric the bot does not emit.
MAY_STAY_ZERO = ("tessera_orders_canceled_total",)
# Perpetual-account series: the paper bots trade spot, and the live bot does not publish its
# perpetual account yet (tessera.risk.listeners.publish_perp is not wired in). A panel on these
# alone may be empty: it is still evaluated (a PromQL error fails), only "no data" is allowed.
PERP_ONLY = (
    "tessera_margin_ratio",
    "tessera_liquidation_distance_pct",
    "tessera_funding_paid_total",
    "tessera_funding_received_total",
)


def perp_only(expr: str) -> bool:
    names = set(re.findall(r"tessera[:_][a-z0-9_:]+", expr))
    return bool(names) and names <= set(PERP_ONLY)


def empty_queries(prom: PromAPI, queries: list[tuple[str, str]], record: Path) -> list[str]:
    """The queries without data; every result goes to ``record`` (to look at after a run)."""
    failures = []
    lines = []
    for where, expr in queries:
        checks = [(where, expr)]
        inner = expr.removesuffix(FALLBACK)
        if inner != expr and not any(name in inner for name in MAY_STAY_ZERO):
            checks.append((f"{where} (without the vector(0) fallback)", inner))
        for label, q in checks:
            flat = " ".join(q.split())
            try:
                result = prom.query(q)
            except (ValueError, ConnectionError) as exc:
                failures.append(f"{label}: {exc} in {flat}")
                continue
            lines.append(f"{label}\n  {flat}\n  -> {json.dumps(result)}\n")
            if not result and not perp_only(q):
                failures.append(f"{label}: no data for {flat}")
    record.write_text("".join(lines))
    return failures


# What happened in the run, as the dashboards' increase()/rate() see it (the bot creates these
# counters at 0, so even the first event of a kind shows), beyond "the query returned data".
W = "[5m]"
SCENARIO = {
    "the trader's orders filled": f'sum(increase(tessera_fills_total{{bot="trader"}}{W})) > 0',
    "the halted bot's kill-switch engaged": 'max(tessera_kill_switch_engaged{bot="halted"}) == 1',
    "the trader's kill-switch did not": 'max(tessera_kill_switch_engaged{bot="trader"}) == 0',
    "signals after the halt were denied": (
        f'sum(increase(tessera_risk_denials_total{{bot="halted",reason="kill_switch"}}{W})) > 0'
    ),
    "... and counted as rejected orders": (
        f'sum(increase(tessera_orders_rejected_total{{reason="risk"}}{W})) > 0'
    ),
    "the rejection ratio shows them": "tessera:order_rejection_ratio:rate5m > 0",
    "both bots' feeds reconnected": (
        f"count(sum by (bot) (increase(tessera_ws_reconnects_total{W})) > 0) == 2"
    ),
    "malformed frames were counted": f"sum(increase(tessera_ws_malformed_total{W})) > 0",
    "the missed trades were found and filled": (
        f'sum(increase(tessera_ws_gaps_total{{dataset="trades",action="filled"}}{W})) > 0'
    ),
    "the ingest wrote rows": f'sum(increase(tessera_rows_written_total{{bot="trader"}}{W})) > 0',
    "realized PnL per strategy of the trader": 'count(tessera_pnl_realized{bot="trader"}) == 2',
    "the kill-switch alert fired": (
        'ALERTS{alertname="TesseraKillSwitchEngaged",alertstate="firing",bot="halted"}'
    ),
    "no near-limit alert once halted": (
        'absent(ALERTS{alertname="TesseraDrawdownNearLimit",bot="halted"})'
    ),
    "both bots are up": 'sum(up{job="tessera-bot"}) == 2',
}


def scenario_failures(prom: PromAPI) -> list[str]:
    out = []
    for what, expr in SCENARIO.items():
        try:
            ok = bool(prom.query(expr))
        except (ValueError, ConnectionError) as exc:
            ok, what = False, f"{what} ({exc})"
        if not ok:
            out.append(f"scenario: {what}: no result for {expr}")
    try:
        groups = prom.get("/api/v1/rules")["groups"]
    except (ValueError, ConnectionError) as exc:
        return [*out, f"rules API: {exc}"]
    for group in groups:
        for rule in group["rules"]:
            if rule.get("health") != "ok":
                out.append(
                    f"rule {rule['name']}: health {rule.get('health')}: {rule.get('lastError')}"
                )
    return out


# --- the test ---------------------------------------------------------------------------------


def test_every_panel_and_recording_rule_has_data_from_real_bots(tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "the prometheus binary is not on PATH: run `make tools`"
    assert TESSERA.exists(), f"{TESSERA} missing: install the package (make setup)"
    queries = list(panel_queries()) + list(rule_queries())
    assert len(queries) > 40, "the dashboards or rules were not found"

    from tessera.sim.server import ExchangeSimulator, SimulatorThread

    sim = ExchangeSimulator(speed=10.0, loop_replay=True, autostart=False)
    runner = SimulatorThread(sim)
    procs: list[Proc] = []
    started = time.monotonic()
    try:
        runner.start()

        async def start_replay() -> None:
            sim.start_replay()

        runner.call(start_replay())

        ports = {"trader": free_port(), "halted": free_port()}
        procs.append(
            spawn(
                "trader",
                bot_cmd(
                    ports["trader"],
                    ["sma_cross:fast=3,slow=8,qty=0.01", "sma_cross:fast=5,slow=13,qty=0.005"],
                ),
                bot_env(tmp_path / "trader", sim.rest_url, sim.ws_url, {}),
                tmp_path / "trader.log",
            )
        )
        procs.append(
            spawn(
                "halted",
                bot_cmd(ports["halted"], ["sma_cross:fast=3,slow=8,qty=0.01"], "--no-ingest"),
                # fees alone (~0.1% of a ~600 USDT order per fill) exceed 0.02% of 10k USDT
                bot_env(
                    tmp_path / "halted",
                    sim.rest_url,
                    sim.ws_url,
                    {"TESSERA_RISK__MAX_DRAWDOWN_PCT": "0.02"},
                ),
                tmp_path / "halted.log",
            )
        )
        prom_port = free_port()
        procs.append(
            spawn(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={prometheus_config(tmp_path, ports)}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                dict(os.environ),
                tmp_path / "prometheus.log",
            )
        )
        logs = [p.log for p in procs]
        prom = PromAPI(prom_port)

        def alive() -> None:
            for p in procs:
                if p.popen.poll() is not None:
                    pytest.fail(f"{p.name} exited with {p.popen.returncode}:\n{tail(p.log, 40)}")

        def traded() -> bool:
            alive()
            return (
                scrape_value(ports["trader"], "tessera_fills_total") >= 4
                and scrape_value(ports["halted"], "tessera_kill_switch_engaged") == 1
                and scrape_value(ports["halted"], "tessera_risk_denials_total") >= 1
            )

        wait_for("both bots to trade and one to halt", traded, 60, logs)

        def baseline() -> bool:
            # Prometheus must hold samples from before the faults: a counter it first sees
            # after the event shows no increase.
            try:
                return bool(
                    prom.query(
                        "count(count_over_time("
                        'tessera_ws_reconnects_total{reason="closed"}[1m]) >= 3) == 2'
                    )
                )
            except (ValueError, ConnectionError):
                return False

        wait_for("Prometheus to scrape both bots a few times", baseline, 30, logs)
        denials_before = scrape_value(ports["halted"], "tessera_risk_denials_total")

        # A bad network day: malformed frames on every connection, then every socket dropped.
        sim.faults.malformed_at = 1
        time.sleep(1.0)
        dropped = runner.call(sim.drop_connections())
        # one connection per bot: the trader's ingest rides on its feed's
        assert dropped == 2, f"expected the two bots' feeds connected, dropped {dropped}"

        def recovered() -> bool:
            alive()
            return all(
                scrape_value(port, "tessera_ws_reconnects_total") >= 1
                and scrape_value(port, "tessera_ws_malformed_total") >= 1
                and scrape_value(port, "tessera_ws_connected", 'source="feed"') == 1
                and scrape_value(port, "tessera_ws_connected", 'source="ingest"') == 0
                for port in ports.values()
            )

        wait_for("the bots to count malformed frames and reconnect", recovered, 30, logs)
        sim.faults.malformed_at = None
        fills_before = scrape_value(ports["trader"], "tessera_fills_total")
        wait_for(
            "the trader to trade again and the halted bot to deny again, after the reconnect",
            lambda: (
                scrape_value(ports["trader"], "tessera_fills_total") > fills_before
                and scrape_value(ports["halted"], "tessera_risk_denials_total") > denials_before
            ),
            30,
            logs,
        )

        # Prometheus has scraped all that once the counters show up there; then every query
        # must have data (retried while the last rule evaluations land).
        failures: list[str] = []
        results = tmp_path / "query-results.txt"
        deadline = time.monotonic() + 30
        while True:
            alive()
            failures = empty_queries(prom, queries, results) + scenario_failures(prom)
            if not failures or time.monotonic() > deadline:
                break
            time.sleep(2)
        elapsed = time.monotonic() - started
        assert not failures, (
            f"{len(failures)} of {len(queries)} queries (+ scenario checks) failed after "
            f"{elapsed:.0f} s (results: {results}):\n  " + "\n  ".join(failures)
        )
    finally:
        for p in reversed(procs):
            p.stop()
        runner.stop()
