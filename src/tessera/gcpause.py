"""The cyclic garbage collector paused around work that builds many objects and no cycles.

CPython runs a collection whenever enough container objects were allocated since the last
one, and every collection of an older generation walks all the objects that survived: a loop
that keeps what it builds (a backtest's orders and fills, a recording's frames) pays for those
walks again and again as its lists grow, for nothing. `paused` turns the collector off for the
block and back on after it (even when it raises), unless the caller had it off already.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
