"""`CrossSectional`: rank the universe each bar, hold the top ``k`` long, rebalance gently.

A strategy over several symbols at once, for portfolio backtests (docs/portfolio.md). Each
time every symbol it trades has delivered its bar of one close time, it scores them — the
model's prediction (``score="model"``, `StrategyContext.prediction`) or the return over the
last ``lookback`` bars (``score="momentum"``, no model needed) — ranks them, and every
``rebalance_bars`` such groups moves towards holding the ``k`` best in equal parts of
``weight`` of the equity, the rest flat.

Why each rule:

* **All bars of a close time first.** Ranking needs every symbol's score *of the same time*;
  deciding on the first symbol's bar would rank it against the others' previous bar. The
  backtest delivers one close time's bars one after another and live they arrive within
  moments, so the strategy collects them and decides once the group is complete.
* **Which symbols are waited for.** A symbol is *active* from its first bar on (ETH begins
  years after BTC in the bundled daily data: it cannot be waited for before it exists). A group
  completes when every active symbol has delivered. A bar that arrives after its close time was
  decided joins from the next group. When an active symbol misses a close time (a gap in its
  data), the group is not decided late — a bar of a newer time shows that the old one will not
  complete; it is counted in ``incomplete_groups`` and logged, the symbol is inactive until
  its next bar, and its position is left as it is. On sparse bars (live 1s klines of a quiet
  symbol) that skips every close time one symbol has no bar in.
* **Long-only spot.** The account cannot short; a dropped symbol is sold to zero.
* **Turnover limit.** ``max_turnover`` caps the value traded per rebalance as a fraction of
  the equity: all trades of a rebalance are scaled by one factor so that their summed value
  (at the deciding close) stays within it. A ranking that flips every bar then moves the book
  part of the way instead of paying fees to trade all of it; the book converges over a few
  rebalances. Quantities are rounded towards the current position (down to ``qty_step``), so
  rounding never trades more than the limit.
* **Cash.** Sells are sent first. Buys spend at most the free cash the account has once they
  are sent (times 0.99, for fees and slippage), scaled down together if they need more: a spot
  buy cannot spend the proceeds of a sell that has not filled yet. With ``fill_at="close"`` the
  sells fill at once and fund the buys; with fills at the next open (or live) a rotation from
  one coin into another takes two rebalances. ``cash_limited`` in the rebalance log says when.
* **Drift is not chased.** A held symbol that stays in the top k drifts from its equal
  weight as prices move; resizing it by less than ``min_trade`` of the equity (default 1 %)
  is skipped: each such trade pays fees for almost no change (and every buy adds a lot to the
  position's books). Entries and exits always go.
* **Ties** are broken by symbol name, so a run is deterministic.

Every rebalance is recorded in ``rebalances`` (`Rebalance`: equity, ranking, chosen symbols,
the value the full rebalance would have traded, the value sent, the turnover scale).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field

from tessera.logging import get_logger
from tessera.strategies.base import (
    Bar,
    Strategy,
    StrategyContext,
    StrategyParamError,
    StrategyParams,
    register_strategy,
)
from tessera.strategies.builtin import SIZING_BUFFER

log = get_logger(__name__)
ZERO = Decimal(0)
ONE = Decimal(1)
# the rebalance log keeps this many entries (a live bot on 1m bars runs for months)
REBALANCE_LOG = 100_000


@dataclass(frozen=True, slots=True)
class Rebalance:
    """One rebalance decision. Values in the quote currency, at the deciding closes."""

    time: int  # close time of the group, ns
    equity: Decimal
    ranking: tuple[str, ...]  # scored symbols, best first
    chosen: tuple[str, ...]  # the top k held long
    wanted: Decimal  # value the full move to the targets would trade
    traded: Decimal  # value of the orders sent (after the turnover limit and the cash)
    scale: Decimal  # turnover limit factor applied to every trade (1: not binding)
    cash_limited: bool  # buys were scaled down to the free cash


class CrossSectionalParams(StrategyParams):
    score: Literal["model", "momentum"] = Field(
        "momentum", description="rank by the model's prediction, or by the lookback return"
    )
    lookback: int = Field(20, gt=0, description="momentum: return over this many bars")
    k: int = Field(1, gt=0, description="hold this many top-ranked symbols long")
    weight: float = Field(
        0.95, gt=0, le=1, description="fraction of equity held in total, split equally over k"
    )
    rebalance_bars: int = Field(1, gt=0, description="rebalance every this many close times")
    max_turnover: float = Field(
        2.0, gt=0, le=2, description="value traded per rebalance, fraction of equity (2: any)"
    )
    min_score: float | None = Field(
        None, description="hold only symbols scoring above this (none: the top k whatever)"
    )
    min_trade: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="skip resizing a held symbol by less than this fraction of equity "
        "(entries and exits always go)",
    )
    qty_step: Decimal = Field(
        Decimal("0.00001"), gt=0, description="quantities are rounded to this step"
    )


@register_strategy
class CrossSectional(Strategy):
    """Rank the symbols by score at each close time and hold the top ``k`` long in equal
    weights, rebalancing every ``rebalance_bars`` with at most ``max_turnover`` of the equity
    traded per rebalance. Scores: the model's prediction, or momentum over ``lookback`` bars."""

    name = "cross_sectional"
    Params: ClassVar[type[StrategyParams]] = CrossSectionalParams
    params: CrossSectionalParams

    def __init__(self, symbols: list[str], strategy_id: str | None = None, **params: Any) -> None:
        super().__init__(symbols, strategy_id, **params)
        p = self.params
        if len(set(symbols)) != len(symbols):
            raise StrategyParamError(f"strategy {self.name}: a symbol is listed twice: {symbols}")
        if p.k > len(symbols):
            raise StrategyParamError(
                f"strategy {self.name}: k={p.k} is more than the {len(symbols)} symbol(s) "
                f"it trades ({', '.join(symbols)}); k accepts 1 to {len(symbols)}."
            )
        self._closes = {s: deque[float](maxlen=p.lookback + 1) for s in symbols}
        self._active: set[str] = set()
        self._pending_time: int | None = None
        self._pending: set[str] = set()
        self._decided_time: int | None = None
        self._groups = 0
        self.incomplete_groups = 0
        self.late_bars = 0
        self.rebalances: deque[Rebalance] = deque(maxlen=REBALANCE_LOG)

    @property
    def warmup_bars(self) -> int:
        return self.params.lookback + 1 if self.params.score == "momentum" else 0

    # --- grouping bars by close time -----------------------------------------------------------

    def on_bar(self, bar: Bar, ctx: StrategyContext) -> None:
        symbol, t = bar.symbol, bar.close_time
        self._closes[symbol].append(bar.close)
        if self._pending_time is not None and t < self._pending_time:
            self.late_bars += 1  # an older close time than the one being collected
            return
        self._active.add(symbol)
        if t != self._pending_time:
            if self._pending_time is not None and self._pending_time != self._decided_time:
                missing = sorted(self._active - self._pending)
                self.incomplete_groups += 1
                log.info(
                    "close time not decided: symbols without a bar",
                    strategy=self.strategy_id,
                    close_time=self._pending_time,
                    missing=missing,
                )
                # until their next bar (this bar's symbol has just delivered one)
                self._active -= set(missing) - {symbol}
            self._pending_time = t
            self._pending = set()
        self._pending.add(symbol)
        if self._decided_time != t and self._active <= self._pending:
            self._decided_time = t
            self._groups += 1
            if (self._groups - 1) % self.params.rebalance_bars == 0 and not ctx.warming:
                self._rebalance(t, ctx)

    # --- scoring -------------------------------------------------------------------------------

    def score_of(self, symbol: str, ctx: StrategyContext) -> float | None:
        """The symbol's score now, or None when it has none (model warming up, too little
        history for the momentum)."""
        if self.params.score == "model":
            value = ctx.prediction(symbol)
        else:
            closes = self._closes[symbol]
            if len(closes) <= self.params.lookback or closes[0] <= 0:
                return None
            value = closes[-1] / closes[0] - 1.0
        return value if value is not None and math.isfinite(value) else None

    # --- rebalancing ---------------------------------------------------------------------------

    def _rebalance(self, t: int, ctx: StrategyContext) -> None:
        p = self.params
        equity = ctx.equity()
        if equity <= 0:
            return
        prices: dict[str, Decimal] = {}
        for s in sorted(self._active):
            last = ctx.last_price(s)
            if last is not None and last > 0:
                prices[s] = Decimal(repr(last))
        scores: dict[str, float] = {}
        for s in prices:
            v = self.score_of(s, ctx)
            if v is not None and (p.min_score is None or v > p.min_score):
                scores[s] = v
        ranking = tuple(sorted(scores, key=lambda s: (-scores[s], s)))
        chosen = ranking[: p.k]
        per = equity * Decimal(repr(p.weight)) / p.k
        held = {s: ctx.position(s) for s in prices}
        deltas: dict[str, Decimal] = {}
        for s, px in prices.items():
            delta = (per if s in chosen else ZERO) - held[s] * px
            resize = s in chosen and held[s] > 0  # not an entry, not an exit
            if delta and (not resize or abs(delta) >= equity * Decimal(repr(p.min_trade))):
                deltas[s] = delta
        wanted = sum((abs(d) for d in deltas.values()), ZERO)
        cap = equity * Decimal(repr(p.max_turnover))
        scale = min(ONE, cap / wanted) if wanted > 0 else ONE
        targets = {
            s: self._target(held[s], d * scale, prices[s], s not in chosen and scale == ONE)
            for s, d in deltas.items()
        }
        # sells first: their proceeds fund the buys where they settle at once
        for s, q in targets.items():
            if q < held[s]:
                ctx.target_position(s, q)
        buys = {s: (q - held[s]) * prices[s] for s, q in targets.items() if q > held[s]}
        need = sum(buys.values(), ZERO)
        budget = max(ctx.cash(), ZERO) * SIZING_BUFFER
        cash_limited = need > budget
        if cash_limited:
            factor = budget / need
            for s in buys:
                targets[s] = held[s] + self._floor((targets[s] - held[s]) * factor)
        for s in buys:
            if targets[s] > held[s]:
                ctx.target_position(s, targets[s])
        traded = sum((abs(q - held[s]) * prices[s] for s, q in targets.items()), ZERO)
        self.rebalances.append(
            Rebalance(t, equity, ranking, chosen, wanted, traded, scale, cash_limited)
        )

    def _target(
        self, held: Decimal, delta_value: Decimal, price: Decimal, exit_all: bool
    ) -> Decimal:
        """The new position for a trade of ``delta_value``, rounded towards ``held`` (never
        more than asked); ``exit_all`` (dropped from the top k, the whole trade allowed) is
        exactly zero, whatever the rounding of value / price."""
        if exit_all:
            return ZERO
        raw = held + delta_value / price
        if delta_value > 0:
            return max(held, self._floor(raw))
        stepped = (raw / self.params.qty_step).to_integral_value(ROUND_CEILING)
        return min(held, max(ZERO, stepped * self.params.qty_step))

    def _floor(self, qty: Decimal) -> Decimal:
        step = self.params.qty_step
        return (qty / step).to_integral_value(ROUND_FLOOR) * step
