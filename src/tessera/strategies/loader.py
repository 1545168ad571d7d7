"""Strategies of one's own: Python files and installed packages join the built-in registry.

A strategy is resolved by name (``--strategy my_rsi``) in the backtest, the sweep and the live
bot, so a user strategy must be *registered* before any of them looks a name up — and it must
be registered the same way everywhere, or a strategy would backtest and then be unknown to
``tessera run``. This module is that one way:

* every ``*.py`` file of a folder (or one file) is imported as its own module and each
  `Strategy` subclass defined there is registered under its ``name`` (files starting with
  ``_`` are helpers and are not executed);
* every entry point of the group ``tessera.strategies`` of the installed packages is loaded;
  its value is a `Strategy` subclass.

It never shadows: a name already taken by a built-in or by another user strategy is an error
naming both sources, as is an import error (file and line, no traceback). Loading the same
files again in one process (tests, notebooks, a sweep's workers) is a no-op, or a reload when a
file changed. Every strategy's source is recorded ("built-in", "file <path>",
"package <dist> <version>") for ``tessera strategy list``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import linecache
import re
import sys
import traceback
import types
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path

from tessera.strategies import base
from tessera.strategies.base import ParamSpec, Strategy, param_specs

ENTRY_POINT_GROUP = "tessera.strategies"
USER_PACKAGE = "tessera_user_strategies"
BUILTIN = "built-in"
# Looked at when no path is configured, and skipped when it does not exist.
DEFAULT_STRATEGY_PATH = Path("strategies")
# The attribute `tessera.optimize.objectives.register_objective` sets on a function it registers:
# a file of objectives only is a user file too (read by name, so this module imports nothing
# of the optimiser).
OBJECTIVE_MARK = "__tessera_objective__"
# What a strategy name must look like: `--strategy NAME:k=v,...` and the bot's signal ids
# (`run:strategy:symbol:...`) split on ':' and ','.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class StrategyLoadError(ValueError):
    """A user strategy that cannot be registered; the message is one paragraph for a person."""


@dataclass(frozen=True, slots=True)
class LoadedStrategy:
    """One user strategy registered by the loader."""

    name: str
    cls: type[Strategy]
    source: str


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    """A registered strategy as ``tessera strategy list`` shows it."""

    name: str
    source: str
    params: tuple[ParamSpec, ...]
    doc: str


@dataclass(frozen=True, slots=True)
class LoaderState:
    """What was loaded in this process, for another process to load the same (a sweep worker
    started by spawn, a Ray task): picklable, paths resolved."""

    paths: tuple[Path, ...]
    entry_points: bool


@dataclass(frozen=True, slots=True)
class _FileRecord:
    stamp: tuple[int, int]  # (mtime_ns, size): a changed file is imported again
    module: str
    strategies: tuple[LoadedStrategy, ...]


_SOURCES: dict[str, LoadedStrategy] = {}  # every strategy this module registered, by name
_FILES: dict[Path, _FileRecord] = {}  # by resolved path
_PATHS: list[Path] = []  # resolved paths given to load_strategies, in order
_ENTRY_POINTS: dict[str, LoadedStrategy] = {}  # by name, as last loaded
# sys.path when the entry points were last loaded: what they depend on (None: never loaded)
_entry_points_path: tuple[str, ...] | None = None


def load_strategies(path: Path | None, *, entry_points: bool = True) -> list[LoadedStrategy]:
    """Register the strategies of ``path`` (a folder of ``*.py`` files, or one file) and, with
    ``entry_points``, those of the installed packages; return what is registered from them.

    `StrategyLoadError` when ``path`` does not exist, a file does not import (file and line),
    a class has no ``name`` of its own, or a name is taken by another strategy (both sources).
    """
    loaded: list[LoadedStrategy] = []
    if path is not None:
        if not path.exists():
            raise StrategyLoadError(
                f"strategy path {path} does not exist: give a folder of strategy files "
                "(or one .py file) with --strategy-path or the strategies_path setting, or "
                "create it with `tessera strategy new NAME --dir DIR`."
            )
        if path.is_dir():
            files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.suffix == ".py":
            files = [path]
        else:
            raise StrategyLoadError(
                f"strategy path {path} is neither a folder nor a .py file: give a folder of "
                "strategy files or one .py file."
            )
        for file in files:
            loaded.extend(_load_file(file))
        resolved = path.resolve()
        if resolved not in _PATHS:
            _PATHS.append(resolved)
    if entry_points:
        loaded.extend(_load_entry_points())
    return loaded


def ensure_strategies_loaded(
    path: Path | None = None, *, entry_points: bool = True
) -> list[LoadedStrategy]:
    """What every command calls once before it resolves a strategy name.

    ``path`` is the configured one (``--strategy-path`` or the ``strategies_path`` setting)
    and must exist; None means the default ``./strategies``, loaded only if it exists.
    """
    if path is None and DEFAULT_STRATEGY_PATH.is_dir():
        path = DEFAULT_STRATEGY_PATH
    return load_strategies(path, entry_points=entry_points)


def loader_state() -> LoaderState:
    """The paths (and whether entry points) this process loaded: see `restore_loader_state`."""
    return LoaderState(tuple(_PATHS), _entry_points_path is not None)


def restore_loader_state(state: LoaderState) -> None:
    """Load what ``state`` says another process loaded; a no-op for what is loaded already."""
    for path in state.paths:
        load_strategies(path, entry_points=False)
    if state.entry_points:
        _load_entry_points()


def strategy_sources() -> dict[str, str]:
    """Where each registered strategy comes from: "built-in", "file <path>" or
    "package <dist> <version>" (a class registered by other code: "module <name>")."""
    return {name: _source_of(name, cls) for name, cls in sorted(base._REGISTRY.items())}


def strategy_infos() -> list[StrategyInfo]:
    """Every registered strategy, built-ins first: source, parameters with defaults, and the
    first paragraph of its docstring."""
    infos = [
        StrategyInfo(
            name=name,
            source=_source_of(name, cls),
            params=tuple(param_specs(cls.Params)),
            doc=_first_paragraph(cls),
        )
        for name, cls in base._REGISTRY.items()
    ]
    return sorted(infos, key=lambda i: (i.source != BUILTIN, i.name))


# --- files -------------------------------------------------------------------------------------


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def _load_file(file: Path) -> list[LoadedStrategy]:
    resolved = file.resolve()
    stat = resolved.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    known = _FILES.get(resolved)
    if known is not None and known.stamp == stamp and _all_registered(known.strategies):
        return list(known.strategies)
    source = f"file {_display(file)}"
    digest = sha1(str(resolved).encode(), usedforsecurity=False).hexdigest()[:10]
    module_name = f"{USER_PACKAGE}.{_module_stem(resolved.stem)}_{digest}"
    module = _import_file(resolved, module_name)
    classes = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Strategy)
        and obj.__module__ == module_name
        and not obj.__name__.startswith("_")
        and not inspect.isabstract(obj)
    ]
    if not classes and not _registers_objectives(module):
        raise StrategyLoadError(
            f"strategy file {_display(file)} defines no Strategy subclass: a strategy is a "
            "class deriving from tessera.strategies.Strategy with a `name` (see `tessera "
            "strategy new NAME`), an objective a function decorated with @register_objective "
            "(tessera.optimize.objectives); a helper module's file name must start with _ to "
            "be skipped."
        )
    previous = known.strategies if known is not None else ()
    found = [LoadedStrategy(_own_name(cls, source), cls, source) for cls in classes]
    _check_conflicts(found, replacing=previous)
    for old in previous:  # the file changed: its new classes replace its old ones
        if base._REGISTRY.get(old.name) is old.cls:
            del base._REGISTRY[old.name]
    for item in found:
        base.register_strategy(item.cls)
        _SOURCES[item.name] = item
    _FILES[resolved] = _FileRecord(stamp, module_name, tuple(found))
    return found


def _registers_objectives(module: types.ModuleType) -> bool:
    """The file defines optimisation objectives (``@register_objective`` marks them): it is
    loaded like a strategy file, so that every command and worker process registers them."""
    return any(
        getattr(obj, OBJECTIVE_MARK, None) is not None
        for obj in vars(module).values()
        if callable(obj)
    )


def _module_stem(stem: str) -> str:
    cleaned = re.sub(r"\W", "_", stem)
    return cleaned if cleaned[:1].isalpha() else f"m_{cleaned}"


def _import_file(path: Path, module_name: str) -> types.ModuleType:
    """Execute ``path`` as the module ``module_name``; `StrategyLoadError` naming the file and
    the line when it raises. The module is in ``sys.modules`` while it runs, as an imported
    module would be (pydantic resolves the annotations of ``Params`` through it)."""
    if USER_PACKAGE not in sys.modules:
        package = types.ModuleType(USER_PACKAGE, "Strategy files loaded by tessera.")
        package.__path__ = []
        sys.modules[USER_PACKAGE] = package
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has one
        raise StrategyLoadError(f"strategy file {path}: Python cannot import it")
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get(module_name)
    sys.modules[module_name] = module
    folder = str(path.parent)
    added = folder not in sys.path
    if added:  # a strategy file may import its helpers (_helpers.py) beside it
        sys.path.append(folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        if before is not None:
            sys.modules[module_name] = before
        else:
            sys.modules.pop(module_name, None)
        raise StrategyLoadError(_import_error(path, exc)) from None
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return module


def _import_error(path: Path, exc: Exception) -> str:
    """One paragraph: the file, the line (and its text) where the import failed, and the error."""
    shown = _display(path)
    line: int | None = None
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename) == path:
        line = exc.lineno
        message = f"SyntaxError: {exc.msg}"
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename and Path(frame.filename) == path:
                line = frame.lineno
        message = f"{type(exc).__name__}: {exc}"
    where = f"{shown}, line {line}" if line else shown
    text = linecache.getline(str(path), line).strip() if line else ""
    quoted = f" (`{text}`)" if text else ""
    return (
        f"strategy file {where}{quoted} does not import: {message}. Every .py file of a "
        "strategy folder is imported when strategies are loaded: fix the file, or rename it "
        "to start with _ to keep it out."
    )


# --- entry points ------------------------------------------------------------------------------


def _load_entry_points() -> list[LoadedStrategy]:
    global _entry_points_path
    if _entry_points_path == tuple(sys.path) and _all_registered(tuple(_ENTRY_POINTS.values())):
        return list(_ENTRY_POINTS.values())
    found: list[LoadedStrategy] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        source = f"package {dist.name} {dist.version}" if dist is not None else "package ?"
        where = f"the entry point {ep.name} = {ep.value} ({source}, group {ENTRY_POINT_GROUP})"
        try:
            obj = ep.load()
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            at = f" at {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""
            raise StrategyLoadError(
                f"{where} does not import: {type(exc).__name__}: {exc}{at}. Fix or uninstall "
                "the package."
            ) from None
        if not (isinstance(obj, type) and issubclass(obj, Strategy)):
            raise StrategyLoadError(
                f"{where} is not a Strategy subclass (it is {obj!r}): the value of a "
                f"{ENTRY_POINT_GROUP} entry point is module:Class of a tessera.strategies."
                "Strategy subclass."
            )
        name = _own_name(obj, source)
        if name != ep.name:
            raise StrategyLoadError(
                f"{where} loads a strategy named {name!r}: the entry point's name must be the "
                f'strategy\'s `name` (write `{name} = "{ep.value}"`).'
            )
        found.append(LoadedStrategy(name, obj, source))
    fresh = [f for f in found if base._REGISTRY.get(f.name) is not f.cls]
    _check_conflicts(fresh, replacing=())
    for item in fresh:
        base.register_strategy(item.cls)
        _SOURCES[item.name] = item
    _ENTRY_POINTS.clear()
    _ENTRY_POINTS.update({f.name: f for f in found})
    _entry_points_path = tuple(sys.path)
    return found


# --- shared ------------------------------------------------------------------------------------


def _all_registered(items: tuple[LoadedStrategy, ...]) -> bool:
    return all(base._REGISTRY.get(i.name) is i.cls for i in items)


def _own_name(cls: type[Strategy], source: str) -> str:
    """The class's own ``name``: inheriting one (``strategy`` of the base, or a parent's) would
    register it under a name it does not claim."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name or name == Strategy.name:
        raise StrategyLoadError(
            f"strategy class {cls.__name__} ({source}) has no name of its own: add a class "
            f'attribute such as `name = "{_snake(cls.__name__)}"`, the name that --strategy '
            "and the configs use (unique among all strategies)."
        )
    if not _NAME.fullmatch(name):
        raise StrategyLoadError(
            f"strategy class {cls.__name__} ({source}) is named {name!r}: a name starts with a "
            "letter and has letters, digits, _ and - only (--strategy NAME:k=v splits on : "
            "and ,)."
        )
    return name


def _snake(class_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


def _check_conflicts(found: list[LoadedStrategy], *, replacing: tuple[LoadedStrategy, ...]) -> None:
    """A name taken by another strategy (or twice in ``found``) is an error naming both."""
    replaced = {r.name: r.cls for r in replacing}
    seen: dict[str, LoadedStrategy] = {}
    for item in found:
        other = seen.get(item.name)
        if other is not None:
            raise StrategyLoadError(
                f"strategy name {item.name!r} is used twice in {item.source}: by "
                f"{other.cls.__name__} and {item.cls.__name__}; strategy names are unique."
            )
        seen[item.name] = item
        taken = base._REGISTRY.get(item.name)
        if taken is not None and taken is not item.cls and replaced.get(item.name) is not taken:
            raise StrategyLoadError(
                f"strategy name {item.name!r} of {item.cls.__name__} ({item.source}) is already "
                f"taken by {taken.__name__} ({_source_of(item.name, taken)}): a strategy never "
                "replaces another; rename one of them (its class attribute `name`)."
            )


def _source_of(name: str, cls: type[Strategy]) -> str:
    recorded = _SOURCES.get(name)
    if recorded is not None and recorded.cls is cls:
        return recorded.source
    if cls.__module__.startswith("tessera."):
        return BUILTIN
    return f"module {cls.__module__}"


def _first_paragraph(cls: type[Strategy]) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(paragraph.replace("``", "`").split())
