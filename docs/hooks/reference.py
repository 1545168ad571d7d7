"""mkdocs hook: generate the CLI and configuration reference pages at build time.

Both pages are rendered from the code on every build — the CLI page from the Typer app's click
tree, the configuration page from the pydantic models — so they can never go stale. A mismatch
that the generator cannot document (a section model that is not a settings field) is logged as
a warning, which fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

log = logging.getLogger("mkdocs.hooks.reference")

CLI_PAGE = "reference/cli.md"
CONFIG_PAGE = "reference/configuration.md"
BANNER = "<!-- generated at build time by docs/hooks/reference.py; do not edit -->\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, render in ((CLI_PAGE, render_cli), (CONFIG_PAGE, render_config)):
        existing = files.get_file_from_path(uri)
        if existing is not None:  # a stale hand-written copy must not shadow the generated page
            files.remove(existing)
        files.append(File.generated(config, uri, content=BANNER + render()))
    return files


# --- shared -----------------------------------------------------------------------------------


_CODE_SPAN = re.compile(r"(`[^`]*`)")


def md_text(text: str) -> str:
    """Plain help text -> inline Markdown: code spans kept, everything else taken literally."""
    parts = []
    for i, part in enumerate(_CODE_SPAN.split(text)):
        if i % 2:  # a code span: Markdown shows it verbatim already
            parts.append(part)
            continue
        part = part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        part = re.sub(r"([\\*_\[\]|])", r"\\\1", part)
        parts.append(part)
    return "".join(parts)


def code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# --- CLI --------------------------------------------------------------------------------------


class _CapturedError(Exception):
    """Raised instead of running the app, once `main()` has mounted everything."""


def cli_root() -> Any:
    """The click command of ``tessera``, with every sub-command `main()` would mount.

    `main()` is called with ``Typer.__call__`` replaced, so whatever it mounts before running the
    app (now or in a later version) is included, and nothing is run.
    """
    from tessera import cli

    captured: list[typer.Typer] = []

    def capture(self: typer.Typer, *args: Any, **kwargs: Any) -> None:
        captured.append(self)
        raise _CapturedError

    original = typer.Typer.__call__
    argv = sys.argv
    typer.Typer.__call__ = capture  # type: ignore[method-assign]
    sys.argv = ["tessera", "--help"]  # if main() ever runs something else: only the help
    try:
        quiet = contextlib.redirect_stdout(io.StringIO())
        with quiet, contextlib.suppress(_CapturedError, SystemExit):
            cli.main()
    finally:
        typer.Typer.__call__ = original  # type: ignore[method-assign]
        sys.argv = argv
    return typer.main.get_command(captured[0] if captured else cli.app)


def walk_commands(command: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """(command, context) depth-first, sub-commands in name order; contexts carry the path."""
    yield command, ctx
    for name in sorted(getattr(command, "commands", {}) or {}):
        sub = command.commands[name]
        yield from walk_commands(sub, type(ctx)(sub, info_name=name, parent=ctx))


def _help_markdown(text: str) -> list[str]:
    """Click help (paragraphs; indented or ``\\b`` paragraphs are verbatim) -> Markdown blocks.

    Consecutive verbatim paragraphs (a list of examples) become one code block.
    """
    blocks: list[str] = []
    verbatim_lines: list[str] = []

    def flush() -> None:
        if verbatim_lines:
            blocks.append("```text\n" + textwrap.dedent("\n".join(verbatim_lines)) + "\n```")
            verbatim_lines.clear()

    for para in re.split(r"\n\s*\n", text.strip("\n")):
        lines = para.splitlines()
        if lines and lines[0].strip() == "\b":
            verbatim_lines.extend(lines[1:])
        elif all(line.startswith("  ") for line in lines):
            verbatim_lines.extend(lines)
        else:
            flush()
            blocks.append(md_text(" ".join(line.strip() for line in lines)))
    flush()
    return blocks


def _param_row(param: Any, ctx: Any) -> str:
    names = [*param.opts, *param.secondary_opts]
    if param.param_type_name == "argument":
        names = [(param.metavar or param.name) + ("..." if param.nargs != 1 else "")]
    shown = ", ".join(code(n) for n in names)
    if getattr(param, "is_flag", False):
        kind = "flag"
    else:
        display = getattr(param, "display_type_rich", None)
        kind = str(display(ctx) if display else param.make_metavar(ctx)).strip("<>")
    record = param.get_help_record(ctx)
    text = record[1] if record else (getattr(param, "help", None) or "")
    return f"| {shown} | {code(kind)} | {md_text(text)} |"


def render_cli() -> str:
    root = cli_root()
    root_ctx = typer.Context(root, info_name="tessera")
    commands = list(walk_commands(root, root_ctx))
    out = [
        "# CLI reference",
        "",
        "Every command of `tessera`, generated from the Typer app (`tessera.cli:app`) when the "
        "site is built. The options of `tessera` itself (`--config-dir`, `--mode`, `--seed`, "
        "...) go before the command: `tessera --mode paper backtest`. `tessera COMMAND --help` "
        "prints the same text.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for command, ctx in commands[1:]:
        path = ctx.command_path
        summary = md_text(command.get_short_help_str(limit=120))
        out.append(f"| [{code(path)}](#{path.replace(' ', '-')}) | {summary} |")
    for command, ctx in commands:
        path = ctx.command_path
        # `tessera` and its commands are level 2, sub-commands level 3 and deeper 4
        level = min(max(path.count(" ") + 1, 2), 4)
        out += ["", f"{'#' * level} {path}", ""]
        if command.hidden:
            out += ["*Hidden command.*", ""]
        usage = command.get_usage(ctx).removeprefix("Usage: ")
        out += ["```text", usage, "```", ""]
        for block in _help_markdown(command.help or ""):
            out += [block, ""]
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        if params:
            out += ["| option | type | description |", "|---|---|---|"]
            out += [_param_row(p, ctx) for p in params]
            out.append("")
        subs = sorted(getattr(command, "commands", {}) or {})
        if subs and command is not root:  # the root's are in the table at the top
            out.append(
                "Sub-commands: "
                + ", ".join(f"[{code(f'{path} {s}')}](#{path.replace(' ', '-')}-{s})" for s in subs)
                + "."
            )
    return "\n".join(out) + "\n"


# --- configuration ----------------------------------------------------------------------------


def type_name(annotation: Any) -> str:
    """A reader's spelling of a field type: ``list[str]``, ``"dev" | "paper"``, ``int | None``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type):
        return {Decimal: "decimal", SecretStr: "secret str"}.get(annotation, annotation.__name__)
    if isinstance(annotation, typing.TypeAliasType):
        return type_name(annotation.__value__)
    return str(annotation)


_BOUNDS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}


def constraints(field: FieldInfo) -> list[str]:
    found = []
    for meta in field.metadata:
        for attr, symbol in _BOUNDS.items():
            value = getattr(meta, attr, None)
            if value is not None:
                found.append(f"{symbol} {value}")
        if getattr(meta, "min_length", None) is not None:
            found.append(f"at least {meta.min_length} item(s)")
        if getattr(meta, "pattern", None) is not None:
            found.append(f"matches `{meta.pattern}`")
    return found


def item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of ``list[Model]`` fields (documented per item, set as a whole)."""
    if typing.get_origin(annotation) is list:
        (arg,) = typing.get_args(annotation)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def default_of(field: FieldInfo) -> tuple[bool, Any]:
    """(has a default, the default as JSON-able data)."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return False, None
    else:
        value = field.default
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return True, to_jsonable_python(value)


def _section_table(
    fields: dict[str, FieldInfo], prefix: str, env: str | None, yaml_file: str, key_prefix: str
) -> tuple[list[str], list[tuple[str, str, str | None, str, str, type[BaseModel], bool]]]:
    """Rows for the leaf ``fields``; nested models are returned to be documented next."""
    rows = [
        "| key | type | default | environment variable | description |",
        "|---|---|---|---|---|",
    ]
    long_defaults: list[str] = []
    nested = []
    for name, field in fields.items():
        path = f"{prefix}{name}"
        key = f"{key_prefix}{name}"
        var = f"{env}{name.upper()}" if env is not None else None
        if is_model(field.annotation):
            nested.append(
                (path, key, var, yaml_file, field.description or "", field.annotation, False)
            )
            continue
        items = item_model(field.annotation)
        if items is not None:
            nested.append((path, key, var, yaml_file, field.description or "", items, True))
        kind = type_name(field.annotation)
        extra = constraints(field)
        kind_md = code(kind) + (", " + ", ".join(extra) if extra else "")
        has_default, value = default_of(field)
        if not has_default:
            default_md = "required"
        elif value is None:
            default_md = "none"
        else:
            text = json.dumps(value)
            if len(text) > 60:
                default_md = "see below"
                block = yaml.safe_dump(value, default_flow_style=None, sort_keys=False)
                long_defaults += ["", f"Default of `{path}`:", "", "```yaml", block.rstrip(), "```"]
            else:
                default_md = code(text)
        var_md = code(var) if var else "— (set the whole list)"
        if var and (items is not None or kind.startswith(("list", "dict"))):
            var_md += " (JSON)"
        rows.append(
            f"| {code(key)} | {kind_md} | {default_md} | {var_md} | "
            f"{md_text(field.description or '')} |"
        )
    return rows + long_defaults, nested


def render_model(
    title: str,
    fields: dict[str, FieldInfo],
    doc: str | None,
    prefix: str,
    env: str | None,
    yaml_file: str,
    key_prefix: str,
    intro: str,
    level: int = 2,
) -> list[str]:
    out = ["", f"{'#' * min(level, 4)} {title}", ""]
    if doc:  # the first paragraph of the model's docstring
        out += [md_text(" ".join(doc.strip().split("\n\n")[0].split())), ""]
    out += [intro, ""]
    rows, nested = _section_table(fields, prefix, env, yaml_file, key_prefix)
    out += rows
    for path, key, var, file, description, sub, is_list in nested:
        if is_list:
            sub_intro = f"Each item of the list `{path}` in `{file}`" + (
                f"; from the environment, the whole list as JSON in `{var}`." if var else "."
            )
            out += render_model(
                f"{code(path + '[]')} — {description}",
                sub.model_fields,
                sub.__doc__,
                f"{path}[].",
                None,
                file,
                "",
                sub_intro,
                level + 1,
            )
        else:
            sub_intro = f"Key `{key}` in `{file}`; environment variables `{var}__<FIELD>`."
            out += render_model(
                f"{code(path)} — {description}",
                sub.model_fields,
                sub.__doc__,
                f"{path}.",
                f"{var}__",
                file,
                f"{key}.",
                sub_intro,
                level + 1,
            )
    return out


def settings_env_prefix() -> str:
    from tessera.config.settings import TesseraSettings

    return str(TesseraSettings.model_config.get("env_prefix", "")).upper()


def render_config() -> str:
    from tessera.config.models import SECTION_MODELS
    from tessera.config.settings import TOP_LEVEL_YAML, TesseraSettings

    prefix = settings_env_prefix()
    delim = TesseraSettings.model_config.get("env_nested_delimiter") or "__"
    fields = TesseraSettings.model_fields
    for section in SECTION_MODELS:
        if section not in fields:
            log.warning("SECTION_MODELS has %r, which TesseraSettings lacks", section)
    top = {n: f for n, f in fields.items() if not is_model(f.annotation)}
    out = [
        "# Configuration reference",
        "",
        "Every setting of Tessera, generated from the pydantic models "
        "(`tessera.config.settings.TesseraSettings` and the section models of "
        "`tessera.config.models.SECTION_MODELS`) when the site is built.",
        "",
        "Values are read from, lowest to highest precedence: the defaults below; the YAML files "
        f"in the config folder (`configs/`, or `--config-dir` / `{prefix}CONFIG_DIR`); the "
        f"`.env` file (only its `{prefix}*` keys); `{prefix}*` environment variables; and the "
        "options of `tessera` itself (`--mode`, `--seed`, `--log-level`, `--json/--no-json`, "
        "`--metrics-port`, `--config-dir`; see the [CLI reference](cli.md#tessera)).",
        "",
        "- **YAML files**: top-level settings and the `exchange` block live in "
        f"`configs/{TOP_LEVEL_YAML}`; each section has its own file, "
        + ", ".join(f"`configs/{s}.yaml`" for s in SECTION_MODELS)
        + ", whose keys are the section's fields (nested blocks as nested mappings).",
        f"- **Environment variables**: `{prefix}<FIELD>` for a top-level field, "
        f"`{prefix}<SECTION>{delim}<FIELD>` in a section, one more `{delim}` per nesting level "
        f"(`{prefix}MODEL{delim}LIGHTGBM{delim}NUM_LEAVES=63`). Names are case-insensitive. "
        'Lists and mappings take JSON (`TESSERA_DATA__SYMBOLS=\'["BTCUSDT","ETHUSDT"]\'`); a '
        "list of objects (features, strategies) can only be set as a whole.",
        "- **Unknown keys are errors**, in YAML and in the environment: a typo never falls back "
        "to a default. `tessera config validate` checks the files; `tessera config show` prints "
        "the effective values and where each came from.",
        "- Money, prices and quantities are decimals (write them as strings or numbers); rates "
        "and percentages are floats. Secrets (`secret str`) print as `**********`.",
    ]
    out += render_model(
        "Top level",
        top,
        None,
        "",
        prefix,
        f"configs/{TOP_LEVEL_YAML}",
        "",
        f"Top-level keys of `configs/{TOP_LEVEL_YAML}`.",
    )
    for name, field in fields.items():
        if not is_model(field.annotation):
            continue
        section_model = field.annotation
        in_own_file = name in SECTION_MODELS
        yaml_file = f"configs/{name}.yaml" if in_own_file else f"configs/{TOP_LEVEL_YAML}"
        key_prefix = "" if in_own_file else f"{name}."
        intro = (
            f"File `{yaml_file}`; environment variables `{prefix}{name.upper()}{delim}<FIELD>`."
            if in_own_file
            else f"Key `{name}:` in `{yaml_file}`; environment variables "
            f"`{prefix}{name.upper()}{delim}<FIELD>`."
        )
        out += render_model(
            f"{code(name)} — {yaml_file}",
            section_model.model_fields,
            section_model.__doc__,
            f"{name}.",
            f"{prefix}{name.upper()}{delim}",
            yaml_file,
            key_prefix,
            intro,
        )
    return "\n".join(out) + "\n"
