"""Retention (engine/retention.py, adapters/store/retention.py, service/retention.py): the policy's
`retention:` section, and the purge honouring it to the day.

The shipped policy keeps messages 400 days and the ledger and the audit trail 1095 days, in
Europe/Paris: a record of local day D kept N days is still there on the purge of day D + N - 1 and
gone on the purge of day D + N. Stored on 2025-10-28: a message is gone on 2026-12-02, a ledger
row on 2028-10-27 (2028 has a 29 February). Timestamps are local days: 2025-10-28 00:30 in Paris
is 2025-10-27 23:30 UTC and still a record of 28 October.
"""
from __future__ import annotations

import datetime as dt
import json
import zlib
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from adapters.store.database import Store
from adapters.store.schema import (attempts, ledger, loans, messages, notices, patron_audit, patrons, requests, runs,
                                   staff_actions)
from cli import app
from engine.policy import parse_policy
from engine.retention import cutoffs
from engine.yamlsource import InputError
from service import retention

try:
    from tests.daemon_cases import PARIS, RULES, copy_rules, d
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import PARIS, RULES, copy_rules, d

UTC = dt.timezone.utc
SHIPPED = (RULES / "reminders.yaml").read_text(encoding="utf-8")
NO_RETENTION = SHIPPED[:SHIPPED.index("\n# How long rappel keeps")] + "\n"


def policy_with(retention_yaml: str | None):
    text = NO_RETENTION + (f"retention:\n{retention_yaml}" if retention_yaml is not None else "")
    return parse_policy(text, "reminders.yaml")


def local(text: str) -> dt.datetime:
    """A time in Paris written out, as stored (UTC)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=PARIS).astimezone(UTC)


# --- the policy ---------------------------------------------------------------------------------

def test_the_shipped_policy_keeps_messages_400_days_and_the_rest_three_years(policy):
    assert (policy.retention.messages_days, policy.retention.ledger_days, policy.retention.audit_days) == \
        (400, 1095, 1095)


def test_without_the_section_nothing_is_ever_deleted():
    policy = policy_with(None)
    assert policy.retention is None and cutoffs(policy, d("2030-01-01")) == {}


def test_an_omitted_kind_takes_its_default_and_null_keeps_it_forever():
    policy = policy_with("  messages_days: 30\n  audit_days: null\n")
    assert (policy.retention.messages_days, policy.retention.ledger_days, policy.retention.audit_days) == \
        (30, 1095, None)
    assert sorted(cutoffs(policy, d("2026-12-02"))) == ["ledger", "messages"]


@pytest.mark.parametrize("section, expected", [
    ("  ledger_days: 20\n  messages_days: 10\n",
     "reminders.yaml:{next}: retention.ledger_days: at least 34 days: a ledger row must outlive every day that "
     "may still decide its notice (the longest catch-up window, 2 days, after up to 31 missed days), or the "
     "notice could be sent twice"),
    ("  messages_days: 2000\n",
     "reminders.yaml:{next}: retention.messages_days: 2000 days is longer than ledger_days (1095): a message is "
     "deleted with its notice; give at most 1095"),
    ("  messages_days: null\n",
     "reminders.yaml:{next}: retention.messages_days: forever (null) is longer than ledger_days (1095): a "
     "message is deleted with its notice; give at most 1095"),
    ("  audit_days: 0\n", "reminders.yaml:{next}: retention.audit_days: Input should be greater than or equal to 1"),
    ("  message_days: 400\n", "reminders.yaml:{next}: retention.message_days: unknown key (check its spelling, "
                              "or remove it)"),
])
def test_a_bad_retention_says_file_line_and_key(section, expected):
    line = NO_RETENTION.count("\n") + 1          # the line of `retention:`; its first key is on the next
    with pytest.raises(InputError) as caught:
        policy_with(section)
    assert [str(p) for p in caught.value.problems] == [expected.format(line=line, next=line + 1)]


def test_lint_warns_when_the_policy_sets_no_retention(tmp_path):
    rules = copy_rules(tmp_path)
    (rules / "reminders.yaml").write_text(NO_RETENTION, encoding="utf-8")
    result = CliRunner().invoke(app, ["lint", "--rules", str(rules), "--outbox", str(tmp_path / "outbox")])
    assert result.exit_code == 0, result.output
    assert f"warning: {rules}/reminders.yaml: no retention: section: messages, notices and the audit trail are " \
           f"kept forever" in result.stderr
    shipped = CliRunner().invoke(app, ["lint", "--rules", str(RULES), "--outbox", str(tmp_path / "outbox")])
    assert shipped.exit_code == 0 and "warning" not in shipped.stderr


# --- the cut-off days, pure ------------------------------------------------------------------------

@pytest.mark.parametrize("today, kind, last_day, before_utc", [
    ("2026-12-01", "messages", "2025-10-27", "2025-10-27 23:00"),    # winter time: midnight is 23:00 UTC
    ("2026-12-02", "messages", "2025-10-28", "2025-10-28 23:00"),
    ("2026-05-05", "messages", "2025-03-31", "2025-03-31 22:00"),    # summer time: 22:00 UTC
    ("2028-10-26", "ledger", "2025-10-27", "2025-10-27 23:00"),
    ("2028-10-27", "ledger", "2025-10-28", "2025-10-28 23:00"),      # 1095 days across 29 February 2028
    ("2028-10-27", "audit", "2025-10-28", "2025-10-28 23:00"),
])
def test_cutoffs_are_local_days(policy, today, kind, last_day, before_utc):
    cut = cutoffs(policy, d(today))[kind]
    assert cut.last_day == d(last_day)
    assert cut.before == dt.datetime.fromisoformat(before_utc).replace(tzinfo=UTC)


# --- the purge, to the day ---------------------------------------------------------------------------

# (label, table, when it was stored, the first purge that deletes it; None: never)
CASES = [
    ("message 2025-10-27 23:59", "messages", "2025-10-27 23:59", "2026-12-01"),
    ("message 2025-10-28 00:30", "messages", "2025-10-28 00:30", "2026-12-02"),    # 2025-10-27 23:30 UTC
    ("message 2025-10-28 23:30", "messages", "2025-10-28 23:30", "2026-12-02"),
    ("message 2025-10-29 00:10", "messages", "2025-10-29 00:10", "2026-12-03"),
    ("email file 2025-10-28", "outbox", "email/2025-10-28/a.eml", "2026-12-02"),
    ("letter file 2025-10-28", "outbox", "letters/SCI/2025-10-28/b.pdf", "2026-12-02"),
    ("email file 2025-10-29", "outbox", "email/2025-10-29/c.eml", "2026-12-03"),
    ("sent notice 2025-10-28", "notices", "2025-10-28", "2028-10-27"),
    ("its ledger row", "ledger", "2025-10-28", "2028-10-27"),
    ("its message, stored 2026-01-05", "messages", "2026-01-05 10:00", "2027-02-09"),
    ("pending notice 2025-10-28", "notices", "2025-10-28", None),                   # never while pending
    ("pending ledger row", "ledger", "2025-10-28", None),
    ("email refused 2025-10-28", "notices", "2025-10-28", "2028-10-27"),            # its row moved to the letter
    ("letter instead 2025-10-30", "notices", "2025-10-30", "2028-10-29"),
    ("the moved ledger row", "ledger", "2025-10-28", "2028-10-27"),
    ("superseded row 2025-10-29", "ledger", "2025-10-29", "2028-10-28"),
    ("attempt 2025-10-27 23:30", "attempts", "2025-10-27 23:30", "2028-10-26"),
    ("attempt 2025-10-28 00:30", "attempts", "2025-10-28 00:30", "2028-10-27"),
    ("run 2025-10-28 02:00", "runs", "2025-10-28 02:00", "2028-10-27"),
    ("loan returned 2025-10-28", "loans", "2025-10-28", "2028-10-27"),
    ("loan returned 2025-10-28, ledger 10-29", "loans", "2025-10-28", "2028-10-28"),   # with its ledger row
    ("open loan due 2025-10-01", "loans", None, None),
    ("request expired 2025-10-28", "requests", "2025-10-28", "2028-10-27"),
    ("request placed 2025-10-28, no expiry", "requests", "2025-10-28", "2028-10-27"),
    ("request placed 2025-10-28, expires 2026-01-10", "requests", "2026-01-10", "2029-01-09"),
    ("edit 2025-10-28 00:30", "patron_audit", "2025-10-28 00:30", "2028-10-27"),
    ("edit 2025-10-27 23:30", "patron_audit", "2025-10-27 23:30", "2028-10-26"),
    ("resend 2025-10-28 00:30", "staff_actions", "2025-10-28 00:30", "2028-10-27"),
    ("erasure 2025-10-28 00:30", "staff_actions", "2025-10-28 00:30", None),        # the record of a forget
]
PURGE_DAYS = sorted({gone for *_, gone in CASES if gone} | {"2026-11-30", "2030-01-01"})


def _seed(store: Store, outbox: Path) -> None:
    def n(key, day, status="sent", **extra):
        return {"key": key, "run_date": d(day), "stage": "first_reminder", "channel": "email", "patron_id": "P1",
                "library": None, "recipient": "", "destination": "", "status": status, "replaced_by": None, **extra}

    def row(loan, day, status="sent", key=None, decided=None, stage="first_reminder"):
        return {"loan_id": loan, "due_date": d("2025-10-21"), "stage": stage, "status": status, "notice_key": key,
                "decided_on": d(decided or day), "reason": ""}

    def msg(key, stored):
        return {"notice_key": key, "media_type": "message/rfc822", "filename": "", "body": zlib.compress(b"x"),
                "size": 1, "stored_at": local(stored)}

    with store.engine.begin() as conn:
        conn.execute(insert(patrons), [{"patron_id": "P1", "barcode": "B1"}])
        conn.execute(insert(notices), [n(f"for message {i}", "2026-06-01") for i in range(4)] + [
            n("sent notice 2025-10-28", "2025-10-28"), n("pending notice 2025-10-28", "2025-10-28", "pending"),
            n("email refused 2025-10-28", "2025-10-28", "failed", replaced_by="letter instead 2025-10-30"),
            n("letter instead 2025-10-30", "2025-10-30", channel="letter", library="SCI")])
        conn.execute(insert(messages), [msg(f"for message {i}", label.removeprefix("message "))
                                        for i, label in enumerate(c[0] for c in CASES[:4])]
                     + [msg("sent notice 2025-10-28", "2026-01-05 10:00")])
        conn.execute(insert(ledger), [
            row("its ledger row", "2025-10-28", key="sent notice 2025-10-28"),
            row("pending ledger row", "2025-10-28", "pending", key="pending notice 2025-10-28"),
            row("the moved ledger row", "2025-10-28", key="letter instead 2025-10-30"),
            row("superseded row 2025-10-29", "2025-10-29", "superseded", stage="courtesy"),
            row("loan returned 2025-10-28, ledger 10-29", "2025-10-29", "cancelled", stage="courtesy")])
        conn.execute(insert(attempts), [{"notice_key": label, "at": local(when), "channel": "email",
                                         "outcome": "sent"} for label, table, when, _ in CASES if table == "attempts"])
        conn.execute(insert(runs), {"kind": "day", "run_date": d("2025-10-28"), "started_at": local("2025-10-28 02:00"),
                                    "finished_at": local("2025-10-28 02:01"), "outcome": "ok",
                                    "errors": "run 2025-10-28 02:00"})
        conn.execute(insert(loans), [
            {"loan_id": "loan returned 2025-10-28", "patron_id": "P1", "library": "SCI", "due_date": d("2025-10-21"),
             "returned_on": d("2025-10-28")},
            {"loan_id": "loan returned 2025-10-28, ledger 10-29", "patron_id": "P1", "library": "SCI",
             "due_date": d("2025-10-21"), "returned_on": d("2025-10-28")},
            {"loan_id": "open loan due 2025-10-01", "patron_id": "P1", "library": "SCI", "due_date": d("2025-10-01"),
             "returned_on": None}])
        conn.execute(insert(requests), [
            {"request_id": "request expired 2025-10-28", "patron_id": "P1", "library": "SCI", "pickup_library": "SCI",
             "placed_on": d("2025-09-01"), "expires_on": d("2025-10-28")},
            {"request_id": "request placed 2025-10-28, no expiry", "patron_id": "P1", "library": "SCI",
             "pickup_library": "SCI", "placed_on": d("2025-10-28"), "expires_on": None},
            {"request_id": "request placed 2025-10-28, expires 2026-01-10", "patron_id": "P1", "library": "SCI",
             "pickup_library": "SCI", "placed_on": d("2025-10-28"), "expires_on": d("2026-01-10")}])
        conn.execute(insert(patron_audit), [{"patron_id": "P1", "changed_at": local(when), "actor": label,
                                             "source": "edit", "field": "city"}
                                            for label, table, when, _ in CASES if table == "patron_audit"])
        conn.execute(insert(staff_actions), [
            {"at": local("2025-10-28 00:30"), "actor": "resend 2025-10-28 00:30", "action": "resend", "patron_id": None},
            {"at": local("2025-10-28 00:30"), "actor": "erasure 2025-10-28 00:30", "action": "forget",
             "patron_id": "P0"}])
    for label, table, where, _ in CASES:
        if table == "outbox":
            path = outbox / where
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(label.encode())


def _present(store: Store, outbox: Path) -> set[str]:
    found = set()
    with store.engine.connect() as conn:
        keys = dict(enumerate(c[0] for c in CASES[:4]))
        for key in conn.scalars(select(messages.c.notice_key)):
            found.add(keys[int(key[-1])] if key.startswith("for message") else "its message, stored 2026-01-05")
        found |= set(conn.scalars(select(notices.c.key)))
        found |= set(conn.scalars(select(ledger.c.loan_id)))
        found |= set(conn.scalars(select(attempts.c.notice_key)))
        found |= set(conn.scalars(select(runs.c.errors)))
        found |= set(conn.scalars(select(loans.c.loan_id)))
        found |= set(conn.scalars(select(requests.c.request_id)))
        found |= set(conn.scalars(select(patron_audit.c.actor)))
        found |= set(conn.scalars(select(staff_actions.c.actor).where(staff_actions.c.action != "purge")))
    found |= {p.read_text() for p in outbox.rglob("*") if p.is_file()}
    return found - {f"for message {i}" for i in range(4)}


def test_each_record_goes_on_the_day_its_time_is_up(db_url, tmp_path, policy):
    store = Store(db_url)
    outbox = tmp_path / "outbox"
    try:
        _seed(store, outbox)
        labels = {c[0] for c in CASES}
        assert _present(store, outbox) == labels
        for day in PURGE_DAYS:
            before = _present(store, outbox)
            counted = retention.purge(store, policy, d(day), outbox=outbox, dry_run=True)
            assert _present(store, outbox) == before, day                    # a dry run deletes nothing
            done = retention.purge(store, policy, d(day), outbox=outbox)
            assert _present(store, outbox) == {label for label, *_, gone in CASES if gone is None or gone > day}, day
            assert counted.deleted == done.deleted and not done.problems, day
        # the last purge, 2030-01-01: only the notices of 2026-06-01 the messages were attached to
        assert done.deleted == {"messages": 0, "ledger": 0, "notices": 4, "attempts": 0, "runs": 0, "loans": 0,
                                "requests": 0, "patron_audit": 0, "staff_actions": 0, "outbox_files": 0}
        assert not (outbox / "email" / "2025-10-28").exists()       # a dated folder left empty goes too
    finally:
        store.close()


def test_the_counts_say_how_much_went_from_each_table(db_url, tmp_path, policy):
    store = Store(db_url)
    outbox = tmp_path / "outbox"
    try:
        _seed(store, outbox)
        first = retention.purge(store, policy, d("2026-12-02"), outbox=outbox)
        assert first.deleted == {"messages": 3, "ledger": 0, "notices": 0, "attempts": 0, "runs": 0, "loans": 0,
                                 "requests": 0, "patron_audit": 0, "staff_actions": 0, "outbox_files": 2}
        later = retention.purge(store, policy, d("2028-10-27"), outbox=outbox)
        assert later.deleted == {"messages": 2, "ledger": 2, "notices": 2, "attempts": 2, "runs": 1, "loans": 1,
                                 "requests": 2, "patron_audit": 2, "staff_actions": 1, "outbox_files": 1}
    finally:
        store.close()


# --- rappel purge ------------------------------------------------------------------------------------

def rappel(*args: str) -> "CliRunner.invoke":
    return CliRunner().invoke(app, list(args))


def test_rappel_purge_counts_with_dry_run_then_deletes_and_records_it(sqlite_url, tmp_path):
    store = Store(sqlite_url)
    outbox = tmp_path / "outbox"
    _seed(store, outbox)
    common = ["--on", "2026-12-02", "--rules", str(RULES), "--db", sqlite_url, "--outbox", str(outbox)]
    dry = rappel("purge", "--dry-run", "--json", *common)
    assert dry.exit_code == 0, dry.output
    [line] = dry.stdout.splitlines()
    report = json.loads(line)
    assert report["dry_run"] is True and report["deleted"]["messages"] == 3 and report["deleted"]["outbox_files"] == 2
    assert report["retention"]["messages"] == {"days": 400, "last_day": "2025-10-28",
                                               "before": "2025-10-28T23:00:00+00:00"}
    assert len(_present(store, outbox)) == len(CASES)                       # nothing deleted
    real = rappel("purge", "--by", "marie", *common)
    assert real.exit_code == 0, real.output
    assert real.stdout.splitlines()[0] == ("purge of 2026-12-02: records of these days and earlier go: messages "
                                           "400 days (through 2025-10-28), ledger 1095 days (through 2023-12-03), "
                                           "audit 1095 days (through 2023-12-03)")
    assert "  messages                3" in real.stdout and real.stdout.splitlines()[-1] == "5 deleted"
    with store.engine.connect() as conn:
        assert conn.execute(select(staff_actions.c.actor, staff_actions.c.detail)
                            .where(staff_actions.c.action == "purge")).all() == [("marie", "messages 3, outbox_files 2")]
        assert conn.execute(select(runs.c.kind, runs.c.run_date, runs.c.outcome).where(runs.c.kind == "purge")).all() \
            == [("purge", d("2026-12-02"), "ok")]
    store.close()


def test_rappel_purge_refuses_a_day_after_today_and_says_when_nothing_is_set(sqlite_url, tmp_path):
    future = rappel("purge", "--on", "2999-01-01", "--rules", str(RULES), "--db", sqlite_url)
    assert future.exit_code == 2 and "a purge never deletes anything before its time" in future.stderr
    rules = copy_rules(tmp_path)
    (rules / "reminders.yaml").write_text(NO_RETENTION, encoding="utf-8")
    unset = rappel("purge", "--rules", str(rules), "--db", sqlite_url, "--outbox", str(tmp_path / "outbox"))
    assert unset.exit_code == 0, unset.output
    assert unset.stdout.startswith("no retention: section in the policy: nothing is ever deleted")


def test_an_outbox_that_cannot_be_read_fails_the_purge_and_says_so(sqlite_url, tmp_path):
    store = Store(sqlite_url)
    _seed(store, tmp_path / "outbox")
    store.close()
    not_a_folder = tmp_path / "outbox-file"
    not_a_folder.write_text("")
    result = rappel("purge", "--on", "2026-12-02", "--rules", str(RULES), "--db", sqlite_url,
                    "--outbox", str(not_a_folder))
    assert result.exit_code == 1
    assert f"outbox {not_a_folder}: {not_a_folder} is not a folder: its files were not purged" in result.stderr
    with Store(sqlite_url) as again, again.engine.connect() as conn:   # the database part was purged all the same
        assert conn.execute(select(runs.c.outcome, runs.c.errors).where(runs.c.kind == "purge")).all() == [
            ("failed", f"outbox {not_a_folder}: {not_a_folder} is not a folder: its files were not purged")]
        assert len(conn.execute(select(messages)).all()) == 2
