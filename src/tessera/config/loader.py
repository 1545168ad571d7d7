"""Reading YAML config files into typed models with errors that name file, field and line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tessera.config.errors import ConfigError, describe_validation_error, describe_yaml_error

M = TypeVar("M", bound=BaseModel)

# libyaml's parser when PyYAML was built with it: every command reads the config files at its
# start, and the pure-Python parser made that most of the start-up time (~10x slower). Both
# build the same values with the same safe constructor; the pure-Python one is the fallback.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml_mapping(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse ``path`` into a mapping (empty file -> ``{}``) and its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found.") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror}.") from exc
    try:
        node, data = _parse(text, _SAFE_LOADER)
    except yaml.YAMLError:
        try:  # the pure-Python parser: the error (or the value) it always gave
            node, data = _parse(text, yaml.SafeLoader)
        except yaml.YAMLError as exc:
            raise ConfigError(describe_yaml_error(exc, path)) from exc
    if data is None:
        return {}, node
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of `key: value` lines, "
            f"found a {type(data).__name__}."
        )
    return data, node


def _parse(text: str, loader: Any) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the value of one YAML document (a safe loader)."""
    return yaml.compose(text, Loader=loader), yaml.load(text, Loader=loader)


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Load and validate one YAML file as ``model``.

    Any problem raises :class:`ConfigError` with one paragraph that names the file, the field
    path, the line, and what was wrong; it never leaks a raw traceback to the user.
    """
    path = Path(path)
    data, node = read_yaml_mapping(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, str(path), node)) from exc


def dump_yaml(model: BaseModel) -> str:
    """Serialise a config model back to YAML (decimals and paths as strings)."""
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)


def example_yaml(model: type[BaseModel], indent: int = 0) -> str:
    """A commented YAML rendering of ``model``'s defaults: each key preceded by its description."""
    lines: list[str] = []
    pad = " " * indent
    defaults = model().model_dump(mode="json") if indent == 0 else None
    _render(model, defaults if defaults is not None else {}, lines, pad)
    return "\n".join(lines) + "\n"


def _render(model: type[BaseModel], values: dict[str, Any], lines: list[str], pad: str) -> None:
    for name, info in model.model_fields.items():
        if info.description:
            lines.append(f"{pad}# {info.description}")
        value = values.get(name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{pad}{name}:")
            _render(annotation, value or {}, lines, pad + "  ")
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = [{k: v for k, v in item.items() if v is not None} for item in value]
        if annotation is Decimal and isinstance(value, str):
            lines.append(f"{pad}{name}: {value}")  # a plain YAML number reads back exactly
            continue
        style = None if isinstance(value, list | dict) else False
        dumped = yaml.safe_dump({name: value}, sort_keys=False, default_flow_style=style).rstrip()
        lines.extend(pad + line for line in dumped.splitlines())
