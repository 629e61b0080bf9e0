"""The daemon's daily purge (service/daemon.py): once a day, after the day's run; a purge that
fails is logged and shown by `rappel status`, and holds up no delivery.

The daemon runs on simulated time (tests/daemon_cases.py) with the shipped policy: runs at 02:00
Europe/Paris, messages kept 400 days. A message stored on 2025-10-28 (00:30 in Paris) and the
outbox's email folder of that day go on the purge of 2026-12-02; the folder of 2025-10-29 on that
of 2026-12-03. A loan due 2026-12-04 gets its courtesy email on 2026-12-01.
"""
from __future__ import annotations

import datetime as dt
import zlib

from sqlalchemy import insert, select

from adapters.channels.memory import MemoryChannel
from adapters.store.database import Store
from adapters.store.schema import messages, notices, runs, staff_actions
from engine.decide import notice_key
from service.status import status_lines, status_report

try:
    from tests.daemon_cases import SimClock, at, copy_rules, d, loan_row, patron_row, run_daemon, seed
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import SimClock, at, copy_rules, d, loan_row, patron_row, run_daemon, seed

UTC = dt.timezone.utc
ENV = {"RAPPEL_INSTALLATION_ID": "test-installation"}


def _installation(db_url: str, tmp_path):
    store = Store(db_url)
    seed(store, [patron_row("P1")], [loan_row("L1", "P1", "2026-12-04")])
    with store.engine.begin() as conn:
        conn.execute(insert(notices).values(key="old", run_date=d("2025-10-28"), stage="first_reminder",
                                            channel="email", patron_id="P1", recipient="", destination="",
                                            status="sent"))
        conn.execute(insert(messages).values(notice_key="old", media_type="message/rfc822", body=zlib.compress(b"x"),
                                             size=1, stored_at=at("2025-10-28 00:30").astimezone(UTC)))
    outbox = tmp_path / "outbox"
    for day in ("2025-10-28", "2025-10-29"):
        (outbox / "email" / day).mkdir(parents=True)
        (outbox / "email" / day / "old.eml").write_bytes(b"To: p1@etu.univ.example\r\n\r\nx")
    return store, outbox


def _runs(store: Store) -> list[tuple]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(runs.c.kind, runs.c.run_date, runs.c.outcome, runs.c.started_at, runs.c.errors)
                            .where(runs.c.kind.in_(("day", "purge"))).order_by(runs.c.run_id)).all()
    return [(kind, day.isoformat(), outcome, started, errors) for kind, day, outcome, started, errors in rows]


def test_the_daemon_purges_once_a_day_after_the_days_run(db_url, tmp_path):
    store, outbox = _installation(db_url, tmp_path)
    try:
        channel = MemoryChannel()
        run_daemon(db_url, copy_rules(tmp_path), SimClock(at("2026-12-01 02:00"), at("2026-12-03 12:00")), channel,
                   outbox=outbox)
        order = [(kind, day, outcome) for kind, day, outcome, *_ in _runs(store)]
        assert order == [("day", "2026-12-01", "ok"), ("purge", "2026-12-01", "ok"),
                         ("day", "2026-12-02", "ok"), ("purge", "2026-12-02", "ok"),
                         ("day", "2026-12-03", "ok"), ("purge", "2026-12-03", "ok")]
        with store.engine.connect() as conn:       # the old message went; the day's courtesy email is kept
            assert list(conn.scalars(select(messages.c.notice_key))) == [
                notice_key(d("2026-12-01"), "courtesy", "email", "P1", None, ("L1",))]
            assert conn.execute(select(staff_actions.c.actor, staff_actions.c.detail)
                                .where(staff_actions.c.action == "purge").order_by(staff_actions.c.id)).all() == [
                ("daemon", "messages 1, outbox_files 1"), ("daemon", "outbox_files 1")]
        assert not (outbox / "email").exists() or list((outbox / "email").iterdir()) == []
        assert [n.stage for n, _ in channel.emails] == ["courtesy"]
    finally:
        store.close()


def test_a_purge_that_fails_is_shown_and_delivery_goes_on(db_url, tmp_path):
    store, outbox = _installation(db_url, tmp_path)
    not_a_folder = tmp_path / "outbox-file"
    not_a_folder.write_text("")
    problem = f"outbox {not_a_folder}: {not_a_folder} is not a folder: its files were not purged"
    try:
        channel = MemoryChannel()
        rules = copy_rules(tmp_path)
        run_daemon(db_url, rules, SimClock(at("2026-12-01 02:00"), at("2026-12-01 12:00")), channel,
                   outbox=not_a_folder)
        assert [n.stage for n, _ in channel.emails] == ["courtesy"]         # delivered all the same
        assert [(kind, day, outcome, errors) for kind, day, outcome, _, errors in _runs(store)] == [
            ("day", "2026-12-01", "ok", ""), ("purge", "2026-12-01", "failed", problem)]
        report = status_report(store, rules, at("2026-12-01 12:00"), env=ENV)
        assert report["alerts"] == [f"the last purge (2026-12-01) failed, data past its retention is kept: {problem}"]
        lines = status_lines(report)
        assert lines[lines.index("last purge:   2026-12-01 failed, finished 2026-12-01T02:00:00+01:00") + 1] == \
            f"              {problem}"
        # the next day, the outbox set right: the purge succeeds and the alert is gone
        run_daemon(db_url, rules, SimClock(at("2026-12-02 02:00"), at("2026-12-02 12:00")), channel, outbox=outbox)
        report = status_report(store, rules, at("2026-12-02 12:00"), env=ENV)
        assert report["alerts"] == [] and report["last_purge"]["outcome"] == "ok"
        assert not (outbox / "email" / "2025-10-28").exists() and (outbox / "email" / "2025-10-29").exists()
    finally:
        store.close()


def test_status_warns_when_the_policy_keeps_everything(db_url, tmp_path):
    store = Store(db_url)
    try:
        rules = copy_rules(tmp_path)
        text = (rules / "reminders.yaml").read_text(encoding="utf-8")
        (rules / "reminders.yaml").write_text(text[:text.index("\n# How long rappel keeps")] + "\n", encoding="utf-8")
        report = status_report(store, rules, at("2026-12-02 12:00"), env=ENV)
        assert "no retention: section in the policy: personal data is kept forever (see the README, \"Retention " \
               "and erasure\")" in report["warnings"]
        assert report["last_purge"] is None
    finally:
        store.close()
