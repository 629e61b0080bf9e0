"""Run history (the ``runs`` table) and the status report built from it.

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

from adapters.schema import notices, runs

__all__ = ["RunLog", "Counts", "DayTaken", "COMPLETED", "last_completed_day", "history", "to_utc", "status_report",
           "status_lines", "failures", "pending_count"]

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


# --- the status report ---------------------------------------------------------------------------

def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def _run(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {"kind": row["kind"], "date": row["run_date"].isoformat() if row["run_date"] else None,
            "outcome": row["outcome"], "started": _iso(row["started_at"]), "finished": _iso(row["finished_at"]),
            "holder": row["holder"], "decided": row["decided"], "sent": row["sent"], "retrying": row["retrying"],
            "failed": row["failed"], "dropped": row["dropped"], "held": row["held"],
            "errors": [e for e in row["errors"].splitlines() if e]}


def _latest(engine: Engine, *conds) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(*conds).order_by(runs.c.run_id.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    return {**row, "started_at": to_utc(row["started_at"]), "finished_at": to_utc(row["finished_at"])}


def status_report(store, rules_dir, now: dt.datetime, *, state_dir=None, max_failures: int = 0,
                  env: dict | None = None) -> dict:
    """Everything `rappel status` says, as plain values; ``alerts`` non-empty means call someone."""
    from adapters import daemon, pipeline
    from adapters.installation import Guard
    from adapters.lease import read_lease
    from engine.yamlsource import InputError

    engine = store.engine
    alerts: list[str] = []
    warnings: list[str] = []
    day_ago = now - dt.timedelta(days=1)

    last_day = _latest(engine, runs.c.kind == "day", runs.c.outcome != "skipped")
    last_ok = _latest(engine, runs.c.kind == "day", runs.c.outcome == "ok")
    if last_ok is None:
        alerts.append("no run has completed yet")
    elif last_ok["finished_at"] is None or last_ok["finished_at"] < day_ago:
        alerts.append(f"no run completed in the last day (last: {last_ok['run_date']}, finished "
                      f"{_iso(last_ok['finished_at'])})")
    if last_day and last_day["outcome"] == "failed":
        alerts.append(f"the last run ({last_day['run_date']}) failed: {last_day['errors'].splitlines()[0]}")

    last_pass = _latest(engine, runs.c.kind.in_(("day", "deliver")), runs.c.outcome != "skipped")
    if last_pass and last_pass["held"]:
        with engine.connect() as conn:
            waiting = conn.scalar(select(func.count()).select_from(notices).where(
                notices.c.status == "pending", notices.c.attempts == 0))
        if waiting:
            since = _iso(last_pass["started_at"])
            alerts.append(f"the flood guard holds {last_pass['held']} message(s) since {since}: "
                          f"check them, then `rappel run --confirm`")

    failed_total, failed = failures(engine, day_ago)
    if failed_total > max_failures:
        alerts.append(f"{failed_total} deliveries failed in the last day or are being retried "
                      f"(threshold {max_failures})")

    verdict = Guard(engine, state_dir, env).check(claim=False)
    if verdict.database_id is not None and not verdict.ok:
        alerts.append(f"delivery refused: {verdict.detail}")

    lease = read_lease(engine)
    if lease is None or not lease.active:
        warnings.append("no daemon holds the lease (none running, or stopped)")

    next_run = behind = None
    policy_problems: list[str] = []
    try:
        policy = pipeline.load_policy(rules_dir)
    except InputError as exc:
        policy_problems = [str(p) for p in exc.problems]
        warnings.append(f"cannot read the policy, next run unknown: {policy_problems[0]}")
    else:
        next_run = daemon.next_moment(policy, now)
        latest = daemon.scheduled_day(policy, now)
        done = last_completed_day(engine)
        behind = 0 if done is None else max(0, (latest - done).days)
    rejected = _latest(engine, runs.c.kind == "reload")
    if rejected and rejected["outcome"] == "rejected":
        warnings.append(f"a policy edit was rejected at {_iso(rejected['started_at'])}; the daemon runs the "
                        f"previous policy: {rejected['errors'].splitlines()[0] if rejected['errors'] else ''}")

    return {
        "now": _iso(now),
        "last_run": _run(last_day),
        "last_completed": _run(last_ok),
        "next_run": _iso(next_run),
        "days_behind": behind,
        "daemon": None if lease is None else {"holder": lease.holder, "generation": lease.generation,
                                              "active": lease.active, "expires_in": round(lease.expires_in, 1)},
        "installation": {"ok": verdict.ok, "database_id": verdict.database_id, "local_id": verdict.local_id,
                         "detail": verdict.detail},
        "ledger": dict(sorted(store.counts().items())),
        "pending": pending_count(engine),
        "failures": {"count": failed_total, "threshold": max_failures,
                     "shown": [{**f, "updated_at": _iso(f["updated_at"])} for f in failed]},
        "policy_problems": policy_problems,
        "alerts": alerts,
        "warnings": warnings,
    }


def status_lines(report: dict) -> list[str]:
    """The report for a terminal."""
    out = []
    state = "ALERT" if report["alerts"] else "OK"
    out.append(f"rappel status: {state} (at {report['now']})")
    last = report["last_run"]
    if last:
        out.append(f"last run:     {last['date']} {last['outcome']}, started {last['started']}, finished "
                   f"{last['finished'] or '-'}: {last['decided']} decided, {last['sent']} sent, "
                   f"{last['retrying']} to retry, {last['failed']} failed, {last['dropped']} dropped")
        out += [f"              {e}" for e in last["errors"][:5]]
    else:
        out.append("last run:     none")
    ok = report["last_completed"]
    if ok and (not last or ok["date"] != last["date"]):
        out.append(f"last success: {ok['date']}, finished {ok['finished']}")
    behind = report["days_behind"]
    out.append(f"next run:     {report['next_run'] or 'unknown'}"
               + (f" ({behind} day(s) due and not yet run)" if behind else ""))
    d = report["daemon"]
    out.append("daemon:       " + (f"{d['holder']} (lease generation {d['generation']}, "
                                   + (f"{d['expires_in']:.0f}s left)" if d["active"] else "expired)")
                                   if d else "never started"))
    inst = report["installation"]
    out.append(f"installation: {'ok, ' if inst['ok'] else ''}{inst['detail']}")
    counts = ", ".join(f"{k} {v}" for k, v in report["ledger"].items()) or "empty"
    out.append(f"ledger:       {counts}; {report['pending']} message(s) pending")
    fails = report["failures"]
    out.append(f"failures:     {fails['count']} in the last day or retrying (threshold {fails['threshold']})")
    for f in fails["shown"]:
        out.append(f"  {f['key']} ({f['status']}, {f['attempts']} attempt(s)) → {f['recipient']}: "
                   f"{f['last_error'] or ''}")
    out += [f"warning: {w}" for w in report["warnings"]]
    out += [f"ALERT: {a}" for a in report["alerts"]]
    return out
