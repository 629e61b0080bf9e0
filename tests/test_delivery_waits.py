"""A notice the library has to fix something for waits, with the reason and an alert, and goes out
once it is fixed, within its window: its library is not in the policy (a letter nobody would
print), or its template fails to render (an undefined variable in a branch). Never sent to
``unconfigured``, never failed for good for a fault that is not the patron's.

The installation is tests/delivery_site.py's (RUN is Monday 2026-11-23; max_delay_days 2); the
letter stage is 35 days after the due date, the first reminder 7 days after."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from adapters.store.database import Store
from adapters.store.schema import attempts
from service import day
from service import rules as rules_
from service.status import status_report

try:
    from tests.delivery_site import RUN, Site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import RUN, Site

ARTS = """  ARTS:
    name: "Bibliothèque des arts"
    address: ["Rue des arts", "33000 Bordeaux"]
    letters: {printer: bu-arts}
"""


def with_arts(tmp_path) -> Site:
    """The same installation with the library ARTS added back to the policy (the fix)."""
    text = (tmp_path / "rules" / "reminders.yaml").read_text(encoding="utf-8")
    (tmp_path / "rules" / "reminders.yaml").write_text(text.replace("libraries:\n", "libraries:\n" + ARTS),
                                                       encoding="utf-8")
    return _reloaded(tmp_path)


def _reloaded(tmp_path) -> Site:
    """The site of ``tmp_path`` with its rules as they are now on disk (Site() would write them anew)."""
    site = Site.__new__(Site)
    site.dir, site.rules, site.env, site.outbox, site.last = tmp_path, tmp_path / "rules", {}, tmp_path / "outbox", None
    site.policy, site.templates = rules_.load_checked(site.rules)
    site.store = Store(f"sqlite:///{tmp_path / 'rappel.db'}")
    return site


@pytest.fixture
def removed_library(tmp_path):
    """Three loans of ARTS, a library once in the policy and since removed, at their letter stage on RUN
    (due 2026-10-19, + 35 days = 2026-11-23), and one of SCI."""
    site = Site(tmp_path)
    for n, library in ((1, "ARTS"), (2, "ARTS"), (3, "ARTS"), (4, "SCI")):
        site.patron(f"P{n}", "")                     # no email: letters only
        site.loan(f"L{n}", f"P{n}", "2026-10-19", library=library)
    yield site
    site.close()


def test_letters_of_a_library_missing_from_the_policy_wait_then_go_out_once_it_is_added(removed_library, tmp_path):
    site = removed_library
    first = site.run(RUN)
    by_patron = {o.key: o for o in first.outcomes}
    waiting = [o for o in first.outcomes if o.status == "waiting"]
    sent = [o for o in first.outcomes if o.status == "sent"]
    # (loan, date)                       -> outcome
    # L1, L2, L3 (ARTS) on 2026-11-23    -> waiting: library 'ARTS' is not in the policy
    # L4 (SCI) on 2026-11-23             -> sent to the outbox (no printer configured)
    assert len(waiting) == 3 and len(sent) == 1, by_patron
    assert all("library 'ARTS' is not in the policy" in o.detail for o in waiting)
    assert {site.notice(o.key).status for o in waiting} == {"pending"}
    assert all(site.notice(o.key).last_error.startswith("waiting: library 'ARTS'") for o in waiting)
    assert all(site.notice(o.key).attempts == 0 for o in waiting)
    with site.store.engine.connect() as conn:      # nothing handed to any channel for them
        assert not conn.execute(select(attempts).where(attempts.c.notice_key.in_([o.key for o in waiting]))).all()
    assert [p.name for p in site.outbox_files() if "ARTS" in p.name] == []
    assert len([p for p in site.outbox_files() if p.suffix == ".pdf"]) == 1       # SCI's letter only

    left = day.left_waiting(site.store)
    assert (left.for_fix, left.retrying) == (3, 0)
    report = status_report(site.store, site.rules, dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc))
    assert any("3 notice(s) wait for the library to fix its policy" in a and "'ARTS'" in a for a in report["alerts"])

    again = site.run(RUN + dt.timedelta(days=1))      # still not fixed: they still wait, nothing sent
    assert sorted(str(o.status) for o in again.outcomes) == ["waiting"] * 3

    site.close()
    fixed = with_arts(tmp_path)                         # ARTS is back in the policy, on day 2 of its window
    try:
        done = fixed.run(RUN + dt.timedelta(days=2))
        assert sorted(str(o.status) for o in done.outcomes) == ["sent"] * 3
        assert {fixed.notice(o.key).destination for o in waiting} != {"unconfigured"}
        assert len([p for p in fixed.outbox_files() if p.suffix == ".pdf" and "ARTS" in p.name]) == 3
        assert day.left_waiting(fixed.store).for_fix == 0
    finally:
        fixed.close()


def test_waiting_letters_expire_when_the_fix_comes_after_their_window(removed_library, tmp_path):
    site = removed_library
    site.run(RUN)
    site.close()
    fixed = with_arts(tmp_path)
    try:
        late = fixed.run(RUN + dt.timedelta(days=3))      # max_delay_days 2: too late to send
        arts = [o for o in late.outcomes if o.status != "sent"]
        assert sorted(str(o.status) for o in arts) == ["expired"] * 3
        assert [p for p in fixed.outbox_files() if "ARTS" in p.name] == []
    finally:
        fixed.close()


# fails for P1 only (lint's sample patron is P-SAMPLE): a failure lint's rendering cannot reach, and no
# unknown name its reading of the template would see
BROKEN = '{{ 1 // (patron.patron_id|length - 2) }}'


def test_a_template_that_fails_to_render_keeps_the_reminder_waiting_until_it_is_fixed(tmp_path, smtp_server):
    site = Site(tmp_path, f'\ndelivery:\n  email: {{url: "{smtp_server.url}"}}\n')
    try:
        site.patron("P1", "p1@etu.example")
        site.loan("L1", "P1", "2026-11-16")            # first reminder on 2026-11-23
        template = tmp_path / "rules" / "templates" / "fr" / "first_reminder.txt.j2"
        good = template.read_text(encoding="utf-8")
        template.write_text(good.replace("{% block request %}", "{% block request %}" + BROKEN), encoding="utf-8")
        site.policy, site.templates = rules_.load_checked(site.rules)
        first = site.run(RUN)
        [outcome] = first.outcomes
        assert outcome.status == "waiting", outcome
        assert "first_reminder template" in outcome.detail and "ZeroDivisionError" in outcome.detail
        row = site.notice(outcome.key)
        assert (row.status, row.attempts) == ("pending", 0) and row.last_error.startswith("waiting: ")
        assert smtp_server.messages == []
        report = status_report(site.store, site.rules, dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc))
        assert any("wait for the library to fix its policy or a template" in a for a in report["alerts"])

        template.write_text(good, encoding="utf-8")             # fixed the next day, inside the window
        site.policy, site.templates = rules_.load_checked(site.rules)
        done = site.run(RUN + dt.timedelta(days=1))
        assert [str(o.status) for o in done.outcomes] == ["sent"]
        assert len(smtp_server.messages) == 1 and smtp_server.messages[0].rcpt_tos == ["p1@etu.example"]
        assert site.notice(outcome.key).status == "sent"
    finally:
        site.close()


def rappel(*args: str, cwd=None):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**__import__("os").environ, "RAPPEL_DB_URL": ""})


def test_lint_with_the_database_names_the_libraries_of_open_loans_missing_from_the_policy(removed_library, tmp_path):
    db = f"sqlite:///{tmp_path / 'rappel.db'}"
    found = rappel("lint", "--rules", str(tmp_path / "rules"), "--db", db)
    assert found.returncode == 2, found.stderr
    assert ("reminders.yaml: libraries: library 'ARTS' has 3 open loan(s) in the database" in found.stderr
            and "not in the policy" in found.stderr), found.stderr
    alone = rappel("lint", "--rules", str(tmp_path / "rules"), cwd=tmp_path / "rules")   # no database: the rules only
    assert alone.returncode == 0, alone.stderr
    removed_library.close()
    with_arts(tmp_path).close()
    fixed = rappel("lint", "--rules", str(tmp_path / "rules"), "--db", db)
    assert fixed.returncode == 0, fixed.stderr
