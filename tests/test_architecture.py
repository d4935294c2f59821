"""The code's organisation rules (docs/architecture.md), checked over the real source.

- the import contracts of pyproject.toml (layers, roles, edges, adapters) hold, and a back-edge
  planted in a copy of the tree breaks them (so the check can fail);
- every query is in a repository module, and a repository writes only its own domain's tables
  and reads only its own and lower domains' tables;
- ORM rows are constructed only inside the domain that owns their table;
- only flows, tasks, composition roots and the HTTP request dependency open transactions;
- no source file is much over 500 lines.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import services.core.models as orm

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("services", "monitors", "pipelines")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 520

#: SQLAlchemy constructs that make a query; outside a repository module they are a smell.
SQL_NAMES = {"select", "update", "delete", "insert", "text", "exists", "func", "union"}
SQL_METHODS = {"execute", "scalars", "scalar", "query", "get"}
#: Names a session or connection goes by in this code base (a Redis pipeline's execute() or a
#: Grafana builder's query() are not SQL).
SQL_RECEIVERS = {"session", "s", "conn", "connection", "db"}
#: Modules allowed to talk SQL without being a domain's repository: the database kit itself.
SQL_KITS = ("services/core/db.py", "services/core/models/")
#: Packages whose modules may open transactions (composition roots, the wiring).
ROOTS = {"api", "worker", "cli", "demo"}
TRANSACTION_OPENERS = {"services/http/deps.py", "services/core/db.py", "services/wiring.py"}


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO)
            if "migrations" in rel.parts:
                continue
            yield rel, ast.parse(path.read_text(), filename=str(rel))


def _domain(rel: Path) -> str | None:
    """``services/<domain>/...`` -> ``<domain>``."""
    parts = rel.parts
    return parts[1] if parts[0] == "services" and len(parts) > 2 else None


def _layers() -> list[list[str]]:
    """The layers contract of pyproject.toml, top first, as lists of sibling packages."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers")
    return [[m.strip() for m in layer.replace(":", "|").split("|")] for layer in contract["layers"]]


def _rank() -> dict[str, int]:
    """Package -> height (higher imports lower)."""
    layers = _layers()
    return {pkg: len(layers) - i for i, layer in enumerate(layers) for pkg in layer}


def _owner(model: type) -> str:
    """The domain that owns a table: the name of the models module it is declared in."""
    return model.__module__.rsplit(".", 1)[1]


TABLES: dict[str, type] = {
    name: getattr(orm, name) for name in orm.__all__ if hasattr(getattr(orm, name), "__table__")
}


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_import_contracts_hold() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " 0 broken" in result.stdout.split("Contracts:")[-1]


def test_a_back_edge_breaks_the_layers_contract(tmp_path: Path) -> None:
    """The same contracts over a copy of the tree in which core imports a domain."""
    for name in (*SOURCES, "pyproject.toml"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    (tmp_path / "services" / "core" / "probe.py").write_text(
        "from services.alerts import service  # a back-edge\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _lint_imports(tmp_path, env)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "services.core.probe -> services.alerts.service" in result.stdout


def test_queries_live_in_repositories() -> None:
    found = []
    for rel, tree in _modules():
        if (
            rel.name == "repository.py"
            or str(rel).startswith(SQL_KITS)
            or rel.parts[0] != "services"
        ):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                found += [
                    f"{rel}:{node.lineno} imports {a.name}"
                    for a in node.names
                    if a.name in SQL_NAMES
                ]
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_METHODS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in SQL_RECEIVERS
            ):
                found.append(f"{rel}:{node.lineno} calls {node.func.value.id}.{node.func.attr}()")
    assert found == [], "queries outside a repository:\n" + "\n".join(found)


def _referenced_tables(tree: ast.Module) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in TABLES}


def _written_tables(tree: ast.Module) -> set[str]:
    """Tables a module writes with a statement: update(T), delete(T), insert(T) and the
    dialect inserts (``postgresql.insert(T.__table__)``, ``T.__table__`` passed to a helper)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = (
                node.func.attr
                if isinstance(node.func, ast.Attribute)
                else getattr(node.func, "id", "")
            )
            if name in {"update", "delete", "insert"} and node.args:
                target = node.args[0]
                if isinstance(target, ast.Attribute):
                    target = target.value
                if isinstance(target, ast.Name) and target.id in TABLES:
                    out.add(target.id)
    return out


def test_a_repository_writes_its_own_tables_and_reads_only_lower_ones() -> None:
    rank = _rank()
    problems = []
    for rel, tree in _modules():
        domain = _domain(rel)
        if rel.name != "repository.py" or domain is None:
            continue
        here = rank[f"services.{domain}"]
        for table in sorted(_written_tables(tree)):
            if _owner(TABLES[table]) != domain:
                problems.append(f"{rel} writes {table} (owned by {_owner(TABLES[table])})")
        for table in sorted(_referenced_tables(tree)):
            owner = _owner(TABLES[table])
            if owner != domain and rank[f"services.{owner}"] >= here:
                problems.append(f"{rel} reads {table} of {owner}, which is not below {domain}")
    assert problems == [], "\n".join(problems)


def test_rows_are_built_only_by_the_domain_that_owns_the_table() -> None:
    problems = []
    for rel, tree in _modules():
        domain = _domain(rel)
        if rel.parts[0] != "services" or domain == "core":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                table = TABLES.get(node.func.id)
                if table is not None and _owner(table) != domain:
                    problems.append(f"{rel}:{node.lineno} builds a {node.func.id} row")
    assert problems == [], "\n".join(problems)


def _role(rel: Path) -> str:
    return "flows" if "flows" in rel.parts or rel.stem == "flows" else rel.stem


def test_only_flows_tasks_and_roots_open_transactions() -> None:
    problems = []
    for rel, tree in _modules():
        if rel.parts[0] != "services" or str(rel) in TRANSACTION_OPENERS:
            continue
        if _domain(rel) in ROOTS or _role(rel) in {"flows", "tasks"}:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = (
                    node.func.attr
                    if isinstance(node.func, ast.Attribute)
                    else getattr(node.func, "id", "")
                )
                if name in {"session_scope", "commit"}:
                    problems.append(f"{rel}:{node.lineno} calls {name}()")
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("root", SOURCES)
def test_no_god_modules(root: str) -> None:
    long = [
        f"{path.relative_to(REPO)}: {n} lines"
        for path in sorted((REPO / root).rglob("*.py"))
        if "migrations" not in path.parts and (n := path.read_text().count("\n")) > MAX_LINES
    ]
    assert long == [], f"split these by sub-feature (limit {MAX_LINES} lines):\n" + "\n".join(long)
