"""One day of rappel: plan the day's notices, record the decisions (the outbox), then deliver.

``plan_for`` is the dry run; ``run_day`` plans, commits every decision in one transaction, then
hands the pending notices to ``service.dispatch``; ``run_recorded`` is ``rappel run``: run_day,
written to the run history like the daemon's days, so that `rappel status` is right for an
installation driven by cron.

They take ``evaluate``, the rules evaluation to decide with (None: in this process; the daemon
passes adapters.isolation.evaluate_in_child)."""
from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from adapters.channels.base import Channel
from adapters.channels.registry import REGISTRY
from adapters.render import Templates
from adapters.store.database import WAITING, Store
from adapters.store.days import decided_on, notices_by_key
from adapters.store.runs import Counts, DayTaken, RunLog, Waiting, waiting
from engine.decide import Evaluate, Notice, Plan, plan_day
from engine.facts import OutcomeStatus
from engine.policy import Policy
from service import dayview
from service.dispatch import Outcome, dispatch
from service.requests import add_requests


__all__ = ["Compared", "DayResult", "Outcome", "collector_paused", "compare", "dispatch", "left_waiting", "plan_for",
           "run_day", "run_recorded"]


@dataclass
class DayResult:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    others: dict[str, Notice] = field(default_factory=dict)   # the notices of other days the pass did not send

    @property
    def held(self) -> str | None:
        """Why nothing was sent, when the flood guard held the run."""
        return next((o.detail for o in self.outcomes if o.status == OutcomeStatus.HELD), None)


def plan_for(store: Store, policy: Policy, as_of: dt.date, evaluate: Evaluate | None = None) -> Plan:
    with collector_paused():
        candidates, patrons = store.candidates(policy, as_of)
        plan = plan_day(policy, candidates, patrons, as_of, REGISTRY.specs(), evaluate=evaluate)
        return add_requests(store, policy, plan, as_of, evaluate)      # the request notices (service/requests.py)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while a day is planned (and its lines are printed): the
    candidates, the plan and its lines are hundreds of thousands of objects that all live on, and
    each full collection walks every one of them (measured at 80,000 candidates: about a third of
    the dry run's CPU time, for nothing collected). Reference counting still frees everything as
    usual; the collector resumes where it was (nested pauses included) when the block ends."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def run_day(store: Store, policy: Policy, templates: Templates, channel: Channel, as_of: dt.date, *,
            now: dt.datetime | None = None, confirm: bool = False, evaluate: Evaluate | None = None) -> DayResult:
    """Decide, commit the decisions (the outbox), then deliver every pending notice."""
    plan = plan_for(store, policy, as_of, evaluate)
    store.record(plan)
    outcomes = dispatch(store, policy, templates, channel, as_of, now=now, confirm=confirm)
    today = {n.key for n in plan.notices}
    unsent = [o.key for o in outcomes if o.key not in today and o.status not in ("sent", "held")]
    return DayResult(plan, outcomes, notices_by_key(store.engine, unsent) if unsent else {})


def run_recorded(store: Store, policy: Policy, templates: Templates, channel: Channel, as_of: dt.date, *,
                 clock: Callable[[], dt.datetime], holder: str = "", confirm: bool = False,
                 evaluate: Evaluate | None = None) -> DayResult:
    """`rappel run` (which holds the lease): ``run_day`` at ``clock()``, recorded in the run history.

    The first completed run of a date is that date's ``day`` run, as the daemon's would be; another
    run of a date already complete, or a run for a date still to come, is recorded as a ``deliver``
    pass with what it decided: the history keeps one day run per date, and a daemon started later
    does not take a future date as done. Runs another holder left 'running' (it died: this run holds
    the lease) are marked interrupted first. A run that fails is recorded failed, then re-raised."""
    history = RunLog(store.engine, holder)
    started = clock()
    history.interrupt_others(started)
    run_id = None
    if as_of <= started.astimezone(policy.tz).date():
        try:
            run_id = history.start("day", as_of, started)
        except DayTaken:
            run_id = None
    counts = Counts()
    outcome = "ok"
    try:
        result = run_day(store, policy, templates, channel, as_of, now=started, confirm=confirm, evaluate=evaluate)
        counts.decided = len(result.plan.notices)
        counts.add_outcomes(result.outcomes)
        return result
    except BaseException as exc:
        outcome = "failed" if isinstance(exc, Exception) else "interrupted"
        counts.errors.append(f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception)
                             else "stopped before the end: the rest stays pending")
        raise
    finally:
        if run_id is not None:
            history.finish(run_id, outcome, clock(), counts)
        else:
            history.add("deliver", as_of, started, clock(), outcome, counts)


def left_waiting(store: Store) -> Waiting:
    """What a delivery pass now would not send: notices waiting for their retry time, and those
    waiting for the library to fix its policy or a template (service.dispatch)."""
    return waiting(store.engine, WAITING)


@dataclass(frozen=True)
class Compared:
    shown: dayview.Side
    other: dayview.Side
    lines: list[dayview.Line]     # + only on shown.day, - only on other.day
    common: int                   # ledger rows both days send


def compare(store: Store, policy: Policy, shown: dt.date, other: dt.date,
            destination: Callable[[Notice], str] = lambda n: n.destination,
            evaluate: Evaluate | None = None) -> Compared:
    """`rappel run --on D --dry-run --diff D0`: what D sends that D0 does not, and the reverse. Each
    day is what the ledger recorded as decided that day (it was run) and what a dry run of it decides
    now, on the current facts (service.dayview). Writes nothing."""
    sides = [dayview.side(day, decided_on(store.engine, day), plan_for(store, policy, day, evaluate), destination)
             for day in (shown, other)]
    loans = store.loans_by_id({r.loan_id for r in sides[1].rows})
    lines, common = dayview.diff(policy, sides[0], sides[1], loans)
    return Compared(sides[0], sides[1], lines, common)
