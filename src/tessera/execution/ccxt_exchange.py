"""`open_exchange`: the order adapter of the ``exchange.name`` setting.

The adapters live in their venue folders, with the wire format they read: Binance spot's
`tessera.venues.binance_spot.exchange.CcxtExchange` (``binance``) and USDⓈ-M's
`tessera.venues.binance_usdm.exchange.UsdmCcxtExchange` (``binance-usdm``); the docstrings
there say what each does with ccxt and why.

Why the factory stays here: it maps a setting (``exchange.name``, whose values
`tessera.config.settings.SUPPORTED_EXCHANGES` lists) to an `tessera.execution.exchange.Exchange`
adapter, which is what its callers (the bot's assembly, the tests' simulators) ask for; the
venue registry (`tessera.venues.contract`) speaks venue names (``binance-spot``) and describes
payloads, not connections. The venue modules are imported inside the function, so importing
this module loads neither them nor ccxt, and the domain imports no venue (this module is one of
the adapters `tests/venues/test_domain_imports_no_venue.py` exempts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.config.settings import require_supported_exchange

if TYPE_CHECKING:
    from tessera.live.clock import ExchangeClock
    from tessera.live.ratelimit import RateLimiter
    from tessera.venues.binance_spot.exchange import CcxtExchange


def open_exchange(
    rest_url: str | None = None,
    api_key: str = "",
    api_secret: str = "",
    *,
    exchange_id: str = "binance",
    timeout_ms: int = 10_000,
    recv_window_ms: int = 5_000,
    limiter: RateLimiter | None = None,
    clock: ExchangeClock | None = None,
) -> CcxtExchange:
    """The adapter of ``exchange_id`` (the ``exchange.name`` setting): `CcxtExchange` for
    ``binance``, `UsdmCcxtExchange` for ``binance-usdm``; anything else is a `ConfigError`."""
    from tessera.venues.binance_spot.exchange import CcxtExchange
    from tessera.venues.binance_usdm.exchange import UsdmCcxtExchange

    require_supported_exchange(exchange_id)
    cls = UsdmCcxtExchange if exchange_id == UsdmCcxtExchange.VENUE else CcxtExchange
    return cls(
        rest_url,
        api_key,
        api_secret,
        exchange_id=exchange_id,
        timeout_ms=timeout_ms,
        recv_window_ms=recv_window_ms,
        limiter=limiter,
        clock=clock,
    )
