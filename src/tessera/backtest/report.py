"""A self-contained HTML report of a backtest (plotly, no network needed to open it).

Sections: headline metrics (with baselines side by side), equity and drawdown, price with
entries and exits, monthly returns heatmap, trade PnL distribution, the trades by exit reason
(signal, stop_loss, take_profit, trailing_stop, oco, kill_switch, end_of_data) and the trade
list with each trade's exit reason.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from tessera import __version__
from tessera.backtest.data import BarSeries
from tessera.backtest.results import BacktestResult

_MAX_PRICE_POINTS = 20_000  # plotly stays responsive; min/max per bucket keeps the shape

_METRICS = [
    ("total_return", "Total return", "pct"),
    ("annualized_return", "Annualized return", "pct"),
    ("volatility", "Volatility (ann.)", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("calmar", "Calmar", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration_s", "Max drawdown duration", "dur"),
    ("trades", "Trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("exposure", "Exposure", "pct"),
    ("turnover", "Turnover (x equity)", "num"),
    ("fees_paid", "Fees paid", "money"),
    ("slippage_paid", "Slippage paid", "money"),
    ("final_equity", "Final equity", "money"),
]


def _fmt(value: float, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{value * 100:,.2f}%"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "dur":
        days, rem = divmod(int(value), 86_400)
        return f"{days}d {rem // 3600}h {rem % 3600 // 60}m"
    return f"{value:,.3f}"


def _dt(ns: np.ndarray) -> np.ndarray:
    return ns.astype("datetime64[ns]")


def _downsample(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(values)
    if n <= _MAX_PRICE_POINTS:
        return times, values
    buckets = _MAX_PRICE_POINTS // 2
    edges = np.linspace(0, n, buckets + 1, dtype=np.int64)
    idx: list[int] = []
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        seg = values[a:b]
        lo, hi = a + int(np.argmin(seg)), a + int(np.argmax(seg))
        idx.extend(sorted({lo, hi}))
    sel = np.asarray(idx)
    return times[sel], values[sel]


def _equity_figure(result: BacktestResult, baselines: Mapping[str, BacktestResult]) -> go.Figure:
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.7, 0.3],
        vertical_spacing=0.04,
        subplot_titles=("Equity", "Drawdown"),
    )
    curves = {"strategy": result, **baselines}
    for name, res in curves.items():
        t, e = _downsample(res.times, res.equity)
        fig.add_trace(
            go.Scattergl(
                x=_dt(t),
                y=e,
                name=name,
                mode="lines",
                line={"width": 2 if name == "strategy" else 1},
            ),
            1,
            1,
        )
    peak = np.maximum.accumulate(result.equity)
    dd = -(peak - result.equity) / peak * 100
    t, d = _downsample(result.times, dd)
    fig.add_trace(
        go.Scattergl(
            x=_dt(t), y=d, name="drawdown %", fill="tozeroy", line={"color": "#d62728", "width": 1}
        ),
        2,
        1,
    )
    if result.halted_at is not None:
        fig.add_vline(
            x=_dt(np.array([result.halted_at]))[0], line={"color": "black", "dash": "dot"}
        )
        fig.add_annotation(
            x=_dt(np.array([result.halted_at]))[0],
            y=1,
            yref="paper",
            text="kill-switch",
            showarrow=False,
            yanchor="bottom",
        )
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="%", row=2, col=1)
    fig.update_layout(height=560, margin={"t": 40, "b": 30}, legend={"orientation": "h"})
    return fig


def _price_figure(result: BacktestResult, bars: BarSeries) -> go.Figure:
    fig = go.Figure()
    t, c = _downsample(bars.close_time, bars.close)
    fig.add_trace(
        go.Scattergl(
            x=_dt(t),
            y=c,
            name=f"{bars.symbol} close",
            mode="lines",
            line={"color": "#7f7f7f", "width": 1},
        )
    )
    fills = [r.fill for r in result.fills if r.fill.symbol == bars.symbol]
    for side, color, symbol in (
        ("BUY", "#2ca02c", "triangle-up"),
        ("SELL", "#d62728", "triangle-down"),
    ):
        sel = [f for f in fills if f.side.value == side]
        if not sel:
            continue
        fig.add_trace(
            go.Scattergl(
                x=_dt(np.array([f.ts_event for f in sel], dtype=np.int64)),
                y=[float(f.price) for f in sel],
                mode="markers",
                name=side.lower(),
                marker={"color": color, "symbol": symbol, "size": 8},
                text=[f"{f.side.value} {f.qty} @ {f.price}" for f in sel],
                hoverinfo="text+x",
            )
        )
    fig.update_layout(
        title=f"{bars.symbol}: price with entries and exits", height=420, margin={"t": 40, "b": 30}
    )
    return fig


def monthly_returns(result: BacktestResult) -> pl.DataFrame:
    """Return per calendar month (UTC), from the equity at each month's last bar."""
    frame = pl.DataFrame({"t": result.times, "equity": result.equity}).with_columns(
        pl.col("t").cast(pl.Datetime("ns", "UTC")).alias("time")
    )
    month_end = (
        frame.group_by_dynamic("time", every="1mo")
        .agg(pl.col("equity").last().alias("close"))
        .sort("time")
    )
    initial = float(result.metrics.get("initial_equity", result.equity[0]))
    prev = pl.concat([pl.Series([initial]), month_end["close"].head(len(month_end) - 1)])
    return month_end.with_columns(
        (pl.col("close") / prev - 1).alias("return"),
        pl.col("time").dt.year().alias("year"),
        pl.col("time").dt.month().alias("month"),
    )


def _monthly_figure(result: BacktestResult) -> go.Figure:
    months = monthly_returns(result)
    years = sorted(set(months["year"].to_list()))
    z = np.full((len(years), 12), np.nan)
    for row in months.iter_rows(named=True):
        z[years.index(row["year"]), row["month"] - 1] = row["return"] * 100
    labels = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    text = [[("" if math.isnan(v) else f"{v:.1f}%") for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=[str(y) for y in years],
            colorscale="RdYlGn",
            zmid=0,
            text=text,
            texttemplate="%{text}",
            colorbar={"title": "%"},
        )
    )
    fig.update_layout(
        title="Monthly returns", height=160 + 40 * len(years), margin={"t": 40, "b": 30}
    )
    return fig


def _trades_figure(result: BacktestResult) -> go.Figure:
    pnl = [float(t.pnl) for t in result.trades if t.closed_by_order]
    fig = go.Figure(
        go.Histogram(x=pnl, nbinsx=min(60, max(10, len(pnl) // 5)), marker={"color": "#1f77b4"})
    )
    fig.add_vline(x=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title=f"Trade PnL distribution ({len(pnl)} closed trades, net of fees)",
        xaxis_title="PnL (quote)",
        yaxis_title="trades",
        height=360,
        margin={"t": 40, "b": 30},
    )
    return fig


def _metrics_table(result: BacktestResult, baselines: Mapping[str, BacktestResult]) -> str:
    cols = {"strategy": result, **baselines}
    head = "".join(f"<th>{html.escape(n)}</th>" for n in cols)
    rows = []
    for key, label, kind in _METRICS:
        cells = "".join(
            f"<td>{_fmt(r.metrics.get(key, float('nan')), kind)}</td>" for r in cols.values()
        )
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    return f"<table class='metrics'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _trade_table(result: BacktestResult, limit: int = 500) -> str:
    rows = []
    for t in result.trades[:limit]:
        entry = datetime.fromtimestamp(t.entry_time / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
        exit_ = (
            datetime.fromtimestamp(t.exit_time / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
            if t.exit_time
            else "open"
        )
        cls = "win" if t.pnl > 0 else "loss"
        rows.append(
            f"<tr class='{cls}'><td>{html.escape(t.symbol)}</td><td>{t.side}</td><td>{entry}</td>"
            f"<td>{exit_}</td><td>{t.qty}</td><td>{t.entry_price:.2f}</td>"
            f"<td>{'' if t.exit_price is None else f'{t.exit_price:.2f}'}</td>"
            f"<td>{html.escape(t.exit_reason)}</td><td>{t.pnl:.2f}</td></tr>"
        )
    more = (
        f"<p>… {len(result.trades) - limit} more trades in trades.parquet</p>"
        if len(result.trades) > limit
        else ""
    )
    return (
        "<table class='trades'><tr><th>symbol</th><th>side</th><th>entry</th><th>exit</th>"
        "<th>qty</th><th>entry px</th><th>exit px</th><th>exit reason</th><th>PnL</th></tr>"
        + "".join(rows)
        + "</table>"
        + more
    )


def _exit_reason_table(result: BacktestResult) -> str:
    """Closed trades per exit reason: how many, and their PnL (net of fees)."""
    counts = result.exit_reasons()
    if not counts:
        return "<p>No closed trades.</p>"
    pnl: dict[str, float] = {}
    for t in result.trades:
        if t.exit_time is not None:
            pnl[t.exit_reason] = pnl.get(t.exit_reason, 0.0) + float(t.pnl)
    rows = "".join(
        f"<tr><th>{html.escape(reason)}</th><td>{n:,}</td><td>{pnl[reason]:,.2f}</td></tr>"
        for reason, n in counts.items()
    )
    return (
        "<table class='reasons'><tr><th>exit reason</th><th>trades</th><th>PnL</th></tr>"
        + rows
        + "</table>"
    )


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{margin-bottom:4px} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:12px 0;font-size:14px}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
table.metrics th:first-child,table.reasons th:first-child{text-align:left}
tr.win td:last-child{color:#2ca02c} tr.loss td:last-child{color:#d62728}
section{margin:28px 0}
"""


def write_report(
    result: BacktestResult,
    bars: BarSeries,
    path: Path,
    title: str = "Backtest report",
    baselines: Mapping[str, BacktestResult] | None = None,
    notes: Mapping[str, str] | None = None,
) -> Path:
    """Write the report to ``path`` (atomically) and return it."""
    baselines = dict(baselines or {})
    figures = [
        _equity_figure(result, baselines),
        _price_figure(result, bars),
        _monthly_figure(result),
        _trades_figure(result),
    ]
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, fig in enumerate(figures)
    ]
    start = datetime.fromtimestamp(int(bars.open_time[0]) / 1e9, UTC) if len(bars) else None
    end = datetime.fromtimestamp(int(bars.close_time[-1]) / 1e9, UTC) if len(bars) else None
    info = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in (notes or {}).items()
    )
    doc = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="sub">{html.escape(bars.symbol)} · {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC ·
{len(bars):,} bars · generated by Tessera {__version__}</p>
<ul>{info}</ul>
<section><h2>Metrics</h2>{_metrics_table(result, baselines)}</section>
<section>{parts[0]}</section><section>{parts[1]}</section>
<section>{parts[2]}</section><section>{parts[3]}</section>
<section><h2>Exit reasons</h2>{_exit_reason_table(result)}</section>
<section><h2>Trades</h2>{_trade_table(result)}</section>
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)
    return path
