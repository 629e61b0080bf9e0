"""The statements of retention and erasure: the purge of what is past its time, and the erasure of
one patron (`rappel patron forget`). The decisions (cut-off dates, what a patron's values become)
are engine/retention.py's; service/retention.py calls these.

Each runs in one transaction, all or nothing; a dry run makes the same changes and rolls them
back, so what it counts is exactly what a real run would do.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from adapters.store.patrons import IN_LIMIT
from adapters.store.sent import resend_key
from adapters.store.schema import (attempts, ledger, loans, messages, notices, patron_audit, patron_name_words,
                                   patrons, requests, runs, staff_actions)
from engine.facts import PATRON_FIELDS, Loan, Patron, Status
from engine.retention import PERSONAL_FIELDS, Cutoff, Erasure

__all__ = ["FORGET", "Eraser", "NoticeFiles", "erase", "erasing", "forgotten_ids", "purge", "record_purge"]

UTC = dt.timezone.utc
FORGET = "forget"          # staff_actions.action of an erasure: kept, so no import brings the patron back


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(UTC)


@contextmanager
def _transaction(engine: Engine, commit: bool) -> Iterator[Connection]:
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise
        if commit:
            trans.commit()
        else:
            trans.rollback()


# --- the purge -----------------------------------------------------------------------------------

def purge(engine: Engine, cuts: Mapping[str, Cutoff], *, dry_run: bool = False) -> dict[str, int]:
    """Delete what is past its time, per table (rows deleted); ``cuts`` by category (engine.retention).

    messages: the stored message, by the time it was stored. ledger: ledger rows decided on or before
    the cut-off day (never a pending one), then the notices of that day or earlier no ledger row
    points to any more (with their message), delivery attempts and runs by their time, returned
    loans no ledger row refers to, requests expired (or, without an expiry, placed) by then. audit:
    patron_audit and staff actions by their time, except the record of an erasure."""
    counts: dict[str, int] = {}

    def run(name: str, statement) -> None:
        counts[name] = counts.get(name, 0) + conn.execute(statement).rowcount

    with _transaction(engine, commit=not dry_run) as conn:
        if "messages" in cuts:
            run("messages", delete(messages).where(messages.c.stored_at < _utc(cuts["messages"].before)))
        if "ledger" in cuts:
            cut = cuts["ledger"]
            run("ledger", delete(ledger).where(ledger.c.decided_on <= cut.last_day,
                                               ledger.c.status != Status.PENDING))
            old = and_(notices.c.run_date <= cut.last_day, notices.c.status != Status.PENDING,
                       ~exists().where(ledger.c.notice_key == notices.c.key))
            run("messages", delete(messages).where(messages.c.notice_key.in_(select(notices.c.key).where(old))))
            run("notices", delete(notices).where(old))
            run("attempts", delete(attempts).where(attempts.c.at < _utc(cut.before)))
            run("runs", delete(runs).where(runs.c.started_at < _utc(cut.before), runs.c.outcome != "running"))
            run("loans", delete(loans).where(loans.c.returned_on <= cut.last_day,
                                             ~exists().where(ledger.c.loan_id == loans.c.loan_id)))
            run("requests", delete(requests).where(or_(
                requests.c.expires_on <= cut.last_day,
                and_(requests.c.expires_on.is_(None), requests.c.placed_on <= cut.last_day))))
        if "audit" in cuts:
            before = _utc(cuts["audit"].before)
            run("patron_audit", delete(patron_audit).where(patron_audit.c.changed_at < before))
            run("staff_actions", delete(staff_actions).where(staff_actions.c.at < before,
                                                             staff_actions.c.action != FORGET))
    return counts


def record_purge(engine: Engine, *, at: dt.datetime, actor: str, detail: str) -> None:
    """A purge that deleted something, in staff_actions (who or what ran it, the counts)."""
    with engine.begin() as conn:
        conn.execute(insert(staff_actions).values(at=_utc(at), actor=actor, action="purge", why="retention",
                                                  detail=detail))


# --- erasure ---------------------------------------------------------------------------------------

def forgotten_ids(engine: Engine) -> set[str]:
    """The patrons erased here (a later import or synchronisation must not bring them back)."""
    with engine.connect() as conn:
        return set(conn.scalars(select(staff_actions.c.patron_id).where(staff_actions.c.action == FORGET,
                                                                        staff_actions.c.patron_id.is_not(None))))


@dataclass(frozen=True)
class NoticeFiles:
    """What the outbox needs to find a notice's file."""

    key: str
    date: dt.date
    channel: str
    library: str | None
    reference: str | None


class Eraser:
    """The reads and the erasure of one patron, inside one transaction (``erasing``)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def find(self, who: str) -> list[Patron]:
        """The patrons whose barcode or id is ``who`` (two when one's barcode is the other's id), locked."""
        rows = self.conn.execute(select(patrons).where(or_(patrons.c.barcode == who, patrons.c.patron_id == who))
                                 .order_by(patrons.c.patron_id).with_for_update()).all()
        return [Patron(**{name: getattr(r, name) for name in PATRON_FIELDS}) for r in rows]

    def erased(self, patron_id: str) -> dict | None:
        """The record of this patron's erasure (at, in UTC, and actor), or None."""
        row = self.conn.execute(select(staff_actions.c.at, staff_actions.c.actor).where(
            staff_actions.c.action == FORGET, staff_actions.c.patron_id == patron_id)
            .order_by(staff_actions.c.id).limit(1)).first()
        if row is None:
            return None
        return {"at": row.at.replace(tzinfo=UTC) if row.at.tzinfo is None else _utc(row.at), "actor": row.actor}

    def open_loans(self, patron_id: str) -> list[Loan]:
        rows = self.conn.execute(select(loans).where(loans.c.patron_id == patron_id, loans.c.returned_on.is_(None))
                                 .order_by(loans.c.due_date, loans.c.loan_id)).all()
        return [Loan(r.loan_id, r.patron_id, r.library, r.due_date, r.item_barcode, r.title, r.returned_on, r.status)
                for r in rows]

    def former_values(self, patron_id: str) -> set[tuple[str, str]]:
        """(field, value) the patron's personal fields held before, or were edited to (the audit trail)."""
        rows = self.conn.execute(select(patron_audit.c.field, patron_audit.c.old_value, patron_audit.c.new_value)
                                 .where(patron_audit.c.patron_id == patron_id,
                                        patron_audit.c.field.in_(PERSONAL_FIELDS))).all()
        return {(name, value) for name, *values in rows for value in values if value}

    def notices(self, patron_id: str) -> list[NoticeFiles]:
        """The patron's notices, for their files in the outbox; with each its staff resends (`rappel
        notices resend`), which the outbox wrote under the resend's own key."""
        rows = self.conn.execute(select(notices.c.key, notices.c.run_date, notices.c.channel, notices.c.library,
                                        notices.c.reference).where(notices.c.patron_id == patron_id)
                                 .order_by(notices.c.run_date, notices.c.key)).all()
        resent = dict(self.conn.execute(
            select(attempts.c.notice_key, func.count()).where(attempts.c.kind == "resend", attempts.c.notice_key.in_(
                select(notices.c.key).where(notices.c.patron_id == patron_id))).group_by(attempts.c.notice_key)).all())
        return [NoticeFiles(key, r.run_date, r.channel, r.library, reference)
                for r in rows
                for key, reference in [(r.key, r.reference)] + [(resend_key(r.key, n), None)
                                                                 for n in range(1, resent.get(r.key, 0) + 1)]]

    def erase(self, erasure: Erasure, *, at: dt.datetime, actor: str, why: str, reason: str) -> dict[str, int]:
        return erase(self.conn, erasure, at=at, actor=actor, why=why, reason=reason)


@contextmanager
def erasing(engine: Engine, *, commit: bool = True) -> Iterator[Eraser]:
    """One transaction: committed at the end when ``commit`` (false: a dry run, rolled back)."""
    with _transaction(engine, commit) as conn:
        yield Eraser(conn)


def _slices(items: list, size: int = IN_LIMIT) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _scrub_rows(conn: Connection, table, key: tuple, columns: tuple[str, ...], where, erasure: Erasure,
                blank: tuple[str, ...] = ()) -> int:
    """Remove the patron's values from ``columns`` of the rows ``where`` selects (``blank``: emptied
    when they mention the patron at all); the number of rows changed. ``key``: the primary key."""
    changed = 0
    for row in conn.execute(select(*key, *(table.c[c] for c in columns)).where(where)).all():
        values = {}
        for name in columns:
            text = row._mapping[name]
            if erasure.mentions(text):
                values[name] = "" if name in blank else erasure.scrub(text)
        if values:
            conn.execute(update(table).where(*(k == row[i] for i, k in enumerate(key))).values(values))
            changed += 1
    return changed


def erase(conn: Connection, erasure: Erasure, *, at: dt.datetime, actor: str, why: str,
          reason: str) -> dict[str, int]:
    """Erase one patron inside the caller's transaction; rows changed (or deleted) per table.

    Their pending notices are cancelled (``reason``); their notices, ledger rows and attempts keep
    what they say about delivery, without the patron's values; the stored messages and their
    requests are deleted; the loans keep their dates, not the titles (the reading history); the
    audit trail keeps who changed which field when, not the values; the patron row keeps its id
    and categories. The erasure itself is recorded in staff_actions (``why`` scrubbed)."""
    pid = erasure.patron_id
    counts: dict[str, int] = {}
    keys = list(conn.scalars(select(notices.c.key).where(notices.c.patron_id == pid)))
    loan_ids = list(conn.scalars(select(loans.c.loan_id).where(loans.c.patron_id == pid)))
    now = _utc(at)

    def add(name: str, n: int) -> None:
        counts[name] = counts.get(name, 0) + n

    for part in _slices(keys):
        mine = notices.c.key.in_(part)
        add("cancelled", conn.execute(update(notices).where(mine, notices.c.status == Status.PENDING).values(
            status=Status.CANCELLED, last_error=reason, next_attempt_at=None, updated_at=now)).rowcount)
        conn.execute(update(ledger).where(ledger.c.notice_key.in_(part), ledger.c.status == Status.PENDING)
                     .values(status=Status.CANCELLED, reason=reason, updated_at=now))
        add("messages", conn.execute(delete(messages).where(messages.c.notice_key.in_(part))).rowcount)
        add("notices", conn.execute(update(notices).where(mine).values(recipient="")).rowcount)
        _scrub_rows(conn, notices, (notices.c.key,), ("destination", "reply", "last_error", "reference"), mine,
                    erasure, blank=("destination",))
        add("attempts", _scrub_rows(conn, attempts, (attempts.c.id,), ("destination", "reply", "reference"),
                                    attempts.c.notice_key.in_(part), erasure, blank=("destination",)))
        add("ledger", _scrub_rows(conn, ledger, LEDGER_KEY, ("reason",), ledger.c.notice_key.in_(part), erasure))
        add("staff_actions", _scrub_rows(conn, staff_actions, (staff_actions.c.id,), ("why", "detail"),
                                         staff_actions.c.notice_key.in_(part), erasure))
    for part in _slices(loan_ids):
        add("ledger", _scrub_rows(conn, ledger, LEDGER_KEY, ("reason",), ledger.c.loan_id.in_(part), erasure))
        add("loans", conn.execute(update(loans).where(loans.c.loan_id.in_(part))
                                  .values(title="", item_barcode="")).rowcount)
    add("staff_actions", _scrub_rows(conn, staff_actions, (staff_actions.c.id,), ("why", "detail"),
                                     staff_actions.c.patron_id == pid, erasure))
    personal = and_(patron_audit.c.patron_id == pid, patron_audit.c.field.in_(PERSONAL_FIELDS))
    add("patron_audit", conn.execute(update(patron_audit).where(personal).values(old_value="", new_value=""))
        .rowcount)
    add("patron_audit", _scrub_rows(conn, patron_audit, (patron_audit.c.id,), ("old_value", "new_value"),
                                    patron_audit.c.patron_id == pid, erasure))
    add("runs", _scrub_rows(conn, runs, (runs.c.run_id,), ("errors",), runs.c.errors != "", erasure))
    add("requests", conn.execute(delete(requests).where(requests.c.patron_id == pid)).rowcount)
    add("patrons", conn.execute(update(patrons).where(patrons.c.patron_id == pid).values(erasure.blanked)).rowcount)
    conn.execute(delete(patron_name_words).where(patron_name_words.c.patron_id == pid))
    conn.execute(insert(staff_actions).values(at=now, actor=actor, action=FORGET, notice_key=None, patron_id=pid,
                                              why=erasure.scrub(why) or "", detail=_detail(counts)))
    return {name: n for name, n in counts.items() if n}


LEDGER_KEY = (ledger.c.loan_id, ledger.c.due_date, ledger.c.stage)


def _detail(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items() if n)
