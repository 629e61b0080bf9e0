"""What the ledger says a day decided, and notices read back by key: for the run's table (the
notices a delivery pass did not send) and for `rappel run --diff` (a day's recorded decisions)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine

from adapters.store.schema import ledger, notices
from engine.decide import Notice
from engine.facts import Status

__all__ = ["Recorded", "decided_on", "notices_by_key"]

CHUNK = 500


@dataclass(frozen=True)
class Recorded:
    """One ledger row of a day that went to a notice: the loan, stage and due date, and that notice."""

    loan_id: str
    stage: str
    due_date: dt.date
    status: Status            # the row's status now: pending, sent, failed, cancelled, expired…
    notice: Notice


def _notice(row, loan_ids: Iterable[str]) -> Notice:
    return Notice(key=row.key, date=row.run_date, stage=row.stage, channel=row.channel, patron_id=row.patron_id,
                  library=row.library, loan_ids=tuple(sorted(set(loan_ids))), recipient=row.recipient,
                  destination=row.destination, attempts=row.attempts, status=Status(row.status))


def notices_by_key(engine: Engine, keys: Iterable[str]) -> dict[str, Notice]:
    """The notices of these keys as they stand, whatever their status, each with the loans of its
    ledger rows (a notice that became letters keeps none: they moved to the letters)."""
    keys = sorted(set(keys))
    out: dict[str, Notice] = {}
    with engine.connect() as conn:
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            loans: dict[str, list[str]] = {}
            for key, loan_id in conn.execute(select(ledger.c.notice_key, ledger.c.loan_id)
                                             .where(ledger.c.notice_key.in_(chunk))):
                loans.setdefault(key, []).append(loan_id)
            for row in conn.execute(select(notices).where(notices.c.key.in_(chunk))):
                out[row.key] = _notice(row, loans.get(row.key, ()))
    return out


def decided_on(engine: Engine, day: dt.date) -> list[Recorded]:
    """The ledger rows decided on ``day`` that went to a notice (what that day's run sent, or tried
    to), each with its notice; rows superseded or cancelled at the decision had none."""
    query = (select(ledger.c.loan_id.label("entry_loan"), ledger.c.stage.label("entry_stage"),
                    ledger.c.due_date.label("entry_due"), ledger.c.status.label("entry_status"), notices)
             .join(notices, notices.c.key == ledger.c.notice_key)
             .where(ledger.c.decided_on == day)
             .order_by(ledger.c.notice_key, ledger.c.loan_id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    by_key: dict[str, list[str]] = {}
    for row in rows:
        by_key.setdefault(row.key, []).append(row.entry_loan)
    made = {row.key: _notice(row, by_key[row.key]) for row in rows}
    return [Recorded(row.entry_loan, row.entry_stage, row.entry_due, Status(row.entry_status), made[row.key])
            for row in rows]
