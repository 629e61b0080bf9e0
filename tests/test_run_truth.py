"""`rappel run` tells the truth: a run that leaves messages failed or waiting exits 1 and says how
many wait and until when (in --json too); the loser of two runs is told who holds the lease; and
`rappel status` says which policy the daemon runs (daemon_state). Real processes, a real SMTP port.

The installation is tests/delivery_site.py's: RUN is Monday 2026-11-23, the first reminder is 7
days after the due date, delivery.retry waits 15 minutes first (the policy's default)."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from adapters.store.lease import Lease

try:
    from tests.daemon_cases import SimClock, run_daemon
    from tests.delivery_site import RUN, Site, free_port
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import SimClock, run_daemon
    from delivery_site import RUN, Site, free_port

ENV = {**os.environ, "RAPPEL_INSTALLATION_ID": "test-installation", "RAPPEL_DB_URL": ""}


def rappel(site: Site, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args, "--rules", str(site.rules), "--db", site.store.url],
                          capture_output=True, text=True, timeout=120, env=ENV)


def run(site: Site, *args: str) -> subprocess.CompletedProcess:
    return rappel(site, "run", "--on", RUN.isoformat(), "--outbox", str(site.outbox), *args)


@pytest.fixture
def smtp_down(tmp_path):
    """Four patrons at their first reminder on RUN (due 2026-11-16), the SMTP server not listening."""
    site = Site(tmp_path, f'\ndelivery:\n  email: {{url: "mailto://127.0.0.1:{free_port()}"}}\n')
    for n in range(1, 5):
        site.patron(f"P{n}", f"p{n}@etu.example")
        site.loan(f"L{n}", f"P{n}", "2026-11-16")
    yield site
    site.close()


def test_a_run_with_the_smtp_server_down_exits_1_and_says_how_many_wait_and_until_when(smtp_down):
    first = run(smtp_down)
    assert first.returncode == 1, first.stderr
    assert "delivered 0 of 4 pending message(s)" in first.stderr
    assert "4 message(s) wait for their retry time (the next attempt after " in first.stderr, first.stderr
    again = run(smtp_down, "--json")                    # at once: nothing is due yet, and it says so
    assert again.returncode == 1, again.stderr
    assert "delivered 0 of 0 pending message(s)" in again.stderr
    assert "4 message(s) wait for their retry time" in again.stderr
    [line] = again.stdout.splitlines()                  # stdout: JSON only
    told = json.loads(line)["delivery"]
    assert (told["delivered"], told["of"], told["waiting_retry"], told["waiting_fix"]) == (0, 0, 4, 0)
    assert dt.datetime.fromisoformat(told["next_attempt_at"]) > dt.datetime.now(dt.timezone.utc)


def test_the_loser_of_two_runs_is_told_another_run_holds_the_lease(smtp_down):
    other = Lease(smtp_down.store.engine, holder="desk-pc/4242/run")       # a `rappel run` in progress
    assert other.acquire()
    try:
        lost = run(smtp_down)
        assert lost.returncode == 1
        assert "another `rappel run` holds the lease on this database (desk-pc/4242/run" in lost.stderr, lost.stderr
        assert "daemon" not in lost.stderr
    finally:
        other.release()


def test_status_reports_the_policy_the_daemon_runs_and_when_the_files_differ(tmp_path):
    site = Site(tmp_path)
    site.close()
    clock = SimClock(dt.datetime(2026, 11, 23, 3, tzinfo=dt.timezone.utc), dt.datetime(2026, 11, 23, 4, tzinfo=dt.timezone.utc))
    run_daemon(site.store.url, site.rules, clock, holder="server-1/77/daemon", lease_seconds=3600)
    daemon_held = Lease(site.store.engine, holder="server-1/77/daemon", ttl=3600)
    assert daemon_held.acquire()                         # as if it were still running
    try:
        shown = rappel(site, "status", "--json")
        report = json.loads(shown.stdout.splitlines()[0])
        ran = report["daemon_policy"]
        assert ran["holder"] == "server-1/77/daemon" and ran["active"] and ran["same_as_files"]
        assert [s["id"] for s in ran["summary"]["stages"]] == ["courtesy", "first_reminder", "second_reminder", "letter"]
        assert ran["summary"]["libraries"] == ["DROIT", "SCI"]
        assert not any("differ" in w for w in report["warnings"])
        policy = site.rules / "reminders.yaml"
        policy.write_text(policy.read_text(encoding="utf-8").replace("max_delay_days: 2", "max_delay_days: 3"),
                          encoding="utf-8")
        edited = json.loads(rappel(site, "status", "--json").stdout.splitlines()[0])
        assert edited["daemon_policy"]["same_as_files"] is False
        assert any("differ from the policy the daemon runs" in w for w in edited["warnings"]), edited["warnings"]
        lost = run(site)                                  # and a run beside it is told a daemon is active
        assert "a daemon is active" in lost.stderr and lost.returncode == 1
    finally:
        daemon_held.release()
        site.store.engine.dispose()       # the lease's connection, opened after the site was closed
