"""`slot_init`: a cheaper ``__init__`` for the frozen, slotted dataclasses a backtest builds on
every order and fill (`Fill`, `Match`, `OrderIntent`, ...), with the same signature and effect.

Why: a frozen dataclass's generated ``__init__`` stores each field with
``object.__setattr__(self, name, value)`` (its own ``__setattr__`` refuses), and on CPython 3.11
that generic call costs three to four times what the slot's own descriptor costs
(``Cls.field.__set__(self, value)``): a seven-field frozen object took ~2.6 µs to build against
~0.9 µs, measured with ``timeit`` on the 2-core dev box (issue 20). A backtest builds about ten
such objects for every order, so their ``__init__`` was a fifth of an order-and-fill round trip.

What stays the same: the parameters (names, order, defaults), ``__post_init__`` (run last, as
the generated ``__init__`` runs it), equality, hashing, ``repr``, pickling, `dataclasses.replace`
and the frozen guarantee (assigning a field afterwards still raises ``FrozenInstanceError``).
Only frozen, slotted dataclasses whose fields are all ``init`` fields without a
``default_factory`` or ``kw_only`` qualify; anything else is refused at import time rather than
handled half-way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def slot_init(cls: type[T]) -> type[T]:
    """Give the frozen, slotted dataclass ``cls`` an ``__init__`` that sets each slot through its
    descriptor. Apply it above ``@dataclass(frozen=True, slots=True)``."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"slot_init: {cls.__name__} is not a frozen, slotted dataclass")
    namespace: dict[str, Any] = {}
    args: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"slot_init: {cls.__name__}.{f.name} is not a plain init field")
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}):\n" + ("\n".join(body) or "    pass")
    exec(source, namespace)  # the way `dataclasses` itself builds __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
