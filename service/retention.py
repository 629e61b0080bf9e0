"""Retention and erasure (GDPR): `rappel purge`, which the daemon also runs once a day after the
day's run, and `rappel patron forget`.

- ``purge`` deletes what the policy's ``retention:`` says is past its time (engine/retention.py
  decides the cut-off days; adapters/store/retention.py deletes), in the database and in the
  outbox folder, and says how much per table. A dry run counts the same and deletes nothing.
  Every purge is in the run history (kind ``purge``, for `rappel status`); one that deleted
  something is in staff_actions with its counts.
- ``forget`` erases one patron who has no open loan: personal fields blanked, their messages
  deleted (database and outbox), their rows elsewhere kept without their values; the erasure is
  recorded in staff_actions, and later imports and synchronisations skip the patron.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from adapters.channels import outbox_files
from adapters.store import retention as records
from adapters.store.database import Store
from adapters.store.patrons import UnknownPatron
from adapters.store.runs import RunLog, latest_run
from engine.policy import Policy
from engine.retention import Cutoff, cutoffs, erasure, forget_refusal
from engine.yamlsource import InputError, Problem
from service.session import Refused

__all__ = ["ForgetReport", "PurgeReport", "UnknownPatron", "forget", "purge", "purge_due", "run_purge"]

OUTBOX_FILES = "outbox_files"


@dataclass
class PurgeReport:
    on: dt.date
    cuts: dict[str, Cutoff]                  # by category; empty: the policy sets no retention
    deleted: dict[str, int] = field(default_factory=dict)    # table (or outbox_files) → how many
    problems: list[str] = field(default_factory=list)        # files that could not be deleted
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def summary(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in self.deleted.items() if n)
        return counts or "nothing past its time"

    def as_dict(self) -> dict:
        return {"on": self.on.isoformat(), "dry_run": self.dry_run,
                "retention": {name: cut.as_dict() for name, cut in self.cuts.items()} or None,
                "deleted": self.deleted, "total": self.total, "problems": self.problems}


def purge(store: Store, policy: Policy, today: dt.date, *, outbox: Path | None = None,
          dry_run: bool = False) -> PurgeReport:
    """Delete (``dry_run``: count) what is past its time on ``today``; the outbox's files too when
    ``outbox`` is given."""
    cuts = cutoffs(policy, today)
    report = PurgeReport(today, cuts, dry_run=dry_run)
    if not cuts:
        return report
    report.deleted = records.purge(store.engine, cuts, dry_run=dry_run)
    if outbox is not None and "messages" in cuts:
        try:
            files = outbox_files.expired(outbox, cuts["messages"].last_day)
        except OSError as exc:
            report.problems.append(f"outbox {outbox}: {exc.strerror or exc}: its files were not purged")
            return report
        if dry_run:
            report.deleted[OUTBOX_FILES] = len(files)
        else:
            report.deleted[OUTBOX_FILES], report.problems = outbox_files.remove(files)
    return report


def run_purge(store: Store, policy: Policy, today: dt.date, at: dt.datetime, *, actor: str,
              outbox: Path | None = None, holder: str = "") -> PurgeReport:
    """A real purge, recorded: a ``purge`` run (ok, or failed with why: files it could not delete, or
    the error, raised again) and, when it deleted something, a staff action with its counts."""
    history = RunLog(store.engine, holder)
    try:
        report = purge(store, policy, today, outbox=outbox)
    except Exception as exc:
        history.note("purge", today, "failed", at, f"{type(exc).__name__}: {exc}")
        raise
    if report.total:
        records.record_purge(store.engine, at=at, actor=actor, detail=report.summary())
    history.note("purge", today, "failed" if report.problems else "ok", at, "\n".join(report.problems))
    return report


def purge_due(store: Store, policy: Policy, today: dt.date) -> bool:
    """Whether the daily purge of ``today`` is still to run: a retention is set and no purge ran today."""
    if policy.retention is None:
        return False
    last = latest_run(store.engine, ("purge",))
    return last is None or last["run_date"] is None or last["run_date"] < today


def daily_purge(store: Store, policy: Policy, today: dt.date, now: dt.datetime, *, outbox: Path | None,
                holder: str) -> None:
    """The daemon's purge of ``today``, when due: logged; a failure is recorded by run_purge and tried
    again tomorrow, never raised (delivery goes on)."""
    log = logging.getLogger("rappel.daemon")
    if not purge_due(store, policy, today):
        return
    try:
        report = run_purge(store, policy, today, now, actor="daemon", outbox=outbox, holder=holder)
    except Exception as exc:  # noqa: BLE001 - recorded by run_purge; tried again tomorrow
        log.error("purge of %s failed: %s: %s (tried again tomorrow)", today, type(exc).__name__, exc)
        return
    log.log(logging.ERROR if report.problems else logging.INFO, "purge of %s: %s%s", today, report.summary(),
            f"; not deleted: {'; '.join(report.problems[:3])}" if report.problems else "")


# -- forget ------------------------------------------------------------------------------------------

@dataclass
class ForgetReport:
    patron_id: str
    dry_run: bool
    erased_before: dict | None = None                  # the earlier erasure (at, actor): nothing done now
    changed: dict[str, int] = field(default_factory=dict)   # table → rows changed (messages, requests: deleted)
    files: int = 0                                     # outbox files deleted (a dry run: to delete)
    problems: list[str] = field(default_factory=list)  # files that could not be deleted

    def as_dict(self) -> dict:
        before = self.erased_before
        return {"patron_id": self.patron_id, "dry_run": self.dry_run,
                "erased_before": None if before is None else {"at": before["at"].isoformat(timespec="seconds"),
                                                              "actor": before["actor"]},
                "changed": self.changed, OUTBOX_FILES: self.files, "problems": self.problems}


def forget(store: Store, policy: Policy, who: str, *, by: str, why: str, at: dt.datetime,
           outbox: Path | None = None, dry_run: bool = False) -> ForgetReport:
    """Erase the patron whose barcode or id is ``who``: Refused (exit 1, nothing changed) while they
    have an open loan; UnknownPatron when there is none; InputError without ``by`` or ``why``."""
    missing = [Problem(f"--{name}", None, "", f"say {what}") for name, value, what in
               (("by", by, "who erases (for the record)"), ("why", why, "why (the request, its date)"))
               if not value.strip()]
    if missing:
        raise InputError(missing)
    with records.erasing(store.engine, commit=not dry_run) as db:
        found = db.find(who)
        if not found:
            raise UnknownPatron(f"no patron with barcode or id {who!r}")
        if len(found) > 1:
            by_barcode = next(p for p in found if p.barcode == who)
            by_id = next(p for p in found if p.patron_id == who)
            raise InputError([Problem(who, None, "", f"both the barcode of patron {by_barcode.patron_id} and the "
                                                     f"id of patron {by_id.patron_id}: give {by_id.barcode} to "
                                                     f"erase {by_id.patron_id}, {by_barcode.patron_id} to erase "
                                                     f"{by_barcode.patron_id}")])
        patron = found[0]
        report = ForgetReport(patron.patron_id, dry_run)
        report.erased_before = db.erased(patron.patron_id)
        if report.erased_before is not None:
            return report
        refusal = forget_refusal(patron, db.open_loans(patron.patron_id))
        if refusal:
            raise Refused(refusal, 1)
        notices = db.notices(patron.patron_id)
        day = at.astimezone(policy.tz).date()
        erased = erasure(patron, f"erased-{uuid.uuid4().hex[:16]}", db.former_values(patron.patron_id))
        report.changed = db.erase(erased, at=at, actor=by.strip(),
                                  why=why.strip(), reason=f"patron erased on {day} (rappel patron forget)")
    if outbox is not None:
        files = outbox_files.of_patron(outbox, notices, patron.email)
        if dry_run:
            report.files = len(files)
        else:
            report.files, report.problems = outbox_files.remove(files)
    return report
