"""`rappel status` (adapters/runs.py): the run history, the next run, the ledger, failed deliveries,
and an alert (exit 1) when no run completed in the last day or deliveries fail past a threshold.

The runs are made by the daemon on simulated time (tests/daemon_cases.py), with the shipped
policy: first reminder 7 days after the due date, runs at 02:00 Europe/Paris.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

import cli
from adapters.channels.base import Delivery
from adapters.channels.memory import MemoryChannel
from service.status import status_lines, status_report
from adapters.store.database import Store

try:
    from tests.daemon_cases import SimClock, at, copy_rules, loan_row, patron_row, run_daemon, seed
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import SimClock, at, copy_rules, loan_row, patron_row, run_daemon, seed

ENV = {"RAPPEL_INSTALLATION_ID": "test-installation"}


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def refuse(address: str):
    """A channel whose server refuses one address for good, and takes the rest."""
    def fail(notice):
        if notice.recipient == address:
            return Delivery.failed("RCPT TO <%s> refused: 550 5.1.1 no such user" % address, permanent=True)
        return None
    return MemoryChannel(fail_with=fail)


def a_day_of_runs(store, db_url, tmp_path, channel=None):
    """Monday 2 March 2026, 02:00: two first reminders, one to an address the server refuses."""
    rules = copy_rules(tmp_path, ("fallback: {email: letter}", "fallback: {email: none}"))
    seed(store, [patron_row("P1"), patron_row("P2", email="gone@etu.univ.example")],
         [loan_row("L1", "P1", "2026-02-23"), loan_row("L2", "P2", "2026-02-23")])
    run_daemon(db_url, rules, SimClock(at("2026-03-02 02:00"), at("2026-03-02 02:30")),
               channel or refuse("gone@etu.univ.example"))
    return rules


def test_a_database_that_never_ran_is_an_alert(store, tmp_path):
    """Times are the policy's (Europe/Paris): the 02:00 run is at 02:00+01:00, not 01:00 UTC."""
    rules = copy_rules(tmp_path)
    report = status_report(store, rules, at("2026-03-02 09:00"), env=ENV)
    assert report["last_run"] is None
    assert report["alerts"] == ["no run has completed yet"]
    assert report["next_run"] == "2026-03-03T02:00:00+01:00"
    assert "no daemon holds the lease (none running, or stopped)" in report["warnings"]
    summer = status_report(store, rules, at("2026-07-01 09:00"), env=ENV)
    assert (summer["now"], summer["next_run"]) == ("2026-07-01T09:00:00+02:00", "2026-07-02T02:00:00+02:00")


def test_after_a_run_it_says_what_happened_and_what_failed(store, db_url, tmp_path):
    rules = a_day_of_runs(store, db_url, tmp_path)
    report = status_report(store, rules, at("2026-03-02 09:00"), env=ENV, max_failures=0)
    last = report["last_run"]
    assert (last["date"], last["outcome"], last["started"], last["finished"]) == (
        "2026-03-02", "ok", "2026-03-02T02:00:00+01:00", "2026-03-02T02:00:00+01:00")
    assert (last["decided"], last["sent"], last["failed"], last["retrying"], last["dropped"]) == (2, 1, 1, 0, 0)
    assert report["next_run"] == "2026-03-03T02:00:00+01:00" and report["days_behind"] == 0
    assert report["ledger"] == {"failed": 1, "sent": 1}
    (failure,) = report["failures"]["shown"]
    assert failure["recipient"] == "gone@etu.univ.example" and "550 5.1.1 no such user" in failure["last_error"]
    assert report["alerts"] == ["1 deliveries failed in the last day or are being retried (threshold 0)"]
    assert report["installation"]["ok"] is True
    # one failure is within a threshold of one
    assert status_report(store, rules, at("2026-03-02 09:00"), env=ENV, max_failures=1)["alerts"] == []


def test_no_run_in_the_last_day_is_an_alert(store, db_url, tmp_path):
    rules = a_day_of_runs(store, db_url, tmp_path, channel=MemoryChannel())
    assert status_report(store, rules, at("2026-03-03 01:59"), env=ENV)["alerts"] == []
    late = status_report(store, rules, at("2026-03-03 03:30"), env=ENV)
    assert late["days_behind"] == 1
    assert late["alerts"] == ["no run completed in the last day (last: 2026-03-02, finished "
                              "2026-03-02T02:00:00+01:00)"]


def test_a_rejected_policy_edit_is_a_warning(store, db_url, tmp_path):
    rules = copy_rules(tmp_path)
    policy_file = rules / "reminders.yaml"
    good = policy_file.read_text(encoding="utf-8")

    def break_it():
        policy_file.write_text(good + "shedule: {at: '03:00'}\n", encoding="utf-8")

    run_daemon(db_url, rules, SimClock(at("2026-03-02 02:00"), at("2026-03-02 12:00"),
                                       events=[(at("2026-03-02 10:00"), break_it)]))
    policy_file.write_text(good, encoding="utf-8")
    report = status_report(store, rules, at("2026-03-02 12:00"), env=ENV)
    assert report["alerts"] == []
    (warning,) = [w for w in report["warnings"] if "policy edit" in w]
    assert "a policy edit was rejected at 2026-03-02T10:00:00+01:00" in warning and "shedule" in warning


def test_the_report_reads_as_text(store, db_url, tmp_path):
    rules = a_day_of_runs(store, db_url, tmp_path)
    lines = status_lines(status_report(store, rules, at("2026-03-02 09:00"), env=ENV))
    assert lines[0] == "rappel status: ALERT (at 2026-03-02T09:00:00+01:00)"
    assert lines[1] == ("last run:     2026-03-02 ok, started 2026-03-02T02:00:00+01:00, finished "
                        "2026-03-02T02:00:00+01:00: 2 decided, 1 sent, 0 to retry, 1 failed, 0 dropped")
    assert "next run:     2026-03-03T02:00:00+01:00" in lines
    assert "ledger:       failed 1, sent 1; 0 message(s) pending" in lines
    assert lines[-1] == "ALERT: 1 deliveries failed in the last day or are being retried (threshold 0)"


def test_messages_held_by_the_flood_guard_are_an_alert(store, db_url, tmp_path):
    rules = copy_rules(tmp_path, ("  max_per_run: 1000", "  max_per_run: 1"))
    seed(store, [patron_row("P1"), patron_row("P2")],
         [loan_row("L1", "P1", "2026-02-23"), loan_row("L2", "P2", "2026-02-23")])
    channel = MemoryChannel()
    run_daemon(db_url, rules, SimClock(at("2026-03-02 02:00"), at("2026-03-02 09:00")), channel)
    assert channel.emails == []
    report = status_report(store, rules, at("2026-03-02 09:00"), env=ENV)
    assert report["last_run"]["held"] == 2 and report["pending"] == 2
    assert report["alerts"] == ["the flood guard holds 2 message(s) since 2026-03-02T02:00:00+01:00: check them, "
                                "then `rappel run --confirm`"]


# --- the command -----------------------------------------------------------------------------------

def test_the_command_exits_1_on_an_alert_and_0_when_all_is_well(store, db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("RAPPEL_INSTALLATION_ID", "test-installation")
    rules = copy_rules(tmp_path)
    runner = CliRunner()
    args = ["status", "--db", db_url, "--rules", str(rules)]
    result = runner.invoke(cli.app, args + ["--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["alerts"] == ["no run has completed yet"]

    now = dt.datetime.now(dt.timezone.utc)             # a run that has just finished
    run_daemon(db_url, rules, SimClock(now, now + dt.timedelta(minutes=1)))
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("rappel status: OK")
