"""`rappel staff` and the sessions of the staff interface (service/staff.py) on a SQLite file."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from adapters.store import staff as rows
from adapters.store.database import Store
from cli import app
from service import staff
from service.rules import load_accounts

from conftest import RULES

AT = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)
PASSWORD = "correct horse battery staple"


def rappel(*args, stdin: str | None = None):
    return CliRunner().invoke(app, [*args], input=stdin)


def test_staff_add_list_passwd_disable(sqlite_url):
    added = rappel("staff", "add", "alice", "--role", "circulation_desk", "--password-stdin", "--rules", str(RULES),
                   "--db", sqlite_url, stdin=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert rappel("staff", "add", "jdupont", "--role", "user_manager", "--sso-only", "--rules", str(RULES),
                  "--db", sqlite_url).exit_code == 0
    listed = [json.loads(line) for line in rappel("staff", "list", "--json", "--db", sqlite_url).stdout.splitlines()]
    assert [(m["name"], m["role"], m["sign_in"], m["disabled"]) for m in listed] == [
        ("alice", "circulation_desk", "password", False), ("jdupont", "user_manager", "sso-only", False)]
    with Store(sqlite_url) as store:
        first = staff.sign_in(store, "alice", PASSWORD, at=AT, address="127.0.0.1")
    assert rappel("staff", "passwd", "alice", "--password-stdin", "--db", sqlite_url,
                  stdin="another long password\n").exit_code == 0
    with Store(sqlite_url) as store:
        assert staff.find_session(store, first.token, at=AT) is None            # signed out everywhere
        with pytest.raises(staff.SignInRefused):
            staff.sign_in(store, "alice", PASSWORD, at=AT, address="127.0.0.1")
        staff.sign_in(store, "alice", "another long password", at=AT, address="127.0.0.1")
    assert rappel("staff", "disable", "alice", "--db", sqlite_url).exit_code == 0
    with Store(sqlite_url) as store:
        with pytest.raises(staff.SignInRefused):
            staff.sign_in(store, "alice", "another long password", at=AT, address="127.0.0.1")
        actions = [(a["action"], a["detail"]) for a in _actions(store)]
    assert actions == [("staff.add", "alice as circulation_desk"), ("staff.add", "jdupont as user_manager (sign-on only)"),
                       ("staff.passwd", "alice"), ("staff.disable", "alice")]


def _actions(store):
    from sqlalchemy import select

    from adapters.store.schema import staff_actions

    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(staff_actions).order_by(staff_actions.c.id))]


@pytest.mark.parametrize("args, problem", [
    (("--role", "librarian"), "'librarian' is not a role of accounts.yaml (known roles: circulation_desk, "
                              "user_manager, acquisitions, overdue_service, library_system)"),
    (("--role", "circulation_desk"), "password: at least 10 characters"),
])
def test_staff_add_refuses_bad_input_exit_2(sqlite_url, args, problem):
    result = rappel("staff", "add", "bob", *args, "--password-stdin", "--rules", str(RULES), "--db", sqlite_url,
                    stdin="short\n")
    assert result.exit_code == 2
    assert problem in result.output


def test_sessions_end_when_idle_and_at_their_absolute_end(sqlite_url):
    limits = staff.Limits(idle=dt.timedelta(minutes=30), absolute=dt.timedelta(hours=10))
    with Store(sqlite_url) as store:
        staff.add(store, load_accounts(RULES), "alice", "circulation_desk", PASSWORD, at=AT, actor="test")
        idle = staff.sign_in(store, "alice", PASSWORD, at=AT, address="a", limits=limits)
        assert staff.find_session(store, idle.token, at=AT + dt.timedelta(minutes=29), limits=limits) is not None
        assert staff.find_session(store, idle.token, at=AT + dt.timedelta(minutes=60), limits=limits) is None
        busy = staff.sign_in(store, "alice", PASSWORD, at=AT, address="a", limits=limits)
        for minutes in range(20, 600, 20):              # a request every 20 minutes: never idle
            assert staff.find_session(store, busy.token, at=AT + dt.timedelta(minutes=minutes), limits=limits)
        assert staff.find_session(store, busy.token, at=AT + dt.timedelta(hours=10), limits=limits) is None


def test_only_the_tokens_hash_is_stored_and_a_weak_hash_is_replaced(sqlite_url):
    with Store(sqlite_url) as store:
        staff.add(store, load_accounts(RULES), "alice", "circulation_desk", PASSWORD, at=AT, actor="test")
        weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
        rows.update_staff(store, "alice", {"password_hash": weak})
        session = staff.sign_in(store, "alice", PASSWORD, at=AT, address="a")
        assert rows.find_session(store, session.token) is None
        assert rows.find_session(store, staff.hash_token(session.token))["staff_name"] == "alice"
        assert rows.staff_member(store, "alice")["password_hash"] != weak
        assert not PasswordHasher().check_needs_rehash(rows.staff_member(store, "alice")["password_hash"])
