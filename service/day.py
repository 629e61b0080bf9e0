"""One day of rappel: plan the day's notices, record the decisions (the outbox), then deliver.

``plan_for`` is the dry run; ``run_day`` plans, commits every decision in one transaction, then
hands the pending notices to ``service.dispatch``.

Both take ``evaluate``, the rules evaluation to decide with (None: in this process; the daemon
passes adapters.isolation.evaluate_in_child)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from adapters.channels.base import Channel
from adapters.channels.registry import REGISTRY
from adapters.render import Templates
from adapters.store.database import Store
from engine.decide import Evaluate, Plan, plan_day
from engine.facts import OutcomeStatus
from engine.policy import Policy
from service.dispatch import Outcome, dispatch


__all__ = ["DayResult", "Outcome", "dispatch", "plan_for", "run_day"]


@dataclass
class DayResult:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def held(self) -> str | None:
        """Why nothing was sent, when the flood guard held the run."""
        return next((o.detail for o in self.outcomes if o.status == OutcomeStatus.HELD), None)


def plan_for(store: Store, policy: Policy, as_of: dt.date, evaluate: Evaluate | None = None) -> Plan:
    candidates, patrons = store.candidates(policy, as_of)
    return plan_day(policy, candidates, patrons, as_of, REGISTRY.specs(), evaluate=evaluate)


def run_day(store: Store, policy: Policy, templates: Templates, channel: Channel, as_of: dt.date, *,
            now: dt.datetime | None = None, confirm: bool = False, evaluate: Evaluate | None = None) -> DayResult:
    """Decide, commit the decisions (the outbox), then deliver every pending notice."""
    plan = plan_for(store, policy, as_of, evaluate)
    store.record(plan)
    return DayResult(plan, dispatch(store, policy, templates, channel, as_of, now=now, confirm=confirm))
