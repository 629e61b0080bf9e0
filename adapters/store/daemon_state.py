"""What the daemon runs (the ``daemon_state`` table, migration 0009): the policy it loaded, by
fingerprint, when, and a summary of it, written by the daemon when it takes the lease and at every
reload, read by `rappel status` (which says when the files on disk differ) and by `rappel run` when
the lease is taken (a daemon, or another run?)."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from adapters.store.runs import to_utc
from adapters.store.schema import daemon_state

__all__ = ["DaemonPolicy", "read_daemon_policy", "record_daemon_policy"]

NAME = "daemon"


def record_daemon_policy(engine: Engine, *, holder: str, fingerprint: str, loaded_at: dt.datetime,
                         summary: dict, at: dt.datetime) -> None:
    """The policy this daemon (``holder``) now runs; replaces what an earlier daemon recorded."""
    def utc(value: dt.datetime) -> dt.datetime:
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value

    values = {"holder": holder, "policy_fingerprint": fingerprint, "policy_loaded_at": utc(loaded_at),
              "updated_at": utc(at), "policy_summary": json.dumps(summary, ensure_ascii=False)}
    for _ in range(3):       # two daemons recording at once: the second one's row wins, neither fails
        try:
            with engine.begin() as conn:
                if conn.execute(update(daemon_state).where(daemon_state.c.name == NAME).values(**values)).rowcount:
                    return
                conn.execute(insert(daemon_state).values(name=NAME, **values))
                return
        except IntegrityError:
            continue


class DaemonPolicy(dict):
    """holder, policy_fingerprint, policy_loaded_at, updated_at (aware, UTC) and summary (a dict)."""


def read_daemon_policy(engine: Engine) -> DaemonPolicy | None:
    with engine.connect() as conn:
        row = conn.execute(select(daemon_state).where(daemon_state.c.name == NAME)).mappings().first()
    if row is None:
        return None
    try:
        summary = json.loads(row["policy_summary"] or "{}")
    except ValueError:
        summary = {}
    return DaemonPolicy(holder=row["holder"], policy_fingerprint=row["policy_fingerprint"],
                        policy_loaded_at=to_utc(row["policy_loaded_at"]), updated_at=to_utc(row["updated_at"]),
                        summary=summary)
