"""Backtest results: the equity curve, fills, round-trip trades and the usual metrics.

Metric conventions: returns are simple per-bar returns of the equity curve; annualisation uses
the bar spacing (365-day crypto year); Sharpe and Sortino assume a zero risk-free rate;
drawdown is from the running equity peak, its duration the longest time spent below a peak.

Exit reasons: every fill carries the reason of its order (`ExitReason`: signal, stop_loss,
take_profit, trailing_stop, oco, kill_switch, ...); a round trip's exit reason is that of the fill
that closed it. A position still open at the last bar is listed as closed at the last close with
reason ``end_of_data`` — marked to market, no fill is invented (the fills and the cash do not
change) — and is left out of the trade statistics (``trades``, win rate, profit factor), which
count positions an order closed.

Perpetuals: ``result.perp`` (`PerpSummary`) holds the funding paid (total, per symbol, the
count of funding times), the liquidations (time, price, loss, fee), the margin stats (peak
leverage used = gross notional at the mark / equity, the minimum distance from the mark to the
liquidation price at a bar's close), the leverage and margin mode, and where the mark and the
funding came from; in ``result.json`` under ``"perp"`` and in `perp_summary_lines`.

Risk: what the risk limits did to the run is in ``result.risk`` (`RiskSummary`: the halt, its
bar, the denials by reason and the return both as traded and with the position frozen at the
halt), in ``result.json`` under ``"risk"``, and in the lines `risk_summary_lines` writes for the
CLI and the report. A limit that acts must not pass unseen: it can decide a research result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from tessera.config.models import BacktestConfig, RiskConfig
from tessera.execution.fastinit import slot_init
from tessera.execution.orders import ExitReason, Fill, Order
from tessera.execution.portfolio import Portfolio
from tessera.risk.engine import DenialReason

if TYPE_CHECKING:
    from tessera.backtest.perp_inputs import PerpInputs
    from tessera.config.models import PerpBacktestConfig
    from tessera.execution.perp.account import PerpAccount

YEAR_NS = 365 * 86_400 * 1_000_000_000
ZERO = Decimal(0)


@slot_init
@dataclass(frozen=True, slots=True)
class FillRecord:
    fill: Fill
    reference_price: Decimal  # before slippage
    realized_pnl: Decimal
    reason: ExitReason = ExitReason.SIGNAL  # why its order was sent

    @property
    def slippage_cost(self) -> Decimal:
        return abs(self.fill.price - self.reference_price) * self.fill.qty


@dataclass(frozen=True, slots=True)
class Trade:
    """A round trip: from flat (or a flip) to flat, per symbol and strategy."""

    symbol: str
    strategy: str
    side: str  # "long" | "short"
    entry_time: int
    exit_time: int | None
    qty: Decimal  # largest absolute size reached
    entry_price: Decimal  # volume-weighted
    exit_price: Decimal | None
    pnl: Decimal  # realized, net of fees (end_of_data: marked to the last close)
    fees: Decimal
    exit_reason: str = ""  # ExitReason of the closing fill; end_of_data; "" while open

    @property
    def closed_by_order(self) -> bool:
        """Closed by a fill (not merely marked at the end of the data)."""
        return self.exit_time is not None and self.exit_reason != ExitReason.END_OF_DATA


RISK_REASONS = frozenset(r.value for r in DenialReason)
# the RiskConfig field each risk denial reason is about (for "limit ..." in the summary)
_REASON_FIELD = {
    DenialReason.MAX_ORDER_NOTIONAL.value: "max_order_notional",
    DenialReason.MAX_POSITION.value: "max_position_notional",
    DenialReason.MAX_GROSS_EXPOSURE.value: "max_gross_exposure",
    DenialReason.PRICE_BAND.value: "price_band_pct",
    DenialReason.MAX_OPEN_ORDERS.value: "max_open_orders",
    DenialReason.ORDER_RATE.value: "max_orders_per_second",
    DenialReason.KILL_SWITCH.value: "max_drawdown_pct",
    DenialReason.REDUCING_ONLY.value: "reduce_only_drawdown_pct",
    # perpetuals (tessera.risk.leverage); max_leverage is also the bracket's own cap
    DenialReason.MAX_LEVERAGE.value: "max_leverage",
    DenialReason.MAX_GROSS_LEVERAGE.value: "max_gross_leverage",
    DenialReason.MAX_NET_LEVERAGE.value: "max_net_leverage",
    DenialReason.LIQUIDATION_DISTANCE.value: "min_liquidation_distance_pct",
}
# the RiskConfig settings that only a perpetual account can meet (a spot account has no
# leverage, margin or liquidation): on spot they are listed as not applied, never silent
PERP_ONLY_LIMITS = (
    "max_leverage",
    "max_gross_leverage",
    "max_net_leverage",
    "min_liquidation_distance_pct",
    "margin_ratio_alert",
)


_NOTIONAL_FIELDS = frozenset({"max_order_notional", "max_position_notional", "max_gross_exposure"})


@dataclass(frozen=True, slots=True)
class HaltSnapshot:
    """The account when the kill-switch fired: after the fills of the halting bar, before the
    halt's cancel-all and flatten."""

    ts: int  # close time of the bar whose mark breached the limit
    reason: str  # HaltRecord.reason: "kill_switch"
    drawdown_pct: float
    equity: Decimal  # cash + positions at that bar's close
    cash: Decimal
    positions: Mapping[str, Decimal]  # signed net base quantity per symbol


@dataclass(frozen=True, slots=True)
class RiskSummary:
    """What the risk limits did to a backtest.

    - ``limits``: the `RiskConfig` the run applied, as in YAML (``{}``: no risk engine ran).
    - ``halted_at_ns`` / ``halt_bar``: close time and index in ``result.times`` of the bar
      whose mark-to-market breached ``max_drawdown_pct``; ``halt_reason`` its `HaltRecord`
      reason, ``halt_drawdown_pct`` the drawdown then; all None without a halt.
    - ``denials``: orders the risk engine denied, by `DenialReason` value, over the whole run
      (the account's own refusals, ``no_borrow``, ``filter:*``, ... are in ``result.denials``
      and not here); ``denials_after_halt`` those after the halt.
    - ``return_as_traded``: final equity / initial cash - 1 — what the run did, with the halt
      (``metrics["total_return"]``).
    - ``return_at_halt``: equity at the halt bar's close / initial cash - 1.
    - ``return_frozen_marked``: the return had the positions held at the halt (after that bar's
      fills) been kept untouched to the end: (cash at the halt + each position at the halt x
      its symbol's last close) / initial cash - 1, with no exit fee or slippage charged. It
      differs from ``return_as_traded`` by whatever happened after the halt: exits of the
      strategy (they still pass), the ``flatten_on_halt`` flatten, fees.
    """

    limits: Mapping[str, str | float | int | bool | None] = field(default_factory=dict)
    halted_at_ns: int | None = None
    halt_bar: int | None = None
    halt_reason: str | None = None
    halt_drawdown_pct: float | None = None
    denials: Mapping[str, int] = field(default_factory=dict)
    denials_after_halt: int = 0
    return_as_traded: float | None = None
    return_at_halt: float | None = None
    return_frozen_marked: float | None = None
    # perpetual-only settings given to a spot run ("max_leverage 2"): not applied, and said
    not_applied: tuple[str, ...] = ()

    @property
    def acted(self) -> bool:
        """A limit changed what the strategy did: a halt, or at least one denial."""
        return self.halted_at_ns is not None or bool(self.denials)

    def to_dict(self) -> dict[str, Any]:
        return {
            "limits": dict(self.limits),
            "halted_at_ns": self.halted_at_ns,
            "halt_bar": self.halt_bar,
            "halt_reason": self.halt_reason,
            "halt_drawdown_pct": self.halt_drawdown_pct,
            "denials": dict(sorted(self.denials.items())),
            "denials_after_halt": self.denials_after_halt,
            "return_as_traded": _json_float(self.return_as_traded),
            "return_at_halt": _json_float(self.return_at_halt),
            "return_frozen_marked": _json_float(self.return_frozen_marked),
            "not_applied": list(self.not_applied),
        }


def _json_float(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


def summarize_risk(
    risk_config: RiskConfig | None,
    times: npt.NDArray[np.int64],
    initial: Decimal,
    final_equity: float | None,
    denials: list[tuple[int, str, str]],
    halt: HaltSnapshot | None,
    last_prices: Mapping[str, Decimal],
    perp: bool = False,
) -> RiskSummary:
    """The `RiskSummary` of a run (see its docstring for each field); on a spot run
    (``perp`` False) the perpetual-only settings that are set go to ``not_applied``."""
    counts: dict[str, int] = {}
    after = 0
    for ts, _, reason in denials:
        if reason in RISK_REASONS:
            counts[reason] = counts.get(reason, 0) + 1
            if halt is not None and ts > halt.ts:
                after += 1
    as_traded = final_equity / float(initial) - 1.0 if final_equity is not None else None
    limits = risk_config.model_dump(mode="json") if risk_config is not None else {}
    not_applied = (
        ()
        if perp
        else tuple(f"{k} {limits[k]}" for k in PERP_ONLY_LIMITS if limits.get(k) is not None)
    )
    if halt is None:
        return RiskSummary(
            limits, denials=counts, return_as_traded=as_traded, not_applied=not_applied
        )
    frozen = halt.cash + sum(
        (qty * last_prices.get(sym, ZERO) for sym, qty in halt.positions.items()), ZERO
    )
    bar = int(np.searchsorted(times, halt.ts))
    return RiskSummary(
        limits,
        halted_at_ns=halt.ts,
        halt_bar=bar if bar < len(times) and int(times[bar]) == halt.ts else None,
        halt_reason=halt.reason,
        halt_drawdown_pct=halt.drawdown_pct,
        denials=counts,
        denials_after_halt=after,
        return_as_traded=as_traded,
        return_at_halt=float(halt.equity / initial) - 1.0,
        return_frozen_marked=float(frozen / initial) - 1.0,
        not_applied=not_applied,
    )


def risk_summary_lines(result: BacktestResult) -> list[str]:
    """What the risk limits did, in a few plain lines for the CLI and the top of the report;
    empty when no limit acted (no halt, no risk denial). For example::

        HALTED by the drawdown kill-switch (max_drawdown_pct 10.0) at 2017-07-22 14:00 UTC
        (bar 506 of 20,111, drawdown 10.1%); 380 orders denied after it
        return as traded +21.8%; at the halt +22.5%; with the position held at the halt
        frozen and marked to the last bar +210.4%
        risk limits denied 380 orders: kill_switch 380 (max_drawdown_pct 10.0)
    """
    r = result.risk
    lines: list[str] = []
    if r.not_applied:
        lines.append(
            f"perpetuals only, not applied on spot: {', '.join(r.not_applied)} (a spot account "
            "has no leverage, margin or liquidation)"
        )
    if not r.acted:
        return lines
    if r.halted_at_ns is not None:
        # a bar closes 1 ns before the next opens: round to the second, 13:59:59.999 is 14:00
        secs = (r.halted_at_ns + 500_000_000) // 1_000_000_000
        when = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M")
        what = (
            f"the drawdown kill-switch (max_drawdown_pct {r.limits.get('max_drawdown_pct')})"
            if r.halt_reason == "kill_switch"
            else f"a halt ({r.halt_reason})"
        )
        bar = f"bar {r.halt_bar:,} of {len(result.times):,}, " if r.halt_bar is not None else ""
        lines.append(
            f"HALTED by {what} at {when} UTC ({bar}drawdown {r.halt_drawdown_pct:.1f}%); "
            f"{r.denials_after_halt:,} orders denied after it"
        )
        lines.append(
            f"return as traded {_pct(r.return_as_traded)}; at the halt {_pct(r.return_at_halt)}; "
            f"with the position held at the halt frozen and marked to the last bar "
            f"{_pct(r.return_frozen_marked)}"
        )
        if r.halt_reason == "kill_switch":
            lines.append("max_drawdown_pct: null in the risk config turns the kill-switch off")
    if r.denials:
        parts = []
        for reason, n in sorted(r.denials.items(), key=lambda kv: (-kv[1], kv[0])):
            name = _REASON_FIELD.get(reason)
            limit = ""
            if name is not None and r.limits.get(name) is not None:
                label = "limit" if name == reason else name
                limit = f" ({label} {r.limits[name]})"
            parts.append(f"{reason} {n:,}{limit}")
        total = sum(r.denials.values())
        lines.append(f"risk limits denied {total:,} orders: {', '.join(parts)}")
        fixed = [
            name
            for reason in r.denials
            if (name := _REASON_FIELD.get(reason)) in _NOTIONAL_FIELDS
            and not str(r.limits.get(name, "")).endswith("%")
        ]
        if fixed:
            lines.append(
                f'{fixed[0]} is a fixed amount: written as a fraction of equity ("100%") it '
                f"grows with a compounding strategy"
            )
    return lines


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:+.1%}"


@dataclass
class PerpStats:
    """Margin statistics the engine gathers bar by bar (floats: they describe, not book)."""

    peak_leverage: float = 0.0
    min_liq_distance: float | None = None  # |mark - liquidation price| / mark
    min_liq_distance_at: int | None = None
    min_liq_distance_symbol: str | None = None
    # the leverage monitor of the risk engine (RiskEngine.mark_perp)
    margin_ratio_alerts: int = 0  # marks with a margin ratio >= margin_ratio_alert
    first_margin_ratio_alert_at: int | None = None
    peak_margin_ratio: float | None = None  # the highest ratio alerted on
    liq_distance_cuts: int = 0  # cuts sent for min_liquidation_distance_pct


@dataclass(frozen=True)
class PerpSummary:
    """What funding, margin and liquidation did to a perpetual backtest."""

    leverage: int
    margin_mode: str
    liquidation_fee_rate: Decimal
    funding_enabled: bool
    funding_total: Decimal  # the account's funding cash flow (negative: paid)
    funding_by_symbol: Mapping[str, Decimal]
    funding_times: int  # funding entries booked
    liquidations: tuple[Any, ...]  # perp_account.Liquidation records
    peak_leverage: float
    min_liq_distance: float | None
    min_liq_distance_at: int | None
    sources: tuple[str, ...]  # "XRPUSDT mark: ...", "XRPUSDT funding: ..."
    final_wallet: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal  # trading and liquidation fees
    final_marks: Mapping[str, Decimal] = field(default_factory=dict)  # the last mark per symbol
    margin_ratio_alerts: int = 0  # marks at which the margin ratio reached margin_ratio_alert
    first_margin_ratio_alert_at: int | None = None
    peak_margin_ratio: float | None = None
    liq_distance_cuts: int = 0  # reduce-only cuts sent for min_liquidation_distance_pct

    @property
    def funding_paid(self) -> Decimal:
        """Funding paid out (positive when the account paid more than it received)."""
        return -self.funding_total

    @classmethod
    def build(
        cls,
        account: PerpAccount,
        stats: PerpStats,
        inputs: PerpInputs,
        config: PerpBacktestConfig,
    ) -> PerpSummary:
        return cls(
            leverage=config.leverage,
            margin_mode=config.margin_mode,
            liquidation_fee_rate=config.liquidation_fee_rate,
            funding_enabled=inputs.funding_enabled,
            funding_total=sum((e.amount for e in account.funding), ZERO),
            funding_by_symbol=account.funding_by_symbol(),
            funding_times=len(account.funding),
            liquidations=tuple(account.liquidations),
            peak_leverage=stats.peak_leverage,
            min_liq_distance=stats.min_liq_distance,
            min_liq_distance_at=stats.min_liq_distance_at,
            sources=tuple(inputs.describe()),
            final_wallet=account.wallet,
            realized_pnl=account.realized,
            fees_paid=account.fees_paid,
            final_marks=dict(account.marks),
            margin_ratio_alerts=stats.margin_ratio_alerts,
            first_margin_ratio_alert_at=stats.first_margin_ratio_alert_at,
            peak_margin_ratio=stats.peak_margin_ratio,
            liq_distance_cuts=stats.liq_distance_cuts,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "leverage": self.leverage,
            "margin_mode": self.margin_mode,
            "liquidation_fee_rate": str(self.liquidation_fee_rate),
            "funding_enabled": self.funding_enabled,
            "funding_total": str(self.funding_total),
            "funding_paid": str(self.funding_paid),
            "funding_by_symbol": {k: str(v) for k, v in self.funding_by_symbol.items()},
            "funding_times": self.funding_times,
            "liquidation_count": len(self.liquidations),
            "liquidations": [
                {
                    "time_ns": x.ts,
                    "time": _when(x.ts),
                    "symbol": x.symbol,
                    "qty": str(x.qty),
                    "entry_price": str(x.entry_price),
                    "price": str(x.price),
                    "mark_extreme": str(x.mark_extreme),
                    "fee": str(x.fee),
                    "loss": str(x.loss),
                    "mode": x.mode,
                }
                for x in self.liquidations
            ],
            "peak_leverage": self.peak_leverage,
            "min_liquidation_distance": self.min_liq_distance,
            "min_liquidation_distance_at_ns": self.min_liq_distance_at,
            "sources": list(self.sources),
            "final_wallet": str(self.final_wallet),
            "realized_pnl": str(self.realized_pnl),
            "fees_paid": str(self.fees_paid),
            "margin_ratio_alerts": self.margin_ratio_alerts,
            "first_margin_ratio_alert_at_ns": self.first_margin_ratio_alert_at,
            "peak_margin_ratio": self.peak_margin_ratio,
            "liq_distance_cuts": self.liq_distance_cuts,
        }


def _when(ts_ns: int) -> str:
    secs = (ts_ns + 500_000_000) // 1_000_000_000
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M")


def perp_summary_lines(result: BacktestResult) -> list[str]:
    """Funding, liquidations and margin in a few plain lines (empty for spot). E.g.::

    perpetual: leverage 50x isolated; funding paid 0.00000000 over 0 funding payments
    XRPUSDT mark: .../XRP_USDT_USDT-1h-mark.feather for 57 of 100 bars, the trade price for 43
    XRPUSDT funding: .../XRP_USDT_USDT-8h-funding_rate.feather: 10 funding times applied (...)
    1 liquidation:
    LIQUIDATED XRPUSDT 9000 (entry 1.079067896) at 1.0628005 in the bar opening 2021-11-17
    03:00 UTC (mark reached 1.05931): lost 194.23, liquidation fee 47.8260
    margin: peak leverage used 0.97x; closest to liquidation 1.23% of the mark (2021-11-17
    03:00 UTC)

    Amounts are in the quote asset (USDT); the closest-to-liquidation time is a bar's close.
    """
    p = result.perp
    if p is None:
        return []
    if p.funding_enabled:
        funding = (
            f"funding {'paid' if p.funding_paid >= 0 else 'received'} "
            f"{abs(p.funding_paid):,.8f} over {p.funding_times} funding payments"
        )
        if len(p.funding_by_symbol) > 1:
            parts = [
                f"{k} {'paid' if v <= 0 else 'received'} {abs(v):,.8f}"
                for k, v in p.funding_by_symbol.items()
            ]
            funding += f" ({', '.join(parts)})"
    else:
        funding = "funding OFF (--no-funding): none paid or received"
    lines = [f"perpetual: leverage {p.leverage}x {p.margin_mode}; {funding}"]
    lines.extend(p.sources)
    n = len(p.liquidations)
    lines.append(f"{n} liquidation{'' if n == 1 else 's'}:" if n else "no liquidation")
    for x in p.liquidations:
        lines.append(
            f"LIQUIDATED {x.symbol} {x.qty:f} (entry {x.entry_price:f}) at {x.price:.8g} in the "
            f"bar opening {_when(x.ts)} UTC (mark reached {x.mark_extreme:f}): lost "
            f"{x.loss:,.2f}, liquidation fee {x.fee:,.4f}"
        )
    dist = (
        f"; closest to liquidation {p.min_liq_distance:.2%} of the mark "
        f"({_when(p.min_liq_distance_at)} UTC)"
        if p.min_liq_distance is not None and p.min_liq_distance_at is not None
        else ""
    )
    lines.append(f"margin: peak leverage used {p.peak_leverage:.2f}x{dist}")
    if p.liq_distance_cuts:
        lines.append(
            f"risk monitor: {p.liq_distance_cuts:,} reduce-only cut"
            f"{'' if p.liq_distance_cuts == 1 else 's'} (reason liq_distance) of a position "
            "closer to liquidation than min_liquidation_distance_pct"
        )
    if p.margin_ratio_alerts and p.first_margin_ratio_alert_at is not None:
        peak = f", peak {p.peak_margin_ratio:.2%}" if p.peak_margin_ratio is not None else ""
        lines.append(
            f"margin ratio alerts: {p.margin_ratio_alerts:,} marks at or above "
            f"margin_ratio_alert (first {_when(p.first_margin_ratio_alert_at)} UTC{peak})"
        )
    return lines


@dataclass
class BacktestResult:
    times: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    exposure: npt.NDArray[np.float64]
    fills: list[FillRecord]
    orders: list[Order]
    trades: list[Trade]
    metrics: dict[str, float]
    final_cash: Decimal
    final_equity: Decimal
    denials: list[tuple[int, str, str]] = field(default_factory=list)
    halted_at: int | None = None
    risk: RiskSummary = field(default_factory=RiskSummary)
    perp: PerpSummary | None = None  # perpetuals only

    def equity_frame(self) -> pl.DataFrame:
        peak = np.maximum.accumulate(self.equity) if len(self.equity) else self.equity
        dd = np.where(peak > 0, (peak - self.equity) / peak * 100.0, 0.0)
        return pl.DataFrame(
            {
                "time": pl.Series(self.times).cast(pl.Datetime("ns", "UTC")),
                "equity": self.equity,
                "drawdown_pct": dd,
                "exposure": self.exposure,
            }
        )

    def fills_frame(self) -> pl.DataFrame:
        rows = [
            {
                "time": r.fill.ts_event,
                "symbol": r.fill.symbol,
                "strategy": r.fill.strategy,
                "side": r.fill.side.value,
                "qty": str(r.fill.qty),
                "price": str(r.fill.price),
                "fee": str(r.fill.fee),
                "liquidity": r.fill.liquidity.value,
                "client_order_id": r.fill.client_order_id,
                "trade_id": r.fill.trade_id,
                "realized_pnl": str(r.realized_pnl),
                "slippage": str(r.slippage_cost),
                "reason": r.reason.value,
            }
            for r in self.fills
        ]
        frame = (
            pl.DataFrame(rows, schema=_FILL_SCHEMA) if rows else pl.DataFrame(schema=_FILL_SCHEMA)
        )
        return frame.with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))

    def trades_frame(self) -> pl.DataFrame:
        rows = [
            {
                "symbol": t.symbol,
                "strategy": t.strategy,
                "side": t.side,
                "entry_time": t.entry_time,
                "exit_time": t.exit_time,
                "qty": float(t.qty),
                "entry_price": float(t.entry_price),
                "exit_price": float(t.exit_price) if t.exit_price is not None else None,
                "pnl": float(t.pnl),
                "fees": float(t.fees),
                "exit_reason": t.exit_reason,
            }
            for t in self.trades
        ]
        frame = (
            pl.DataFrame(rows, schema=_TRADE_SCHEMA) if rows else pl.DataFrame(schema=_TRADE_SCHEMA)
        )
        return frame.with_columns(
            pl.col("entry_time").cast(pl.Datetime("ns", "UTC")),
            pl.col("exit_time").cast(pl.Datetime("ns", "UTC")),
        )

    def exit_reasons(self) -> dict[str, int]:
        """Round trips by exit reason (``end_of_data`` for positions open at the end)."""
        counts: dict[str, int] = {}
        for t in self.trades:
            if t.exit_time is not None:
                counts[t.exit_reason] = counts.get(t.exit_reason, 0) + 1
        return dict(sorted(counts.items()))

    def denial_counts(self) -> dict[str, int]:
        """Every denial of the run by reason: risk limits, the spot account (``no_borrow``,
        ``insufficient_balance``, ``reduce_only``) and the exchange filters (``filter:*``)."""
        counts: dict[str, int] = {}
        for _, _, reason in self.denials:
            counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self, run: Mapping[str, Any] | None = None) -> str:
        """Metrics, trades and the final state as stable JSON (sorted keys; for diffs).

        ``run`` describes the run (strategy, parameters, the bars used and where they came
        from, baselines' metrics); it is stored under ``"run"`` so a result file says what it
        is the result of.
        """
        doc: dict[str, Any] = {
            "metrics": {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in sorted(self.metrics.items())
            },
            "final_cash": str(self.final_cash),
            "final_equity": str(self.final_equity),
            "fills": [
                [
                    r.fill.ts_event,
                    r.fill.symbol,
                    r.fill.side.value,
                    str(r.fill.qty),
                    str(r.fill.price),
                    str(r.fill.fee),
                    r.reason.value,
                ]
                for r in self.fills
            ],
            "exit_reasons": self.exit_reasons(),
            "halted_at": self.halted_at,
            "denials": self.denial_counts(),
            "risk": self.risk.to_dict(),
        }
        if self.perp is not None:
            doc["perp"] = self.perp.to_dict()
        if run is not None:
            doc["run"] = dict(run)
        return json.dumps(doc, sort_keys=True, indent=1, default=str)

    def save(self, directory: Path, run: Mapping[str, Any] | None = None) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "metrics": directory / "result.json",
            "equity": directory / "equity.parquet",
            "fills": directory / "fills.parquet",
            "trades": directory / "trades.parquet",
        }
        paths["metrics"].write_text(self.to_json(run))
        self.equity_frame().write_parquet(paths["equity"])
        self.fills_frame().write_parquet(paths["fills"])
        self.trades_frame().write_parquet(paths["trades"])
        return paths


_FILL_SCHEMA = {
    "time": pl.Int64,
    "symbol": pl.String,
    "strategy": pl.String,
    "side": pl.String,
    "qty": pl.String,
    "price": pl.String,
    "fee": pl.String,
    "liquidity": pl.String,
    "client_order_id": pl.String,
    "trade_id": pl.String,
    "realized_pnl": pl.String,
    "slippage": pl.String,
    "reason": pl.String,
}
_TRADE_SCHEMA = {
    "symbol": pl.String,
    "strategy": pl.String,
    "side": pl.String,
    "entry_time": pl.Int64,
    "exit_time": pl.Int64,
    "qty": pl.Float64,
    "entry_price": pl.Float64,
    "exit_price": pl.Float64,
    "pnl": pl.Float64,
    "fees": pl.Float64,
    "exit_reason": pl.String,
}


class _Trip:
    """One open round trip's running sums (exact Decimal), a slotted object rather than a dict:
    `round_trips` touches a dozen of them per fill."""

    __slots__ = (
        "entry_qty",
        "entry_time",
        "entry_value",
        "exit_qty",
        "exit_value",
        "fees",
        "flow",
        "max",
        "pnl",
        "pos",
        "side",
    )

    def __init__(self, ts: int, signed: Decimal) -> None:
        self.entry_time = ts
        self.pos = ZERO
        self.side = "long" if signed > 0 else "short"
        self.entry_qty = ZERO
        self.entry_value = ZERO
        self.exit_qty = ZERO
        self.exit_value = ZERO
        self.fees = ZERO
        self.pnl = ZERO
        self.max = ZERO
        self.flow = ZERO  # quote cash the trip's fills moved (before fees)


def round_trips(
    fills: list[FillRecord],
    marks: Mapping[str, Decimal] | None = None,
    end_time: int | None = None,
) -> list[Trade]:
    """Group fills into round trips per (symbol, strategy). With ``marks`` (last price per
    symbol) and ``end_time``, a trip still open is closed there with reason ``end_of_data``.

    Exact: every sum is the same Decimal operation in the same order as a fill-by-fill ledger
    would do it (the test keeps a dict-based reference implementation and compares)."""
    open_: dict[tuple[str, str], _Trip] = {}
    trades: list[Trade] = []
    for rec in fills:
        f = rec.fill
        key = (f.symbol, f.strategy)
        signed = f.qty * f.side.sign
        price = f.price
        cur = open_.get(key)
        if cur is None:
            cur = open_[key] = _Trip(f.ts_event, signed)
        before = cur.pos
        after = before + signed
        # Part of this fill that opens/increases the position vs. part that closes it.
        if before == 0 or (before > 0) == (signed > 0):
            size = abs(signed)
            cur.entry_qty += size
            cur.entry_value += size * price
            cur.fees += f.fee
            cur.flow -= signed * price
        else:
            size = abs(signed)
            closing = min(size, abs(before))
            frac = closing / size
            cur.exit_qty += closing
            cur.exit_value += closing * price
            cur.fees += f.fee * frac
            cur.pnl += rec.realized_pnl
            cur.flow += closing * price * (1 if before > 0 else -1)
            if after == 0 or (after > 0) != (before > 0):
                trades.append(_close_trip(key, cur, f.ts_event, rec.reason.value))
                del open_[key]
                if after != 0:  # flipped: the rest opens a new trip
                    new = open_[key] = _Trip(f.ts_event, ZERO)
                    new.entry_qty = abs(after)
                    new.entry_value = abs(after) * price
                    new.fees = f.fee * (1 - frac)
                    new.flow = -after * price
                    new.pos = after
                    new.side = "long" if after > 0 else "short"
                    new.max = abs(after)
                continue
        cur.pos = after
        size = abs(after)
        if size > cur.max:  # max() keeps the first of equals: so does this
            cur.max = size
    for key, cur in open_.items():
        mark = (marks or {}).get(key[0])
        if mark is not None and end_time is not None:
            trades.append(_mark_trip(key, cur, end_time, mark))
        else:
            trades.append(_close_trip(key, cur, None, ""))
    trades.sort(key=lambda t: (t.entry_time, t.symbol, t.strategy))
    return trades


def _close_trip(key: tuple[str, str], cur: _Trip, exit_time: int | None, reason: str) -> Trade:
    entry_price = cur.entry_value / cur.entry_qty if cur.entry_qty else ZERO
    exit_price = cur.exit_value / cur.exit_qty if cur.exit_qty else None
    return Trade(
        symbol=key[0],
        strategy=key[1],
        side=cur.side,
        entry_time=cur.entry_time,
        exit_time=exit_time,
        qty=max(cur.max, cur.entry_qty if exit_time else cur.max),
        entry_price=entry_price,
        exit_price=exit_price,
        pnl=cur.pnl - cur.fees,
        fees=cur.fees,
        exit_reason=reason,
    )


def _mark_trip(key: tuple[str, str], cur: _Trip, end_time: int, mark: Decimal) -> Trade:
    """A trip open at the end, closed at ``mark`` on paper: PnL is the cash its fills moved
    plus the open quantity at the mark, net of fees; the exit price averages the exits made
    and the open rest at the mark."""
    open_qty = abs(cur.pos)
    exit_qty = cur.exit_qty + open_qty
    entry_price = cur.entry_value / cur.entry_qty if cur.entry_qty else ZERO
    return Trade(
        symbol=key[0],
        strategy=key[1],
        side=cur.side,
        entry_time=cur.entry_time,
        exit_time=end_time,
        qty=cur.max,
        entry_price=entry_price,
        exit_price=(cur.exit_value + open_qty * mark) / exit_qty if exit_qty else mark,
        pnl=cur.flow + cur.pos * mark - cur.fees,
        fees=cur.fees,
        exit_reason=ExitReason.END_OF_DATA.value,
    )


def compute_metrics(
    times: npt.NDArray[np.int64],
    equity: npt.NDArray[np.float64],
    exposure: npt.NDArray[np.float64],
    trades: list[Trade],
    fills: list[FillRecord],
    initial: float,
) -> dict[str, float]:
    nan = float("nan")
    m: dict[str, float] = {}
    n = len(equity)
    if n == 0:
        return {"bars": 0.0}
    final = float(equity[-1])
    m["bars"] = float(n)
    m["initial_equity"] = initial
    m["final_equity"] = final
    m["total_return"] = final / initial - 1.0
    span = float(times[-1] - times[0]) if n > 1 else 0.0
    years = span / YEAR_NS if span > 0 else nan
    m["annualized_return"] = (
        (final / initial) ** (1.0 / years) - 1.0 if years and years == years and final > 0 else nan
    )
    series = np.concatenate([[initial], equity])
    with np.errstate(divide="ignore", invalid="ignore"):  # a perpetual liquidated to zero
        rets = np.diff(series) / series[:-1]
    bar_ns = span / (n - 1) if n > 1 else nan
    per_year = YEAR_NS / bar_ns if bar_ns and bar_ns == bar_ns else nan
    std = float(np.std(rets, ddof=1)) if n > 1 else nan
    m["volatility"] = std * math.sqrt(per_year) if std == std else nan
    m["sharpe"] = float(np.mean(rets)) / std * math.sqrt(per_year) if std and std == std else nan
    downside = rets[rets < 0]
    dstd = float(np.sqrt(np.mean(np.square(downside)))) if len(downside) else 0.0
    m["sortino"] = float(np.mean(rets)) / dstd * math.sqrt(per_year) if dstd else nan
    del rets, downside  # a bar's worth of floats each: freed before the next ones
    peak = np.maximum.accumulate(series)
    dd = peak - series  # in place from here: the same operations, one array fewer
    dd /= peak
    m["max_drawdown"] = float(dd.max())
    del peak, dd
    m["max_drawdown_duration_s"] = _longest_underwater(np.concatenate([[times[0]], times]), series)
    ann = m["annualized_return"]
    m["calmar"] = ann / m["max_drawdown"] if m["max_drawdown"] > 0 and ann == ann else nan
    closed = [t for t in trades if t.closed_by_order]
    wins = [float(t.pnl) for t in closed if t.pnl > 0]
    losses = [float(t.pnl) for t in closed if t.pnl <= 0]
    m["trades"] = float(len(closed))
    m["win_rate"] = len(wins) / len(closed) if closed else nan
    m["profit_factor"] = sum(wins) / -sum(losses) if losses and sum(losses) < 0 else nan
    m["exposure"] = float(np.mean(exposure > 0))
    notional = sum((float(r.fill.price * r.fill.qty) for r in fills), 0.0)
    m["turnover"] = notional / float(np.mean(equity)) if float(np.mean(equity)) > 0 else nan
    m["fees_paid"] = sum((float(r.fill.fee) for r in fills), 0.0)
    m["slippage_paid"] = sum((float(r.slippage_cost) for r in fills), 0.0)
    return m


def _longest_underwater(times: npt.NDArray[np.int64], equity: npt.NDArray[np.float64]) -> float:
    """The longest time (s) between leaving an equity peak and getting back to it (or to the
    last bar), from arrays: a bar is at a peak when its equity is >= every earlier one (NaN
    never is, and never raises the peak), a spell below begins at the first bar under the peak
    and ends at the next bar at one. The same answer as walking the bars one by one, to the
    nanosecond, without a Python loop over a million points."""
    n = len(equity)
    if n == 0:
        return 0.0
    eq = np.asarray(equity, dtype=np.float64)
    ts = np.asarray(times, dtype=np.int64)
    # the peak before each bar (-inf before the first); fmax skips NaN as the comparison does
    before = np.fmax.accumulate(np.concatenate(([-math.inf], eq[:-1])))
    at_peak = eq >= before
    below = ~at_peak
    starts = np.flatnonzero(below & np.concatenate(([True], at_peak[:-1])))
    if not len(starts):
        return 0.0
    ends = np.flatnonzero(at_peak & np.concatenate(([False], below[:-1])))
    spells = ts[ends] - ts[starts[: len(ends)]]
    if len(ends) < len(starts):  # still below at the last bar
        spells = np.append(spells, ts[-1] - ts[starts[-1]])
    longest = max(0, int(spells.max()))
    return longest / 1e9


def build_result(
    config: BacktestConfig,
    times: npt.NDArray[np.int64],
    equity: npt.NDArray[np.float64],
    exposure: npt.NDArray[np.float64],
    fills: list[FillRecord],
    orders: list[Order],
    portfolio: Portfolio | PerpAccount,
    denials: list[tuple[int, str, str]],
    halted_at: int | None,
    *,
    risk_config: RiskConfig | None = None,
    halt: HaltSnapshot | None = None,
    perp: PerpSummary | None = None,
) -> BacktestResult:
    end_time = int(times[-1]) if len(times) else None
    trades = round_trips(fills, portfolio.marks, end_time)
    metrics = compute_metrics(times, equity, exposure, trades, fills, float(config.initial_cash))
    return BacktestResult(
        times=times,
        equity=equity,
        exposure=exposure,
        fills=fills,
        orders=orders,
        trades=trades,
        metrics=metrics,
        final_cash=portfolio.cash.get(portfolio.quote_asset, ZERO),
        final_equity=portfolio.equity(),
        denials=denials,
        halted_at=halted_at,
        risk=summarize_risk(
            risk_config,
            times,
            config.initial_cash,
            float(equity[-1]) if len(equity) else None,
            denials,
            halt,
            portfolio.marks,
            perp=perp is not None,
        ),
        perp=perp,
    )
