"""Shared fixtures: the shipped policy, databases (a SQLite file; PostgreSQL when a URL is given)."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.policy import Policy, parse_policy

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
PG_URL = os.environ.get("RAPPEL_TEST_DATABASE_URL")


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory, monkeypatch):
    """Each test's own state folder (installation id): nothing is written to the home folder, and no
    test sees another's id. A test may still set RAPPEL_STATE_DIR or pass --state-dir itself."""
    if "RAPPEL_STATE_DIR" not in os.environ:
        monkeypatch.setenv("RAPPEL_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def rules_dir() -> Path:
    return RULES


@pytest.fixture
def policy() -> Policy:
    return parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8"), str(RULES / "reminders.yaml"))


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def pg_schema() -> Iterator[str]:
    """The URL of a fresh schema on the test PostgreSQL server (RAPPEL_TEST_DATABASE_URL), dropped after."""
    from sqlalchemy import create_engine, text

    schema = f"rappel_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_schema_url(PG_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, and PostgreSQL when RAPPEL_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rappel-test.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL case: set RAPPEL_TEST_DATABASE_URL to run it")
    with pg_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'rappel-test.db'}"


# --- figures: what the fault tests measured, printed at the end of every run (CI's log included) ---

FIGURES: list[str] = []


@pytest.fixture
def figures(request):
    """figures(text): a measured figure, shown in the summary of the run (not only with -s)."""
    def add(text: str) -> None:
        FIGURES.append(f"{request.node.name}:\n{text.strip(chr(10))}")
    return add


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures")
        for text in FIGURES:
            terminalreporter.write_line(text)


# --- a real SMTP server, shared by the delivery tests -----------------------------------------------

@pytest.fixture
def smtp_server():
    """aiosmtpd on 127.0.0.1 (tests/delivery_site.py): keeps what it accepts in ``messages``, refuses
    the recipients in ``refuse`` (``refuse["x@y.example"] = "550 5.1.1 User unknown"``); stopped after."""
    try:
        from tests.delivery_site import SmtpServer
    except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
        from delivery_site import SmtpServer
    smtp = SmtpServer().start()
    yield smtp
    smtp.stop()
