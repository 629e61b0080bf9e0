"""Shared fixtures: the shipped policy, databases (a SQLite file; PostgreSQL when a URL is given)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from engine.policy import Policy, parse_policy

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
PG_URL = os.environ.get("RAPPEL_TEST_DATABASE_URL")


@pytest.fixture
def rules_dir() -> Path:
    return RULES


@pytest.fixture
def policy() -> Policy:
    return parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8"), str(RULES / "reminders.yaml"))


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, and PostgreSQL when RAPPEL_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rappel-test.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL case: set RAPPEL_TEST_DATABASE_URL to run it")
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


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'rappel-test.db'}"
