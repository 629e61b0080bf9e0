"""Shared helpers for the operations tests (daemon, lease, status, faults): a copy of the shipped
rules to edit, facts written straight into a store, and a simulated clock for the daemon.

    from tests.daemon_cases import SimClock, copy_rules, seed, patron_row, loan_row, day_runs, at
"""
from __future__ import annotations

import datetime as dt
import shutil
import socket
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from adapters.channels.memory import MemoryChannel
from service.daemon import Daemon, Settings
from adapters.store.schema import ledger, loans, notices, patrons, runs
from adapters.store.database import Store

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
PARIS = ZoneInfo("Europe/Paris")
UTC = dt.timezone.utc


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def at(text: str) -> dt.datetime:
    """A local time in Europe/Paris written out: at("2026-03-29 02:30")."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=PARIS)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def copy_rules(tmp_path: Path, *replacements: tuple[str, str], append: str = "") -> Path:
    """The shipped rules (policy and templates) in a folder of their own, the policy edited."""
    target = tmp_path / "rules"
    shutil.copytree(RULES / "templates", target / "templates")
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8")
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in reminders.yaml"
        text = text.replace(old, new)
    (target / "reminders.yaml").write_text(text + append, encoding="utf-8")
    return target


def patron_row(patron_id: str, *, email: str | None = None, library_letters: bool = True) -> dict:
    return {"patron_id": patron_id, "barcode": f"BC-{patron_id}", "first_name": "Camille",
            "last_name": f"Lecteur-{patron_id}", "email": f"{patron_id.lower()}@etu.univ.example" if email is None
            else email, "preferred_language": "fr", "account_type": "internal", "record_type": "public",
            "user_group": "", "address_line1": "12 rue des Facultés" if library_letters else "", "address_line2": "",
            "postal_code": "33000", "city": "Bordeaux", "country": "France", "phone": ""}


def loan_row(loan_id: str, patron_id: str, due: str | dt.date, library: str = "SCI") -> dict:
    due = d(due) if isinstance(due, str) else due
    return {"loan_id": loan_id, "patron_id": patron_id, "item_barcode": f"B-{loan_id}", "title": f"Livre {loan_id}",
            "library": library, "due_date": due, "returned_on": None, "status": ""}


def seed(store: Store, patron_rows: list[dict], loan_rows: list[dict]) -> None:
    with store.engine.begin() as conn:
        store.upsert(conn, patrons, patron_rows)
        store.upsert(conn, loans, loan_rows)


def day_runs(store: Store) -> list[tuple[str, str, str]]:
    """(date evaluated, outcome, started at in UTC 'YYYY-MM-DD HH:MM') of every day run, in order."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(runs.c.run_date, runs.c.outcome, runs.c.started_at)
                            .where(runs.c.kind == "day").order_by(runs.c.run_id)).all()
    out = []
    for day, outcome, started in rows:
        started = started.replace(tzinfo=UTC) if started.tzinfo is None else started.astimezone(UTC)
        out.append((day.isoformat(), outcome, started.strftime("%Y-%m-%d %H:%M")))
    return out


def ledger_status(store: Store) -> dict[tuple[str, str], tuple[str, str]]:
    """(loan, stage) → (status, date decided)."""
    with store.engine.connect() as conn:
        return {(r.loan_id, r.stage): (r.status, r.decided_on.isoformat()) for r in conn.execute(select(ledger))}


def notice_statuses(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(notices.c.key, notices.c.status)).all())


class SimClock:
    """Simulated time for an in-process daemon: a wait jumps straight to the time asked for.

    ``events`` are (time, function) run when the clock gets there (an edit of the policy, a return);
    past ``end`` the daemon is asked to stop. ``waits`` records every time the daemon woke at.
    """

    def __init__(self, start: dt.datetime, end: dt.datetime, events=()):
        self.t = start
        self.end = end
        self.events = sorted(events, key=lambda e: e[0])
        self.daemon: Daemon | None = None
        self.waits: list[dt.datetime] = []

    def now(self) -> dt.datetime:
        return self.t

    def wait(self, until: dt.datetime | None, stop: threading.Event, limit: float) -> None:
        if stop.is_set():
            return
        target = until if until is not None else self.t + dt.timedelta(seconds=limit)
        if self.events and self.events[0][0] <= min(target, self.end):
            when, action = self.events.pop(0)
            self.t = max(self.t, when)
            action()
            return
        if target > self.end:
            self.t = self.end
            self.daemon.request_stop()
            return
        self.t = max(self.t, target)
        self.waits.append(self.t)


def run_daemon(db_url: str, rules: Path, clock: SimClock, channel=None, **settings) -> Daemon:
    """Run a daemon in this thread on simulated time until the clock's end; returns it."""
    channel = channel if channel is not None else MemoryChannel()
    settings.setdefault("env", {"RAPPEL_INSTALLATION_ID": "test-installation"})
    daemon = Daemon(Settings(rules_dir=rules, db_url=db_url, clock=clock,
                             channel_for=lambda policy, templates: channel, **settings))
    clock.daemon = daemon
    daemon.channel = channel
    daemon.exit_code = daemon.run()
    return daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
