"""The notices as the desk sees them: what was decided, every attempt, the message kept, the staff's
actions (`rappel notices`, `rappel patron show`), and the few writes a member of staff makes on them
(cancel, retry, resend), each audited in ``staff_actions`` in the same transaction.

The use cases (service/notices.py) decide; this module runs the statements. Values handed out are
plain: dicts of columns, engine.decide.Notice for what goes back to delivery. Times come back aware,
in UTC (SQLite keeps none: what it keeps is UTC).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, insert, select, update

from adapters.store.database import WAITING, Store
from adapters.store.schema import attempts, ledger, loans, messages, notices, patrons, staff_actions
from adapters.store.sent import SENDING, UNKNOWN, Attempt, keep_attempt, unpack
from engine.decide import Notice
from engine.facts import Status

__all__ = ["FORCED", "Later", "Query", "cancel", "details", "failed", "find", "forced", "hold", "in_doubt", "keys_like",
           "keys_of_loans", "loans_of_item", "mark_sending", "message", "patron_known", "record_resend", "replacing",
           "requeue", "resends", "settle_in_doubt", "still_pending", "unmark_sending"]

IN_LIMIT = 500
FORCED = "forced: past its window"       # the detail of a retry that sends a notice even when late
WITHIN = "within its window"


@dataclass(frozen=True)
class Query:
    """Which notices: every field given narrows it (None: any)."""

    patron_id: str | None = None
    keys: tuple[str, ...] | None = None      # these notices only (e.g. those about a loan)
    stage: str | None = None
    status: str | None = None
    since: dt.date | None = None             # the notice's date (the day it was decided), inclusive
    until: dt.date | None = None
    limit: int | None = None


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


def _row(mapping) -> dict:
    out = dict(mapping)
    for name, value in out.items():
        if isinstance(value, dt.datetime):
            out[name] = _aware(value)
    return out


def _slices(items: list, size: int = IN_LIMIT) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# --- reading --------------------------------------------------------------------------------------

def find(store: Store, query: Query) -> list[dict]:
    """The notices asked for, newest first (their date, then when they were recorded), each a dict of
    its columns; at most ``query.limit``."""
    if query.keys is not None and not query.keys:
        return []
    conditions = []
    if query.patron_id is not None:
        conditions.append(notices.c.patron_id == query.patron_id)
    if query.keys is not None:
        conditions.append(notices.c.key.in_(sorted(set(query.keys))))
    if query.stage is not None:
        conditions.append(notices.c.stage == query.stage)
    if query.status is not None:
        conditions.append(notices.c.status == query.status)
    if query.since is not None:
        conditions.append(notices.c.run_date >= query.since)
    if query.until is not None:
        conditions.append(notices.c.run_date <= query.until)
    statement = (select(notices).where(*conditions)
                 .order_by(notices.c.run_date.desc(), notices.c.created_at.desc(), notices.c.key.desc()))
    if query.limit is not None:
        statement = statement.limit(query.limit)
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(statement).mappings()]


def details(store: Store, keys: Iterable[str]) -> dict[str, dict]:
    """key → its ledger rows, its attempts (in the order they were made), the staff's actions on it,
    and what is kept of its message (media type, file name, size; not the bytes)."""
    keys = sorted(set(keys))
    out = {key: {"ledger": [], "attempts": [], "actions": [], "message": None} for key in keys}
    with store.engine.connect() as conn:
        for part in _slices(keys):
            for r in conn.execute(select(ledger).where(ledger.c.notice_key.in_(part))
                                  .order_by(ledger.c.loan_id, ledger.c.due_date)).mappings():
                out[r["notice_key"]]["ledger"].append(_row(r))
            for r in conn.execute(select(attempts).where(attempts.c.notice_key.in_(part))
                                  .order_by(attempts.c.id)).mappings():
                out[r["notice_key"]]["attempts"].append(_row(r))
            for r in conn.execute(select(staff_actions).where(staff_actions.c.notice_key.in_(part))
                                  .order_by(staff_actions.c.id)).mappings():
                out[r["notice_key"]]["actions"].append(_row(r))
            for r in conn.execute(select(messages.c.notice_key, messages.c.media_type, messages.c.filename,
                                         messages.c.size, messages.c.stored_at)
                                  .where(messages.c.notice_key.in_(part))).mappings():
                out[r["notice_key"]]["message"] = _row(r)
    return out


def message(store: Store, key: str) -> dict | None:
    """The message kept for a notice: media type, file name, size, when it was kept, and ``data``, its bytes."""
    with store.engine.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.notice_key == key)).mappings().first()
    if row is None:
        return None
    out = _row(row)
    out["data"] = unpack(out.pop("body"))
    return out


def replacing(store: Store, patron_ids: Iterable[str]) -> dict[str, str]:
    """key of a replacement → the key of the notice it replaced (an email refused, become letters),
    among these patrons' notices."""
    out: dict[str, str] = {}
    with store.engine.connect() as conn:
        for part in _slices(sorted(set(patron_ids))):
            for key, replaced_by in conn.execute(select(notices.c.key, notices.c.replaced_by).where(
                    notices.c.patron_id.in_(part), notices.c.replaced_by.is_not(None))):
                for new in replaced_by.split():
                    out[new] = key
    return out


def keys_like(store: Store, text: str, limit: int = 20) -> list[str]:
    """The notice keys equal to ``text``, else those starting with it (at most ``limit``)."""
    with store.engine.connect() as conn:
        if conn.scalar(select(notices.c.key).where(notices.c.key == text)) is not None:
            return [text]
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return list(conn.scalars(select(notices.c.key).where(notices.c.key.like(f"{escaped}%", escape="\\"))
                                 .order_by(notices.c.key).limit(limit)))


def loans_of_item(store: Store, item_barcode: str) -> list[str]:
    """The loans of a document, by its barcode (every loan of it, returned or not)."""
    with store.engine.connect() as conn:
        return list(conn.scalars(select(loans.c.loan_id).where(loans.c.item_barcode == item_barcode)
                                 .order_by(loans.c.loan_id)))


def keys_of_loans(store: Store, loan_ids: Iterable[str]) -> tuple[set[str], set[str]]:
    """The keys of the notices about these loans (their ledger rows), and the ids of their patrons."""
    keys: set[str] = set()
    owners: set[str] = set()
    with store.engine.connect() as conn:
        for part in _slices(sorted(set(loan_ids))):
            keys.update(k for k in conn.scalars(select(ledger.c.notice_key).where(
                ledger.c.loan_id.in_(part), ledger.c.notice_key.is_not(None))))
            owners.update(conn.scalars(select(loans.c.patron_id).where(loans.c.loan_id.in_(part))))
    return keys, owners


def patron_known(store: Store, patron_id: str) -> bool:
    """Whether notices or a patron record carry this patron id."""
    with store.engine.connect() as conn:
        return (conn.scalar(select(func.count()).select_from(notices).where(notices.c.patron_id == patron_id))
                or conn.scalar(select(func.count()).select_from(patrons).where(patrons.c.patron_id == patron_id))) > 0


def failed(store: Store, keys: Iterable[str] | None = None, since: dt.date | None = None) -> list[Notice]:
    """Failed notices (these keys, or all; ``since``: their date on or after), oldest first, each with
    its ledger rows still failed (``entries``: none when they moved to the letters that replaced it)."""
    statement = select(notices).where(notices.c.status == Status.FAILED)
    if keys is not None:
        statement = statement.where(notices.c.key.in_(sorted(set(keys))))
    if since is not None:
        statement = statement.where(notices.c.run_date >= since)
    with store.engine.connect() as conn:
        rows = conn.execute(statement.order_by(notices.c.run_date, notices.c.key)).all()
        entries: dict[str, list] = {}
        for part in _slices([r.key for r in rows]):
            for e in conn.execute(select(ledger.c.notice_key, ledger.c.loan_id, ledger.c.due_date, ledger.c.stage)
                                  .where(ledger.c.notice_key.in_(part), ledger.c.status == Status.FAILED)
                                  .order_by(ledger.c.loan_id)):
                entries.setdefault(e.notice_key, []).append((e.loan_id, e.due_date, e.stage))
    return [Notice(key=r.key, date=r.run_date, stage=r.stage, channel=r.channel, patron_id=r.patron_id,
                   library=r.library, loan_ids=tuple(sorted({loan for loan, _, _ in entries.get(r.key, ())})),
                   recipient=r.recipient, destination=r.destination,
                   entries=tuple((loan, due) for loan, due, _ in entries.get(r.key, ())),
                   attempts=r.attempts, status=Status(r.status),
                   loan_stages=tuple((loan, st) for loan, _, st in entries.get(r.key, ()) if st != r.stage))
            for r in rows]


# --- what delivery asks ---------------------------------------------------------------------------

_STATUS = select(notices.c.status).where(notices.c.key == bindparam("key"))     # built once: asked per message


def still_pending(store: Store, key: str) -> bool:
    """Whether the notice is still waiting to be delivered (not cancelled by staff since it was read)."""
    with store.engine.connect() as conn:
        return conn.scalar(_STATUS, {"key": key}) == Status.PENDING


def forced(store: Store, keys: Iterable[str]) -> set[str]:
    """Those of these notices whose last retry by staff was forced past their window."""
    last: dict[str, str] = {}
    with store.engine.connect() as conn:
        for part in _slices(list(keys)):
            for key, detail in conn.execute(select(staff_actions.c.notice_key, staff_actions.c.detail).where(
                    staff_actions.c.notice_key.in_(part), staff_actions.c.action == "retry")
                    .order_by(staff_actions.c.id)):
                last[key] = detail
    return {key for key, detail in last.items() if detail == FORCED}


# --- delivery's own marks: in flight, in doubt, waiting for the library's fix -----------------------

def mark_sending(store: Store, key: str, attempt: Attempt, check: Callable[[object], None] | None = None,
                 before: Callable[[object], None] | None = None) -> bool:
    """Before a message is handed over: its attempt, committed as ``sending`` (the outcome replaces it).
    A run that stops between the two leaves it: the next pass does not send it blindly (``in_doubt``).
    The notice's status is read in the same transaction: False, and nothing written, when it is no
    longer pending (cancelled by a member of staff since the pass read it): it is not handed over.
    ``check(conn)``: the channel's guard (the lease renewed, no stop asked) in the same transaction;
    a database error it raises rolls the mark back, a stop (not an Exception: Stopping, LeaseLost)
    is raised once ``before`` is committed, the mark not written. ``before(conn)``: the outcome of the
    message handed over before this one (Store.settling), committed first in the same transaction,
    whatever becomes of this one: one commit a message, each outcome committed before the next send."""
    def work():
        stop = None
        with store.engine.begin() as conn:
            if before is not None:
                before(conn)
            if conn.scalar(_STATUS, {"key": key}) != Status.PENDING:
                return False
            try:
                if check is not None:
                    check(conn)
            except Exception:
                raise
            except BaseException as exc:  # noqa: B036 - a stop: what came before is committed, no mark
                stop = exc
            else:
                keep_attempt(conn, key, attempt)
        if stop is not None:
            raise stop
        return True
    return store.patiently(work)


class Later:
    """The outcome of the message handed over last, not yet committed: written in the transaction
    that marks the next message ``sending`` (before that one is handed over), or alone (``flush``)
    before anything else is written or waited for, and when the pass ends."""

    def __init__(self, store: Store):
        self.store = store
        self.write: Callable[[object], None] | None = None

    def take(self) -> Callable[[object], None] | None:
        write, self.write = self.write, None
        return write

    def flush(self) -> None:
        write = self.take()
        if write is not None:
            self.store.transact(write)

    def __enter__(self) -> Later:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.flush()
            return
        with suppress(Exception):       # the pass failed: its last outcome kept if the database takes it
            self.flush()


def unmark_sending(store: Store, key: str) -> None:
    """The mark of a message that was not handed over after all (the pass stopped just before)."""
    def work():
        with store.engine.begin() as conn:
            conn.execute(delete(attempts).where(attempts.c.notice_key == key, attempts.c.outcome == SENDING))
    store.patiently(work)


def in_doubt(store: Store) -> dict[str, dict]:
    """Pending notices handed over by a run that stopped before recording the outcome: key → that
    attempt (at, channel, destination)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(attempts.c.notice_key, attempts.c.at, attempts.c.channel,
                                   attempts.c.destination).join(notices, notices.c.key == attempts.c.notice_key)
                            .where(attempts.c.outcome == SENDING, notices.c.status == Status.PENDING)).mappings()
        return {r["notice_key"]: dict(r) for r in rows}

def settle_in_doubt(store: Store, key: str, reason: str) -> None:
    """A notice in doubt: its ``sending`` attempt becomes ``unknown`` with ``reason``, also its last_error;
    it stays pending (delivery re-checks it and sends it again if still due)."""
    def work():
        with store.engine.begin() as conn:
            conn.execute(update(notices).where(notices.c.key == key, notices.c.status == Status.PENDING).values(
                last_error=reason, updated_at=func.now()))
            conn.execute(update(attempts).where(attempts.c.notice_key == key, attempts.c.outcome == SENDING)
                         .values(outcome=UNKNOWN, reply=reason))
    store.patiently(work)


def hold(store: Store, key: str, *, reason: str,
         entry_status: dict[tuple[str, dt.date], tuple[str, str]] | None = None) -> None:
    """A notice kept pending until the library fixes its side (its library missing from the policy,
    its template failing): ``last_error`` says why (WAITING + the reason), no attempt is counted,
    nothing was handed over; ``entry_status`` rows (returned loans…) are settled as given."""
    def work():
        with store.engine.begin() as conn:
            conn.execute(update(notices).where(notices.c.key == key, notices.c.status == Status.PENDING).values(
                last_error=WAITING + reason, next_attempt_at=None, updated_at=func.now()))
            Store._settle_ledger(conn, key, Status.PENDING, None, entry_status)
    store.patiently(work)


# --- what the staff do ------------------------------------------------------------------------------

def _audit(conn, *, at: dt.datetime, actor: str, action: str, key: str, patron_id: str, why: str,
           detail: str = "") -> None:
    conn.execute(insert(staff_actions).values(at=at.astimezone(dt.timezone.utc), actor=actor, action=action,
                                              notice_key=key, patron_id=patron_id, why=why, detail=detail))


def cancel(store: Store, key: str, *, actor: str, why: str, at: dt.datetime) -> str | None:
    """Cancel a pending (or held) notice, its pending ledger rows with it, audited, in one transaction.
    None when done; else the status that kept it from being cancelled (nothing changed)."""
    reason = f"cancelled by {actor}: {why}"
    with store.engine.begin() as conn:
        done = conn.execute(update(notices).where(notices.c.key == key, notices.c.status == Status.PENDING).values(
            status=Status.CANCELLED, last_error=reason, next_attempt_at=None, updated_at=func.now())).rowcount
        if not done:
            return conn.scalar(select(notices.c.status).where(notices.c.key == key)) or "unknown"
        rows = conn.execute(update(ledger).where(ledger.c.notice_key == key, ledger.c.status == Status.PENDING)
                            .values(status=Status.CANCELLED, reason=reason, updated_at=func.now())).rowcount
        patron_id = conn.scalar(select(notices.c.patron_id).where(notices.c.key == key))
        _audit(conn, at=at, actor=actor, action="cancel", key=key, patron_id=patron_id, why=why,
               detail=f"{rows} ledger row(s) cancelled")
    return None


def requeue(store: Store, key: str, *, actor: str, why: str, at: dt.datetime, force: bool) -> bool:
    """A failed notice back to pending, its failed ledger rows with it, to be sent by the next run or
    pass of the daemon; audited (``force``: it is sent even past its window). False when it was no
    longer failed (nothing changed)."""
    reason = f"back in the queue: retry by {actor}: {why}"
    with store.engine.begin() as conn:
        done = conn.execute(update(notices).where(notices.c.key == key, notices.c.status == Status.FAILED).values(
            status=Status.PENDING, next_attempt_at=None, updated_at=func.now())).rowcount
        if not done:
            return False
        conn.execute(update(ledger).where(ledger.c.notice_key == key, ledger.c.status == Status.FAILED)
                     .values(status=Status.PENDING, reason=reason, updated_at=func.now()))
        patron_id = conn.scalar(select(notices.c.patron_id).where(notices.c.key == key))
        _audit(conn, at=at, actor=actor, action="retry", key=key, patron_id=patron_id, why=why,
               detail=FORCED if force else WITHIN)
    return True


def record_resend(store: Store, key: str, *, patron_id: str, attempt: Attempt, why: str, detail: str) -> None:
    """A resend by a member of staff: its attempt and the audit row, in one transaction. The notice's
    own status, ledger rows and kept message stay as the run left them."""
    with store.engine.begin() as conn:
        keep_attempt(conn, key, attempt)
        _audit(conn, at=attempt.at, actor=attempt.actor, action="resend", key=key, patron_id=patron_id, why=why,
               detail=detail)


def resends(store: Store, key: str) -> int:
    """How many times this notice was resent by staff."""
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(attempts).where(
            attempts.c.notice_key == key, attempts.c.kind == "resend")) or 0
