"""The CLI bootstrap of the brief: settings, logging, seed, metrics — once per process, in order."""

from __future__ import annotations

import math
import platform
import secrets
import time
from dataclasses import dataclass, field

from tessera import __version__
from tessera.config import TesseraSettings, seed_everything
from tessera.logging import bind_context, configure_logging, get_logger, register_secret
from tessera.metrics import DRAWDOWN_LIMIT_PCT, MetricsServer, set_build_info, start_metrics_server

log = get_logger(__name__)


def new_run_id(now: float | None = None) -> str:
    """A short, sortable, unique run id: ``YYYYmmddTHHMMSS-xxxx`` (20 chars, UTC).

    Short on purpose: client order ids are run id + sequence and Binance allows 36 chars.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


@dataclass
class AppContext:
    """What every command gets: the effective settings and the run id, bound in the logs."""

    settings: TesseraSettings
    run_id: str
    seeded: dict[str, bool] = field(default_factory=dict)
    metrics_server: MetricsServer | None = None

    def start_metrics(self) -> MetricsServer:
        """Step 4 of the bootstrap, for commands that run a process (sim, ingest, bot)."""
        if self.metrics_server is None:
            self.metrics_server = start_metrics_server(
                self.settings.metrics_port, self.settings.metrics_host
            )
            log.info("metrics server started", url=self.metrics_server.url)
        return self.metrics_server

    def close(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None


def mode_source(settings: TesseraSettings) -> str:
    """Where the effective mode (dev, paper, live) came from: ``cli option``,
    ``env TESSERA_MODE``, ``.env TESSERA_MODE``, a YAML file, or ``default``.

    The first log line of every command names it: a process that trades for real (or does not,
    when it should) says at its start which setting made it do so.
    """
    return settings.sources().get("mode", "default")


def bootstrap(settings: TesseraSettings, run_id: str | None = None) -> AppContext:
    """Steps 2 and 3 (logging, seed) for already-loaded settings; step 4 is `start_metrics`."""
    register_secret(*settings.secret_values())
    configure_logging(settings.log_level, json=settings.json_logs)
    run_id = run_id or new_run_id()
    bind_context(run_id=run_id)
    # torch and NumPy are seeded when first imported: a command that uses neither (orders,
    # risk, config, ...) starts without their import time; the draws are the same.
    seeded = seed_everything(settings.seed, torch="lazy", numpy="on_import")
    set_build_info(__version__, platform.python_version(), settings.mode)
    # max_drawdown_pct null (kill-switch off): an infinite limit, never approached
    DRAWDOWN_LIMIT_PCT.set(settings.risk.max_drawdown_pct or math.inf)
    log.debug(
        "bootstrap complete",
        mode=settings.mode,
        mode_source=mode_source(settings),
        seed=settings.seed,
        seeded=seeded,
    )
    return AppContext(settings=settings, run_id=run_id, seeded=seeded)
