"""What the report tells a trader: open trades marked to market, MAE/MFE, the returns table
sized to the run, the data's own symbol and venue, warnings on top, several symbols at once."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tessera.backtest import BacktestEngine, BarSeries
from tessera.backtest.bars_io import REPO_ROOT, SAMPLE_BARS, read_bar_file
from tessera.backtest.report import _shown_rows, period_returns, write_report
from tessera.backtest.report_data import trade_rows
from tessera.backtest.results import BacktestResult, round_trips
from tessera.config import BacktestConfig
from tessera.strategies import BuyAndHold, SmaCross

XRP_ETH = REPO_ROOT / "samples" / "freqtrade" / "XRP_ETH-1m.feather"


@pytest.fixture(scope="module")
def perp() -> BarSeries:
    return BarSeries.from_frame("BTC-PERP", read_bar_file(SAMPLE_BARS))


@pytest.fixture(scope="module")
def hold(perp: BarSeries) -> BacktestResult:
    """Buy & hold on the whole month: one trade, open at the end (about -1,600 at the last
    close, after a fee of about 9.90)."""
    return BacktestEngine(BacktestConfig()).run([perp], [BuyAndHold(["BTC-PERP"])])


def _pnl_cells(text: str) -> list[str]:
    return re.findall(r"<td class='pnl'>([^<]*)</td>", text)


def test_an_open_trade_shows_its_pnl_marked_at_the_last_close_not_its_fee(
    perp: BarSeries, hold: BacktestResult, tmp_path: Path
) -> None:
    # the account's own mark-to-market: the only trade's PnL is all the equity lost
    loss = hold.final_equity - Decimal(10_000)
    assert loss < -1_500
    (trade,) = hold.trades
    fee = f"{-trade.fees:,.2f}"
    # a result grouped without marks (the report's old input) lists the trade as open with
    # minus its fee as PnL; the report marks it at the last close all the same
    unmarked = dataclasses.replace(hold, trades=round_trips(hold.fills))
    assert unmarked.trades[0].exit_time is None and unmarked.trades[0].pnl == -trade.fees
    for res in (hold, unmarked):
        text = write_report(res, perp, tmp_path / "r.html", title="hold").read_text()
        (cell,) = _pnl_cells(text)
        assert cell == f"{loss:,.2f}" != fee
        assert (
            "open · marked 2022-02-01 05:32" in text
        )  # the last bar's close and "end_of_data" in text
        assert "1 trade(s) open at the end, marked at the last close" in text


def test_mae_and_mfe_come_from_the_bar_lows_and_highs_while_the_trade_is_on(
    perp: BarSeries, hold: BacktestResult
) -> None:
    (row,) = trade_rows(hold, [perp])
    t = row.trade
    entry = float(t.entry_price)
    on = perp.open_time >= t.entry_time  # the entry fill's bar (next open) to the last bar
    assert on.sum() == len(perp) - 1  # bought at the second bar's open
    assert row.mae_pct == pytest.approx(float(perp.low[on].min()) / entry - 1)
    assert row.mfe_pct == pytest.approx(float(perp.high[on].max()) / entry - 1)
    assert row.mae == pytest.approx(row.mae_pct * entry * float(t.qty))
    assert row.mae < float(t.pnl) < 0 < row.mfe  # it was worse than where it ended, and better
    assert row.duration_s == pytest.approx((perp.close_time[-1] - t.entry_time) / 1e9)
    assert row.is_open and row.marked


def test_a_one_month_run_gets_a_daily_calendar_not_a_twelve_month_heatmap(
    perp: BarSeries, hold: BacktestResult, tmp_path: Path
) -> None:
    text = write_report(hold, perp, tmp_path / "r.html", title="hold").read_text()
    assert "<h2>Daily returns</h2>" in text and "Monthly returns" not in text
    for month in ("Mar", "Jun", "Sep", "Nov"):
        assert f"<th>{month}</th>" not in text
    days = period_returns(hold, "1d")
    assert len(days) == 33  # 2021-12-31 (one hour of it) to 2022-02-01 (five and a half)
    assert days["partial"].to_list() == [True] + [False] * 31 + [True]
    total = float((days["return"] + 1).product() - 1)
    assert total == pytest.approx(hold.metrics["total_return"], abs=1e-12)
    # one row per week (Monday first), a cell per day the run covers
    assert text.count("<tr><th>202") == 6


def test_the_title_names_the_datas_symbol_and_venue_and_warnings_come_first(
    perp: BarSeries, hold: BacktestResult, tmp_path: Path
) -> None:
    warnings = ["kill-switch halted trading at 2022-01-05 <bar 5,999>", "892 orders denied"]
    text = write_report(
        hold, perp, tmp_path / "r.html", title="buy_and_hold", venue="FTX", warnings=warnings
    ).read_text()
    body = text[text.index("<body>") + len("<body>") :].lstrip()
    assert body.startswith("<div class='warnings' role='alert'>")
    assert "<li>kill-switch halted trading at 2022-01-05 &lt;bar 5,999&gt;</li>" in body
    assert body.index("892 orders denied") < body.index("<h1>")
    assert "<title>buy_and_hold · BTC-PERP · FTX</title>" in text
    assert "<b>BTC-PERP · FTX</b>" in text and "BTC-PERP (FTX): price with fills" in text
    assert "BTCUSDT" not in text
    assert "1m bars · 2021-12-31 23:01 → 2022-02-01 05:32 UTC · 45,031 bars" in text
    no_warnings = write_report(hold, perp, tmp_path / "q.html", title="t").read_text()
    assert "class='warnings'" not in no_warnings


@pytest.fixture(scope="module")
def xrp() -> BarSeries:
    frame = pl.read_ipc(XRP_ETH).rename({"date": "open_time"})
    return BarSeries.from_frame("XRP_ETH", frame)


def test_a_multi_symbol_report_has_one_equity_curve_and_a_panel_per_symbol(
    perp: BarSeries, xrp: BarSeries, tmp_path: Path
) -> None:
    btc = perp.slice(0, 6_000)  # four days of BTC-PERP (2022) beside XRP/ETH (2019)
    res = BacktestEngine(BacktestConfig()).run(
        [btc, xrp], [SmaCross(["BTC-PERP", "XRP_ETH"], fast=10, slow=30)]
    )
    by_symbol = {s: sum(1 for t in res.trades if t.symbol == s) for s in ("BTC-PERP", "XRP_ETH")}
    assert all(n > 10 for n in by_symbol.values()), by_symbol
    text = write_report(res, [btc, xrp], tmp_path / "m.html", title="sma_cross").read_text()
    assert text.count('class="plotly-graph-div"') == 1 + 2 + 1  # equity, 2 panels, histogram
    assert text.count('"text":"Equity"') == 1 and "<b>BTC-PERP, XRP_ETH</b>" in text
    for sym in ("BTC-PERP", "XRP_ETH"):
        assert f"{sym}: price with fills" in text and f"{sym}: PnL (realized + unrealized)" in text
    # per-symbol PnL (realized + unrealized, net of fees) adds up to the account's
    cells = dict(re.findall(r"data-symbol-pnl='([^']+)'>([^<]*)</td>", text))
    shown = sum(float(v.replace(",", "")) for v in cells.values())
    assert set(cells) == {"BTC-PERP", "XRP_ETH"}
    assert shown == pytest.approx(float(res.final_equity) - 10_000, abs=0.011)
    # the run spans 2019-10 to 2022-01: a monthly grid of the months present only
    assert "<h2>Monthly returns</h2>" in text
    grid = text[text.index("<h2>Monthly returns</h2>") :]
    grid = grid[: grid.index("</table>")]
    assert re.findall(r"<th>([A-Z][a-z]{2})</th>", grid) == ["Jan", "Oct", "Dec"]
    assert re.findall(r"<tr><th>(\d{4})</th>", grid) == ["2019", "2021", "2022"]
    # XRP/ETH prices (0.0014...) are shown with their digits, not as 0.00
    assert re.search(r"<td>0\.0014\d+</td>", text)
    assert np.isfinite(res.metrics["total_return"])


def test_a_long_trade_list_shows_the_first_and_last_hundred_and_every_open_trade(
    perp: BarSeries, tmp_path: Path
) -> None:
    res = BacktestEngine(BacktestConfig()).run([perp], [SmaCross(["BTC-PERP"])])
    assert len(res.trades) == 931
    text = write_report(res, perp, tmp_path / "r.html", title="sma").read_text()
    assert len(_pnl_cells(text)) == 200
    assert "… 731 trades not listed here: every trade is in trades.parquet …" in text
    rows = trade_rows(res, [perp])
    # a trade open at the end (here: pretend the 500th) is listed wherever it falls
    rows[500] = dataclasses.replace(rows[500], is_open=True)
    shown = _shown_rows(rows, 200)
    assert 500 in shown and shown.count(None) == 2
    assert [i for i in shown if i is not None][:100] == list(range(100))
