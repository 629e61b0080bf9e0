"""The environment guard (adapters/installation.py): a database delivers only from its installation.

A copy of the production database restored onto a test machine must not mail patrons about old
loans: the daemon there refuses to evaluate or deliver until an operator runs
`rappel confirm-installation`. Real databases (SQLite file; PostgreSQL when configured).
"""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cli
from adapters.store.installation import ID_FILE, Guard
from service.status import status_report
from adapters.store.database import Store

try:
    from tests.daemon_cases import ROOT, SimClock, at, copy_rules, day_runs, loan_row, patron_row, run_daemon, seed
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import ROOT, SimClock, at, copy_rules, day_runs, loan_row, patron_row, run_daemon, seed


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def test_the_first_start_claims_the_database_for_this_machine(store, tmp_path):
    state = tmp_path / "state"
    guard = Guard(store.engine, state, env={})
    verdict = guard.check()
    assert verdict.ok and verdict.database_id == verdict.local_id
    assert (state / ID_FILE).read_text().strip() == verdict.database_id
    assert Guard(store.engine, state, env={}).check().ok                     # and it stays so
    assert not Guard(store.engine, tmp_path / "elsewhere", env={}).check(claim=False).ok


def test_a_restored_copy_refuses_to_deliver_until_confirmed(store, db_url, tmp_path, monkeypatch):
    """Production's database, restored on a test machine whose installation id is another."""
    rules = copy_rules(tmp_path)
    seed(store, [patron_row("P1")], [loan_row("L1", "P1", "2026-02-23")])   # first reminder on 2 March
    assert Guard(store.engine, env={"RAPPEL_INSTALLATION_ID": "production"}).check().ok
    test_machine = {"RAPPEL_INSTALLATION_ID": "test-machine"}

    refused = run_daemon(db_url, rules, SimClock(at("2026-03-02 02:00"), at("2026-03-02 12:00")), env=test_machine,
                         poll_seconds=3600)
    assert refused.channel.emails == [] and day_runs(store) == []          # nothing evaluated, nothing sent
    report = status_report(store, rules, at("2026-03-02 12:00"), env=test_machine)
    (alert,) = [a for a in report["alerts"] if a.startswith("delivery refused")]
    assert "belongs to installation production" in alert and "rappel confirm-installation" in alert

    monkeypatch.setenv("RAPPEL_INSTALLATION_ID", "test-machine")
    result = CliRunner().invoke(cli.app, ["confirm-installation", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "now belongs to this machine's installation test-machine (was production)" in result.stdout

    confirmed = run_daemon(db_url, rules, SimClock(at("2026-03-02 12:00"), at("2026-03-02 13:00")),
                           env=test_machine)
    assert [r[:2] for r in day_runs(store)] == [("2026-03-02", "ok")]
    assert len(confirmed.channel.emails) == 1
    # production, still pointed at the database it had, now refuses: the copy is an installation of its own
    assert not Guard(store.engine, env={"RAPPEL_INSTALLATION_ID": "production"}).check().ok


def test_a_second_machine_joins_the_installation(store, db_url, tmp_path):
    first = Guard(store.engine, tmp_path / "first", env={})
    assert first.check().ok
    second = Guard(store.engine, tmp_path / "second", env={})
    assert not second.check().ok
    result = CliRunner().invoke(cli.app, ["confirm-installation", "--join", "--db", db_url,
                                          "--state-dir", str(tmp_path / "second")])
    assert result.exit_code == 0, result.output
    assert second.check().ok and first.check().ok                           # both may deliver
    assert second.local_id() == first.local_id()


# --- the commands that send by hand are guarded too: rappel run, rappel patron requests-report ------

REQUEST_PATRON = ("P9,2000000009,Thomas,Lefèvre,thomas.lefevre@etu.univ.example,fr,internal,public,graduate,"
                  "4 allée des Œillets,,33400,Talence,France,")
REQUEST = "R9,P9,Le Rouge et le Noir,SCI,SCI,2026-11-10,active,2026-12-10"


def _with_a_request(store, tmp_path):
    from adapters.sources.csvfiles import import_csv
    from service.rules import load_policy
    from adapters.store.schema import PATRON_FIELDS, REQUEST_FIELDS

    policy = load_policy(ROOT / "rules")
    for kind, header, row in (("patrons", PATRON_FIELDS, REQUEST_PATRON), ("requests", REQUEST_FIELDS, REQUEST)):
        path = tmp_path / f"{kind}.csv"
        path.write_text(",".join(header) + "\n" + row + "\n", encoding="utf-8")
        import_csv(store, policy, kind, path)


def test_a_requests_report_from_a_restored_copy_is_refused(store, db_url, tmp_path, monkeypatch):
    _with_a_request(store, tmp_path)
    assert Guard(store.engine, env={"RAPPEL_INSTALLATION_ID": "production"}).check().ok
    outbox = tmp_path / "outbox"
    args = ["patron", "requests-report", "2000000009", "--on", "2026-11-23", "--outbox", str(outbox),
            "--rules", str(ROOT / "rules"), "--db", db_url]

    monkeypatch.setenv("RAPPEL_INSTALLATION_ID", "test-machine")
    refused = CliRunner().invoke(cli.app, args)
    assert refused.exit_code == 1
    (line,) = refused.stderr.splitlines()
    assert line.startswith("error: delivery refused, nothing sent: this database belongs to installation production")
    assert "`rappel confirm-installation`" in line
    assert not outbox.exists()

    monkeypatch.delenv("RAPPEL_INSTALLATION_ID")             # production's own state folder: it may send
    production = tmp_path / "production"
    production.mkdir()
    (production / ID_FILE).write_text("production\n", encoding="utf-8")
    sent = CliRunner().invoke(cli.app, [*args, "--state-dir", str(production)])
    assert sent.exit_code == 0, sent.output
    assert "sent 1 active request(s) to thomas.lefevre@etu.univ.example" in sent.stdout
    assert len(list(outbox.rglob("*.eml"))) == 1


def test_a_run_on_a_restored_copy_sends_nothing_until_confirmed(store, db_url, tmp_path, monkeypatch):
    """A cron-driven `rappel run` on the test machine, against production's restored database."""
    seed(store, [patron_row("P1")], [loan_row("L1", "P1", "2026-02-23")])   # first reminder on 2 March
    assert Guard(store.engine, env={"RAPPEL_INSTALLATION_ID": "production"}).check().ok
    monkeypatch.setenv("RAPPEL_INSTALLATION_ID", "test-machine")
    outbox = tmp_path / "outbox"
    args = ["run", "--on", "2026-03-02", "--outbox", str(outbox), "--rules", str(copy_rules(tmp_path)),
            "--db", db_url]

    refused = CliRunner().invoke(cli.app, args)
    assert refused.exit_code == 1 and "rappel confirm-installation" in refused.stderr
    assert store.counts() == {} and not outbox.exists()                    # nothing decided, nothing sent
    report = status_report(store, ROOT / "rules", at("2026-03-02 12:00"),
                           env={"RAPPEL_INSTALLATION_ID": "test-machine"})
    assert any(a.startswith("delivery refused") for a in report["alerts"])

    assert CliRunner().invoke(cli.app, ["confirm-installation", "--db", db_url]).exit_code == 0
    done = CliRunner().invoke(cli.app, args)
    assert done.exit_code == 0, done.output
    assert "delivered 1 of 1" in done.stderr and len(list(outbox.rglob("*.eml"))) == 1
