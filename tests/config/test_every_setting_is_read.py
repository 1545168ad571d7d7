"""Every setting is read: a field of `TesseraSettings` that no code outside ``config/`` reads is
a promise the program does not keep (issue 16: ``backtest.start`` was accepted and ignored).

The walker takes every field of `TesseraSettings`, recursively (nested models, lists of
models), and looks for a read of it in the Python source of ``src/tessera`` outside
``src/tessera/config`` (the settings' own validators and helpers do not count). It parses the
source with `ast`; it neither runs nor type-checks it, so what counts as a read is a heuristic:

* A read of field ``f`` of model ``M`` is ``<expr>.f`` (not called: ``x.f()`` is a method),
  ``getattr(<expr>, "f")``, or ``<expr>.model_dump(...)`` (every field of ``M`` but those in a
  literal ``exclude={...}``; a dump of the whole `TesseraSettings` — ``tessera config show`` —
  reads nothing), where ``<expr>`` *denotes* ``M``.
* What an expression denotes is decided by its last name (``settings.backtest`` by
  ``backtest``, ``cfg.strategies[0]`` by ``strategies``, ``a or b`` by both). An *attribute*
  name denotes ``M`` everywhere when a settings field of that name holds ``M`` (or a list of
  ``M``), when a class declares an attribute of that name annotated with ``M``
  (``settings: TesseraSettings`` on ``AppContext``), or when ``self.<name>`` is assigned
  something that denotes ``M``. A *variable* name denotes ``M`` within its function (nested
  functions and lambdas included) when it is a parameter annotated with ``M``, or is assigned or
  iterated (``for``, comprehensions, ``with ... as``) from something that denotes ``M``
  (``s = app.settings``; ``for spec in cfg.features``).
* Settings are handed on in objects of other types (``live.order_timeout_s`` reaches the bot as
  ``BotOptions.order_timeout_s``), which the rule above cannot follow. So a field whose name is
  distinctive — no other field of the tree has it, and it has an underscore (``order_timeout_s``,
  ``recv_window_ms``) — counts as read by any ``<expr>.f`` or ``getattr(<expr>, "f")``. A field
  with a shared or one-word name (``name``, ``symbols``, ``interval``, ``start``, ``end``,
  ``mode``) must be read through an expression that denotes its model.

What it cannot tell: a read through a plain dict (``options["recvWindow"]``), a same-named
attribute of an unrelated object when the name is distinctive, a variable that two models flow
into. The second test shows that the walker catches a field nothing reads, with either kind of
name.
"""

from __future__ import annotations

import ast
import re
import types
import typing
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from tessera.config import ConfigError, load_settings
from tessera.config.models import BacktestConfig, LiveConfig
from tessera.config.settings import TesseraSettings

SRC = Path(__file__).resolve().parents[2] / "src" / "tessera"
CONFIG = SRC / "config"
Model = type[BaseModel]
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Setting:
    path: str  # "backtest.strategy.name", "live.strategies[].name"
    name: str
    owner: Model


def _models_in(annotation: object) -> Iterator[Model]:
    """The models in a field's type: ``M``, ``list[M]``, ``M | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _is_list(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return origin in (list, tuple)


def settings_fields(model: Model, prefix: str = "") -> Iterator[Setting]:
    """Every field of ``model`` and of the models in it, depth first."""
    for name, info in model.model_fields.items():
        path = prefix + name
        yield Setting(path, name, model)
        sep = "[]." if _is_list(info.annotation) else "."
        for sub in _models_in(info.annotation):
            yield from settings_fields(sub, path + sep)


Scope = list[ast.AST]  # the nodes of one function (or of a module outside its functions)


def parse_scopes(root: Path, exclude: Path) -> list[Scope]:
    """The scopes of every module under ``root`` but those under ``exclude``."""
    return [
        scope
        for path in sorted(root.rglob("*.py"))
        if exclude not in path.parents
        for scope in _scopes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    ]


def _scopes(tree: ast.Module) -> Iterator[Scope]:
    """The nodes of each outermost function (its nested functions with it), then the rest."""
    module: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        module.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield list(ast.walk(child))
            else:
                todo.append(child)
    yield module


def _tail(node: ast.expr) -> list[ast.expr]:
    """The expressions whose last name decides what ``node`` denotes."""
    if isinstance(node, ast.Name | ast.Attribute):
        return [node]
    if isinstance(node, ast.Subscript | ast.Starred | ast.Await):
        return _tail(node.value)
    if isinstance(node, ast.BoolOp):
        return [t for v in node.values for t in _tail(v)]
    if isinstance(node, ast.IfExp):
        return _tail(node.body) + _tail(node.orelse)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "model_copy"
    ):
        return _tail(node.func.value)
    return []


def _flows(nodes: Iterable[ast.AST]) -> Iterator[tuple[ast.expr, ast.expr]]:
    """(target, value) of every binding: assignments, loops, comprehensions, ``with``."""
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                yield target, node.value
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr) and node.value:
            yield node.target, node.value
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            yield node.target, node.iter
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            yield node.optional_vars, node.context_expr


def _targets(node: ast.expr) -> Iterator[ast.expr]:
    if isinstance(node, ast.Tuple | ast.List):
        for e in node.elts:
            yield from _targets(e)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)
    else:
        yield node


class Reads:
    """What a source tree reads of a settings model (see the module docstring)."""

    def __init__(self, scopes: Iterable[Scope], settings: Model) -> None:
        self.settings = settings
        self.fields = list(settings_fields(settings))
        self.attrs: dict[str, set[Model]] = defaultdict(set)  # attribute name -> models
        models = {settings}
        for s in self.fields:
            info = s.owner.model_fields[s.name]
            for sub in _models_in(info.annotation):
                self.attrs[s.name].add(sub)
                models.add(sub)
        # class name -> model, for annotations; a model's bases with fields too (a subclass of
        # a section is annotated with the section's name)
        self.classes: dict[str, Model] = {
            base.__name__: base
            for m in models
            for base in m.__mro__
            if isinstance(base, type) and issubclass(base, BaseModel) and base.model_fields
        }
        self.scopes = list(scopes)
        for scope in self.scopes:  # class attributes annotated with a model
            for node in scope:
                if isinstance(node, ast.ClassDef):
                    for stmt in node.body:
                        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                            self.attrs[stmt.target.id] |= self._annotated(stmt.annotation)
        self.locals: list[dict[str, set[Model]]] = []
        bindings: list[tuple[dict[str, set[Model]], list[ast.expr], ast.expr]] = []
        for scope in self.scopes:
            names: dict[str, set[Model]] = defaultdict(set)
            for node in scope:
                if isinstance(node, ast.arg) and node.annotation is not None:
                    names[node.arg] |= self._annotated(node.annotation)
            for target, value in _flows(scope):
                bindings.append((names, list(_targets(target)), value))
            self.locals.append(names)
        changed = True
        while changed:  # bindings chain: s = app.settings; self.cfg = s.backtest; ...
            changed = False
            for names, targets, value in bindings:
                found = self.denotes(value, names)
                if not found:
                    continue
                for t in targets:
                    if isinstance(t, ast.Name):
                        bucket = names[t.id]
                    elif (
                        isinstance(t, ast.Attribute)
                        and isinstance(t.value, ast.Name)
                        and t.value.id == "self"
                    ):
                        bucket = self.attrs[t.attr]
                    else:
                        continue
                    if not found <= bucket:
                        bucket |= found
                        changed = True

    def _annotated(self, annotation: ast.expr) -> set[Model]:
        return {
            self.classes[w] for w in _WORD.findall(ast.unparse(annotation)) if w in self.classes
        }

    def denotes(self, expr: ast.expr, names: dict[str, set[Model]]) -> set[Model]:
        out: set[Model] = set()
        for t in _tail(expr):
            if isinstance(t, ast.Name):
                out |= names.get(t.id, set())
            elif isinstance(t, ast.Attribute):
                out |= self.attrs.get(t.attr, set())
        return out

    def read(self) -> set[Setting]:
        """The settings read in the source."""
        read: set[tuple[Model, str]] = set()
        anywhere: set[str] = set()  # attribute names read on anything
        for scope, names in zip(self.scopes, self.locals, strict=True):
            called = {id(n.func) for n in scope if isinstance(n, ast.Call)}
            for node in scope:
                if isinstance(node, ast.Attribute) and id(node) not in called:
                    anywhere.add(node.attr)
                    read |= {(m, node.attr) for m in self.denotes(node.value, names)}
                if not isinstance(node, ast.Call):
                    continue
                func, args = node.func, node.args
                if isinstance(func, ast.Name) and func.id == "getattr" and len(args) >= 2:
                    key = args[1]
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        anywhere.add(key.value)
                        read |= {(m, key.value) for m in self.denotes(args[0], names)}
                elif isinstance(func, ast.Attribute) and func.attr == "model_dump":
                    excluded = {
                        e.value
                        for kw in node.keywords
                        if kw.arg == "exclude" and isinstance(kw.value, ast.Set | ast.List)
                        for e in kw.value.elts
                        if isinstance(e, ast.Constant)
                    }
                    for m in self.denotes(func.value, names) - {self.settings}:
                        read |= {(m, f) for f in m.model_fields if f not in excluded}
        count: dict[str, int] = defaultdict(int)
        for s in self.fields:
            count[s.name] += 1
        return {
            s
            for s in self.fields
            if any(name == s.name and issubclass(s.owner, m) for m, name in read)
            or (count[s.name] == 1 and "_" in s.name and s.name in anywhere)
        }


def unread_settings(scopes: Iterable[Scope], settings: Model) -> list[str]:
    reads = Reads(scopes, settings)
    found = reads.read()
    return [s.path for s in reads.fields if s not in found]


@pytest.fixture(scope="module")
def sources() -> list[Scope]:
    return parse_scopes(SRC, CONFIG)


@pytest.fixture(scope="module")
def unread(sources: list[Scope]) -> list[str]:
    return unread_settings(sources, TesseraSettings)


def test_every_setting_is_read_somewhere_outside_the_config_package(unread: list[str]) -> None:
    assert unread == [], (
        f"settings that nothing in src/tessera (outside config/) reads: {unread}. Wire each "
        "one where it takes effect, or remove it (models, configs/*.yaml, docs)."
    )


class _Backtest(BacktestConfig):
    """The backtest section with a distinctive field that nothing reads."""

    warmup_bars_nobody_reads: int = Field(0, description="synthetic: never read")


class _Live(LiveConfig):
    """The live section with a field named like one that is read elsewhere
    (``features.interval``, ``backtest.interval``) but read nowhere on this section."""

    interval: str = Field("1m", description="synthetic: never read on live")


class _SettingsWithUnreadFields(TesseraSettings):
    backtest: _Backtest = Field(default_factory=_Backtest)
    live: _Live = Field(default_factory=_Live)


def test_the_walker_finds_the_fields_that_nothing_reads_and_only_those(
    sources: list[Scope], unread: list[str]
) -> None:
    before = unread
    after = unread_settings(sources, _SettingsWithUnreadFields)
    assert set(after) - set(before) == {"backtest.warmup_bars_nobody_reads", "live.interval"}
    assert set(before) <= set(after)


# --- what was removed says so -----------------------------------------------------------------


def test_data_exchange_in_a_data_yaml_is_an_error_that_says_it_was_removed(
    tmp_path: Path,
) -> None:
    (tmp_path / "data.yaml").write_text("symbols: [BTCUSDT]\nexchange: binance\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config_dir=tmp_path, env_file=None)
    text = str(refused.value)
    assert str(tmp_path / "data.yaml") in text and "`data.exchange` (line 2)" in text
    assert "removed" in text and "exchange.name" in text


def test_data_exchange_in_the_environment_is_an_error_that_says_it_was_removed(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSERA_DATA__EXCHANGE", "binance")
    with pytest.raises(ConfigError) as refused:
        load_settings(config_dir=clean_env, env_file=None)
    text = str(refused.value)
    assert "`data.exchange` (from env TESSERA_DATA__EXCHANGE)" in text and "removed" in text
