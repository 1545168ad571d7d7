"""The robustness report of an optimisation: one self-contained HTML file, read top-down.

A trader opening it wants to know, in this order: what was chosen, whether the statistics say it
is luck, and the evidence behind each verdict. So the page starts with the verdicts (Deflated
Sharpe, PBO, sensitivity, Monte Carlo, walk-forward), then the chosen parameters (and the Pareto
front of a multi-objective study), the equity curves (in-sample, and walk-forward out-of-sample
beside it when there is one), then one section per statistic with its numbers and plots, and
ends with the trial history and the trials table.

It reuses the backtest report's machinery (`tessera.backtest.report`): the same embedded
plotly.js *basic* bundle, the same CSS, metric formatting and downsampled line traces. That
bundle has only the ``scatter``, ``bar`` and ``pie`` trace types, so the PBO logit histogram is
a bar chart of ``numpy.histogram`` counts (as the backtest report's trade PnL histogram is) and
each sensitivity heatmap is an HTML table with coloured cells (as the returns calendar is): the
value of every evaluated point is readable, and no 3.6 MB full bundle is needed.

`robustness_document` is the same content as plain data: ``tessera optimize --json`` prints it,
so the report, the summary and the JSON show the same numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

from tessera import __version__
from tessera.backtest.report import _CSS, PLOTLY_JS, _figure_div, _fmt, _metrics_table
from tessera.backtest.report_figures import _GRID, _LAYOUT, _line, equity_figure

if TYPE_CHECKING:
    from tessera.backtest.results import BacktestResult
    from tessera.optimize.montecarlo import MonteCarlo
    from tessera.optimize.overfit import DeflatedSharpe, Pbo
    from tessera.optimize.sensitivity import Heatmap, Sensitivity
    from tessera.optimize.space import Dimension
    from tessera.optimize.study import OptimizationResult, TrialRecord
    from tessera.optimize.wfo import WalkForward

__all__ = [
    "TRIAL_ROWS",
    "describe_dimension",
    "robustness_document",
    "walk_forward_line",
    "write_robustness_report",
]

TRIAL_ROWS = 1_000  # rows of the trials table; beyond, the best ones (every trial is in --json)
# the metrics of a trial shown in the trials table, beside its parameters and objective values
_TRIAL_METRICS = (
    ("total_return", "total return", "pct"),
    ("sharpe", "sharpe", "num"),
    ("max_drawdown", "max drawdown", "pct"),
    ("trades", "trades", "int"),
)
_MC_ROWS = (
    ("final_return", "final return"),
    ("max_drawdown", "max drawdown"),
    ("time_under_water", "time under water"),
)
# figures with an x-axis title: room below the axis for it and the legend
_XY_LAYOUT = {
    **_LAYOUT,
    "hovermode": "closest",
    "margin": {"t": 40, "b": 60, "l": 60, "r": 20},
    "legend": {"orientation": "h", "y": -0.22},
}
_CSS_EXTRA = """
.verdicts{border:1px solid #ccc;padding:8px 16px;margin:0 0 16px 0;background:#fafafa}
.verdicts li{margin:4px 0} .ok{color:#2ca02c} .bad{color:#d62728} .meh{color:#b8860b}
.verdicts b.ok,.verdicts b.bad,.verdicts b.meh{display:inline-block;min-width:70px}
table.params th,table.stats th,table.trials th:first-child{text-align:left}
table.heat td{min-width:64px} table.heat td.best{outline:3px solid #000}
table.heat td.empty{background:#fafafa;color:#999}
tr.pruned td{color:#888;font-style:italic} tr.failed td{color:#d62728;font-style:italic}
tr.chosen td{font-weight:bold;background:#eef5ff}
"""


# --- formatting ------------------------------------------------------------------------------


def _value(value: Any) -> str:
    """A parameter or objective value: floats to 6 significant digits, the rest as written."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float | np.floating):
        return "–" if not math.isfinite(float(value)) else f"{float(value):.6g}"
    return str(value)


def _esc(value: Any) -> str:
    return html.escape(_value(value))


def _ts(ns: int) -> str:
    return datetime.fromtimestamp(int(ns) / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


def describe_dimension(dim: Dimension) -> str:
    """A search dimension as a trader reads it: ``int 5..50 step 5``, ``float 1e-4..0.1 log``,
    ``one of a, b, c``."""
    choices = getattr(dim, "choices", None)
    if choices is not None:
        return "one of " + ", ".join(_value(c) for c in choices)
    low, high = getattr(dim, "low", None), getattr(dim, "high", None)
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    text = f"{kind} {_value(low)}..{_value(high)}"
    step = getattr(dim, "step", None)
    if step is not None and step != 1:
        text += f" step {_value(step)}"
    if getattr(dim, "log", False):
        text += " log"
    return text


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _badge(kind: str, text: str) -> str:
    return f"<b class='{kind}'>{html.escape(text)}</b>"


# --- verdicts at the top ---------------------------------------------------------------------


def _sensitivity_kind(sens: Sensitivity) -> str:
    return "ok" if sens.is_plateau else ("meh" if sens.neighbours == 0 else "bad")


def _verdicts(
    dsr: DeflatedSharpe | None,
    pbo: Pbo | None,
    monte_carlo: Sequence[MonteCarlo],
    sensitivity: Sensitivity | None,
    walk_forward: WalkForward | None,
    skipped: Mapping[str, str],
) -> str:
    items = []
    if dsr is not None:
        items.append(
            _badge("ok" if dsr.passes() else "bad", "DSR")
            + f" <span data-verdict='dsr'>{html.escape(dsr.verdict())}</span>"
        )
    else:
        items.append(_badge("meh", "DSR") + " not computed: " + html.escape(skipped.get("dsr", "")))
    if pbo is not None:
        kind = "ok" if pbo.pbo <= 0.1 else ("meh" if pbo.pbo < 0.5 else "bad")  # as its verdict
        items.append(
            _badge(kind, "PBO") + f" <span data-verdict='pbo'>{html.escape(pbo.verdict())}</span>"
        )
    else:
        items.append(_badge("meh", "PBO") + " not computed: " + html.escape(skipped.get("pbo", "")))
    if sensitivity is not None:
        items.append(
            _badge(_sensitivity_kind(sensitivity), "Sensitivity")
            + f" <span data-verdict='sensitivity'>{html.escape(sensitivity.verdict())}</span>"
        )
    for mc in monte_carlo:
        worst = mc.final_return.percentile(min(mc.final_return.percentiles()))
        items.append(
            _badge("ok" if worst > 0 else "meh", "Monte Carlo") + " " + html.escape(mc.summary())
        )
    if walk_forward is not None:
        oos = walk_forward.oos_metrics.get("total_return", float("nan"))
        kind = "ok" if oos > 0 and walk_forward.efficiency >= 0.5 else "bad"
        items.append(
            _badge(kind, "Walk-forward")
            + f" <span data-verdict='wfo'>{html.escape(walk_forward_line(walk_forward))}</span>"
        )
    return f"<div class='verdicts' role='status'><b>Verdicts</b>{_list(items)}</div>"


def walk_forward_line(wf: WalkForward) -> str:
    """One line: the stitched out-of-sample result and the walk-forward efficiency."""
    m = wf.oos_metrics
    eff = wf.efficiency
    efficiency = (
        f"walk-forward efficiency {eff:.2f} (out-of-sample over in-sample annualised return)"
        if math.isfinite(eff)
        else "walk-forward efficiency undefined (the in-sample return is not positive)"
    )
    return (
        f"{len(wf.windows)} {wf.mode} windows: out-of-sample return "
        f"{_fmt(m.get('total_return'), 'pct')}, Sharpe {_fmt(m.get('sharpe'), 'num')}, "
        f"max drawdown {_fmt(m.get('max_drawdown'), 'pct')}; {efficiency}"
    )


# --- chosen parameters -----------------------------------------------------------------------


def _objectives_label(result: OptimizationResult) -> list[str]:
    return [f"{o} ({d})" for o, d in zip(result.objectives, result.directions, strict=True)]


def _params_table(result: OptimizationResult, best: TrialRecord) -> str:
    rows = []
    searched = {d.name: d for d in result.space}
    for name, value in best.params.items():
        dim = searched.get(name)
        where = describe_dimension(dim) if dim is not None else "fixed"
        rows.append(
            f"<tr><th>{html.escape(name)}</th><td data-param='{html.escape(name)}'>"
            f"{_esc(value)}</td><td>{html.escape(where)}</td></tr>"
        )
    for label, value in zip(_objectives_label(result), best.values, strict=False):
        rows.append(
            f"<tr><th>{html.escape(label)}</th><td>{_esc(value)}</td><td>objective</td></tr>"
        )
    return (
        "<table class='params'><tr><th>parameter</th><th>chosen</th><th>searched</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _pareto_table(result: OptimizationResult) -> str:
    if len(result.objectives) < 2:
        return ""
    names = [d.name for d in result.space]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["trial", *names])
    head += "".join(f"<th>{html.escape(o)}</th>" for o in _objectives_label(result))
    best_number = result.best.number if result.best is not None else None
    rows = []
    for t in sorted(result.pareto, key=lambda t: t.values[0] if t.values else math.inf):
        cls = " class='chosen'" if t.number == best_number else ""
        cells = "".join(f"<td>{_esc(t.params.get(n))}</td>" for n in names)
        cells += "".join(f"<td>{_esc(v)}</td>" for v in t.values)
        rows.append(f"<tr{cls}><td>{t.number}</td>{cells}</tr>")
    n = len(result.pareto)
    return (
        f"<h3>Pareto front ({n} trial{'' if n == 1 else 's'})</h3>"
        "<p class='note'>No trial on the front is better on every objective than another; the "
        "chosen one (bold) is the front's best on the first objective.</p>"
        f"<table class='trials'><tr>{head}</tr>{''.join(rows)}</table>"
    )


# --- equity ----------------------------------------------------------------------------------


def _walk_forward_figure(wf: WalkForward) -> go.Figure:
    fig = go.Figure()
    if len(wf.is_times):
        fig.add_trace(
            _line(wf.is_times, wf.is_equity, "in-sample (each window's pick)", line={"width": 1})
        )
    if len(wf.oos_times):
        fig.add_trace(
            _line(
                wf.oos_times,
                wf.oos_equity,
                "walk-forward out-of-sample (stitched)",
                line={"width": 2, "color": "#d62728"},
            )
        )
    for w in wf.windows:
        fig.add_vline(x=w.out_of_sample[0] / 1e6, line={"color": "#999", "dash": "dot", "width": 1})
    fig.update_xaxes(type="date", **_GRID)
    fig.update_yaxes(title_text="equity", **_GRID)
    fig.update_layout(title="In-sample vs walk-forward out-of-sample equity", height=420, **_LAYOUT)
    return fig


def _windows_table(wf: WalkForward) -> str:
    names = list(dict.fromkeys(k for w in wf.windows for k in w.params))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for w in wf.windows:
        cells = "".join(f"<td>{_esc(w.params.get(n))}</td>" for n in names)
        rows.append(
            f"<tr><td>{w.index}</td><td>{_ts(w.in_sample[0])} → {_ts(w.in_sample[1])}</td>"
            f"<td>{_ts(w.out_of_sample[0])} → {_ts(w.out_of_sample[1])}</td>{cells}"
            f"<td>{_esc(w.in_sample_value)}</td>"
            f"<td>{_fmt(w.oos_metrics.get('total_return'), 'pct')}</td>"
            f"<td>{_fmt(w.oos_metrics.get('sharpe'), 'num')}</td>"
            f"<td>{_fmt(w.oos_metrics.get('max_drawdown'), 'pct')}</td>"
            f"<td>{html.escape(w.model or '')}</td></tr>"
        )
    return (
        "<table class='trials'><tr><th>window</th><th>in-sample (UTC)</th>"
        f"<th>out-of-sample (UTC)</th>{head}<th>in-sample objective</th><th>OOS return</th>"
        "<th>OOS Sharpe</th><th>OOS max drawdown</th><th>model</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _equity_section(best_run: BacktestResult, wf: WalkForward | None) -> str:
    parts = [
        "<h2>Equity of the chosen parameters</h2>",
        "<p class='note'>In-sample: the same bars the search was run on, so this curve is the "
        "most optimistic view of the strategy. The statistics below say how much of it to "
        "believe.</p>",
        _figure_div(equity_figure(best_run, {})),
    ]
    if wf is not None:
        parts += [
            "<h2>Walk-forward out-of-sample</h2>",
            f"<p>{len(wf.windows)} {html.escape(wf.mode)} windows: each optimises on its "
            "in-sample part and trades the chosen parameters on the next out-of-sample part; "
            "the out-of-sample parts, chained, are the red curve. "
            f"<span data-stat='wfe'>{html.escape(walk_forward_line(wf))}</span>.</p>",
            _figure_div(_walk_forward_figure(wf)),
            "<h3>Out-of-sample metrics (stitched)</h3>",
            _stats_table(
                [
                    (label, _fmt(wf.oos_metrics.get(key), kind))
                    for key, label, kind in (
                        ("total_return", "total return", "pct"),
                        ("annualized_return", "annualized return", "pct"),
                        ("sharpe", "Sharpe", "num"),
                        ("max_drawdown", "max drawdown", "pct"),
                        ("trades", "trades", "int"),
                    )
                ]
            ),
            "<h3>Parameters chosen per window</h3>",
            _windows_table(wf),
        ]
    return "<section>" + "".join(parts) + "</section>"


# --- DSR and PBO -----------------------------------------------------------------------------


def _stats_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='stats'>{body}</table>"


def _trials_label(result: OptimizationResult, dsr: DeflatedSharpe) -> str:
    """N of the DSR: say which trials it counts when pruned ones were tried too."""
    complete = len(result.complete())
    if dsr.trials <= complete:
        return "trials"
    return (
        f"trials tried ({complete:,} complete + {dsr.trials - complete:,} pruned; the variance "
        "is the complete ones')"
    )


def _dsr_section(dsr: DeflatedSharpe | None, result: OptimizationResult, why: str) -> str:
    if dsr is None:
        return (
            "<section><h2>Deflated Sharpe Ratio</h2>"
            f"<p data-verdict='dsr'>Not computed: {html.escape(why)}</p></section>"
        )
    rows = [
        ("Sharpe of the chosen trial (per period)", _value(dsr.sharpe)),
        (
            f"Sharpe, annualised ({result.periods_per_year:g} periods a year)",
            _value(dsr.annualised_sharpe),
        ),
        (f"periods ({result.period})", f"{dsr.n_obs:,}"),
        ("skew of its returns", _value(dsr.skew)),
        ("kurtosis of its returns (normal = 3)", _value(dsr.kurtosis)),
        (_trials_label(result, dsr), f"{dsr.trials:,}"),
        ("variance of the trials' Sharpes", _value(dsr.sharpe_variance)),
        (
            "SR0: expected best Sharpe of that many luck-only trials",
            _value(dsr.expected_max_sharpe),
        ),
        ("SR0, annualised", _value(dsr.annualised_expected_max_sharpe)),
        ("Deflated Sharpe Ratio: P(true Sharpe > SR0)", f"<b data-stat='dsr'>{dsr.dsr:.4f}</b>"),
    ]
    return (
        "<section><h2>Deflated Sharpe Ratio</h2>"
        f"<p data-verdict='dsr'>{html.escape(dsr.verdict())}</p>"
        + _stats_table(rows)
        + "<p class='note'>Bailey &amp; López de Prado (2014): the probability that the chosen "
        "trial's true Sharpe exceeds the best Sharpe that this many trials of pure luck would "
        "reach, given the spread of the trials' Sharpes and the skew and kurtosis of the "
        "returns. Above 0.95, luck is an unlikely explanation.</p></section>"
    )


def _logit_histogram(pbo: Pbo) -> go.Figure:
    logits = np.asarray(pbo.logits, dtype=np.float64)
    logits = logits[np.isfinite(logits)]
    fig = go.Figure()
    if len(logits):
        counts, edges = np.histogram(logits, bins=min(40, max(8, len(logits) // 4)))
        mids = (edges[:-1] + edges[1:]) / 2
        colors = np.where(mids <= 0, "#d62728", "#2ca02c").tolist()
        fig.add_trace(
            go.Bar(
                x=mids,
                y=counts,
                width=float(edges[1] - edges[0]),
                marker={"color": colors},
                name="combinations",
                hovertemplate="logit ≈ %{x:.2f}: %{y} combinations<extra></extra>",
            )
        )
    fig.add_vline(x=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title=f"Logits of the in-sample best's out-of-sample rank ({len(logits)} combinations)",
        xaxis_title="logit (≤ 0: the in-sample best ranked below the median out of sample)",
        yaxis_title="combinations",
        height=340,
        bargap=0.05,
        **_XY_LAYOUT,
    )
    fig.update_xaxes(**_GRID)
    fig.update_yaxes(**_GRID)
    return fig


def _degradation_figure(pbo: Pbo) -> go.Figure:
    x = np.asarray(pbo.is_best, dtype=np.float64)
    y = np.asarray(pbo.oos_of_is_best, dtype=np.float64)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            name="combination",
            marker={"color": np.where(y > 0, "#2ca02c", "#d62728").tolist(), "size": 6},
            hovertemplate="in-sample %{x:.4g} → out-of-sample %{y:.4g}<extra></extra>",
        )
    )
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        slope, icept = np.polyfit(x[ok], y[ok], 1)
        xs = np.array([x[ok].min(), x[ok].max()])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=slope * xs + icept,
                mode="lines",
                name=f"fit: slope {slope:.2f}",
                line={"color": "#555", "dash": "dash"},
            )
        )
    fig.add_hline(y=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title="Performance degradation: the in-sample best, out of sample",
        xaxis_title="in-sample performance of the in-sample best",
        yaxis_title="its out-of-sample performance",
        height=380,
        **_XY_LAYOUT,
    )
    fig.update_xaxes(**_GRID)
    fig.update_yaxes(**_GRID)
    return fig


def _pbo_section(pbo: Pbo | None, why: str) -> str:
    head = "<section><h2>Probability of Backtest Overfitting</h2>"
    if pbo is None:
        return f"{head}<p data-verdict='pbo'>Not computed: {html.escape(why)}</p></section>"
    rows = [
        ("PBO", f"<b data-stat='pbo'>{pbo.pbo:.4f}</b>"),
        (
            "share of combinations whose in-sample best lost out of sample",
            f"{pbo.prob_oos_loss:.4f}",
        ),
        ("blocks (S)", f"{pbo.splits}"),
        ("combinations (S choose S/2)", f"{pbo.combinations:,}"),
    ]
    return (
        head
        + f"<p data-verdict='pbo'>{html.escape(pbo.verdict())}</p>"
        + _stats_table(rows)
        + _figure_div(_logit_histogram(pbo))
        + _figure_div(_degradation_figure(pbo))
        + "<p class='note'>Bailey, Borwein, López de Prado &amp; Zhu (2014), combinatorially "
        "symmetric cross-validation: the trials' returns are cut into S blocks; for every half "
        "of the blocks taken as in-sample, the trial best there is ranked among all trials on "
        "the other half. PBO is the share of those splits where it ranks below the median. "
        "Pure luck gives about 0.5; a real edge, near 0.</p></section>"
    )


# --- Monte Carlo -----------------------------------------------------------------------------


def _band_x(mc: MonteCarlo) -> npt.NDArray[np.int64]:
    """The step of each band point: `MonteCarlo.band_steps` (long paths are sampled), else
    every step."""
    n = len(next(iter(mc.bands.values()))) if mc.bands else 0
    steps = np.asarray(mc.band_steps, dtype=np.int64)
    return steps if len(steps) == n else np.arange(n, dtype=np.int64)


def _fan_chart(mc: MonteCarlo) -> go.Figure:
    fig = go.Figure()
    levels = sorted(mc.bands)
    x = _band_x(mc)
    unit = "trade" if mc.method.startswith("trade") else "period"
    pairs = [(levels[i], levels[-1 - i]) for i in range(len(levels) // 2)]
    shades = ["rgba(31,119,180,0.15)", "rgba(31,119,180,0.3)", "rgba(31,119,180,0.45)"]
    for k, (lo, hi) in enumerate(pairs):
        low = np.asarray(mc.bands[lo], np.float64).astype(np.float32)
        high = np.asarray(mc.bands[hi], np.float64).astype(np.float32)
        fig.add_trace(
            go.Scatter(
                x=x, y=low, mode="lines", name=f"p{lo}", line={"width": 0}, showlegend=False,
                hoverinfo="skip",
            )
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=x, y=high, mode="lines", name=f"p{lo}–p{hi}", line={"width": 0},
                fill="tonexty", fillcolor=shades[min(k, len(shades) - 1)],
            )
        )  # fmt: skip
    if len(levels) % 2:
        mid = levels[len(levels) // 2]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=np.asarray(mc.bands[mid], np.float64).astype(np.float32),
                mode="lines",
                name=f"p{mid} (median)",
                line={"color": "#1f77b4", "width": 2},
            )
        )
    observed = mc.observed.get("final_return")
    if observed is not None and len(x) and math.isfinite(observed):
        fig.add_trace(
            go.Scatter(
                x=[int(x[-1])],
                y=[1.0 + observed],
                mode="markers",
                name="actual final",
                marker={"color": "#d62728", "size": 10, "symbol": "diamond"},
            )
        )
    fig.add_hline(y=1.0, line={"color": "black", "width": 1})
    fig.update_layout(
        title=f"Monte Carlo bands: {mc.method} ({mc.runs:,} runs)",
        xaxis_title=f"{unit}s",
        yaxis_title="growth of 1.0",
        height=380,
        **_XY_LAYOUT,
    )
    fig.update_xaxes(**_GRID)
    fig.update_yaxes(**_GRID)
    return fig


def _mc_table(mc: MonteCarlo) -> str:
    qs = list(mc.final_return.percentiles())
    head = "".join(f"<th>p{q}</th>" for q in qs) + "<th>actual</th>"
    rows = []
    for key, label in _MC_ROWS:
        dist = getattr(mc, key)
        cells = "".join(f"<td>{_fmt(v, 'pct')}</td>" for v in dist.percentiles().values())
        cells += f"<td>{_fmt(mc.observed.get(key), 'pct')}</td>"
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    return f"<table class='stats mc'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _mc_section(monte_carlo: Sequence[MonteCarlo], skipped: Mapping[str, str]) -> str:
    parts = ["<section><h2>Monte Carlo</h2>"]
    for key, what in (("monte_carlo_trades", "trades"), ("monte_carlo_returns", "returns")):
        if key in skipped:
            parts.append(f"<p>Resampling the {what}: not computed: {html.escape(skipped[key])}</p>")
    for mc in monte_carlo:
        parts += [
            f"<h3>{html.escape(mc.method)}</h3>",
            _figure_div(_fan_chart(mc)),
            _mc_table(mc),
            f"<p class='note'>{mc.runs:,} resamples, seed {mc.seed}. Time under water: the "
            "share of the run spent below a previous equity peak.</p>",
        ]
    parts.append(
        "<p class='note'>Resampling the trades (in random order, with replacement) or the "
        "returns (in blocks, which keeps their short-range dependence) draws other paths the "
        "same strategy could have taken: the spread of final return and drawdown is what the "
        "order of events alone can do.</p></section>"
    )
    return "".join(parts)


# --- sensitivity -----------------------------------------------------------------------------


def _heat_cell(value: float, lo: float, hi: float, good_high: bool, best: bool) -> str:
    if not math.isfinite(value):
        return "<td class='empty'>–</td>"
    t = 0.5 if hi <= lo else (value - lo) / (hi - lo)
    t = t if good_high else 1 - t  # t = 1: the best colour
    r, g, b = (int(214 + (44 - 214) * t), int(39 + (160 - 39) * t), int(40 + (44 - 40) * t))
    cls = " class='best'" if best else ""
    return f"<td{cls} style='background:rgba({r},{g},{b},0.55)'>{_value(value)}</td>"


def _heatmap_table(hm: Heatmap, best: Mapping[str, Any], direction: str) -> str:
    z = np.asarray(hm.z, dtype=np.float64)
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
    head = "".join(f"<th>{_esc(x)}</th>" for x in hm.x_values)
    rows = []
    for i, yv in enumerate(hm.y_values):
        cells = "".join(
            _heat_cell(
                float(z[i, j]),
                lo,
                hi,
                direction == "maximize",
                xv == best.get(hm.x) and yv == best.get(hm.y),
            )
            for j, xv in enumerate(hm.x_values)
        )
        rows.append(f"<tr><th>{_esc(yv)}</th>{cells}</tr>")
    return (
        f"<h3>{html.escape(hm.y)} × {html.escape(hm.x)}</h3>"
        f"<table class='heat' data-heatmap='{html.escape(hm.y)}×{html.escape(hm.x)}'>"
        f"<tr><th>{html.escape(hm.y)} \\ {html.escape(hm.x)}</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
    )


def _sensitivity_section(sens: Sensitivity | None, objective: str, why: str) -> str:
    head = "<section><h2>Parameter sensitivity</h2>"
    if sens is None:
        return f"{head}<p>Not computed{': ' + html.escape(why) if why else '.'}</p></section>"
    tables = "".join(_heatmap_table(h, sens.best, sens.direction) for h in sens.heatmaps)
    return (
        head
        + f"<p data-verdict='sensitivity'>{html.escape(sens.verdict())}</p>"
        + f"<p><b data-stat='share'>{sens.within} of {sens.neighbours}</b> evaluated neighbours "
        f"({sens.share * 100:.0f}%) are within {sens.tolerance * 100:.0f}% of the best "
        f"{html.escape(objective)} ({_value(sens.best_value)}).</p>"
        + (tables or "<p>One parameter only: no pairs to map.</p>")
        + "<p class='note'>Each table: the objective over a grid of two parameters around the "
        "chosen point (outlined), the others held at their chosen values; greener is better. "
        "A plateau (many neighbours nearly as good) survives a market that moves a little; a "
        "spike (one good cell among poor ones) is usually a fit to noise.</p></section>"
    )


# --- trials ----------------------------------------------------------------------------------


def _trial_history(result: OptimizationResult) -> go.Figure:
    fig = go.Figure()
    done = [t for t in result.trials if t.state == "complete" and t.values]
    label = result.objectives[0] if result.objectives else "objective"
    maximize = not result.directions or result.directions[0] == "maximize"
    if done:
        xs = np.array([t.number for t in done])
        ys = np.array([t.values[0] for t in done], dtype=np.float64)
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="markers", name="complete",
                marker={"color": "#1f77b4", "size": 6},
                hovertemplate="trial %{x}: %{y:.4g}<extra></extra>",
            )
        )  # fmt: skip
        finite = np.where(np.isfinite(ys), ys, -np.inf if maximize else np.inf)
        running = np.maximum.accumulate(finite) if maximize else np.minimum.accumulate(finite)
        fig.add_trace(
            go.Scatter(
                x=xs, y=running, mode="lines", name="best so far", line_shape="hv",
                line={"color": "#2ca02c", "width": 2},
            )
        )  # fmt: skip
        floor = (
            float(np.nanmin(ys) if maximize else np.nanmax(ys)) if np.isfinite(ys).any() else 0.0
        )
    else:
        floor = 0.0
    for state, color in (("pruned", "#7f7f7f"), ("failed", "#d62728")):
        sel = [t for t in result.trials if t.state == state]
        if sel:
            fig.add_trace(
                go.Scatter(
                    x=[t.number for t in sel],
                    y=[floor] * len(sel),
                    mode="markers",
                    name=f"{state} ({len(sel)}, drawn at the worst value)",
                    marker={"color": color, "symbol": "x", "size": 8},
                    text=[t.error or state for t in sel],
                    hovertemplate="trial %{x}: %{text}<extra></extra>",
                )
            )
    if result.best is not None:
        fig.add_vline(x=result.best.number, line={"color": "#2ca02c", "dash": "dot"})
    fig.update_layout(
        title=f"Trial history: {label} per trial",
        xaxis_title="trial",
        yaxis_title=label,
        height=380,
        **_XY_LAYOUT,
    )
    fig.update_xaxes(**_GRID)
    fig.update_yaxes(**_GRID)
    return fig


def _pareto_figure(result: OptimizationResult) -> go.Figure | None:
    if len(result.objectives) < 2:
        return None
    done = [t for t in result.trials if t.state == "complete" and len(t.values) >= 2]
    front = {t.number for t in result.pareto}
    fig = go.Figure()
    for name, sel, marker in (
        ("trials", [t for t in done if t.number not in front], {"color": "#9ecae1", "size": 6}),
        ("Pareto front", [t for t in done if t.number in front], {"color": "#d62728", "size": 9}),
    ):
        fig.add_trace(
            go.Scatter(
                x=[t.values[0] for t in sel],
                y=[t.values[1] for t in sel],
                text=[f"trial {t.number}" for t in sel],
                mode="markers",
                name=name,
                marker=marker,
                hovertemplate="%{text}: %{x:.4g}, %{y:.4g}<extra></extra>",
            )
        )
    x_label, y_label = _objectives_label(result)[:2]
    fig.update_layout(
        title="Trials on the first two objectives",
        xaxis_title=x_label,
        yaxis_title=y_label,
        height=380,
        **_XY_LAYOUT,
    )
    fig.update_xaxes(**_GRID)
    fig.update_yaxes(**_GRID)
    return fig


def _objective_metrics(result: OptimizationResult) -> set[str]:
    """The metrics the objectives already are (sharpe, profit = total_return): one column each."""
    from tessera.optimize.objectives import BUILTIN_METRIC

    return {BUILTIN_METRIC.get(o, o) for o in result.objectives}


def _shown_trials(result: OptimizationResult, limit: int) -> list[TrialRecord]:
    """Every trial by number, or — past ``limit`` — the best ``limit`` complete ones."""
    trials = sorted(result.trials, key=lambda t: t.number)
    if len(trials) <= limit:
        return trials
    sign = -1.0 if not result.directions or result.directions[0] == "maximize" else 1.0
    done = [t for t in trials if t.state == "complete" and t.values]
    done.sort(key=lambda t: sign * t.values[0] if math.isfinite(t.values[0]) else math.inf)
    return sorted(done[:limit], key=lambda t: t.number)


def _trials_table(result: OptimizationResult, limit: int = TRIAL_ROWS) -> str:
    names = [d.name for d in result.space]
    shown = _shown_trials(result, limit)
    best_number = result.best.number if result.best is not None else None
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["trial", "state", *names])
    head += "".join(f"<th>{html.escape(o)}</th>" for o in result.objectives)
    shown_metrics = [m for m in _TRIAL_METRICS if m[0] not in _objective_metrics(result)]
    head += "".join(f"<th>{label}</th>" for _, label, _ in shown_metrics)
    rows = []
    for t in shown:
        cls = "chosen" if t.number == best_number else t.state
        cells = "".join(f"<td>{_esc(t.params.get(n))}</td>" for n in names)
        values = list(t.values) + [float("nan")] * (len(result.objectives) - len(t.values))
        cells += "".join(f"<td>{_esc(v)}</td>" for v in values)
        cells += "".join(f"<td>{_fmt(t.metrics.get(k), kind)}</td>" for k, _, kind in shown_metrics)
        state = html.escape(t.state + (f": {t.error}" if t.error else ""))
        rows.append(f"<tr class='{cls}'><td>{t.number}</td><td>{state}</td>{cells}</tr>")
    note = (
        f"<p class='note'>The best {len(shown):,} of {len(result.trials):,} trials; every "
        "trial is in <code>--json</code> and in the study's storage.</p>"
        if len(shown) < len(result.trials)
        else ""
    )
    return f"{note}<table class='trials'><tr>{head}</tr>{''.join(rows)}</table>"


def _trials_section(result: OptimizationResult) -> str:
    counts = {
        s: sum(1 for t in result.trials if t.state == s) for s in ("complete", "pruned", "failed")
    }
    pareto = _pareto_figure(result)
    return (
        "<section><h2>Trial history</h2>"
        f"<p>{len(result.trials):,} trials: {counts['complete']:,} complete, "
        f"{counts['pruned']:,} pruned (stopped early as hopeless), {counts['failed']:,} failed. "
        f"Sampler {html.escape(result.sampler)}, seed {result.seed}.</p>"
        + _figure_div(_trial_history(result))
        + (_figure_div(pareto) if pareto is not None else "")
        + "<h3>Trials</h3>"
        + _trials_table(result)
        + "</section>"
    )


# --- the document ----------------------------------------------------------------------------


def write_robustness_report(
    path: Path,
    *,
    result: OptimizationResult,
    best_run: BacktestResult,
    dsr: DeflatedSharpe | None,
    pbo: Pbo | None,
    monte_carlo: Sequence[MonteCarlo],
    sensitivity: Sensitivity | None,
    walk_forward: WalkForward | None,
    title: str | None = None,
    notes: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
) -> Path:
    """Write the report to ``path`` (atomically) and return it.

    ``best_run`` is the backtest of the chosen parameters (`backtest_point`), so its curve and
    metrics are exactly what ``tessera backtest`` shows for them. ``dsr`` or ``pbo`` is None
    when it could not be computed (too few trials or periods, a run that never traded):
    ``skipped`` maps the statistic (``"dsr"``, ``"pbo"``, ``"monte_carlo_trades"``, ...) to why,
    and the report says it where the statistic would be.
    ``notes`` are extra key/value lines under the title (data, fees, run id).
    """
    best = result.best
    heading = title or f"Robustness report: {result.strategy}"
    span = (
        f"{_ts(int(best_run.times[0]))} → {_ts(int(best_run.times[-1]))} UTC"
        if len(best_run.times)
        else "no bars"
    )
    sub = " · ".join(
        [
            f"study {result.study_name}",
            "objectives " + ", ".join(_objectives_label(result)),
            f"{len(result.trials):,} trials",
            span,
            f"generated by Tessera {__version__}",
        ]
    )
    info = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
        for k, v in {"storage": result.storage, **(notes or {})}.items()
    )
    chosen = (
        _params_table(result, best)
        + "<h3>Metrics of the chosen parameters (in-sample)</h3>"
        + _metrics_table(best_run, {})
        if best is not None
        else "<p>No trial completed: nothing was chosen.</p>"
    )
    objective = result.objectives[0] if result.objectives else "objective"
    why = dict(skipped or {})
    doc = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(heading)}</title><style>{_CSS}{_CSS_EXTRA}</style>
<script type="text/javascript">{PLOTLY_JS.read_text(encoding="utf-8")}</script></head><body>
<h1>{html.escape(heading)}</h1>
<p class="sub">{html.escape(sub)}</p>
<ul>{info}</ul>
{_verdicts(dsr, pbo, monte_carlo, sensitivity, walk_forward, why)}
<section><h2>Chosen parameters</h2>{chosen}{_pareto_table(result)}</section>
{_equity_section(best_run, walk_forward)}
{_dsr_section(dsr, result, why.get("dsr", ""))}
{_pbo_section(pbo, why.get("pbo", ""))}
{_mc_section(monte_carlo, why)}
{_sensitivity_section(sensitivity, objective, why.get("sensitivity", ""))}
{_trials_section(result)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)
    return path


# --- the same, as data (--json) --------------------------------------------------------------


def _floats(values: Any) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values).ravel()]


def _trial_doc(t: TrialRecord) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state,
        "params": dict(t.params),
        "values": list(t.values),
        "metrics": dict(t.metrics),
        "error": t.error,
    }


def robustness_document(
    *,
    result: OptimizationResult,
    best_run: BacktestResult,
    dsr: DeflatedSharpe | None,
    pbo: Pbo | None,
    monte_carlo: Sequence[MonteCarlo],
    sensitivity: Sensitivity | None,
    walk_forward: WalkForward | None,
    skipped: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report's content as JSON-ready data (NaN is left to `tessera.console.json_plain`;
    NumPy scalars become Python numbers)."""
    best = result.best
    why = dict(skipped or {})
    return {
        "strategy": result.strategy,
        "study": result.study_name,
        "storage": result.storage,
        "sampler": result.sampler,
        "seed": result.seed,
        "objectives": list(result.objectives),
        "directions": list(result.directions),
        "space": {d.name: describe_dimension(d) for d in result.space},
        "period": result.period,
        "best": None if best is None else _trial_doc(best),
        "best_metrics": dict(best_run.metrics),
        "pareto": [_trial_doc(t) for t in result.pareto] if len(result.objectives) > 1 else [],
        "trials": {
            "total": len(result.trials),
            **{
                s: sum(1 for t in result.trials if t.state == s)
                for s in ("complete", "pruned", "failed")
            },
            "rows": [_trial_doc(t) for t in sorted(result.trials, key=lambda t: t.number)],
        },
        "skipped": why,
        "deflated_sharpe": None
        if dsr is None
        else {
            "sharpe": dsr.sharpe,
            "annualised_sharpe": dsr.annualised_sharpe,
            "n_obs": dsr.n_obs,
            "skew": dsr.skew,
            "kurtosis": dsr.kurtosis,
            "trials": dsr.trials,
            "sharpe_variance": dsr.sharpe_variance,
            "expected_max_sharpe": dsr.expected_max_sharpe,
            "dsr": dsr.dsr,
            "passes": dsr.passes(),
            "verdict": dsr.verdict(),
        },
        "pbo": (
            {"computed": False, "reason": why.get("pbo", "")}
            if pbo is None
            else {
                "computed": True,
                "pbo": pbo.pbo,
                "splits": pbo.splits,
                "combinations": pbo.combinations,
                "prob_oos_loss": pbo.prob_oos_loss,
                "logits": _floats(pbo.logits),
                "verdict": pbo.verdict(),
            }
        ),
        "monte_carlo": [
            {
                "method": mc.method,
                "runs": mc.runs,
                "seed": mc.seed,
                "observed": dict(mc.observed),
                **{
                    key: {f"p{q}": v for q, v in getattr(mc, key).percentiles().items()}
                    for key, _ in _MC_ROWS
                },
            }
            for mc in monte_carlo
        ],
        "sensitivity": None
        if sensitivity is None
        else {
            "neighbours": sensitivity.neighbours,
            "within": sensitivity.within,
            "share": sensitivity.share,
            "tolerance": sensitivity.tolerance,
            "verdict": sensitivity.verdict(),
            "heatmaps": [
                {
                    "x": h.x,
                    "y": h.y,
                    "x_values": list(h.x_values),
                    "y_values": list(h.y_values),
                    "z": [_floats(row) for row in np.asarray(h.z, dtype=np.float64)],
                }
                for h in sensitivity.heatmaps
            ],
        },
        "walk_forward": None
        if walk_forward is None
        else {
            "mode": walk_forward.mode,
            "efficiency": walk_forward.efficiency,
            "oos_metrics": dict(walk_forward.oos_metrics),
            "windows": [
                {
                    "index": w.index,
                    "in_sample": [_iso(w.in_sample[0]), _iso(w.in_sample[1])],
                    "out_of_sample": [_iso(w.out_of_sample[0]), _iso(w.out_of_sample[1])],
                    "params": dict(w.params),
                    "in_sample_value": w.in_sample_value,
                    "oos_metrics": dict(w.oos_metrics),
                    "model": w.model,
                }
                for w in walk_forward.windows
            ],
        },
    }


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(int(ns) / 1e9, UTC).isoformat().replace("+00:00", "Z")
