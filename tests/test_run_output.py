"""What `rappel run` prints and records for a person (issue: the day in full, as a new user tried it).

The installation of tests/test_cli.py (the shipped rules, a SQLite file, the file outbox), run on
Monday 2026-11-23 unless said otherwise:
    L4 (P1, due 2026-11-26)            courtesy, 3 days before due          → email to P1
    L1 + L2 (P1, due 2026-11-16)        first reminder, day 7, two libraries → one email to P1
    L3 (P2, no email, due 2026-11-16)   first reminder                       → a letter, library SCI
    L5 (P3, a contact)                  nothing;  L6 (P1, lost)              nothing
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS

try:
    from tests.test_cli import DAY, Install, rappel, site  # noqa: F401 - site: the fixture
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from test_cli import DAY, Install, rappel, site  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path) -> Install:      # noqa: F811 - test_cli's installation, one notice per stage
    """test_cli's installation with `combine: false`: these tables show each stage's own message (L4's
    courtesy apart from L1 + L2); one envelope a day is shown by tests/test_cli.py and
    tests/test_envelope_delivery.py."""
    import shutil

    from tests.test_cli import LOANS_CSV, PATRONS_CSV, RULES
    rules = tmp_path / "rules-separate"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    policy = rules / "reminders.yaml"
    policy.write_text(policy.read_text(encoding="utf-8").replace("combine: true ", "combine: false"),
                      encoding="utf-8")
    s = Install(tmp_path, rules)
    for kind, lines in (("patrons", PATRONS_CSV), ("loans", LOANS_CSV)):
        result = s("import", kind, s.csv(f"{kind}.csv", lines))
        assert result.exit_code == 0, result.stderr
    return s


def test_output_piped_to_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`rappel … | head -1`: the reader leaves after one line; rappel stops without a word, exit 0.
    Three thousand messages make sure rappel is still writing when head has gone (a pipe holds 64 KiB)."""
    site = Install(tmp_path)
    count = 3000
    site("import", "patrons", site.csv("many-patrons.csv", [",".join(PATRON_FIELDS)] + [
        f"M{n},29{n:08d},Camille,Lecteur{n},p{n}@etu.univ.example,fr,internal,public,reader,,,,,,"
        for n in range(count)]))
    site("import", "loans", site.csv("many-loans.csv", [",".join(LOAN_FIELDS)] + [
        f"ML{n},M{n},39{n:08d},Livre {n},SCI,2026-11-16,," for n in range(count)]))
    rappel = f"{sys.executable} -m cli"
    common = f"--rules {site.rules} --db {site.db}"
    for command in (f"{rappel} run --on {DAY} --dry-run {common}",
                    f"{rappel} run --on {DAY} --dry-run --json {common}",
                    f"{rappel} explain --loan ML1 --on {DAY} {common}"):
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -1"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert (done.returncode, done.stderr) == (0, ""), command
        assert len(done.stdout.splitlines()) == 1


# --- the day in full: the messages, what is not sent and why, a summary ------------------------------

def _add(site: Install, patrons: list[str] = (), loans: list[str] = ()) -> None:
    for kind, rows, fields in (("patrons", patrons, PATRON_FIELDS), ("loans", loans, LOAN_FIELDS)):
        if rows:
            result = site("import", kind, site.csv(f"more-{kind}.csv", [",".join(fields), *rows]))
            assert result.exit_code == 0, result.stderr


@pytest.fixture
def busy(site, tmp_path) -> Install:
    """The site, with what a day decides and does not send, on 2026-11-23 (catch-up window 14 days):
        L9 (P1, due 2026-11-02)   first reminder (2026-11-09) and second (2026-11-23) both due:
                                  the second is sent, the first superseded
        L8 (P2, no email, due 2026-11-26)   courtesy: cancelled, a letter would arrive too late
        L7 (P4, neither email nor postal address, due 2026-11-16)   first reminder: cancelled"""
    policy = Path(site.rules) / "reminders.yaml"       # the site's own copy (combine: false)
    text = policy.read_text(encoding="utf-8")
    assert text.count("max_delay_days: 2 ") == 1
    policy.write_text(text.replace("max_delay_days: 2 ", "max_delay_days: 14 "), encoding="utf-8")
    _add(site, ["P4,2000000004,Paul,Sansadresse,,fr,internal,public,reader,,,,,,"],
         ["L7,P4,3000000007,Le Rouge et le Noir,SCI,2026-11-16,,",
          "L8,P2,3000000008,Topologie,SCI,2026-11-26,,",
          "L9,P1,3000000009,Algèbre,DROIT,2026-11-02,,"])
    return site


NOT_SENT = [
    # decided      stage             channel  patron  library  loans  status        reason
    (DAY, "courtesy",       "email", "P2", "-", "L8", "cancelled",
     "no email address; a letter before the due date would arrive too late"),
    (DAY, "first_reminder", "email", "P1", "-", "L9", "superseded", "superseded by second_reminder on the same run"),
    (DAY, "first_reminder", "email", "P4", "-", "L7", "cancelled",
     "no email address, and no postal address to send a letter to"),
]


def _table(lines: list[str], title: str) -> list[list[str]]:
    """The rows of the table under ``title``: cells split on runs of two spaces or more."""
    start = lines.index(title) + 3            # the title, the header, the dashes
    rows = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_a_dry_run_lists_what_is_decided_and_not_sent_with_the_reason(busy):
    result = busy("run", "--on", DAY, "--dry-run", "--outbox", busy.outbox)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    outbox = f"outbox:{busy.outbox}/"
    assert _table(lines, f"{DAY}: 4 message(s) would go out (dry run)") == [
        ["courtesy", "email", "P1", "-", "L4", "camille.durand@etu.univ.example", outbox],
        ["first_reminder", "email", "P1", "-", "L1,L2", "camille.durand@etu.univ.example", outbox],
        ["first_reminder", "letter", "P2", "SCI", "L3", "Jeanne Moreau, 8 place Gambetta, 33000 Bordeaux, France",
         outbox],
        ["second_reminder", "email", "P1", "-", "L9", "camille.durand@etu.univ.example", outbox],
    ]
    assert _table(lines, "not sent: 3 notice(s) decided and not sent") == [list(row) for row in NOT_SENT]
    assert lines[-1] == ("summary: courtesy (email): 1 to send, 1 cancelled; first_reminder (email): 1 to send, "
                         "1 cancelled, 1 superseded; first_reminder (letter): 1 to send; second_reminder (email): "
                         "1 to send")
    assert busy.ledger_count() == 0


def test_json_keeps_one_object_per_message_and_all_adds_the_others_with_status_and_reason(busy):
    contract = {"date", "stage", "channel", "patron_id", "library", "loan_ids", "recipient", "destination"}
    plain = busy("run", "--on", DAY, "--dry-run", "--json", "--outbox", busy.outbox)
    objects = [json.loads(line) for line in plain.stdout.splitlines()]
    assert [set(o) for o in objects] == [contract] * 4
    every = busy("run", "--on", DAY, "--dry-run", "--json", "--all", "--outbox", busy.outbox)
    objects = [json.loads(line) for line in every.stdout.splitlines()]
    assert all(set(o) == contract | {"status", "reason"} for o in objects)
    assert [(o["stage"], o["patron_id"], o["status"]) for o in objects[:4]] == [
        ("courtesy", "P1", "pending"), ("first_reminder", "P1", "pending"), ("first_reminder", "P2", "pending"),
        ("second_reminder", "P1", "pending")]
    assert [(o["date"], o["stage"], o["channel"], o["patron_id"], o["library"] or "-", ",".join(o["loan_ids"]),
             o["status"], o["reason"]) for o in objects[4:]] == NOT_SENT

    real = busy("run", "--on", DAY, "--json", "--all", "--outbox", busy.outbox)   # after a real run: its outcome
    assert real.exit_code == 0, real.stderr
    objects = [json.loads(line) for line in real.stdout.splitlines()]
    assert [o["status"] for o in objects] == ["sent"] * 4 + ["cancelled", "superseded", "cancelled"]


def test_a_real_run_shows_each_message_s_outcome_and_the_notices_of_other_days_not_sent(site):
    """L1 + L2 were decided on 2026-11-23 and never delivered (the process died); on 2026-11-26 the
    first reminder is past its 2-day window: it expires, and the table says so."""
    from adapters.store.database import Store
    from service import day, rules as rules_

    policy = rules_.load_policy(site.rules)
    with Store(site.db) as store:
        store.record(day.plan_for(store, policy, dt.date(2026, 11, 23)))
    result = site("run", "--on", "2026-11-26", "--outbox", site.outbox)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["2026-11-26: 0 message(s) decided", "  (no message)"]
    rows = _table(lines, "not sent: 3 notice(s) decided and not sent")
    assert [row[:7] for row in rows] == [
        ["2026-11-23", "courtesy", "email", "P1", "-", "L4", "expired"],
        ["2026-11-23", "first_reminder", "email", "P1", "-", "L1,L2", "expired"],
        ["2026-11-23", "first_reminder", "letter", "P2", "SCI", "L3", "expired"],
    ]
    assert all("window" in row[7] or "due date" in row[7] for row in rows), rows
    assert lines[-1] == "summary: courtesy (email): 1 expired; first_reminder (email): 1 expired; " \
                        "first_reminder (letter): 1 expired"


# --- a real run is written to the run history, like the daemon's ---------------------------------------

def _runs(site: Install) -> list[tuple]:
    from sqlalchemy import create_engine, select

    from adapters.store.schema import runs
    engine = create_engine(site.db)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(runs.c.kind, runs.c.run_date, runs.c.outcome, runs.c.decided,
                                                          runs.c.sent).order_by(runs.c.run_id))]
    finally:
        engine.dispose()


def test_two_cron_style_runs_then_status_says_ok(tmp_path):
    """cron runs `rappel run` with no date, twice today (a second run after an import, say): the
    history has today's day run and a delivery pass, and `rappel status` exits 0. The site holds one
    loan, due a week before today: the fixed dates of the other tests' loans would be due on some days."""
    import zoneinfo

    from tests.test_cli import PATRONS_CSV
    site = Install(tmp_path)
    assert site("import", "patrons", site.csv("patrons.csv", PATRONS_CSV)).exit_code == 0
    today = dt.datetime.now(zoneinfo.ZoneInfo("Europe/Paris")).date()
    due = today - dt.timedelta(days=7)                      # a first reminder today
    _add(site, loans=[f"L7,P1,3000000007,Le Rouge et le Noir,SCI,{due},,"])
    status = ("status", "--rules", site.rules, "--db", site.db)
    before = rappel(*status)
    assert before.exit_code == 1 and "ALERT: no run has completed yet" in before.stdout
    for _ in range(2):
        result = site("run", "--outbox", site.outbox)
        assert result.exit_code == 0, result.stderr
    assert _runs(site) == [("day", today, "ok", 1, 1), ("deliver", today, "ok", 0, 0)]
    after = rappel(*status)
    assert after.exit_code == 0, after.stdout
    assert after.stdout.startswith("rappel status: OK")
    assert f"last run:     {today} ok" in after.stdout


def test_a_run_of_an_other_day_and_a_failed_run_are_in_the_history(site, monkeypatch):
    from service import day as pipeline

    assert site("run", "--on", DAY, "--outbox", site.outbox).exit_code == 0           # a past day: its day run
    assert site("run", "--on", "2099-01-05", "--outbox", site.outbox).exit_code == 0  # still to come: a pass only

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(pipeline, "run_day", broken)
    failed = site("run", "--on", "2026-11-24", "--outbox", site.outbox)
    assert failed.exit_code == 1 and "the disk is full" in failed.stderr
    assert _runs(site) == [("day", dt.date(2026, 11, 23), "ok", 3, 3), ("deliver", dt.date(2099, 1, 5), "ok", 0, 0),
                           ("day", dt.date(2026, 11, 24), "failed", 0, 0)]
    status = rappel("status", "--rules", site.rules, "--db", site.db)
    assert status.exit_code == 1
    assert "ALERT: the last run (2026-11-24) failed: RuntimeError: the disk is full" in status.stdout


# --- the difference between two days ----------------------------------------------------------------------

def test_diff_shows_what_one_day_sends_that_the_other_did_not_after_returns_and_renewals(site):
    """2026-11-23 is run for real (L4 courtesy; L1 + L2 first reminder; L3 letter). Then: L3 returned
    on 2026-11-25, L2 renewed to 2026-11-30, L4 renewed to 2026-12-10, a new loan L7 for P2 (no email)
    due 2026-11-20, and L8 for P1 due 2026-11-19. On 2026-11-27 (a dry run; 2026-11-26 never ran):
        + courtesy L2 (due 2026-11-30)          + first reminder L7, a letter     + first reminder L8
        - courtesy L4: renewed                  - first reminder L2: renewed
        - first reminder L1: past its window    - first reminder letter L3: returned
    and against 2026-11-26, not run (a dry run of it on the current facts): L8's first reminder
    (triggered 2026-11-26, caught up on the 27th) is on both days."""
    assert site("run", "--on", DAY, "--outbox", site.outbox).exit_code == 0
    _add(site, loans=["L3,P2,3000000003,Physique quantique,SCI,2026-11-16,2026-11-25,",
                      "L2,P1,3000000002,Droit des obligations,DROIT,2026-11-30,,",
                      "L4,P1,3000000004,Analyse réelle,SCI,2026-12-10,,",
                      "L7,P2,3000000007,Thermodynamique,SCI,2026-11-20,,",
                      "L8,P1,3000000008,Topologie,SCI,2026-11-19,,"])
    before = site.ledger_count()
    shown = site("run", "--on", "2026-11-27", "--dry-run", "--diff", DAY, "--json", "--outbox", site.outbox)
    assert shown.exit_code == 0, shown.stderr
    got = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(o["diff"], o["date"], o["stage"], o["channel"], o["patron_id"], ",".join(o["loan_ids"]), o["status"],
             o["reason"]) for o in got] == [
        ("+", "2026-11-27", "courtesy", "email", "P1", "L2", "pending", ""),
        ("+", "2026-11-27", "first_reminder", "email", "P1", "L8", "pending", ""),
        ("+", "2026-11-27", "first_reminder", "letter", "P2", "L7", "pending", ""),
        ("-", DAY, "courtesy", "email", "P1", "L4", "sent", "renewed: due 2026-12-10"),
        ("-", DAY, "first_reminder", "email", "P1", "L1", "sent",
         "triggered on 2026-11-23, 4 days before 2026-11-27: past the 2-day catch-up window (stale)"),
        ("-", DAY, "first_reminder", "email", "P1", "L2", "sent", "renewed: due 2026-11-30"),
        ("-", DAY, "first_reminder", "letter", "P2", "L3", "sent", "returned on 2026-11-25"),
    ]
    assert site.ledger_count() == before          # a dry run: nothing recorded

    table = site("run", "--on", "2026-11-27", "--dry-run", "--diff", DAY, "--outbox", site.outbox)
    lines = table.stdout.splitlines()
    assert lines[0] == ("2026-11-27 against 2026-11-23: 3 message(s) only on 2026-11-27 (+), 3 only on 2026-11-23 "
                        "(-); 0 loan(s) at the same stage on both")
    rows = _table(lines, lines[0])
    assert [row[0] for row in rows] == ["+"] * 3 + ["-"] * 4
    assert rows[3][:8] == ["-", DAY, "courtesy", "email", "P1", "-", "L4", "camille.durand@etu.univ.example"]
    assert lines[-2:] == ["2026-11-27: 0 loan notice(s) as recorded in the ledger, 3 more that a dry run decides now",
                          "2026-11-23: 4 loan notice(s) as recorded in the ledger, 0 more that a dry run decides now"]

    unrun = site("run", "--on", "2026-11-27", "--dry-run", "--diff", "2026-11-26", "--outbox", site.outbox)
    assert unrun.exit_code == 0, unrun.stderr
    assert "; 1 loan(s) at the same stage on both" in unrun.stdout.splitlines()[0]
    assert [row[:7] for row in _table(unrun.stdout.splitlines(), unrun.stdout.splitlines()[0])] == [
        ["+", "2026-11-27", "courtesy", "email", "P1", "-", "L2"],
        ["+", "2026-11-27", "first_reminder", "letter", "P2", "SCI", "L7"],
    ]


@pytest.mark.parametrize("args, says", [
    (("--diff", DAY), "error: --diff: only with --dry-run: compare first, then run"),
    (("--dry-run", "--diff", "2026-11-31"), "error: --diff: '2026-11-31' is not a date (YYYY-MM-DD)"),
])
def test_diff_refuses_what_it_cannot_do(site, args, says):
    result = site("run", "--on", DAY, *args, "--outbox", site.outbox)
    assert result.exit_code == 2
    assert result.stderr.strip() == says
    assert site.ledger_count() == 0
