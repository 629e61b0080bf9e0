"""Shared fixtures: the shipped policy, databases (a SQLite file; PostgreSQL when a URL is given; a
library system's database on MariaDB or PostgreSQL for the pulls)."""
from __future__ import annotations

import gc
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


@pytest.fixture(autouse=True)
def _leaks_show_in_their_own_test():
    """Collect the garbage after each test, so that a connection, file or socket a test leaves open
    fails that test (ResourceWarning is an error here) and not whichever test the collector happens
    to run in later."""
    yield
    gc.collect()


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


MARIADB_URL = os.environ.get("RAPPEL_TEST_MARIADB_URL")


def _answers(url: str) -> str | None:
    """None when the server of ``url`` accepts a connection, else why not (one line)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure: the cases skip, saying why
        return " ".join(str(getattr(exc, "orig", exc)).split())[:200]
    finally:
        engine.dispose()


def _with_database(url: str, name: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def server_database(kind: str, prefix: str) -> Iterator[str]:
    """The URL of a fresh database on the test MariaDB (RAPPEL_TEST_MARIADB_URL) or PostgreSQL
    (RAPPEL_TEST_DATABASE_URL) server, dropped after; the test skips when the server is not set or
    does not answer."""
    from sqlalchemy import create_engine, text

    base = MARIADB_URL if kind == "mariadb" else PG_URL
    variable = "RAPPEL_TEST_MARIADB_URL" if kind == "mariadb" else "RAPPEL_TEST_DATABASE_URL"
    if not base:
        pytest.skip(f"{kind} case: set {variable} to run it")
    why = _answers(base)
    if why:
        pytest.skip(f"{kind} case: the server of {variable} does not answer: {why}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield _with_database(base, name)
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE {name}"))
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


# --- a real HTTP server that records what arrives (an SMS gateway, a webhook's receiver) ------------

@pytest.fixture
def http_site():
    """tests/http_site.py on 127.0.0.1: ``requests`` as they arrived, ``refuse[number] = 400``,
    ``status = 503``, ``stop()``; stopped after."""
    try:
        from tests.http_site import HttpSite
    except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
        from http_site import HttpSite
    site = HttpSite().start()
    yield site
    site.stop()
