"""The reminder semantics of the design, in plain Python, condition by condition.

This is the reference the durable-rules evaluation is cross-checked against (in tests, and at
every run), and the source of `rappel explain`'s reasons.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine.facts import Candidate
from engine.policy import Policy, Stage


@dataclass(frozen=True)
class Check:
    name: str     # status, window, restart, ledger, before_due, audience
    ok: bool
    detail: str


def trigger_date(stage: Stage, due: dt.date) -> dt.date:
    return due + dt.timedelta(days=stage.offset_days)


def checks(policy: Policy, stage_index: int, cand: Candidate, as_of: dt.date) -> list[Check]:
    """Every condition of 'stage is due for this loan on as_of', each with its reason."""
    stage = policy.stages[stage_index]
    loan = cand.loan
    due = loan.due_date
    t = trigger_date(stage, due)
    window = policy.window(stage)
    out = []

    if not loan.is_open:
        closed = f" ({loan.closed_reason})" if loan.closed_reason else ""
        out.append(Check("status", False, f"returned on {loan.returned_on}{closed}"))
    elif loan.status in policy.excluded_statuses:
        out.append(Check("status", False, f"status {loan.status!r} is excluded by the policy"))
    else:
        out.append(Check("status", True, "open" + (f", status {loan.status!r}" if loan.status else "")))

    late = (as_of - t).days
    if late < 0:
        out.append(Check("window", False, f"triggers on {t}, {-late} day(s) after {as_of}"))
    elif late > window:
        out.append(Check("window", False, f"triggered on {t}, {late} days before {as_of}: "
                                          f"past the {window}-day catch-up window (stale)"))
    else:
        out.append(Check("window", True, f"triggered on {t}" + (f", caught up {late} day(s) late" if late else "")))

    resumed = policy.resumed_on
    if resumed is not None:
        if t < resumed:
            out.append(Check("restart", False, f"trigger {t} is before the restart on {resumed}: never sent"))
        else:
            out.append(Check("restart", True, f"trigger {t} is on or after the restart on {resumed}"))

    later = [s.id for s in policy.stages[stage_index + 1:] if s.id in cand.recorded]
    if stage.id in cand.recorded:
        out.append(Check("ledger", False, f"already in the ledger for due date {due}"))
    elif later:
        out.append(Check("ledger", False, f"a later stage ({later[0]}) is already in the ledger for due date {due}"))
    else:
        out.append(Check("ledger", True, f"not yet in the ledger for due date {due}"))

    if stage.offset_days < 0:
        if as_of < due:
            out.append(Check("before_due", True, f"{as_of} is before the due date {due}"))
        else:
            out.append(Check("before_due", False, f"{as_of} is not before the due date {due}"))

    aud = stage.audience
    if cand.record_type not in aud.record_types:
        out.append(Check("audience", False, f"record type {cand.record_type!r} does not receive this stage"))
    elif aud.user_groups is not None and cand.user_group not in aud.user_groups:
        out.append(Check("audience", False, f"user group {cand.user_group!r} does not receive this stage"))
    else:
        out.append(Check("audience", True, f"record type {cand.record_type!r}"
                                           + (f", group {cand.user_group!r}" if cand.user_group else "")))
    return out


def is_due(policy: Policy, stage_index: int, cand: Candidate, as_of: dt.date) -> bool:
    return all(c.ok for c in checks(policy, stage_index, cand, as_of))


def due_pairs(policy: Policy, candidates: list[Candidate], as_of: dt.date) -> set[tuple[int, int]]:
    """(candidate index, stage index) of every stage due, by the reference semantics."""
    return {(ci, si) for ci, cand in enumerate(candidates)
            for si in range(len(policy.stages)) if is_due(policy, si, cand, as_of)}


def due_ranges(policy: Policy, as_of: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Due-date ranges (inclusive) in which a loan can have a stage due on as_of: the SQL pre-filter."""
    ranges = []
    for stage in policy.stages:
        hi = as_of - dt.timedelta(days=stage.offset_days)
        lo = hi - dt.timedelta(days=policy.window(stage))
        if policy.resumed_on is not None:
            lo = max(lo, policy.resumed_on - dt.timedelta(days=stage.offset_days))
        if lo <= hi:
            ranges.append((lo, hi))
    return ranges


def stage_window_contains(policy: Policy, stage_index: int, due: dt.date, as_of: dt.date) -> bool:
    """Whether a due date lies in the stage's pre-filter range (the engine is only asked about those)."""
    stage = policy.stages[stage_index]
    late = (as_of - trigger_date(stage, due)).days
    return 0 <= late <= policy.window(stage)
