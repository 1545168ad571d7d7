"""Fee schedule: maker/taker basis points applied to a fill's quote notional, exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tessera.execution.orders import Liquidity

BPS = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    maker_bps: Decimal = Decimal("10")
    taker_bps: Decimal = Decimal("10")
    # the two rates, multiplied once instead of on every fill (the same Decimals)
    _maker_rate: Decimal = field(init=False, repr=False, compare=False)
    _taker_rate: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.maker_bps < 0 or self.taker_bps < 0:
            raise ValueError("fees must be >= 0 bps (rebates are not modelled)")
        object.__setattr__(self, "_maker_rate", self.maker_bps * BPS)
        object.__setattr__(self, "_taker_rate", self.taker_bps * BPS)

    def rate(self, liquidity: Liquidity) -> Decimal:
        return self._maker_rate if liquidity is Liquidity.MAKER else self._taker_rate

    def fee(self, notional: Decimal, liquidity: Liquidity) -> Decimal:
        """Fee in quote currency for a fill of ``notional`` quote units."""
        return abs(notional) * self.rate(liquidity)
