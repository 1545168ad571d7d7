"""The report's plotly figures: downsampled for display, from the full data.

Only trace types of plotly.js's *basic* bundle (scatter, bar) are used: the report embeds that
bundle (1.2 MB) instead of the full one (4.8 MB). Times go to plotly as float64 milliseconds on
a date axis and values as float32 (7 significant digits, finer than a pixel), which plotly.py
sends as base64 typed arrays: 16 bytes a point instead of ~40 as ISO strings and JSON floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tessera.backtest.data import BarSeries
from tessera.backtest.report_data import SymbolPnl, TradeRow, drawdown_pct, minmax_indices
from tessera.backtest.results import BacktestResult
from tessera.execution.orders import ExitReason

MAX_POINTS = 2_000  # per line trace; min/max per bucket keeps the curve's extremes
MAX_MARKERS = 2_000  # fill markers per side and symbol; more are thinned (and the legend says so)
_LAYOUT = {
    "template": "none",  # plotly's default template weighs ~9 kB per figure
    "font": {"family": "-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif", "size": 12},
    "margin": {"t": 40, "b": 30, "l": 60, "r": 20},
    "legend": {"orientation": "h"},
    "hovermode": "x unified",
}
_GRID = {"showgrid": True, "gridcolor": "#eee", "zeroline": False}
CONFIG = {"displaylogo": False, "responsive": True}


def _ms(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """ns since the epoch -> float ms, what a plotly date axis reads as a number."""
    out: npt.NDArray[np.float64] = ns.astype(np.float64) / 1e6
    return out


def _line(
    times: npt.NDArray[np.int64], values: npt.NDArray[np.float64], name: str, **kw: object
) -> go.Scatter:
    idx = minmax_indices(values, MAX_POINTS)
    y = values[idx].astype(np.float32)
    return go.Scatter(x=_ms(times[idx]), y=y, name=name, mode="lines", **kw)


def equity_figure(result: BacktestResult, baselines: Mapping[str, BacktestResult]) -> go.Figure:
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.7, 0.3],
        vertical_spacing=0.06,
        subplot_titles=("Equity", "Drawdown"),
    )
    for name, res in {"strategy": result, **baselines}.items():
        width = 2 if name == "strategy" else 1
        fig.add_trace(_line(res.times, res.equity, name, line={"width": width}), 1, 1)
    fig.add_trace(
        _line(
            result.times,
            drawdown_pct(result),
            "drawdown %",
            fill="tozeroy",
            line={"color": "#d62728", "width": 1},
        ),
        2,
        1,
    )
    if result.halted_at is not None:
        at = float(result.halted_at) / 1e6
        fig.add_vline(x=at, line={"color": "black", "dash": "dot"})
        fig.add_annotation(
            x=at, y=1, yref="paper", text="kill-switch", showarrow=False, yanchor="bottom"
        )
    fig.update_xaxes(type="date", **_GRID)
    fig.update_yaxes(title_text="equity", row=1, col=1, **_GRID)
    fig.update_yaxes(title_text="%", row=2, col=1, **_GRID)
    fig.update_layout(height=520, **_LAYOUT)
    return fig


def _fill_markers(result: BacktestResult, symbol: str) -> list[go.Scatter]:
    fills = [r.fill for r in result.fills if r.fill.symbol == symbol]
    liq = [
        r.fill
        for r in result.fills
        if r.fill.symbol == symbol and r.reason is ExitReason.LIQUIDATION
    ]
    liquidated = {f.trade_id for f in liq}
    traces = []
    if liq:  # a perpetual closed by the exchange: a marker of its own, never thinned
        traces.append(
            go.Scatter(
                x=_ms(np.array([f.ts_event for f in liq], dtype=np.int64)),
                y=np.array([float(f.price) for f in liq], dtype=np.float64),
                customdata=np.array([float(f.qty) for f in liq], dtype=np.float64),
                mode="markers",
                name="liquidation",
                marker={"color": "#000000", "symbol": "x", "size": 14},
                hovertemplate="LIQUIDATED %{customdata:.6~g} @ %{y:.8~g}<extra></extra>",
            )
        )
    for side, color, marker in (
        ("BUY", "#2ca02c", "triangle-up"),
        ("SELL", "#d62728", "triangle-down"),
    ):
        sel = [f for f in fills if f.side.value == side and f.trade_id not in liquidated]
        if not sel:
            continue
        step = -(-len(sel) // MAX_MARKERS)  # ceil
        shown = sel[::step]
        name = side.lower() if step == 1 else f"{side.lower()} (1 in {step} of {len(sel):,})"
        traces.append(
            go.Scatter(
                x=_ms(np.array([f.ts_event for f in shown], dtype=np.int64)),
                y=np.array([float(f.price) for f in shown], dtype=np.float64),
                customdata=np.array([float(f.qty) for f in shown], dtype=np.float32),
                mode="markers",
                name=name,
                marker={"color": color, "symbol": marker, "size": 8},
                hovertemplate=f"{side} %{{customdata:.6~g}} @ %{{y:.8~g}}<extra></extra>",
            )
        )
    return traces


def symbol_figure(result: BacktestResult, bars: BarSeries, pnl: SymbolPnl, label: str) -> go.Figure:
    """One symbol: its close with the fills on it, and its PnL (realized + unrealized, net of
    fees) at each bar close."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.65, 0.35],
        vertical_spacing=0.08,
        subplot_titles=(f"{label}: price with fills", f"{label}: PnL (realized + unrealized)"),
    )
    fig.add_trace(
        _line(bars.close_time, bars.close, "close", line={"color": "#7f7f7f", "width": 1}), 1, 1
    )
    for trace in _fill_markers(result, bars.symbol):
        fig.add_trace(trace, 1, 1)
    fig.add_trace(
        _line(pnl.times, pnl.curve, "PnL", fill="tozeroy", line={"color": "#1f77b4", "width": 1}),
        2,
        1,
    )
    fig.update_xaxes(type="date", **_GRID)
    fig.update_yaxes(title_text="price", row=1, col=1, **_GRID)
    fig.update_yaxes(title_text="PnL", row=2, col=1, **_GRID)
    fig.update_layout(height=560, **_LAYOUT)
    return fig


def pnl_histogram(rows: Sequence[TradeRow]) -> go.Figure:
    """Closed trades' PnL (net of fees); trades open at the end are left out (and counted)."""
    pnl = np.array([float(r.trade.pnl) for r in rows if not r.is_open], dtype=np.float64)
    n_open = sum(1 for r in rows if r.is_open)
    fig = go.Figure()
    if len(pnl):
        counts, edges = np.histogram(pnl, bins=min(60, max(10, len(pnl) // 5)))
        fig.add_trace(
            go.Bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=counts,
                width=float(edges[1] - edges[0]) if len(edges) > 1 else None,
                marker={"color": "#1f77b4"},
                hovertemplate="PnL ≈ %{x:,.2f}: %{y} trades<extra></extra>",
            )
        )
    fig.add_vline(x=0, line={"color": "black", "width": 1})
    extra = f"; {n_open} open at the end not included" if n_open else ""
    fig.update_layout(
        title=f"Trade PnL distribution ({len(pnl)} closed trades, net of fees{extra})",
        xaxis_title="PnL (quote)",
        yaxis_title="trades",
        height=340,
        bargap=0.05,
        **{**_LAYOUT, "hovermode": "closest"},
    )
    fig.update_xaxes(**_GRID)
    fig.update_yaxes(**_GRID)
    return fig
