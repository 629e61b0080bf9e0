"""`rappel api-client`: a token printed once, only its hash kept; list, disable, rotate; a role
checked against accounts.yaml (service/api_clients.py)."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from adapters.store.database import Store
from adapters.store.schema import api_clients as table
from cli import app
from service import api_clients

RULES = Path(__file__).resolve().parent.parent / "rules"
AT = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def site(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return rules, f"sqlite:///{tmp_path / 'rappel.db'}"


def rappel(site, *args):
    rules, db = site
    return CliRunner().invoke(app, ["api-client", *args, "--rules", str(rules), "--db", db])


def test_add_prints_the_token_once_and_keeps_its_hash(site):
    result = rappel(site, "add", "koha", "--role", "library_system")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("rappel_") and len(token) > 40 and "shown this once" in result.stderr
    with Store(site[1]) as store:
        with store.engine.connect() as conn:
            [row] = conn.execute(select(table)).mappings().all()
        assert row["token_hash"] == api_clients.token_hash(token) and token not in row.values()
        assert api_clients.authenticate(store, token, AT).actor == "api:koha"
        assert api_clients.listing(store)[0]["last_used_at"] == AT


@pytest.mark.parametrize("args, says", [
    (("add", "koha", "--role", "librarian"), "'librarian' is not a role of accounts.yaml (circulation_desk, "
                                             "user_manager, acquisitions, overdue_service, library_system)"),
    (("add", "bad name", "--role", "library_system"), "a client's name is letters, digits"),
    (("disable", "nobody"), "no such API client"),
    (("rotate", "nobody"), "no such API client"),
])
def test_bad_input_exits_2(site, args, says):
    result = rappel(site, *args)
    assert result.exit_code == 2 and says in result.stderr, result.output


def test_a_name_is_taken_once(site):
    assert rappel(site, "add", "koha", "--role", "library_system").exit_code == 0
    result = rappel(site, "add", "koha", "--role", "overdue_service")
    assert result.exit_code == 2 and "a client of this name exists" in result.stderr


def test_list_disable_rotate(site):
    first = rappel(site, "add", "koha", "--role", "library_system").stdout.strip()
    rappel(site, "add", "discovery", "--role", "circulation_desk")
    assert rappel(site, "disable", "koha").exit_code == 0
    listed = [json.loads(line) for line in rappel(site, "list", "--json").stdout.splitlines()]
    assert [(c["name"], c["role"], c["disabled"], c["last_used_at"]) for c in listed] == [
        ("discovery", "circulation_desk", False, None), ("koha", "library_system", True, None)]
    with Store(site[1]) as store:
        assert api_clients.authenticate(store, first, AT) is None              # disabled
    second = rappel(site, "rotate", "koha").stdout.strip()
    with Store(site[1]) as store:
        assert api_clients.authenticate(store, first, AT) is None              # the old token, never again
        assert api_clients.authenticate(store, second, AT).role == "library_system"
    assert "koha                 library_system       enabled" in rappel(site, "list").stdout
