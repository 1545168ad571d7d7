"""Venues: each exchange's wire format in one folder (``binance_usdm`` so far).

A venue folder turns its exchange's payloads into the pure domain's types
(`tessera.execution...`); nothing outside it should parse that exchange's JSON. The domain
imports no venue.
"""

from __future__ import annotations


class VenuePayloadError(ValueError):
    """A venue payload that cannot be read: the message names the endpoint, symbol and field."""
