"""Run history (the ``runs`` table): what each run did, and the queries the status report reads.

Each daily evaluation is a ``day`` run for the date it evaluated (``skipped`` for days too old to
catch up); delivery passes outside a day's run (retries between days, after a catch-up) are
``deliver`` runs, recorded when they attempted something; a policy edit the daemon picked up, or
refused, is a ``reload`` run. Times come from the clock the daemon was given.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from adapters.store.schema import notices, runs

__all__ = ["RunLog", "Counts", "DayTaken", "COMPLETED", "last_completed_day", "history", "to_utc", "failures",
           "pending_count", "latest_run", "unattempted_count", "Waiting", "waiting"]

UTC = dt.timezone.utc
COMPLETED = ("ok", "skipped")      # a day with one of these is not evaluated again


class DayTaken(Exception):
    """Another run is evaluating this day, or has completed it."""


@dataclass
class Counts:
    decided: int = 0       # notices the evaluation decided
    sent: int = 0
    retrying: int = 0      # a transient failure: left pending for a later attempt
    failed: int = 0
    dropped: int = 0       # cancelled or expired when about to be delivered
    held: int = 0          # held by the flood guard: nothing sent until `rappel run --confirm`
    errors: list[str] = field(default_factory=list)

    def add_outcomes(self, outcomes: Iterable) -> None:
        for o in outcomes:
            if o.status == "sent":
                self.sent += 1
            elif o.status == "pending":
                self.retrying += 1
            elif o.status == "failed":
                self.failed += 1
                self.errors.append(f"{o.key}: {o.detail}")
            elif o.status == "waiting":      # for the library's fix: pending, counted by `rappel status`
                self.errors.append(f"{o.key}: {o.detail}")
            elif o.status == "held":
                if not self.held:
                    self.errors.append(o.detail)
                self.held += 1
            else:
                self.dropped += 1

    def values(self) -> dict:
        return {"decided": self.decided, "sent": self.sent, "retrying": self.retrying, "failed": self.failed,
                "dropped": self.dropped, "held": self.held, "errors": "\n".join(self.errors)[:20000]}


def to_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A timestamp read back: SQLite returns it naive (it was written in UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored(engine: Engine, value: dt.datetime) -> dt.datetime:
    value = value.astimezone(UTC)
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


class RunLog:
    """Writes the history of one daemon (``holder``)."""

    def __init__(self, engine: Engine, holder: str = ""):
        self.engine = engine
        self.holder = holder

    def start(self, kind: str, run_date: dt.date | None, at: dt.datetime) -> int:
        """A run begins. For a day, raises DayTaken when another run has it or completed it."""
        try:
            with self.engine.begin() as conn:
                return conn.execute(insert(runs).values(
                    kind=kind, run_date=run_date, started_at=_stored(self.engine, at), outcome="running",
                    holder=self.holder).returning(runs.c.run_id)).scalar_one()
        except IntegrityError:
            raise DayTaken(f"{run_date} is being evaluated or was completed by another run") from None

    def finish(self, run_id: int, outcome: str, at: dt.datetime, counts: Counts | None = None) -> None:
        values = {"outcome": outcome, "finished_at": _stored(self.engine, at)}
        if counts is not None:
            values.update(counts.values())
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))

    def add(self, kind: str, run_date: dt.date | None, started: dt.datetime, finished: dt.datetime, outcome: str,
            counts: Counts) -> None:
        """A run recorded once over (a delivery pass)."""
        with self.engine.begin() as conn:
            conn.execute(insert(runs).values(kind=kind, run_date=run_date, started_at=_stored(self.engine, started),
                                             finished_at=_stored(self.engine, finished), outcome=outcome,
                                             holder=self.holder, **counts.values()))

    def note(self, kind: str, run_date: dt.date | None, outcome: str, at: dt.datetime, errors: str = "") -> None:
        """A run that is over as soon as it starts: a skipped range of days, a policy reload."""
        with self.engine.begin() as conn:
            conn.execute(insert(runs).values(kind=kind, run_date=run_date, started_at=_stored(self.engine, at),
                                             finished_at=_stored(self.engine, at), outcome=outcome,
                                             holder=self.holder, errors=errors))

    def interrupt_others(self, at: dt.datetime) -> int:
        """Runs left 'running' by an earlier holder of the lease (it died): mark them interrupted."""
        with self.engine.begin() as conn:
            return conn.execute(update(runs).where(runs.c.outcome == "running", runs.c.holder != self.holder)
                                .values(outcome="interrupted", finished_at=_stored(self.engine, at),
                                        errors="the instance running it stopped before the end")).rowcount


def last_completed_day(engine: Engine) -> dt.date | None:
    with engine.connect() as conn:
        return conn.scalar(select(func.max(runs.c.run_date)).where(runs.c.kind == "day",
                                                                   runs.c.outcome.in_(COMPLETED)))


def first_unfinished_day(engine: Engine, after: dt.date | None) -> dt.date | None:
    """The first day attempted after ``after`` (all days when None) that no run completed."""
    with engine.connect() as conn:
        done = select(runs.c.run_date).where(runs.c.kind == "day", runs.c.outcome.in_(COMPLETED))
        query = select(func.min(runs.c.run_date)).where(runs.c.kind == "day", runs.c.run_date.not_in(done))
        if after is not None:
            query = query.where(runs.c.run_date > after)
        return conn.scalar(query)


def history(engine: Engine, kind: str | None = None, limit: int | None = None) -> list[dict]:
    """Runs, most recent first, times in UTC."""
    query = select(runs).order_by(runs.c.run_id.desc())
    if kind:
        query = query.where(runs.c.kind == kind)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [{**r, "started_at": to_utc(r["started_at"]), "finished_at": to_utc(r["finished_at"])} for r in rows]


def pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(notices).where(notices.c.status == "pending"))


def failures(engine: Engine, since: dt.datetime, limit: int = 20) -> tuple[int, list[dict]]:
    """Deliveries that failed since ``since``, and those still pending after an attempt (retrying)."""
    cond = or_(and_(notices.c.status == "failed", notices.c.updated_at >= _stored(engine, since)),
               and_(notices.c.status == "pending", notices.c.attempts > 0))
    cols = (notices.c.key, notices.c.status, notices.c.channel, notices.c.recipient, notices.c.destination,
            notices.c.attempts, notices.c.last_error, notices.c.updated_at)
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(notices).where(cond))
        rows = conn.execute(select(*cols).where(cond).order_by(notices.c.updated_at.desc(), notices.c.key)
                            .limit(limit)).mappings().all()
    return total, [{**r, "updated_at": to_utc(r["updated_at"])} for r in rows]


def latest_run(engine: Engine, kinds: tuple[str, ...], *, outcome: str | None = None,
               not_outcome: str | None = None) -> dict | None:
    """The most recent run of one of ``kinds`` (with that outcome, or any but ``not_outcome``), times in UTC."""
    query = select(runs).where(runs.c.kind.in_(kinds))
    if outcome is not None:
        query = query.where(runs.c.outcome == outcome)
    if not_outcome is not None:
        query = query.where(runs.c.outcome != not_outcome)
    with engine.connect() as conn:
        row = conn.execute(query.order_by(runs.c.run_id.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    return {**row, "started_at": to_utc(row["started_at"]), "finished_at": to_utc(row["finished_at"])}


def unattempted_count(engine: Engine) -> int:
    """Pending notices never attempted (what the flood guard holds, among others)."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(notices).where(
            notices.c.status == "pending", notices.c.attempts == 0))


@dataclass(frozen=True)
class Waiting:
    """The pending notices that a delivery pass now would not send: those waiting for their retry
    time (how many, the first time and the last), and those waiting for the library's fix (how many,
    a few of their reasons, without the marker)."""

    retrying: int = 0
    next_at: dt.datetime | None = None      # the earliest next attempt, UTC
    last_at: dt.datetime | None = None      # the latest
    for_fix: int = 0
    reasons: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.retrying + self.for_fix


def waiting(engine: Engine, marker: str, limit: int = 5) -> Waiting:
    """The pending notices waiting (see ``Waiting``); ``marker``: how a waiting notice's last_error starts."""
    retry = and_(notices.c.status == "pending", notices.c.next_attempt_at.is_not(None))
    fix = and_(notices.c.status == "pending", notices.c.next_attempt_at.is_(None),
               notices.c.last_error.like(marker.replace("%", "") + "%"))
    with engine.connect() as conn:
        count, first, last = conn.execute(select(func.count(), func.min(notices.c.next_attempt_at),
                                                 func.max(notices.c.next_attempt_at)).where(retry)).one()
        held = conn.scalar(select(func.count()).select_from(notices).where(fix))
        reasons = list(dict.fromkeys(conn.scalars(select(notices.c.last_error).where(fix)
                                                  .order_by(notices.c.run_date, notices.c.key).limit(200))))
    return Waiting(count, to_utc(first), to_utc(last), held,
                   tuple(r.removeprefix(marker) for r in reasons[:limit]))
