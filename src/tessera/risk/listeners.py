"""Risk listeners at the edge: Prometheus metrics and structured logs."""

from __future__ import annotations

from tessera import metrics
from tessera.logging import get_logger
from tessera.risk.engine import HaltRecord, OrderIntent, RiskDecision, TradingState

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
