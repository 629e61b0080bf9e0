"""The request notices in the day's run: their decisions join the loans' plan (one transaction, the
same ledger and outbox), and delivery re-checks and renders a pending request notice here
(service/dispatch.py hands them over); `rappel explain --request`."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from email.message import EmailMessage

from adapters.channels.registry import REGISTRY
from adapters.isolation import for_requests
from adapters.render.requests import RequestContext, request_message
from adapters.store.database import Store
from adapters.store.requests import request, request_candidates, request_ledger, requests_by_id
from engine.decide import Entry, Evaluate, Notice, Plan
from engine.delivery import Drop
from engine.facts import Patron
from engine.policy import Policy
from engine.delivery import Requeue
from engine.request_notices import explain_request, plan_requests, recheck_requests, requeue_request
from engine.requests import Request, is_request_stage

__all__ = ["Prepared", "add_requests", "explain", "is_request_notice", "prepare_request_notices", "requeue"]


def is_request_notice(policy: Policy, notice: Notice) -> bool:
    """A notice of a request stage (its ledger rows name requests)."""
    return is_request_stage(policy, notice.stage)


def add_requests(store: Store, policy: Policy, plan: Plan, as_of: dt.date, evaluate: Evaluate | None = None) -> Plan:
    """The day's plan with the request notices added (nothing when the policy has no request stages).
    ``evaluate``: the loans' evaluation; the requests' goes with it (adapters.isolation.for_requests:
    in a child process for the daemon)."""
    if not policy.request_stages:
        return plan
    candidates, patrons = request_candidates(store.engine, policy, as_of)
    extra = plan_requests(policy, candidates, patrons, as_of, REGISTRY.specs(), evaluate=for_requests(evaluate))
    plan.notices.extend(extra.notices)
    plan.decisions.extend(extra.decisions)
    plan.events += extra.events
    return plan


@dataclass
class Prepared:
    """A pending request notice re-checked and rendered (service.dispatch's Ready is made of it)."""

    dropped: dict[Entry, Drop]
    remaining: list[Request]
    notice: Notice | None = None
    patron: Patron | None = None
    message: EmailMessage | str | dict | None = None     # the email, the SMS text, the JSON document
    waits: str = ""


def prepare_request_notices(store: Store, policy: Policy, templates, as_of: dt.date, batch: list[Notice],
                            now: dt.datetime | None, forced: set[str]) -> dict[str, Prepared]:
    """Read the requests and patrons of a batch of request notices, re-check and render each (by key)."""
    reqs = requests_by_id(store.engine, {rid for p in batch for rid, _ in p.entries})
    people = store.patrons_by_id({p.patron_id for p in batch})
    out: dict[str, Prepared] = {}
    for pending in batch:
        dropped = recheck_requests(policy, pending, reqs, as_of, window=pending.key not in forced)
        remaining = [reqs[rid] for rid, placed in pending.entries if (rid, placed) not in dropped]
        item = out[pending.key] = Prepared(dropped, remaining)
        if not remaining:
            continue
        entries = tuple(e for e in pending.entries if e not in dropped)
        item.notice = notice = replace(pending, entries=entries, loan_ids=tuple(sorted({r for r, _ in entries})))
        item.patron = patron = people.get(pending.patron_id)
        spec = REGISTRY.spec(notice.channel)
        if spec is None:
            item.waits = (f"channel {notice.channel!r} is not registered (adapters/channels/registry.py): "
                          f"it waits until the policy names a channel rappel has")
            continue
        if patron is None:
            continue
        if spec.contact == "phone" and patron.phone != notice.destination:     # the number edited since
            item.notice = notice = replace(notice, recipient=patron.phone, destination=patron.phone)
        try:
            item.message = request_message(templates, RequestContext(policy, notice, patron, remaining, as_of, now),
                                           spec.renders)
        except Exception as exc:  # noqa: BLE001 - a template fault is the library's: the notice waits for the fix
            item.waits = (f"the {notice.stage} template ({notice.channel}) fails to render: {type(exc).__name__}: "
                          f"{exc}; it waits until the template is fixed (rappel lint)")
    return out


def explain(store: Store, policy: Policy, request_id: str, as_of: dt.date) -> list[str] | None:
    """`rappel explain --request ID`: each request stage due or not on ``as_of``, and why; None: no such request."""
    found = request(store.engine, request_id)
    if found is None:
        return None
    return explain_request(policy, found, store.patron(found.patron_id), request_ledger(store.engine, request_id),
                           as_of, REGISTRY.specs())


def requeue(store: Store, policy: Policy, notice: Notice, as_of: dt.date, *, force: bool = False) -> Requeue:
    """Whether a failed request notice goes back in the queue (service/notices.py's retry)."""
    return requeue_request(policy, notice, requests_by_id(store.engine, {r for r, _ in notice.entries}), as_of,
                           force=force)
