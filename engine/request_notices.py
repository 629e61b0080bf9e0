"""The day's request notices, their re-check at delivery and `rappel explain --request`.

``plan_requests`` runs the durable-rules evaluation of the request stages (engine/rules.py),
refuses to go on if it disagrees with the plain-Python reference (engine/requests.py), then
supersedes the earlier stages due on one run and groups a patron's requests per stage and channel:
one email per patron, stage and day. Its ledger rows are (request, stage, placed_on), kind
"request", in the same ledger as the loans' (their stage ids differ, engine.requests).
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping

from engine import requests as req
from engine import rules
from engine.channels import DEFAULT, ChannelSpec
from engine.decide import Decision, Entry, Evaluate, Notice, Plan, address, notice_key
from engine.delivery import Drop, Fallback, Requeue, settled
from engine.facts import Patron, Status
from engine.policy import Policy
from engine.preferences import has_contact, lacking, route_order
from engine.requests import Request, RequestCandidate

__all__ = ["due_requests", "explain_request", "fallback_request", "plan_requests", "recheck_requests",
           "requeue_request", "route_request"]

KIND = "request"


def due_requests(policy: Policy, candidates: list[RequestCandidate], as_of: dt.date,
                 evaluate: Evaluate | None = None) -> set[tuple[int, int]]:
    """Due (candidate, request stage) pairs from durable-rules, cross-checked against the reference.
    ``evaluate``: the evaluation (None: engine.rules.evaluate_requests_here, in this process; the
    daemon's runs it in a child process, adapters.isolation)."""
    pairs = [(ci, si) for ci in range(len(candidates)) for si in range(len(policy.request_stages))]
    got = (evaluate or rules.evaluate_requests_here)(policy, candidates, as_of, pairs)
    expected = {(ci, si) for ci, si in pairs if req.is_due(policy, si, candidates[ci], as_of)}
    if got != expected:
        diff = sorted(got ^ expected)[:5]
        shown = ", ".join(f"{candidates[c].request.request_id}/{policy.request_stages[s].id}" for c, s in diff)
        raise rules.EngineFault(f"durable-rules and the reference disagree on {len(got ^ expected)} request "
                                f"decision(s), e.g. {shown}: nothing decided")
    return got


def route_request(policy: Policy, stage: req.RequestStage, patron: Patron | None,
                  channels: Mapping[str, ChannelSpec] = DEFAULT) -> tuple[str | None, str]:
    """The channel a due request stage goes out on for this patron, and why when it is not the
    stage's own; or None and why not. As a loan stage's (engine.decide.route): the stage's
    ``channels:`` in the patron's order of preference (engine.preferences.route_order), the first
    they can be reached on; no letter instead (a request notice is not set out per library)."""
    if patron is None:
        return None, "unknown patron"
    order = route_order(policy, stage, patron)
    missing = []
    for name in order:
        spec = channels.get(name)
        if spec is None:
            missing.append(f"channel {name} is not registered")
        elif has_contact(patron, spec.contact):
            return spec.name, (f"{'; '.join(missing)}: {name} instead" if missing else "")
        else:
            missing.append(lacking(patron, spec))
    only = f": a request notice of {stage.id} goes out by {' or '.join(order)} only"
    return None, "; ".join(missing) + only


def fallback_request(policy: Policy, notice: Notice, patron: Patron, requests: list[Request],
                     channels: Mapping[str, ChannelSpec] = DEFAULT) -> Fallback:
    """A request notice refused for good (an SMS gateway refusing the number): the next of its
    stage's channels in the patron's order they can be reached on, as for a loan's
    (engine.delivery.fallback); none left: no fallback, and why."""
    stage = req.stage_by_id(policy, notice.stage)
    order = route_order(policy, stage, patron) if stage is not None else ()
    later = order[order.index(notice.channel) + 1:] if notice.channel in order else ()
    for name in later:
        spec = channels.get(name)
        if spec is not None and has_contact(patron, spec.contact):
            return Fallback((make_request_notice(notice.date, notice.stage, spec, patron, requests),))
    if not later:
        return Fallback(why_not=f"no other channel for {notice.stage} (its channels: {', '.join(order) or '-'})")
    return Fallback(why_not="no other channel the patron can be reached on (" +
                    "; ".join(lacking(patron, channels[n]) for n in later if n in channels) + ")")


def plan_requests(policy: Policy, candidates: list[RequestCandidate], patrons: Mapping[str, Patron],
                  as_of: dt.date, channels: Mapping[str, ChannelSpec] = DEFAULT,
                  evaluate: Evaluate | None = None) -> Plan:
    """The day's request decisions and notices (to add to the loans' plan)."""
    plan = Plan(as_of=as_of, candidates=len(candidates), events=len(candidates) * len(policy.request_stages))
    if not candidates or not policy.request_stages:
        return plan
    due = due_requests(policy, candidates, as_of, evaluate)
    latest: dict[int, int] = {}
    for ci, si in due:
        latest[ci] = max(latest.get(ci, -1), si)
    groups: dict[tuple[int, str, str], list[Request]] = defaultdict(list)
    routed: dict[tuple[int, str, str], str] = {}
    for ci, si in sorted(due):
        r = candidates[ci].request
        stage = policy.request_stages[si]
        if si != latest[ci]:
            later = policy.request_stages[latest[ci]].id
            plan.decisions.append(Decision(r.request_id, stage.id, r.placed_on, Status.SUPERSEDED, None,
                                           f"superseded by {later} on the same run", r.patron_id, kind=KIND))
            continue
        patron = patrons.get(r.patron_id)
        channel, why = route_request(policy, stage, patron, channels)
        if channel is None:
            plan.decisions.append(Decision(r.request_id, stage.id, r.placed_on, Status.CANCELLED, None, why,
                                           r.patron_id, kind=KIND))
            continue
        groups[(si, channel, r.patron_id)].append(r)
        routed[(si, channel, r.patron_id)] = why
    for (si, channel, patron_id), requests in sorted(groups.items()):
        stage = policy.request_stages[si]
        notice = make_request_notice(as_of, stage.id, channels[channel], patrons[patron_id], requests)
        plan.notices.append(notice)
        why = routed[(si, channel, patron_id)]
        for r in requests:
            plan.decisions.append(Decision(r.request_id, stage.id, r.placed_on, Status.PENDING, notice.key,
                                           f"due on {as_of}, {channel}" + (f" ({why})" if why else ""),
                                           patron_id, kind=KIND))
    return plan


def make_request_notice(as_of: dt.date, stage_id: str, spec: ChannelSpec, patron: Patron,
                        requests: list[Request]) -> Notice:
    """One patron's request notice of a stage on one channel: to their address, number or id
    (engine.decide.address), pending, with its ledger rows (request, placed_on)."""
    requests = sorted(requests, key=lambda r: r.request_id)
    ids = tuple(r.request_id for r in requests)
    recipient, destination = address(None, spec, patron, None)
    return Notice(notice_key(as_of, stage_id, spec.name, patron.patron_id, None, ids), as_of, stage_id, spec.name,
                  patron.patron_id, None, ids, recipient, destination,
                  entries=tuple((r.request_id, r.placed_on) for r in requests))


def recheck_requests(policy: Policy, notice: Notice, requests: Mapping[str, Request], as_of: dt.date, *,
                     window: bool = True) -> dict[Entry, Drop]:
    """(request, placed_on) → Drop for the rows of a pending request notice not to send on ``as_of``:
    stage gone from the policy, request gone or replaced, picked up or cancelled (its status no longer
    one the stage is for), its pickup deadline passed, or its window passed (``window=False``: not
    expired for being late, a notice staff put back with --force)."""
    stage = req.stage_by_id(policy, notice.stage)
    dropped: dict[Entry, Drop] = {}
    for request_id, placed in notice.entries:
        r = requests.get(request_id)
        if stage is None:
            dropped[(request_id, placed)] = Drop(Status.CANCELLED, f"stage {notice.stage} is no longer in the policy")
        elif r is None or r.placed_on != placed:
            dropped[(request_id, placed)] = Drop(Status.CANCELLED, "the request no longer exists")
        elif r.status not in req.statuses_for(policy, stage):
            dropped[(request_id, placed)] = Drop(Status.CANCELLED, f"status now {r.status!r} (picked up, cancelled "
                                                                   f"or no longer waiting)")
        elif stage.when != "expired" and r.expires_on is not None and as_of > r.expires_on:
            dropped[(request_id, placed)] = Drop(Status.EXPIRED, f"the pickup deadline {r.expires_on} has passed")
        elif window:
            t = req.trigger(stage, r)
            if t is None or (as_of - t).days > req.window(policy, stage):
                dropped[(request_id, placed)] = Drop(Status.EXPIRED, f"not sent within the "
                                                                     f"{req.window(policy, stage)}-day window after {t}")
    return dropped


def explain_request(policy: Policy, request: Request, patron: Patron | None, ledger_rows: list[dict],
                    as_of: dt.date, channels: Mapping[str, ChannelSpec] = DEFAULT) -> list[str]:
    """For each request stage: due or not on ``as_of``, and why, in plain lines."""
    later = [r for r in ledger_rows if r["decided_on"] > as_of]
    ledger_rows = [r for r in ledger_rows if r["decided_on"] <= as_of]
    recorded = frozenset(r["stage"] for r in ledger_rows if r["due_date"] == request.placed_on)
    cand = RequestCandidate(request, recorded, patron.opted_out if patron else frozenset())
    due = {si for _, si in due_requests(policy, [cand], as_of)}
    latest = max(due, default=None)
    lines = [f"request {request.request_id} ({request.title or 'untitled'}), library {request.library}, pickup at "
             f"{request.pickup_library}, placed {request.placed_on}, status {request.status!r}, ready on "
             f"{request.ready_on or '-'}, expires {request.expires_on or '-'}; patron {request.patron_id}"
             f"{', email ' + patron.email if patron and patron.email else ', no email'}"
             f"{', phone ' + patron.phone if patron and patron.phone.strip() else ''}",
             f"evaluated for {as_of} (policy time zone {policy.timezone})"]
    if not policy.request_stages:
        lines.append("the policy has no request_stages: no request notice is ever sent")
    for si, stage in enumerate(policy.request_stages):
        if si in due and si == latest:
            channel, why = route_request(policy, stage, patron, channels)
            verdict = (f"DUE → {channel}" + (f" ({why})" if why else "")) if channel else f"DUE but not sent: {why}"
        elif si in due:
            verdict = f"due, but superseded by {policy.request_stages[latest].id} (only the latest stage is sent)"
        else:
            verdict = "not due"
        lines.append(f"- {stage.id} (when {stage.when}, offset {stage.offset_days} days, window "
                     f"{req.window(policy, stage)} days, {' or '.join(stage.routes)}): {verdict}")
        for check in req.checks(policy, si, cand, as_of):
            lines.append(f"    [{'ok' if check.ok else 'no'}] {check.name}: {check.detail}")
    if ledger_rows:
        lines.append("ledger:")
        for r in ledger_rows:
            lines.append(f"  {r['stage']} for the request placed {r['due_date']}: {r['status']} (decided "
                         f"{r['decided_on']}{', ' + r['reason'] if r.get('reason') else ''})")
    if later:
        lines.append(f"({len(later)} ledger row(s) decided after {as_of} not taken into account)")
    return lines


def requeue_request(policy: Policy, notice: Notice, requests: Mapping[str, Request], as_of: dt.date, *,
                    force: bool = False) -> Requeue:
    """A failed request notice back in the queue (`rappel notices retry`) when a row of it would still be
    sent on ``as_of`` (``force``: even past its window), as engine.delivery.requeue for a loan's."""
    if not notice.entries:
        return Requeue(False, "no ledger row of it is left to send")
    dropped = recheck_requests(policy, notice, requests, as_of, window=not force)
    if len(dropped) < len(notice.entries):
        return Requeue(True)
    reason = settled(dropped).reason
    if any(d.status == Status.EXPIRED for d in dropped.values()) and not force:
        reason += " (--force sends it anyway)"
    return Requeue(False, reason)
