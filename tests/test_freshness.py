"""Never decide on stale facts: a run whose loans were imported or pulled longer ago than
max_facts_age_hours refuses to decide (exit 1, one line, nothing recorded) unless
--accept-stale-facts; a dry run says so; `rappel status` alerts; the daemon pulls before each
day's evaluation (schedule.pull_before) and decides nothing when the pull fails.

The dates: loans imported at a time written out, runs on Monday 23 November 2026 (Europe/Paris).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from adapters.channels.memory import MemoryChannel
from adapters.store.database import Store
from adapters.store.schema import ledger, runs
from cli import app
from engine.freshness import facts_age
from service.imports import import_file
from service.rules import load_policy
from service.status import status_lines, status_report

try:
    from tests.daemon_cases import SimClock, at, copy_rules, run_daemon, utc
    from tests.koha_site import koha_database
    from tests.test_pull_koha import load_library
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import SimClock, at, copy_rules, run_daemon, utc
    from koha_site import koha_database
    from test_pull_koha import load_library

ENV = {"RAPPEL_INSTALLATION_ID": "test-installation"}
PATRONS = """\
patron_id,barcode,first_name,last_name,email,preferred_language,account_type,record_type,user_group,address_line1,address_line2,postal_code,city,country,phone
P1,2000000001,Camille,Durand,camille.durand@etu.univ.example,fr,internal,public,,12 rue des Facs,,33000,Bordeaux,France,
"""
LOANS = """\
loan_id,patron_id,item_barcode,title,library,due_date,returned_on,status
L1,P1,3000000001,Algèbre,SCI,2026-11-16,,
"""


@pytest.mark.parametrize("last, limit, at_, stale, hours", [
    ("2026-11-22T02:00:00+01:00", 26, "2026-11-23T02:00:00+01:00", False, 24),   # last night's pull
    ("2026-11-22T02:00:00+01:00", 26, "2026-11-23T04:00:00+01:00", False, 26),   # 26 hours: still fresh
    ("2026-11-22T02:00:00+01:00", 26, "2026-11-23T04:01:00+01:00", True, 26),    # a minute past
    ("2026-11-21T02:00:00+01:00", 26, "2026-11-23T02:00:00+01:00", True, 48),    # last night's pull failed
    (None, 26, "2026-11-23T02:00:00+01:00", True, None),                         # never imported
    ("2026-11-01T02:00:00+01:00", None, "2026-11-23T02:00:00+01:00", False, 528),  # no limit: CSV, none set
])
def test_how_old_the_loans_may_be(last, limit, at_, stale, hours):
    age = facts_age(dt.datetime.fromisoformat(last) if last else None, limit, dt.datetime.fromisoformat(at_))
    assert age.stale is stale
    assert (round(age.hours) if age.hours is not None else None) == hours


def fed_by_csv(tmp_path: Path, imported_at: str, limit: int | None = 26) -> tuple[Path, str]:
    """Rules with max_facts_age_hours in reminders.yaml, and a database whose loans were imported then."""
    rules = copy_rules(tmp_path, ("max_delay_days: 2 ", f"max_facts_age_hours: {limit}\nmax_delay_days: 2 ")
                       if limit else ("max_delay_days: 2 ", "max_delay_days: 2 "))
    db = f"sqlite:///{tmp_path / 'rappel.db'}"
    policy = load_policy(rules)
    now = dt.datetime.fromisoformat(imported_at)
    with Store(db) as store:
        for kind, text in (("patrons", PATRONS), ("loans", LOANS)):
            (tmp_path / f"{kind}.csv").write_text(text, encoding="utf-8")
            import_file(store, policy, kind, tmp_path / f"{kind}.csv", now=now)
    return rules, db


def run(rules: Path, db: str, *options: str):
    return CliRunner().invoke(app, ["run", "--on", "2026-11-23", "--rules", str(rules), "--db", db,
                                    "--outbox", str(rules.parent / "outbox"), *options], env=ENV)


def decided(db: str) -> int:
    with Store(db) as store, store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(ledger))


def test_a_run_on_stale_loans_decides_nothing_unless_told_to(tmp_path):
    rules, db = fed_by_csv(tmp_path, "2026-11-20T02:00:00+01:00")     # days ago: the export stopped
    result = run(rules, db)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: 2026-11-23: nothing decided: the loans are ")
    assert "hours old (last imported at 2026-11-20 02:00 Europe/Paris (import from " in lines[0]
    assert lines[0].endswith("more than max_facts_age_hours (26): pull or import them again "
                             "(or run with --accept-stale-facts)")
    assert decided(db) == 0

    dry = run(rules, db, "--dry-run")
    assert dry.exit_code == 0
    assert "1 message(s) would go out (dry run)" in dry.stdout
    assert "stale facts: the loans are " in dry.stderr and "without --accept-stale-facts" in dry.stderr

    accepted = run(rules, db, "--accept-stale-facts")
    assert accepted.exit_code == 0, accepted.output
    assert decided(db) == 1                                           # L1's first reminder


def test_fresh_loans_are_decided_on_and_no_limit_means_no_guard(tmp_path):
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    rules, db = fed_by_csv(tmp_path / "fresh", now)
    assert run(rules, db).exit_code == 0 and decided(db) == 1
    rules, db = fed_by_csv(tmp_path / "no-limit", "2026-01-01T00:00:00+00:00", limit=None)
    assert run(rules, db).exit_code == 0 and decided(db) == 1


def test_status_alerts_while_the_loans_are_stale(tmp_path):
    rules, db = fed_by_csv(tmp_path, "2026-11-22T02:00:00+01:00")
    with Store(db) as store:
        fresh = status_report(store, rules, utc("2026-11-23 00:00"), env=ENV)
        stale = status_report(store, rules, utc("2026-11-23 06:00"), env=ENV)
    assert not any("stale facts" in a for a in fresh["alerts"])
    assert fresh["facts"]["loans"]["age_hours"] == 23.0 and fresh["max_facts_age_hours"] == 26
    assert any(a.startswith("stale facts, runs decide nothing: the loans are 29 hours old") for a in stale["alerts"])
    lines = status_lines(stale)
    assert lines[0].startswith("rappel status: ALERT")
    assert any(line.startswith("facts:        loans 29 h ago (import from ") and
               line.endswith("; loans older than 26 h are not decided on") for line in lines)


def pull_rules(tmp_path: Path, url: str) -> Path:
    rules = copy_rules(tmp_path, ("flood_guard:", "schedule:\n  pull_before: true\nflood_guard:"))
    (rules / "sources.yaml").write_text(f'sources:\n  koha:\n    preset: koha\n    url: "{url}"\n', encoding="utf-8")
    return rules


def pull_runs(db: str) -> list[tuple[str, str]]:
    with Store(db) as store, store.engine.connect() as conn:
        return [(r.kind, r.outcome) for r in conn.execute(select(runs.c.kind, runs.c.outcome)
                                                         .where(runs.c.kind.in_(("pull", "day"))).order_by(runs.c.run_id))]


@pytest.mark.mariadb
def test_the_daemon_pulls_before_deciding_the_day(tmp_path):
    with koha_database() as koha:
        load_library(koha)
        rules = pull_rules(tmp_path, koha.url)
        db = f"sqlite:///{tmp_path / 'rappel.db'}"
        channel = MemoryChannel()
        run_daemon(db, rules, SimClock(at("2026-11-23 02:00"), at("2026-11-23 03:00")), channel)
    assert pull_runs(db) == [("pull", "ok"), ("day", "ok")]
    assert sorted((n.stage, n.patron_id) for n, *_ in (*channel.emails, *channel.letters)
                  if n.stage in {"courtesy", "first_reminder", "second_reminder", "letter"}) == [
        # (request notices: tests/test_request_notices.py) patron 1's courtesy notice and second reminder are one email (one envelope a day)
        ("first_reminder", "2"), ("first_reminder", "3"), ("first_reminder", "4"),
        ("letter", "3"), ("second_reminder", "1")]


def test_a_failed_pull_means_nothing_decided_that_day_and_an_alert(tmp_path):
    rules = pull_rules(tmp_path, "mysql+pymysql://rappel@127.0.0.1:1/koha")     # nothing answers there
    db = f"sqlite:///{tmp_path / 'rappel.db'}"
    channel = MemoryChannel()
    run_daemon(db, rules, SimClock(at("2026-11-23 02:00"), at("2026-11-23 02:20")), channel)
    assert (channel.emails, channel.letters) == ([], [])
    outcomes = pull_runs(db)
    assert outcomes[:2] == [("pull", "failed"), ("day", "failed")]
    assert len(outcomes) >= 6 and set(outcomes) == {("pull", "failed"), ("day", "failed")}   # tried every 5 min
    assert decided(db) == 0
    with Store(db) as store, store.engine.connect() as conn:
        report = status_report(store, rules, utc("2026-11-23 01:25"), env=ENV)
        errors = conn.execute(select(runs.c.errors).where(runs.c.kind == "day")).scalars().first()
    assert errors.startswith("the pull before deciding failed, nothing decided on stale facts: koha: cannot connect "
                             "to mysql+pymysql://rappel@127.0.0.1:1/koha")
    assert any(a.startswith("the pull before deciding failed at 2026-11-23T02:2") for a in report["alerts"])
    assert any(a.startswith("the last run (2026-11-23) failed: the pull before deciding failed") for a in report["alerts"])
