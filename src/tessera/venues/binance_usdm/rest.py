"""USDⓈ-M REST answers the bot reads besides ccxt's: ``/fapi/v1/income`` funding rows and
``/fapi/v1/premiumIndex``.

Their field names are the venue's (``tranId``, ``lastFundingRate``), so they are read here,
with the rest of USDⓈ-M's wire format, into the domain's types; the ledger (`FundingRecord`)
and the paper account (`PerpPaperExchange.settle_funding`) know no payload. A missing or
malformed field raises `ValueError` naming it and the endpoint, never a bare `KeyError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tessera.execution.persistence import FundingRecord

INCOME = "/fapi/v1/income"
PREMIUM_INDEX = "/fapi/v1/premiumIndex"


def funding_record(row: Mapping[str, Any]) -> FundingRecord:
    """One ``/fapi/v1/income`` FUNDING_FEE row (``symbol``, ``time``, ``income``, ``asset``,
    ``tranId``) as a ledger record with source ``income``."""
    try:
        return FundingRecord(
            str(row["symbol"]),
            int(row["time"]),
            Decimal(str(row["income"])),
            str(row["asset"]),
            "income",
            str(row["tranId"]),
        )
    except KeyError as exc:
        raise ValueError(f"{INCOME} row without {exc}: {dict(row)}") from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise ValueError(f"{INCOME} row not understood ({exc}): {dict(row)}") from None


def funding_rate_and_mark(doc: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """A ``/fapi/v1/premiumIndex`` answer for one symbol: (``lastFundingRate``, ``markPrice``)."""
    try:
        return Decimal(str(doc["lastFundingRate"])), Decimal(str(doc["markPrice"]))
    except KeyError as exc:
        raise ValueError(f"{PREMIUM_INDEX} answer without {exc}: {dict(doc)}") from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise ValueError(f"{PREMIUM_INDEX} answer not understood ({exc}): {dict(doc)}") from None
