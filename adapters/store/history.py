"""What each loan really received: the ledger rows of its notices that were sent (for the templates,
through engine.envelope.received)."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from adapters.store.database import Store
from adapters.store.schema import ledger, notices
from engine.envelope import SentRow
from engine.facts import Status

__all__ = ["sent_rows"]

IN_LIMIT = 500


def sent_rows(store: Store, loan_ids: Iterable[str]) -> list[SentRow]:
    """The sent ledger rows of these loans, with their notice's date and channel."""
    ids = sorted(set(loan_ids))
    out: list[SentRow] = []
    with store.engine.connect() as conn:
        for i in range(0, len(ids), IN_LIMIT):
            statement = (select(ledger.c.loan_id, ledger.c.due_date, ledger.c.stage, notices.c.run_date,
                                notices.c.channel)
                         .join(notices, notices.c.key == ledger.c.notice_key)
                         .where(ledger.c.loan_id.in_(ids[i:i + IN_LIMIT]), ledger.c.status == Status.SENT))
            out += [SentRow(*row) for row in conn.execute(statement)]
    return out
