"""What was handed to a channel, kept with the notice: one row per attempt (``attempts``) and the
message itself (``messages``: the email's bytes as sent, or the letter's PDF, zlib-compressed).

``keep`` writes them inside the transaction that records the notice's outcome (Store.settle_delivery,
Store.reroute), so an outcome is never committed without its attempt, nor an attempt without its
outcome. A notice keeps one message: the last one handed to its channel by a run (a retry the next
day renders again; what is kept is what went out last). A staff resend adds an attempt and leaves
the message as the run sent it (service/notices.py).
"""
from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.engine import Connection

from adapters.store.schema import attempts, messages

__all__ = ["EMAIL_TYPE", "FAILED", "PDF_TYPE", "RETRYING", "SENDING", "SENT", "UNKNOWN", "Attempt", "Handover", "keep", "keep_attempt",
           "pack", "resend_key", "unpack"]

EMAIL_TYPE = "message/rfc822"
PDF_TYPE = "application/pdf"
SENT, RETRYING, FAILED = "sent", "retrying", "failed"      # an attempt's outcome
SENDING = "sending"      # handed over, outcome not yet recorded (replaced by it in the same transaction)
UNKNOWN = "unknown"      # was ``sending`` when its run stopped: it may or may not have gone out
COMPRESSION = 6                                            # zlib's default: ~4x on an email, fast


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: when, how, to where, and what the server answered."""

    at: dt.datetime              # aware; stored in UTC
    channel: str                 # the notice's channel (email, letter, …)
    destination: str             # the address, printer:NAME, mailbox:ADDRESS
    outcome: str                 # sent | retrying | failed (sending: in flight; unknown: its run stopped)
    reply: str = ""              # the server's own words, lp's answer, or why nothing was answered
    reference: str = ""          # the Message-ID, the print job, the outbox file
    kind: str = "send"           # send (a run) | resend (a member of staff)
    actor: str = ""              # who asked, for a resend


@dataclass(frozen=True)
class Handover:
    """An attempt and the message handed to the channel for it."""

    attempt: Attempt
    data: bytes                  # exactly what was handed over: the email's wire bytes, the PDF
    media_type: str              # EMAIL_TYPE | PDF_TYPE
    filename: str
    packed: bytes | None = None  # pack(data), when computed ahead (the dispatch does it while rendering)


def keep(conn: Connection, key: str, handover: Handover | None) -> None:
    """Record the attempt (in place of its ``sending`` mark, if any) and (replacing any earlier one)
    the message, inside the caller's transaction; no ``handover``: the mark, if any, dropped."""
    if handover is None:
        conn.execute(_DROP_SENDING, {"key": key})
        return
    keep_attempt(conn, key, handover.attempt, in_place_of=SENDING)
    row = {"notice_key": key, "media_type": handover.media_type, "filename": handover.filename,
           "body": handover.packed if handover.packed is not None else pack(handover.data),
           "size": len(handover.data),
           "stored_at": _utc(handover.attempt.at)}
    upsert = _upsert(conn.dialect.name)
    if upsert is not None:
        conn.execute(upsert, row)
    else:
        conn.execute(_DROP_MESSAGE, {"key": key})
        conn.execute(_ADD_MESSAGE, row)


def keep_attempt(conn: Connection, key: str, attempt: Attempt, in_place_of: str | None = None) -> None:
    """Record an attempt; ``in_place_of``: the notice's attempt with that outcome (its ``sending``
    mark) becomes this one (one statement, not a DELETE and an INSERT), else it is added."""
    row = {"at": _utc(attempt.at), "kind": attempt.kind, "channel": attempt.channel,
           "destination": attempt.destination, "outcome": attempt.outcome, "reply": attempt.reply,
           "reference": attempt.reference, "actor": attempt.actor}
    if in_place_of is not None and conn.execute(_REPLACE_ATTEMPT, {
            "was_key": key, "was": in_place_of, **{f"new_{c}": v for c, v in row.items()}}).rowcount:
        return
    conn.execute(_ADD_ATTEMPT, {"notice_key": key, **row})


# The statements, built once (one message a notice is written with every delivery: kept cheap).
_ADD_ATTEMPT = insert(attempts)
_REPLACE_ATTEMPT = update(attempts).where(attempts.c.notice_key == bindparam("was_key"),
                                          attempts.c.outcome == bindparam("was")).values(
    {c: bindparam(f"new_{c}", type_=attempts.c[c].type)
     for c in ("at", "kind", "channel", "destination", "outcome", "reply", "reference", "actor")})
_DROP_SENDING = delete(attempts).where(attempts.c.notice_key == bindparam("key"), attempts.c.outcome == SENDING)
_ADD_MESSAGE = insert(messages)
_DROP_MESSAGE = delete(messages).where(messages.c.notice_key == bindparam("key"))


@lru_cache(maxsize=4)
def _upsert(dialect: str):
    """INSERT … ON CONFLICT (notice_key) DO UPDATE where the database has it (SQLite, PostgreSQL)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        return None
    statement = dialect_insert(messages)
    return statement.on_conflict_do_update(
        index_elements=[messages.c.notice_key],
        set_={c.name: statement.excluded[c.name] for c in messages.columns if c.name != "notice_key"})


def pack(data: bytes) -> bytes:
    """A message's bytes as the database keeps them (``unpack`` gives them back)."""
    return zlib.compress(data, COMPRESSION)


def resend_key(key: str, number: int) -> str:
    """The key the ``number``-th staff resend of a notice is handed to its channel under: the outbox
    names its file after it, a mailbox's covering email takes its Message-ID from it."""
    return f"{key}#resend-{number}"


def unpack(body: bytes) -> bytes:
    """A stored message's bytes, as they were handed over."""
    return zlib.decompress(body)


def _utc(when: dt.datetime) -> dt.datetime:
    """In UTC, as every stored time (SQLite keeps no offset: what it keeps is UTC)."""
    if when.tzinfo is None:
        raise ValueError("an attempt's time needs its time zone")
    return when.astimezone(dt.timezone.utc)
