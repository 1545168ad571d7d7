"""What Binance spot's and USDⓈ-M's user-data streams share: the envelopes and the error type.

A user-data event arrives bare (``/ws/<listenKey>``), wrapped by a combined stream
(``{"stream", "data"}``) or by the WebSocket API (``{"subscriptionId", "event"}``); `unwrap`
takes any of the three. Each venue's parser raises `MalformedEventError` for a frame that is not
the documented payload, naming what was wrong.
"""

from __future__ import annotations

from typing import Any


class MalformedEventError(ValueError):
    """A user-data frame that is not the documented payload; the message names the error."""


def unwrap(doc: Any) -> Any:
    """The event inside a combined-stream or WebSocket-API envelope, or ``doc`` itself."""
    if isinstance(doc, dict) and "data" in doc and "stream" in doc:
        return doc["data"]
    if isinstance(doc, dict) and "event" in doc and "subscriptionId" in doc:
        return doc["event"]
    return doc
