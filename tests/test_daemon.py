"""`rappel daemon` (service/daemon.py): when it runs, what it catches up, how it stops, reloads.

The daemon runs in this process on simulated time (tests/daemon_cases.py SimClock: each wait jumps
to the time asked), against a real database (SQLite file; PostgreSQL when configured), with the
shipped policy: courtesy 3 days before the due date, first reminder on day 7, each caught up
within 2 days; runs at 02:00 Europe/Paris. Times in UTC are written 'YYYY-MM-DD HH:MM'.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from adapters.channels.base import Delivery
from adapters.channels.memory import MemoryChannel
from engine.schedule import catch_up_days, moment, next_moment, scheduled_day
from adapters.store.lease import read_lease
from adapters.store.schema import runs
from adapters.store.database import Store

try:
    from tests.daemon_cases import (ROOT, SimClock, at, copy_rules, d, day_runs, ledger_status, loan_row,
                                    notice_statuses, patron_row, run_daemon, seed, utc)
    from tests.engine_cases import default_policy, policy_variant
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import (ROOT, SimClock, at, copy_rules, d, day_runs, ledger_status, loan_row,
                              notice_statuses, patron_row, run_daemon, seed, utc)
    from engine_cases import default_policy, policy_variant


# --- the schedule: 02:00 Europe/Paris, daylight saving included ------------------------------------

@pytest.mark.parametrize("day, at_, expected_utc", [
    ("2026-03-28", "02:00", "2026-03-28 01:00"),   # winter time (UTC+1)
    ("2026-03-29", "02:00", "2026-03-29 01:00"),   # spring forward at 02:00: 02:00 does not exist → 03:00 CEST
    ("2026-03-29", "02:30", "2026-03-29 01:30"),   # 02:30 does not exist either → 03:30 CEST
    ("2026-03-30", "02:00", "2026-03-30 00:00"),   # summer time (UTC+2)
    ("2026-10-25", "02:00", "2026-10-25 00:00"),   # fall back at 03:00: 02:00 happens twice → the first one
    ("2026-10-25", "02:30", "2026-10-25 00:30"),
    ("2026-10-26", "02:00", "2026-10-26 01:00"),   # winter time again
    ("2026-12-31", "23:59", "2026-12-31 22:59"),
    ("2027-01-01", "00:00", "2026-12-31 23:00"),
])
def test_the_run_of_a_day_is_due_at_its_local_time(day, at_, expected_utc):
    policy = policy_variant(append=f"schedule: {{at: \"{at_}\"}}\n")
    assert moment(policy, d(day)) == utc(expected_utc)


@pytest.mark.parametrize("now_utc, day, following_utc", [
    ("2026-03-29 00:59", "2026-03-28", "2026-03-29 01:00"),
    ("2026-03-29 01:00", "2026-03-29", "2026-03-30 00:00"),
    ("2026-10-25 00:00", "2026-10-25", "2026-10-26 01:00"),   # the second 02:00 (01:00 UTC) is no new run
    ("2026-10-25 01:30", "2026-10-25", "2026-10-26 01:00"),
    ("2026-10-24 23:59", "2026-10-24", "2026-10-25 00:00"),
])
def test_the_day_due_and_the_next_run(now_utc, day, following_utc):
    policy = default_policy()
    assert scheduled_day(policy, utc(now_utc)) == d(day)
    assert next_moment(policy, utc(now_utc)) == utc(following_utc)


@pytest.mark.parametrize("last_done, latest, today, days, skipped", [
    (None, "2026-03-05", "2026-03-05", ["2026-03-05"], None),                          # first start: today only
    ((None, "2026-03-03"), "2026-03-05", "2026-03-05",
     ["2026-03-03", "2026-03-04", "2026-03-05"], None),                                # no day ever finished
    (("2026-03-03", "2026-03-02"), "2026-03-05", "2026-03-05",
     ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"], None),                  # a crashed day before
    ("2026-03-05", "2026-03-05", "2026-03-05", [], None),                              # done already
    ("2026-03-01", "2026-03-05", "2026-03-05",
     ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"], None),                  # down three days
    ("2026-03-04", "2026-03-04", "2026-03-05", [], None),                              # 01:00, before the run
    ("2026-01-01", "2026-03-05", "2026-03-05",
     [f"2026-02-{n:02}" for n in range(2, 29)] + [f"2026-03-{n:02}" for n in range(1, 6)],
     ("2026-01-02", "2026-02-01")),                                                    # a long outage
])
def test_missed_days_to_evaluate(last_done, latest, today, days, skipped):
    """last_done: the last day completed, or (that, the first day attempted and not completed)."""
    done, unfinished = last_done if isinstance(last_done, tuple) else (last_done, None)
    got_days, got_skipped = catch_up_days(default_policy(), d(done) if done else None, d(latest), d(today),
                                          d(unfinished) if unfinished else None)
    assert [x.isoformat() for x in got_days] == days
    assert (tuple(x.isoformat() for x in got_skipped) if got_skipped else None) == skipped


# --- the daemon on simulated time --------------------------------------------------------------------

@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def sent_to(channel: MemoryChannel) -> list[tuple[str, str, str]]:
    """(date of the notice, stage, patron) of every message the channel received, in order."""
    return [(n.date.isoformat(), n.stage, n.patron_id) for n, *_ in (*channel.emails, *channel.letters)]


@pytest.mark.parametrize("start, end, due, expected_runs, expected_sent", [
    ("2026-03-28 12:00", "2026-03-30 12:00", "2026-03-22", [
        ("2026-03-28", "ok", "2026-03-28 11:00"),   # first start, after 02:00: that day at once
        ("2026-03-29", "ok", "2026-03-29 01:00"),   # 03:00 CEST: the first moment 02:00 is past
        ("2026-03-30", "ok", "2026-03-30 00:00"),   # 02:00 CEST
    ], [("2026-03-29", "first_reminder", "P1")]),
    ("2026-10-24 12:00", "2026-10-26 12:00", "2026-10-18", [
        ("2026-10-24", "ok", "2026-10-24 10:00"),
        ("2026-10-25", "ok", "2026-10-25 00:00"),   # 02:00 CEST; 02:00 CET an hour later runs nothing
        ("2026-10-26", "ok", "2026-10-26 01:00"),   # 02:00 CET
    ], [("2026-10-25", "first_reminder", "P1")]),
], ids=["spring-forward", "fall-back"])
def test_daylight_saving_days_run_once_at_local_time(store, db_url, tmp_path, start, end, due, expected_runs,
                                                    expected_sent):
    seed(store, [patron_row("P1")], [loan_row("L1", "P1", due)])    # its first reminder: the Sunday
    daemon = run_daemon(db_url, copy_rules(tmp_path), SimClock(at(start), at(end)))
    assert day_runs(store) == expected_runs
    assert sent_to(daemon.channel) == expected_sent
    assert daemon.exit_code == 0


def test_down_three_days_then_restarted_catches_up_each_day_in_order(store, db_url, tmp_path):
    """Runs on Monday 2 March, is down Tuesday to Thursday, restarts Friday 6 March at 02:30.

    Each missed day is evaluated in order (decisions only); then Friday's run decides and delivers
    what is pending as of Friday: a notice still inside its 2-day window goes out, an older one is
    expired, never sent; a courtesy notice whose due date has come is expired too.
    """
    rules = copy_rules(tmp_path)
    seed(store, [patron_row(p) for p in "GABCDEF"], [
        loan_row("G", "G", "2026-02-23"),   # first reminder Mon 2   → sent Monday
        loan_row("A", "A", "2026-02-24"),   # first reminder Tue 3   → Friday is 3 days late: expired
        loan_row("B", "B", "2026-02-25"),   # first reminder Wed 4   → 2 days late: sent Friday
        loan_row("C", "C", "2026-02-26"),   # first reminder Thu 5   → sent Friday
        loan_row("D", "D", "2026-02-27"),   # first reminder Fri 6   → sent Friday
        loan_row("E", "E", "2026-03-07"),   # courtesy Wed 4, due Sat 7 → sent Friday
        loan_row("F", "F", "2026-03-06"),   # courtesy Tue 3, due Fri 6 → the due date has come: expired
    ])
    channel = MemoryChannel()
    run_daemon(db_url, rules, SimClock(at("2026-03-02 02:00"), at("2026-03-02 12:00")), channel)
    assert sent_to(channel) == [("2026-03-02", "first_reminder", "G")]
    assert read_lease(store.engine).active is False              # a clean stop releases the lease

    run_daemon(db_url, rules, SimClock(at("2026-03-06 02:30"), at("2026-03-06 12:00")), channel)
    assert day_runs(store) == [
        ("2026-03-02", "ok", "2026-03-02 01:00"),
        ("2026-03-03", "ok", "2026-03-06 01:30"),
        ("2026-03-04", "ok", "2026-03-06 01:30"),
        ("2026-03-05", "ok", "2026-03-06 01:30"),
        ("2026-03-06", "ok", "2026-03-06 01:30"),
    ]
    assert ledger_status(store) == {
        ("G", "first_reminder"): ("sent", "2026-03-02"),
        ("A", "first_reminder"): ("expired", "2026-03-03"),
        ("F", "courtesy"): ("expired", "2026-03-03"),
        ("B", "first_reminder"): ("sent", "2026-03-04"),
        ("E", "courtesy"): ("sent", "2026-03-04"),
        ("C", "first_reminder"): ("sent", "2026-03-05"),
        ("D", "first_reminder"): ("sent", "2026-03-06"),
    }
    assert sorted(sent_to(channel)) == [
        ("2026-03-02", "first_reminder", "G"),
        ("2026-03-04", "courtesy", "E"),
        ("2026-03-04", "first_reminder", "B"),
        ("2026-03-05", "first_reminder", "C"),
        ("2026-03-06", "first_reminder", "D"),
    ]


def test_a_long_outage_skips_the_days_too_old_to_matter(store, db_url, tmp_path):
    rules = copy_rules(tmp_path)
    run_daemon(db_url, rules, SimClock(at("2026-01-05 03:00"), at("2026-01-05 04:00")))
    run_daemon(db_url, rules, SimClock(at("2026-03-06 03:00"), at("2026-03-06 04:00")))
    got = day_runs(store)
    assert got[0] == ("2026-01-05", "ok", "2026-01-05 02:00")
    assert got[1] == ("2026-02-02", "skipped", "2026-03-06 02:00")      # 6 Jan to 2 Feb: one line
    assert [r[0] for r in got[2:]] == [(d("2026-02-03") + dt.timedelta(days=n)).isoformat() for n in range(32)]
    with store.engine.connect() as conn:
        why = conn.scalar(select(runs.c.errors).where(runs.c.outcome == "skipped"))
    assert why.startswith("2026-01-06 to 2026-02-02 not evaluated")


def test_a_second_daemon_run_for_a_done_day_does_nothing(store, db_url, tmp_path):
    rules = copy_rules(tmp_path)
    seed(store, [patron_row("P1")], [loan_row("L1", "P1", "2026-02-23")])
    channel = MemoryChannel()
    run_daemon(db_url, rules, SimClock(at("2026-03-02 03:00"), at("2026-03-02 04:00")), channel)
    run_daemon(db_url, rules, SimClock(at("2026-03-02 05:00"), at("2026-03-02 06:00")), channel)
    assert [r[0] for r in day_runs(store)] == ["2026-03-02"]
    assert len(sent_to(channel)) == 1


def test_a_failed_delivery_is_retried_between_runs_at_its_own_time(store, db_url, tmp_path):
    """The server is down at 02:00; delivery.retry: first_minutes 15 (the shipped default)."""
    rules = copy_rules(tmp_path)
    seed(store, [patron_row("P1")], [loan_row("L1", "P1", "2026-02-23")])
    down = {"until": at("2026-03-02 02:20")}
    clock = SimClock(at("2026-03-02 02:00"), at("2026-03-02 06:00"))

    def server(notice):
        if clock.now() < down["until"]:
            return Delivery.failed("connect: [Errno 111] Connection refused")
        return None

    channel = MemoryChannel(fail_with=server)
    run_daemon(db_url, rules, clock, channel)
    assert channel.attempts == 3                  # 02:00 refused, 02:15 refused, 02:45 (30 min later) sent
    assert sent_to(channel) == [("2026-03-02", "first_reminder", "P1")]
    with store.engine.connect() as conn:
        passes = conn.execute(select(runs.c.kind, runs.c.started_at, runs.c.sent, runs.c.retrying)
                              .where(runs.c.kind != "purge").order_by(runs.c.run_id)).all()
    assert [(kind, started.strftime("%H:%M"), sent, retrying) for kind, started, sent, retrying in passes] == [
        ("day", "01:00", 0, 1), ("deliver", "01:15", 0, 1), ("deliver", "01:45", 1, 0)]


# --- stopping: the message in flight finishes, the rest stays pending ------------------------------

class StopsWhileSending(MemoryChannel):
    """A signal arrives while the n-th message is being sent."""

    def __init__(self, at_message: int):
        super().__init__()
        self.at_message = at_message
        self.daemon = None

    def send_email(self, notice, message):
        if self.attempts + 1 == self.at_message:
            self.daemon.request_stop()     # what SIGTERM's handler does
        return super().send_email(notice, message)


def test_a_stop_finishes_the_message_in_flight_and_leaves_the_rest_pending(store, db_url, tmp_path):
    rules = copy_rules(tmp_path)
    seed(store, [patron_row(f"P{n}") for n in range(5)],
         [loan_row(f"L{n}", f"P{n}", "2026-02-23") for n in range(5)])
    channel = StopsWhileSending(at_message=2)
    clock = SimClock(at("2026-03-02 03:00"), at("2026-03-02 12:00"))
    clock.daemon = None

    def channel_for(policy, templates):
        return channel

    from service.daemon import Daemon, Settings
    daemon = Daemon(Settings(rules_dir=rules, db_url=db_url, clock=clock, channel_for=channel_for,
                             env={"RAPPEL_INSTALLATION_ID": "test-installation"}))
    clock.daemon = channel.daemon = daemon
    assert daemon.run() == 0
    assert len(channel.emails) == 2                       # the first, and the one in flight
    statuses = sorted(notice_statuses(store).values())
    assert statuses == ["pending", "pending", "pending", "sent", "sent"]
    assert day_runs(store) == [("2026-03-02", "interrupted", "2026-03-02 02:00")]
    assert read_lease(store.engine).active is False

    # the next start runs the day again: nothing new decided, the three left are delivered once
    channel.at_message = 0
    run_daemon(db_url, rules, SimClock(at("2026-03-02 03:10"), at("2026-03-02 12:00")), channel)
    assert len(channel.emails) == 5 and len({n.key for n, _ in channel.emails}) == 5
    assert [r[:2] for r in day_runs(store)] == [("2026-03-02", "interrupted"), ("2026-03-02", "ok")]


def test_sigterm_stops_the_daemon_process_and_releases_the_lease(sqlite_url, tmp_path):
    """The real thing: `rappel daemon` in a process of its own, evaluating in a child process."""
    db_url = sqlite_url
    rules = copy_rules(tmp_path)
    clock = tmp_path / "clock"
    clock.write_text("2026-03-02T03:00:00+01:00")
    env = {**os.environ, "RAPPEL_INSTALLATION_ID": "test-installation"}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "daemon", "--db", db_url, "--rules", str(rules),
                             "--outbox", str(tmp_path / "outbox"), "--clock-file", str(clock),
                             "--lease-seconds", "30"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    store = Store(db_url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and [r[1] for r in day_runs(store)] != ["ok"]:
            time.sleep(0.1)
        assert [r[:2] for r in day_runs(store)] == [("2026-03-02", "ok")]
        assert read_lease(store.engine).active
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert read_lease(store.engine).active is False
    finally:
        if proc.poll() is None:
            proc.kill()
        store.close()
    with proc.stderr:
        assert "stopped by a signal" in proc.stderr.read()


# --- the policy edited while the daemon runs ------------------------------------------------------

def test_a_broken_policy_edit_keeps_the_old_policy_running_and_is_reported(store, db_url, tmp_path, caplog):
    rules = copy_rules(tmp_path)
    policy_file = rules / "reminders.yaml"
    good = policy_file.read_text(encoding="utf-8")
    seed(store, [patron_row(f"P{n}") for n in range(2, 6)],
         [loan_row(f"L{n}", f"P{n}", f"2026-02-{21 + n}") for n in range(2, 6)])   # first reminder on day n

    def break_it():
        policy_file.write_text(good.replace("max_delay_days: 2", "max_delay_days: two"), encoding="utf-8")

    def break_a_template():
        policy_file.write_text(good + 'schedule: {at: "06:30"}\n', encoding="utf-8")
        (rules / "templates" / "fr" / "first_reminder.txt.j2").write_text("{% if %}", encoding="utf-8")

    def fix_it():
        (rules / "templates" / "fr" / "first_reminder.txt.j2").write_text(
            (ROOT / "rules" / "templates" / "fr" / "first_reminder.txt.j2").read_text(encoding="utf-8"),
            encoding="utf-8")

    clock = SimClock(at("2026-03-02 02:00"), at("2026-03-05 12:00"),
                     events=[(at("2026-03-02 10:00"), break_it), (at("2026-03-03 10:00"), break_a_template),
                             (at("2026-03-04 10:00"), fix_it)])
    with caplog.at_level("INFO", logger="rappel"):
        daemon = run_daemon(db_url, rules, clock)
    assert day_runs(store) == [
        ("2026-03-02", "ok", "2026-03-02 01:00"),
        ("2026-03-03", "ok", "2026-03-03 01:00"),   # the broken edit was not taken: still 02:00
        ("2026-03-04", "ok", "2026-03-04 01:00"),   # 06:30 comes with a broken template: not taken either
        ("2026-03-05", "ok", "2026-03-05 05:30"),   # fixed: the edit is in force, 06:30
    ]
    assert sent_to(daemon.channel) == [(f"2026-03-0{n}", "first_reminder", f"P{n}") for n in range(2, 6)]
    with store.engine.connect() as conn:
        reloads = conn.execute(select(runs.c.outcome, runs.c.errors).where(runs.c.kind == "reload")
                               .order_by(runs.c.run_id)).all()
    assert [outcome for outcome, _ in reloads] == ["rejected", "rejected", "ok"]
    assert "reminders.yaml:" in reloads[0][1] and "max_delay_days" in reloads[0][1]
    assert "first_reminder.txt.j2" in reloads[1][1]
    rejected = [r.getMessage() for r in caplog.records if "policy edit rejected" in r.getMessage()]
    assert len(rejected) == 2 and "still running the previous policy" in rejected[0]


# --- accounts.yaml: which record types receive loan notices, as for `rappel run` ---------------------

PUBLIC_RECEIVES = ("    description: External records created by the synchronisation (library staff are often public "
                   "too).\n    receives_loan_notices: true")


def write_accounts(rules, public: str = "true") -> None:
    """The shipped accounts.yaml in ``rules``, with public records' receives_loan_notices set to ``public``."""
    text = (ROOT / "rules" / "accounts.yaml").read_text(encoding="utf-8")
    assert text.count(PUBLIC_RECEIVES) == 1
    (rules / "accounts.yaml").write_text(
        text.replace(PUBLIC_RECEIVES, PUBLIC_RECEIVES.replace(": true", f": {public}")), encoding="utf-8")


def staff_row(patron_id: str) -> dict:
    return {**patron_row(patron_id), "record_type": "staff"}


def test_public_records_that_receive_no_loan_notices_get_none_from_the_daemon(store, db_url, tmp_path):
    rules = copy_rules(tmp_path)
    write_accounts(rules, public="false")
    seed(store, [patron_row("P1"), staff_row("S1")], [loan_row("L1", "P1", "2026-02-23"),
                                                     loan_row("L2", "S1", "2026-02-23")])
    daemon = run_daemon(db_url, rules, SimClock(at("2026-03-02 02:00"), at("2026-03-02 12:00")))
    assert sent_to(daemon.channel) == [("2026-03-02", "first_reminder", "S1")]
    assert set(ledger_status(store)) == {("L2", "first_reminder")}


def test_an_accounts_edit_is_picked_up_and_a_broken_one_rejected(store, db_url, tmp_path, caplog):
    """Public records stop receiving notices (day 3), a broken edit keeps that (day 4), then they do again."""
    rules = copy_rules(tmp_path)
    write_accounts(rules)
    seed(store, [p for n in range(2, 6) for p in (patron_row(f"P{n}"), staff_row(f"S{n}"))],
         [loan for n in range(2, 6) for loan in (loan_row(f"L{n}", f"P{n}", f"2026-02-{21 + n}"),
                                                 loan_row(f"M{n}", f"S{n}", f"2026-02-{21 + n}"))])

    clock = SimClock(at("2026-03-02 02:00"), at("2026-03-05 12:00"), events=[
        (at("2026-03-02 10:00"), lambda: write_accounts(rules, public="false")),
        (at("2026-03-03 10:00"), lambda: write_accounts(rules, public="perhaps")),
        (at("2026-03-04 10:00"), lambda: write_accounts(rules, public="true")),
    ])
    with caplog.at_level("INFO", logger="rappel"):
        daemon = run_daemon(db_url, rules, clock)
    assert sorted(sent_to(daemon.channel)) == [
        ("2026-03-02", "first_reminder", "P2"), ("2026-03-02", "first_reminder", "S2"),
        ("2026-03-03", "first_reminder", "S3"),              # public: receives_loan_notices: false
        ("2026-03-04", "first_reminder", "S4"),              # the broken edit was not taken: still false
        # public records receive notices again: theirs of the last two days are inside the 2-day window
        ("2026-03-05", "first_reminder", "P3"), ("2026-03-05", "first_reminder", "P4"),
        ("2026-03-05", "first_reminder", "P5"), ("2026-03-05", "first_reminder", "S5"),
    ]
    with store.engine.connect() as conn:
        reloads = conn.execute(select(runs.c.outcome, runs.c.errors).where(runs.c.kind == "reload")
                               .order_by(runs.c.run_id)).all()
    assert [outcome for outcome, _ in reloads] == ["ok", "rejected", "ok"]
    assert f"{rules / 'accounts.yaml'}:" in reloads[1][1] and "receives_loan_notices" in reloads[1][1]
    rejected = [r.getMessage() for r in caplog.records if "policy edit rejected" in r.getMessage()]
    assert len(rejected) == 1 and "accounts.yaml" in rejected[0]


def test_the_policy_fingerprint_covers_accounts_yaml(tmp_path):
    from service.daemon import policy_fingerprint

    rules = copy_rules(tmp_path)
    seen = {policy_fingerprint(rules)}
    write_accounts(rules)                                    # added
    seen.add(policy_fingerprint(rules))
    write_accounts(rules, public="false")                    # edited
    seen.add(policy_fingerprint(rules))
    (rules / "accounts.yaml").unlink()                       # removed: as before it was added
    assert len(seen) == 3 and policy_fingerprint(rules) in seen
