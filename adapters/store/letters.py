"""The letters kept in the database (``messages`` rows of media type application/pdf), for the
overdue service's print pile: which were handed over in a span of time, and their bytes."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from adapters.store.database import Store
from adapters.store.schema import messages, notices
from adapters.store.sent import PDF_TYPE, unpack

__all__ = ["handed_over", "letter_bodies"]


def _aware(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


def handed_over(store: Store, start: dt.datetime, end: dt.datetime, library: str | None = None) -> list[dict]:
    """The notices whose letter (a kept PDF) was last handed to its channel at ``start`` or later and
    before ``end`` (aware times), by library then key: the notice's columns and the message's own."""
    statement = (select(notices.c.key, notices.c.run_date, notices.c.stage, notices.c.channel, notices.c.patron_id,
                        notices.c.library, notices.c.status, notices.c.destination, messages.c.filename,
                        messages.c.size, messages.c.stored_at)
                 .join(messages, messages.c.notice_key == notices.c.key)
                 .where(messages.c.media_type == PDF_TYPE,
                        messages.c.stored_at >= start.astimezone(dt.timezone.utc),
                        messages.c.stored_at < end.astimezone(dt.timezone.utc)))
    if library is not None:
        statement = statement.where(notices.c.library == library)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(statement).mappings()]
    for row in rows:
        row["stored_at"] = _aware(row["stored_at"])
    return sorted(rows, key=lambda r: (r["library"] or "", r["key"]))


def letter_bodies(store: Store, keys: list[str]) -> dict[str, bytes]:
    """key → the PDF kept for it, as handed over (keys with no kept PDF are absent)."""
    out: dict[str, bytes] = {}
    wanted = sorted(set(keys))
    with store.engine.connect() as conn:
        for i in range(0, len(wanted), 500):
            part = wanted[i:i + 500]
            for key, body in conn.execute(select(messages.c.notice_key, messages.c.body).where(
                    messages.c.notice_key.in_(part), messages.c.media_type == PDF_TYPE)):
                out[key] = unpack(body)
    return out
