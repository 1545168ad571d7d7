"""Risk listeners at the edge: Prometheus metrics and structured logs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from tessera import metrics
from tessera.execution.perp.funding import FundingEntry
from tessera.logging import get_logger
from tessera.risk.engine import HaltRecord, OrderIntent, RiskDecision, TradingState
from tessera.risk.leverage import PerpAccountSnapshot

log = get_logger(__name__)


class MetricsRiskListener:
    """Feeds `tessera_drawdown_pct`, the kill-switch gauge, trading state and denials."""

    def on_denial(self, intent: OrderIntent, decision: RiskDecision) -> None:
        reason = decision.reason.value if decision.reason else "halted"
        metrics.RISK_DENIALS.labels(
            reason=metrics.bounded(reason, metrics.RISK_DENIAL_REASONS)
        ).inc()
        log.warning(
            "order denied by risk",
            symbol=intent.symbol,
            side=intent.side.value,
            qty=str(intent.qty),
            reason=reason,
            detail=decision.detail,
            strategy=intent.strategy,
        )

    def on_state(self, state: TradingState, halt: HaltRecord | None) -> None:
        metrics.set_trading_state(state.value)
        metrics.KILL_SWITCH_ENGAGED.set(
            1.0 if state is TradingState.HALTED and halt and halt.reason == "kill_switch" else 0.0
        )
        if halt is not None:
            log.error("trading halted", reason=halt.reason, drawdown_pct=halt.drawdown_pct)
        else:
            log.warning("trading state changed", state=state.value)

    def on_drawdown(self, equity: float, peak: float, drawdown_pct: float) -> None:
        metrics.EQUITY.set(equity)
        metrics.EQUITY_PEAK.set(peak)
        metrics.DRAWDOWN_PCT.set(drawdown_pct)


def publish_perp(snapshot: PerpAccountSnapshot, funding: Iterable[FundingEntry] = ()) -> None:
    """Set the leverage gauges from a perpetual account snapshot and count the funding booked
    since the last call.

    Per symbol of the snapshot: `tessera_margin_ratio` (+Inf when the margin balance is gone)
    and `tessera_liquidation_distance_pct` (+Inf when no price liquidates the position); a flat
    symbol's two series are removed, so that an alert on a closed position ends. A symbol the
    caller drops from the snapshot keeps its last values: pass it flat instead. Each funding
    entry goes to `tessera_funding_paid_total` or `tessera_funding_received_total` by its sign.
    The equity and drawdown gauges come from `RiskEngine.mark_perp` through the listener.
    The live bot calls it at each closed bar on a perpetual (`tessera.live.bot`); it counts
    the venue's funding payments with `metrics.record_funding` itself (they carry no rate).
    """
    for key, sym in snapshot.symbols.items():
        ratio = snapshot.margin_ratio(key)
        if sym.position is None or ratio is None:
            for gauge in (metrics.MARGIN_RATIO, metrics.LIQUIDATION_DISTANCE_PCT):
                with contextlib.suppress(KeyError):  # never set: nothing to remove
                    gauge.remove(key)
            continue
        distance = snapshot.liquidation_distance_pct(key)
        metrics.MARGIN_RATIO.labels(symbol=key).set(float(ratio))
        metrics.LIQUIDATION_DISTANCE_PCT.labels(symbol=key).set(
            float("inf") if distance is None else float(distance)
        )
    for entry in funding:
        metrics.record_funding(entry.symbol, float(entry.amount))
