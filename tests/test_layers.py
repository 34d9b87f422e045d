"""Imports point one way: server.py -> web/ -> schema/ -> db/; db/rules.py only validates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

WEB = {"strawberry", "starlette", "graphql", "uvicorn", "schema", "server", "web"}
RULES_MAY_IMPORT = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "re",
    "unicodedata",
    "typing",
    "email_validator",
    "disposable_email_domains",
    "phonenumbers",
    "pycountry",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted((ROOT / "db").rglob("*.py")), ids=lambda p: p.name)
def test_db_never_imports_the_web_layers(path: Path) -> None:
    assert imported_roots(path) & WEB == set()


def test_rules_import_only_the_standard_library_and_validators() -> None:
    assert imported_roots(ROOT / "db" / "rules.py") - RULES_MAY_IMPORT == set()


@pytest.mark.parametrize("path", sorted((ROOT / "schema").rglob("*.py")), ids=lambda p: p.name)
def test_schema_never_imports_the_server_or_the_edge(path: Path) -> None:
    assert imported_roots(path) & {"server", "web"} == set()


@pytest.mark.parametrize("path", sorted((ROOT / "web").rglob("*.py")), ids=lambda p: p.name)
def test_the_edge_never_imports_the_server(path: Path) -> None:
    assert "server" not in imported_roots(path)


def test_graphql_folder_holds_no_python() -> None:
    assert list((ROOT / "graphql").rglob("*.py")) == []


def test_server_py_holds_the_command_line_only() -> None:
    """Settings, the app, start-up and the runtime live in web/; server.py stays small."""
    source = (ROOT / "server.py").read_text()
    tree = ast.parse(source)
    assert [node.name for node in tree.body if isinstance(node, ast.ClassDef)] == []
    assert len(source.splitlines()) <= 250
