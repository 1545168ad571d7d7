"""The pure domain imports no venue: checked on the source with `ast`, so that an import
hidden in a function is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

EXECUTION = Path(__file__).resolve().parents[2] / "src" / "tessera" / "execution"
# execution/* is the domain except the modules that talk to an exchange
ADAPTERS = {"ccxt_exchange.py", "userdata.py", "paper.py"}
NAMED = {"orders.py", "state.py", "position.py", "portfolio.py", "fees.py", "filters.py",
         "sizing.py", "matching.py", "pretrade.py", "reports.py", "exchange.py"}  # fmt: skip


def domain_files() -> list[Path]:
    files = [
        p for p in EXECUTION.rglob("*.py") if p.name not in ADAPTERS or p.parent.name == "perp"
    ]
    return sorted(files)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def test_the_domain_files_named_in_the_issue_and_the_perp_domain_are_checked() -> None:
    names = {p.name for p in domain_files()}
    assert names >= NAMED
    assert {p.name for p in (EXECUTION / "perp").glob("*.py")} <= names
    assert not names & ADAPTERS


def test_no_domain_module_imports_a_venue() -> None:
    offenders = [
        f"{path.relative_to(EXECUTION)}:{line} imports {module}"
        for path in domain_files()
        for line, module in imported_modules(path)
        if module == "tessera.venues" or module.startswith("tessera.venues.")
    ]
    assert offenders == []


def test_the_check_finds_a_venue_import_inside_a_function(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from tessera.venues.binance import status\n")
    assert (2, "tessera.venues.binance") in imported_modules(sample)
    sample.write_text("from tessera import venues\n")
    assert (1, "tessera.venues") in imported_modules(sample)
