"""A self-contained HTML report of a backtest (plotly, no network needed to open it).

Sections: warnings (risk halts, denials: whatever the caller passes) at the very top; for a
perpetual, funding, the mark and funding sources, liquidations and margin stats (a liquidation is
also an x on its symbol's price chart); headline
metrics (with baselines side by side); equity and drawdown; per symbol its PnL (realized and
unrealized) and price with fills; returns per day (runs under ~3 months, a calendar) or per month
(only the months the run covers); trade PnL distribution; trades by exit reason; the trade list
with PnL (open trades marked at the last close), MAE/MFE, duration and exit reason.

Size: plotly.js is embedded once (the basic bundle, see ``report_assets/README.md``) and every
figure is a div that uses it; curves are downsampled for display only (min/max per bucket, a few
thousand points per trace), the numbers are computed on the full data (``report_data``). A
month of 1-minute bars makes a report of about 1.4 MB.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from tessera import __version__
from tessera.backtest.data import BarSeries
from tessera.backtest.report_data import (
    DAILY_CALENDAR_MAX_DAYS,
    SymbolPnl,
    TradeRow,
    interval_label,
    monthly_returns,
    period_returns,
    run_days,
    symbol_pnl,
    trade_rows,
)
from tessera.backtest.report_figures import CONFIG, equity_figure, pnl_histogram, symbol_figure
from tessera.backtest.results import BacktestResult, perp_summary_lines
from tessera.logging import get_logger

__all__ = ["PLOTLY_JS", "monthly_returns", "period_returns", "write_report"]

log = get_logger(__name__)

PLOTLY_JS = Path(__file__).with_name("report_assets") / "plotly-basic-4.1.1.min.js"
TRADE_ROWS = 200  # rows in the HTML trade list (first and last half); all in trades.parquet

_METRICS = [
    ("total_return", "Total return", "pct"),
    ("annualized_return", "Annualized return", "pct"),
    ("volatility", "Volatility (ann.)", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("calmar", "Calmar", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration_s", "Max drawdown duration", "dur"),
    ("trades", "Trades (closed by an order)", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("exposure", "Exposure", "pct"),
    ("turnover", "Turnover (x equity)", "num"),
    ("fees_paid", "Fees paid", "money"),
    ("slippage_paid", "Slippage paid", "money"),
    ("final_equity", "Final equity", "money"),
]


def _fmt(value: float | None, kind: str) -> str:
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


def _price(value: float | None) -> str:
    """Prices of any magnitude: 2 decimals from 100 up, 6 significant digits below
    (an XRP/ETH price of 0.0014158 is not 0.00)."""
    if value is None:
        return ""
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.6g}"


def _ts(ns: int) -> str:
    """To the minute; a bar's close time (its last ns) shows as the minute it closes at."""
    seconds = (int(ns) + 500_000_000) // 1_000_000_000
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def _metrics_table(result: BacktestResult, baselines: Mapping[str, BacktestResult]) -> str:
    cols = {"strategy": result, **baselines}
    head = "".join(f"<th>{html.escape(n)}</th>" for n in cols)
    rows = []
    for key, label, kind in _METRICS:
        cells = "".join(
            f"<td data-metric='{key}'>{_fmt(r.metrics.get(key, float('nan')), kind)}</td>"
            for r in cols.values()
        )
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    return f"<table class='metrics'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _symbol_table(pnls: Sequence[SymbolPnl]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(p.symbol)}</th><td>{p.fills:,}</td><td>{p.closed_trades:,}</td>"
        f"<td>{p.open_trades:,}</td><td>{_fmt(float(p.realized), 'money')}</td>"
        f"<td>{_fmt(float(p.unrealized), 'money')}</td><td>{_fmt(float(p.fees), 'money')}</td>"
        f"<td class='{'win' if p.total > 0 else 'loss'}' data-symbol-pnl='{html.escape(p.symbol)}'>"
        f"{_fmt(float(p.total), 'money')}</td></tr>"
        for p in pnls
    )
    return (
        "<table class='symbols'><tr><th>symbol</th><th>fills</th><th>closed trades</th>"
        "<th>open at end</th><th>realized (net of fees)</th><th>unrealized (last close)</th>"
        "<th>fees</th><th>PnL</th></tr>" + rows + "</table>"
    )


def _cell(ret: float | None, label: str = "", partial: bool = False, scale: float = 1.0) -> str:
    if ret is None or math.isnan(ret):
        return f"<td class='empty'>{label}</td>"
    alpha = min(1.0, abs(ret) / scale) * 0.8 if scale > 0 else 0.0
    rgb = "44,160,44" if ret >= 0 else "214,39,40"
    mark = "*" if partial else ""
    sub = f"<small>{label}</small><br>" if label else ""
    return f"<td style='background:rgba({rgb},{alpha:.2f})'>{sub}{ret * 100:+.2f}%{mark}</td>"


def _compound(rets: Sequence[float]) -> float:
    return float(np.prod([1 + r for r in rets]) - 1) if rets else float("nan")


def _daily_calendar(result: BacktestResult) -> str:
    days = period_returns(result, "1d")
    scale = float(days["return"].abs().max() or 0.0)  # type: ignore[arg-type]
    weeks: dict[str, list[str]] = {}
    week_rets: dict[str, list[float]] = {}
    for row in days.iter_rows(named=True):
        t: datetime = row["time"]
        monday = (t - timedelta(days=t.weekday())).strftime("%Y-%m-%d")
        cells = weeks.setdefault(monday, ["<td class='empty'></td>"] * 7)
        cells[t.weekday()] = _cell(row["return"], t.strftime("%b %d"), row["partial"], scale)
        week_rets.setdefault(monday, []).append(row["return"])
    rows = "".join(
        f"<tr><th>{w}</th>{''.join(cells)}{_cell(_compound(week_rets[w]), '', False, scale)}</tr>"
        for w, cells in weeks.items()
    )
    head = "".join(f"<th>{d}</th>" for d in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
    return (
        "<h2>Daily returns</h2><table class='returns'><tr><th>week of</th>"
        f"{head}<th>week</th></tr>{rows}</table>"
        "<p class='note'>UTC days, from the equity at each day's last bar. "
        "* a day the run covers only in part.</p>"
    )


def _monthly_grid(result: BacktestResult) -> str:
    months = monthly_returns(result)
    scale = float(months["return"].abs().max() or 0.0)  # type: ignore[arg-type]
    present = sorted(set(months["month"].to_list()))
    names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    by_year: dict[int, dict[int, tuple[float, bool]]] = {}
    for row in months.iter_rows(named=True):
        by_year.setdefault(row["year"], {})[row["month"]] = (row["return"], row["partial"])
    rows = []
    for year, cells in sorted(by_year.items()):
        tds = "".join(
            _cell(cells[m][0], "", cells[m][1], scale) if m in cells else "<td class='empty'></td>"
            for m in present
        )
        total = _compound([r for r, _ in cells.values()])
        rows.append(f"<tr><th>{year}</th>{tds}{_cell(total, '', False, scale)}</tr>")
    head = "".join(f"<th>{names[m - 1]}</th>" for m in present)
    return (
        "<h2>Monthly returns</h2><table class='returns'><tr><th></th>"
        f"{head}<th>year</th></tr>{''.join(rows)}</table>"
        "<p class='note'>UTC months the run covers, from the equity at each month's last bar. "
        "* a month the run covers only in part.</p>"
    )


def _returns_section(result: BacktestResult) -> str:
    if len(result.times) < 2:
        return "<h2>Returns</h2><p>Fewer than two bars: no returns.</p>"
    if run_days(result) < DAILY_CALENDAR_MAX_DAYS:
        return _daily_calendar(result)
    return _monthly_grid(result)


def _exit_reason_table(rows: Sequence[TradeRow]) -> str:
    """Trades per exit reason: how many, and their PnL (net of fees; end_of_data marked)."""
    counts: dict[str, int] = {}
    pnl: dict[str, float] = {}
    for r in rows:
        reason = r.trade.exit_reason or "open (not marked)"
        counts[reason] = counts.get(reason, 0) + 1
        pnl[reason] = pnl.get(reason, 0.0) + float(r.trade.pnl)
    if not counts:
        return "<p>No trades.</p>"
    body = "".join(
        f"<tr><th>{html.escape(reason)}</th><td>{counts[reason]:,}</td>"
        f"<td>{pnl[reason]:,.2f}</td></tr>"
        for reason in sorted(counts)
    )
    return (
        "<table class='reasons'><tr><th>exit reason</th><th>trades</th><th>PnL</th></tr>"
        + body
        + "</table>"
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    days, rem = divmod(int(seconds), 86_400)
    hours, minutes = rem // 3600, rem % 3600 // 60
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m"


def _shown_rows(rows: Sequence[TradeRow], limit: int) -> list[int | None]:
    """Row indices to list (``None`` marks a gap): all of them up to ``limit``, else the first
    and last ``limit // 2`` — and every trade open at the end, wherever it falls."""
    if len(rows) <= limit:
        return list(range(len(rows)))
    half = limit // 2
    keep = set(range(half)) | set(range(len(rows) - half, len(rows)))
    keep |= {i for i, r in enumerate(rows) if r.is_open}
    out: list[int | None] = []
    for i in sorted(keep):
        if out and out[-1] is not None and i != out[-1] + 1:
            out.append(None)
        out.append(i)
    return out


def _trade_row(r: TradeRow) -> str:
    t = r.trade
    if t.exit_time is None:
        exit_ = "open (no bars to mark)"
    elif r.is_open:
        exit_ = f"open · marked {_ts(t.exit_time)}"
    else:
        exit_ = _ts(t.exit_time)
    cls = ("win" if t.pnl > 0 else "loss") + (" open" if r.is_open else "")
    mae = "" if r.mae is None else f"{r.mae:,.2f} ({(r.mae_pct or 0) * 100:.2f}%)"
    mfe = "" if r.mfe is None else f"{r.mfe:,.2f} ({(r.mfe_pct or 0) * 100:.2f}%)"
    exit_px = _price(None if t.exit_price is None else float(t.exit_price))
    return (
        f"<tr class='{cls}'><td>{html.escape(t.symbol)}</td><td>{html.escape(t.side)}</td>"
        f"<td>{_ts(t.entry_time)}</td><td>{exit_}</td><td>{_duration(r.duration_s)}</td>"
        f"<td>{t.qty}</td><td>{_price(float(t.entry_price))}</td><td>{exit_px}</td>"
        f"<td>{mae}</td><td>{mfe}</td><td>{html.escape(t.exit_reason)}</td>"
        f"<td class='pnl'>{t.pnl:,.2f}</td></tr>"
    )


def _trade_table(rows: Sequence[TradeRow], limit: int = TRADE_ROWS) -> str:
    shown = _shown_rows(rows, limit)
    hidden = len(rows) - sum(1 for i in shown if i is not None)
    body = "".join(
        _trade_row(rows[i])
        if i is not None
        else f"<tr><td colspan='12' class='gap'>… {hidden:,} trades not listed here: "
        "every trade is in trades.parquet …</td></tr>"
        for i in shown
    )
    return (
        "<table class='trades'><tr><th>symbol</th><th>side</th><th>entry</th><th>exit</th>"
        "<th>duration</th><th>qty</th><th>entry px</th><th>exit px</th><th>MAE</th><th>MFE</th>"
        "<th>exit reason</th><th>PnL</th></tr>" + body + "</table>"
        "<p class='note'>PnL net of fees; a trade open at the end is marked at the last close "
        "(reason end_of_data; no fill is invented). MAE/MFE: the worst and best price move while "
        "the trade was on, from bar lows and highs (bar resolution), times its largest size.</p>"
    )


def _perp_section(result: BacktestResult) -> str:
    """Perpetuals: funding, the mark and funding sources, liquidations, margin stats."""
    lines = perp_summary_lines(result)
    if not lines:
        return ""
    items = "".join(
        f"<li{' class=liq' if line.startswith('LIQUIDATED') else ''}>{html.escape(line)}</li>"
        for line in lines
    )
    head = "<h2>Perpetual: funding, margin, liquidation</h2>"
    return f"<section class='perp'>{head}<ul>{items}</ul></section>"


def _warnings_box(warnings: Sequence[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return f"<div class='warnings' role='alert'><b>Warnings</b><ul>{items}</ul></div>"


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#222}
h1{margin-bottom:4px} .sub{color:#555;margin-top:0} .market{font-size:18px;margin:4px 0}
.warnings{border:2px solid #d62728;background:#fdecea;padding:8px 16px;margin:0 0 16px 0}
.warnings ul{margin:4px 0}
.perp .liq{color:#d62728;font-weight:bold}
table{border-collapse:collapse;margin:12px 0;font-size:14px}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
table.metrics th:first-child,table.reasons th:first-child{text-align:left}
table.symbols th:first-child{text-align:left}
tr.win td.pnl,td.win{color:#2ca02c} tr.loss td.pnl,td.loss{color:#d62728}
tr.open td{font-style:italic;background:#fffbe6}
td.gap{text-align:center;color:#666}
table.returns td{min-width:64px} table.returns td.empty{background:#fafafa}
.note{color:#666;font-size:13px}
section{margin:28px 0}
"""


def _figure_div(fig: go.Figure) -> str:
    div: str = fig.to_html(full_html=False, include_plotlyjs=False, config=CONFIG)
    return div


def write_report(
    result: BacktestResult,
    series: BarSeries | Sequence[BarSeries],
    path: Path,
    *,
    title: str = "Backtest report",
    baselines: Mapping[str, BacktestResult] | None = None,
    notes: Mapping[str, str] | None = None,
    warnings: Sequence[str] = (),
    venue: str | None = None,
) -> Path:
    """Write the report to ``path`` (atomically) and return it.

    ``series`` is the bars the backtest ran on: one ``BarSeries``, or several for a
    multi-symbol report (one equity curve, a panel per symbol). The symbols shown are the
    series' own and ``venue`` is the data's venue (say ``"FTX"`` for the bundled BTC-PERP
    sample): both come from the data, not from a config default. ``warnings`` are shown at
    the very top in a box (risk halts, denied orders).
    """
    all_series = [series] if isinstance(series, BarSeries) else list(series)
    baselines = dict(baselines or {})
    rows = trade_rows(result, all_series)
    unmarked = [r for r in rows if r.trade.exit_time is None]
    if unmarked:
        log.warning("report: open trades without bars to mark them", trades=len(unmarked))
    traded = {r.fill.symbol for r in result.fills}
    missing = sorted(traded - {s.symbol for s in all_series})
    shown_warnings = list(warnings)
    if missing:
        shown_warnings.append(
            f"fills on {', '.join(missing)} have no bars in this report: those symbols' panels "
            "are missing (their trades are listed, open ones unmarked)"
        )
    pnls = [symbol_pnl(result, s, rows) for s in all_series if len(s)]
    labels = {s.symbol: (f"{s.symbol} ({venue})" if venue else s.symbol) for s in all_series}
    symbols_text = ", ".join(s.symbol for s in all_series) or "no bars"
    market = symbols_text + (f" · {venue}" if venue else "")
    starts = [int(s.open_time[0]) for s in all_series if len(s)]
    ends = [int(s.close_time[-1]) for s in all_series if len(s)]
    n_bars = sum(len(s) for s in all_series)
    span = f"{_ts(min(starts))} → {_ts(max(ends))} UTC" if starts else "no bars"
    interval = interval_label(all_series)
    sub = " · ".join(
        x
        for x in (
            f"{interval} bars" if interval else "",
            span,
            f"{n_bars:,} bars",
            f"generated by Tessera {__version__}",
        )
        if x
    )
    info = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in (notes or {}).items()
    )
    figs = [_figure_div(equity_figure(result, baselines))]
    by_symbol = {s.symbol: s for s in all_series}
    panels = "".join(
        f"<section>{_figure_div(symbol_figure(result, by_symbol[p.symbol], p, labels[p.symbol]))}"
        "</section>"
        for p in pnls
    )
    hist = _figure_div(pnl_histogram(rows))
    n_open = sum(1 for r in rows if r.is_open)
    open_note = (
        f"<p class='note'>{n_open} trade(s) open at the end, marked at the last close.</p>"
        if n_open
        else ""
    )
    doc = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(f"{title} · {market}")}</title><style>{_CSS}</style>
<script type="text/javascript">{PLOTLY_JS.read_text(encoding="utf-8")}</script></head><body>
{_warnings_box(shown_warnings)}
<h1>{html.escape(title)}</h1>
<p class="market"><b>{html.escape(market)}</b></p>
<p class="sub">{html.escape(sub)}</p>
<ul>{info}</ul>
{_perp_section(result)}
<section><h2>Metrics</h2>{_metrics_table(result, baselines)}</section>
<section>{figs[0]}</section>
<section><h2>Per symbol</h2>{_symbol_table(pnls)}</section>
{panels}
<section>{_returns_section(result)}</section>
<section>{hist}</section>
<section><h2>Exit reasons</h2>{_exit_reason_table(rows)}</section>
<section><h2>Trades</h2>{open_note}{_trade_table(rows)}</section>
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)
    return path
