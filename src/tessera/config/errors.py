"""Configuration errors that read like a sentence, never like a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class ConfigError(Exception):
    """A configuration problem a person must fix. The CLI prints it and exits with code 2."""

    exit_code = 2


def _loc_to_path(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML key or item at ``loc``, or of its deepest existing ancestor."""
    line: int | None = None
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                    child, line = v, k.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_validation_error(
    exc: ValidationError,
    where: str,
    yaml_root: yaml.Node | None = None,
    loc_prefix: Sequence[int | str] = (),
) -> str:
    """One paragraph naming the source, each bad field path, its line and what was wrong."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        field = _loc_to_path(tuple(loc_prefix) + loc)
        line = _line_of(yaml_root, loc) if yaml_root is not None else None
        at = f" (line {line})" if line else ""
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key; check the spelling against the documented fields"
        elif kind == "missing":
            msg = "required field is missing"
        else:
            msg = f"{err['msg']} (got {_short(err.get('input'))})"
        problems.append(f"`{field}`{at}: {msg}")
    count = len(problems)
    head = f"{where}: {count} invalid setting{'s' if count != 1 else ''}: "
    return head + "; ".join(problems) + "."


def describe_yaml_error(exc: yaml.YAMLError, path: Path) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    at = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    detail = f"{problem}" + (f" ({context})" if context else "")
    return f"{path}{at}: this is not valid YAML: {detail}. Fix the syntax at that spot."
