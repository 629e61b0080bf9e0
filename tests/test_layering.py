"""Architecture rules of the design, checked on the source with ast.

- engine/ is pure: no database, delivery or network library, no clock, no file I/O.
- Exactly one module of the project imports durable-rules, and it is engine/rules.py.
- service/ and cli/ import no SQLAlchemy: every statement lives under adapters/store/.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"

FORBIDDEN_IN_ENGINE = {"sqlalchemy", "apprise", "smtplib", "requests", "urllib", "socket", "http",
                       "httpx", "subprocess", "alembic", "psycopg", "sqlite3", "jinja2", "fpdf"}
CLOCK_METHODS = {"today", "now", "utcnow"}                      # date.today(), datetime.now(), ...
TIME_FUNCTIONS = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
                  "localtime", "gmtime", "ctime", "asctime"}
DURABLE = {"durable", "durable_rules_engine"}
SKIP_DIRS = {".venv", "venv", ".git", "tests", "__pycache__", "build", "dist", "node_modules", ".hypothesis",
             ".pytest_cache"}


def _top(name: str | None) -> str:
    return (name or "").split(".")[0]


def imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of every module imported (import x.y, from x.y import z, importlib/__import__)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {_top(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.add(_top(node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                out.add(_top(node.args[0].value))
    return out


def clock_reads(tree: ast.AST) -> list[str]:
    """Places that read the clock: x.today(), x.now(), x.utcnow(), time.time() & co, from time import time."""
    found = []
    time_aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            time_aliases |= {a.asname or a.name for a in node.names if a.name == "time"}
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            found += [f"line {node.lineno}: from time import {a.name}" for a in node.names
                      if a.name in TIME_FUNCTIONS]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in CLOCK_METHODS:
                found.append(f"line {node.lineno}: .{node.attr}")
            elif node.attr in TIME_FUNCTIONS and isinstance(node.value, ast.Name) and node.value.id in time_aliases:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def file_io(tree: ast.AST) -> list[str]:
    """Calls to open(), Path.read_text/write_text/open & co."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                found.append(f"line {node.lineno}: open()")
            elif isinstance(func, ast.Attribute) and func.attr in (
                    "read_text", "write_text", "read_bytes", "write_bytes", "open", "mkdir", "unlink"):
                found.append(f"line {node.lineno}: .{func.attr}()")
    return found


def parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def engine_files() -> list[Path]:
    files = sorted(ENGINE.rglob("*.py"))
    assert ENGINE / "rules.py" in files and ENGINE / "decide.py" in files
    return files


def project_files() -> list[Path]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.startswith(".") or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        out.append(path)
    return out


# --- the checkers themselves catch what they are meant to catch

BAD_ENGINE_MODULE = '''
import datetime as dt
import time
from time import monotonic
import urllib.request
from sqlalchemy.orm import Session
from apprise import Apprise
import importlib

def run():
    importlib.import_module("smtplib")
    today = dt.date.today()
    stamp = dt.datetime.now(dt.timezone.utc)
    t = time.time()
    with open("/tmp/x") as f:
        return f.read()
'''


def test_checkers_find_violations():
    tree = ast.parse(BAD_ENGINE_MODULE)
    assert imported_modules(tree) & FORBIDDEN_IN_ENGINE == {"urllib", "sqlalchemy", "apprise", "smtplib"}
    assert clock_reads(tree) == ["line 4: from time import monotonic", "line 12: .today", "line 13: .now",
                                 "line 14: time.time"]
    assert file_io(tree) == ["line 15: open()"]


def test_checkers_accept_clean_code():
    tree = ast.parse("import datetime as dt\n\ndef f(as_of: dt.date):\n"
                     "    return as_of + dt.timedelta(days=1), dt.date.fromisoformat('2026-01-01')\n")
    assert imported_modules(tree) == {"datetime"}
    assert clock_reads(tree) == [] and file_io(tree) == []


def test_durable_checker_sees_every_form():
    for source in ("import durable", "import durable.lang", "from durable.engine import Host",
                   "import durable_rules_engine as d", "__import__('durable_rules_engine')"):
        assert imported_modules(ast.parse(source)) & DURABLE, source


# --- the project


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_imports_no_io_library(path):
    assert imported_modules(parse(path)) & FORBIDDEN_IN_ENGINE == set()


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_never_reads_the_clock(path):
    assert clock_reads(parse(path)) == []


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_does_no_file_io(path):
    assert file_io(parse(path)) == []


def test_exactly_one_module_imports_durable_rules_and_it_is_engine_rules():
    importers = sorted(str(path.relative_to(ROOT)) for path in project_files()
                       if imported_modules(parse(path)) & DURABLE)
    assert importers == ["engine/rules.py"]


def test_project_scan_sees_the_project():
    names = {str(p.relative_to(ROOT)) for p in project_files()}
    assert {"engine/rules.py", "engine/decide.py", "cli/__init__.py"} <= names
    assert not any(n.startswith(("tests/", ".venv/")) for n in names)


# --- the front ends and the use cases leave SQL to adapters/store/ ---------------------------------

def front_end_files() -> list[Path]:
    files = sorted([*(ROOT / "service").rglob("*.py"), *(ROOT / "cli").rglob("*.py")])
    assert ROOT / "service" / "patrons.py" in files and ROOT / "cli" / "__init__.py" in files
    return files


def test_the_sqlalchemy_checker_sees_every_form():
    for source in ("import sqlalchemy", "from sqlalchemy import select", "from sqlalchemy.exc import DBAPIError",
                   "import sqlalchemy.engine as e", "importlib.import_module('sqlalchemy.exc')"):
        assert "sqlalchemy" in imported_modules(ast.parse(source)), source
    assert "sqlalchemy" not in imported_modules(ast.parse("from adapters.store.database import StatementError"))


@pytest.mark.parametrize("path", front_end_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_of_service_or_cli_imports_sqlalchemy(path):
    assert "sqlalchemy" not in imported_modules(parse(path))


# --- the structure: no import cycle, no module of more than about 400 lines -----------------------

MAX_LINES = 420     # "about 400"


def test_no_import_cycle_anywhere_in_the_project():
    from layout import cycles, import_graph

    graph = import_graph()
    assert {"cli", "service.session", "engine.rules", "adapters.store.database"} <= set(graph)
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    from layout import cycles

    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_longer_than_about_400_lines():
    from layout import sizes

    assert [(n, path) for n, path in sizes() if n > MAX_LINES] == []
