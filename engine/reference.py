"""The reminder semantics of the design, in plain Python, condition by condition.

This is the reference the durable-rules evaluation is cross-checked against (in tests, and at
every run), and the source of `rappel explain`'s reasons.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from engine.calendar import HORIZON_DAYS
from engine.facts import Candidate, Loan
from engine.policy import Policy, Stage
from engine.timeline import timeline


class Check:
    """One condition: its name (status, window, open_day, restart, ledger, before_due, opt_out,
    audience), whether it holds, and why. The reason is written when read (``detail``): the daily
    cross-check reads only ``ok``, `rappel explain` the reasons too."""

    __slots__ = ("name", "ok", "_detail")

    def __init__(self, name: str, ok: bool, detail: str | Callable[[], str]):
        self.name, self.ok, self._detail = name, ok, detail

    @property
    def detail(self) -> str:
        if callable(self._detail):
            self._detail = self._detail()
        return self._detail

    def __eq__(self, other) -> bool:
        return isinstance(other, Check) and (self.name, self.ok, self.detail) == (other.name, other.ok, other.detail)

    def __repr__(self) -> str:
        return f"Check({self.name!r}, {self.ok!r}, {self.detail!r})"


def trigger_date(stage: Stage, due: dt.date) -> dt.date:
    """due + offset_days in calendar days (a stage as written, without its library or calendar)."""
    return due + dt.timedelta(days=stage.offset_days)


def trigger_of(policy: Policy, stage_index: int, loan: Loan) -> dt.date | None:
    """The day stage ``stage_index`` goes out for ``loan``: its library's rule, open days counted,
    a closed day moved off for a channel that does not send on closed days."""
    return timeline(policy).trigger(stage_index, loan.library, loan.due_date).on


def _trigger_detail(line, stage: Stage, stage_index: int, loan: Loan) -> str:
    trig = line.trigger(stage_index, loan.library, loan.due_date)
    if stage.count == "open_days" and stage.offset_days:
        how = f"{abs(stage.offset_days)} open day(s) {'after' if stage.offset_days > 0 else 'before'} the due date"
        text = f"{trig.counted} is {how}"
    else:
        text = ""
    if trig.on != trig.counted and trig.on is not None:
        text += ("; " if text else "") + f"{trig.counted} is a closed day of {loan.library}: moved to {trig.on}"
    return f" ({text})" if text else ""


def checks(policy: Policy, stage_index: int, cand: Candidate, as_of: dt.date) -> list[Check]:
    """Every condition of 'stage is due for this loan on as_of', each with its reason."""
    line = timeline(policy)
    loan = cand.loan
    stage = line.stage(stage_index, loan.library)
    due = loan.due_date
    t = line.trigger(stage_index, loan.library, due).on
    window = policy.window(stage)
    out = []

    if not loan.is_open:
        closed = f" ({loan.closed_reason})" if loan.closed_reason else ""
        out.append(Check("status", False, lambda: f"returned on {loan.returned_on}{closed}"))
    elif loan.status in policy.excluded_statuses:
        out.append(Check("status", False, lambda: f"status {loan.status!r} is excluded by the policy"))
    else:
        out.append(Check("status", True, lambda: "open" + (f", status {loan.status!r}" if loan.status else "")))

    if t is None:
        out.append(Check("window", False, lambda: f"no open day of {loan.library} within {HORIZON_DAYS} days to send it on"))
        return out + [Check("audience", True, lambda: "not reached")]
    late = (as_of - t).days
    why = lambda: _trigger_detail(line, stage, stage_index, loan)  # noqa: E731
    if late < 0:
        out.append(Check("window", False, lambda: f"triggers on {t}{why()}, {-late} day(s) after {as_of}"))
    elif late > window:
        out.append(Check("window", False, lambda: f"triggered on {t}{why()}, {late} days before {as_of}: "
                                          f"past the {window}-day catch-up window (stale)"))
    else:
        out.append(Check("window", True, lambda: f"triggered on {t}{why()}"
                                         + (f", caught up {late} day(s) late" if late else "")))

    if line.waits_for_open_day(stage_index, loan.library):
        if line.calendar.is_open(loan.library, as_of):
            out.append(Check("open_day", True, lambda: f"{loan.library} is open on {as_of}"))
        else:
            out.append(Check("open_day", False, lambda: f"{loan.library} is closed on {as_of}: {stage.channel} notices wait "
                                                f"for its next open day"))

    resumed = policy.resumed_on
    if resumed is not None:
        if t < resumed:
            out.append(Check("restart", False, lambda: f"trigger {t} is before the restart on {resumed}: never sent"))
        else:
            out.append(Check("restart", True, lambda: f"trigger {t} is on or after the restart on {resumed}"))

    later = [s.id for s in policy.stages[stage_index + 1:] if s.id in cand.recorded]
    if stage.id in cand.recorded:
        out.append(Check("ledger", False, lambda: f"already in the ledger for due date {due}"))
    elif later:
        out.append(Check("ledger", False, lambda: f"a later stage ({later[0]}) is already in the ledger for due date {due}"))
    else:
        out.append(Check("ledger", True, lambda: f"not yet in the ledger for due date {due}"))

    if stage.offset_days < 0:
        if as_of < due:
            out.append(Check("before_due", True, lambda: f"{as_of} is before the due date {due}"))
        else:
            out.append(Check("before_due", False, lambda: f"{as_of} is not before the due date {due}"))

    if policy.is_optional(stage.id):
        if cand.opted_out_of(stage.id):
            out.append(Check("opt_out", False, lambda: f"the patron opted out of {stage.id} (an optional stage)"))
        else:
            out.append(Check("opt_out", True, lambda: f"{stage.id} is optional; the patron did not opt out"))

    out.append(_audience(stage.audience, cand))
    return out


def _audience(aud, cand: Candidate) -> Check:
    loan = cand.loan
    if cand.record_type not in aud.record_types:
        return Check("audience", False, lambda: f"record type {cand.record_type!r} does not receive this stage")
    if aud.user_groups is not None and cand.user_group not in aud.user_groups:
        return Check("audience", False, lambda: f"user group {cand.user_group!r} does not receive this stage")
    if aud.item_types is not None and loan.item_type not in aud.item_types:
        return Check("audience", False, lambda: f"item type {loan.item_type!r} is not among this stage's "
                                        f"({', '.join(aud.item_types) or 'none'})")
    if aud.libraries is not None and loan.library not in aud.libraries:
        return Check("audience", False, lambda: f"library {loan.library} is not among this stage's "
                                        f"({', '.join(aud.libraries) or 'none'})")
    return Check("audience", True, lambda: f"record type {cand.record_type!r}"
                                   + (f", group {cand.user_group!r}" if cand.user_group else "")
                                   + (f", item type {loan.item_type!r}" if aud.item_types is not None else "")
                                   + (f", library {loan.library}" if aud.libraries is not None else ""))


def is_due(policy: Policy, stage_index: int, cand: Candidate, as_of: dt.date) -> bool:
    return all(c.ok for c in checks(policy, stage_index, cand, as_of))


def due_pairs(policy: Policy, candidates: list[Candidate], as_of: dt.date) -> set[tuple[int, int]]:
    """(candidate index, stage index) of every stage due, by the reference semantics."""
    return {(ci, si) for ci, cand in enumerate(candidates)
            for si in range(len(policy.stages)) if is_due(policy, si, cand, as_of)}


def due_ranges(policy: Policy, as_of: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Due-date ranges (inclusive) in which a loan can have a stage due on as_of: the SQL pre-filter,
    over every library's timeline and calendar."""
    return _merged([(lo, hi) for _, lo, hi in stage_ranges(policy, as_of)])


def stage_ranges(policy: Policy, as_of: dt.date) -> list[tuple[int, dt.date, dt.date]]:
    """(stage index, first due date, last due date) of every range in which a loan can have that
    stage due on as_of, in some library (the institution's rule, then each library's): a stage's
    trigger never comes earlier for a later due date, so each range is found by bisection."""
    line = timeline(policy)
    libraries = [""] + list(policy.libraries)
    ranges = []
    for si in range(len(policy.stages)):
        for library in libraries:
            stage = line.stage(si, library)
            first = as_of - dt.timedelta(days=policy.window(stage))
            if policy.resumed_on is not None:
                first = max(first, policy.resumed_on)
            if first > as_of:
                continue
            lo = _first_due(lambda due: _on(line, si, library, due) >= first, as_of, stage)
            hi = _first_due(lambda due: _on(line, si, library, due) > as_of, as_of, stage) - dt.timedelta(days=1)
            if lo <= hi:
                ranges.append((si, lo, hi))
    return ranges


def last_stage_by_due_date(policy: Policy, as_of: dt.date) -> dict[dt.date, int]:
    """For each due date of the pre-filter's ranges, the last stage (its index) that could be due on
    as_of for a loan due that day, in any library. A stage is due only while neither it nor a later
    stage is in the ledger for the loan's due date: a loan whose ledger holds that last stage, or a
    later one, has nothing due, and the SQL pre-filter leaves it out (the next day's candidates are
    then the loans still to decide, not every loan in the ranges)."""
    out: dict[dt.date, int] = {}
    for si, lo, hi in stage_ranges(policy, as_of):
        for n in range((hi - lo).days + 1):
            day = lo + dt.timedelta(days=n)
            out[day] = max(out.get(day, -1), si)
    return out


def _on(line, si: int, library: str, due: dt.date) -> dt.date:
    on = line.trigger(si, library, due).on
    return on if on is not None else dt.date.max


def _first_due(pred, as_of: dt.date, stage: Stage) -> dt.date:
    """The first due date for which ``pred`` (monotone: false, then true) holds, by bisection over
    every due date whose trigger could fall near as_of."""
    span = 2 * HORIZON_DAYS + abs(stage.offset_days)
    lo, hi = as_of.toordinal() - span, as_of.toordinal() + span
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(dt.date.fromordinal(mid)):
            hi = mid
        else:
            lo = mid + 1
    return dt.date.fromordinal(lo)


def _merged(ranges: list[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    out: list[tuple[dt.date, dt.date]] = []
    for lo, hi in sorted(set(ranges)):
        if out and lo <= out[-1][1] + dt.timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def stage_window_contains(policy: Policy, stage_index: int, loan: Loan, as_of: dt.date) -> bool:
    """Whether a loan lies in the stage's pre-filter range (the engine is only asked about those)."""
    line = timeline(policy)
    t = line.trigger(stage_index, loan.library, loan.due_date).on
    return t is not None and 0 <= (as_of - t).days <= policy.window(line.stage(stage_index, loan.library))
