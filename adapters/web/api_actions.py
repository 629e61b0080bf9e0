"""The JSON API's actions: the same service functions as the command line, the client named
"api:NAME" in the audit trail. Resend, cancel, retry a notice; run the day confirmed (what the
flood guard held, as `rappel run --confirm`); send a patron the requests report; edit a patron."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends

from adapters.web.api_common import ERRORS, ApiError, ApiRoute, Call, caller
from adapters.web.api_models import (ConfirmIn, DayRun, Edited, NoticeOut, OutcomeOut, PatronPatch, ReportSent,
                                     Resent, ResendIn, Retried, RetryIn, Skipped, Why)
from adapters.web.api_reads import KeyArg, PatronArg, detail, notice_out
from service import day, facts, notices, patrons
from service.sources import load_sources

router = APIRouter(route_class=ApiRoute, responses=ERRORS)
CONFIRM_DAYS = 366       # how far back a day may be confirmed through the API


@router.post("/notices/{key:notice_key}/resend", response_model=Resent, summary="Send a sent or failed notice again")
def resend(key: KeyArg, body: ResendIn, call: Call = Depends(caller("notices.act"))):
    with call.installation(guard=True) as inst:
        result = notices.resend(inst.store, inst.policy, inst.channel, key, actor=call.actor, why=body.why,
                                at=call.now, to=body.to)
    a = result.attempt
    return Resent(notice=notice_out(result.notice, call.policy.tz), outcome=a.outcome, destination=a.destination,
                  reply=a.reply, reference=a.reference)


@router.post("/notices/{key:notice_key}/cancel", response_model=NoticeOut,
             summary="Cancel a pending or held notice")
def cancel(key: KeyArg, body: Why, call: Call = Depends(caller("notices.act"))):
    view = notices.cancel(call.store, key, actor=call.actor, why=body.why, at=call.now)
    return notice_out(view, call.policy.tz)


@router.post("/notices/{key:notice_key}/retry", response_model=Retried, summary="A failed notice back in the queue")
def retry(key: KeyArg, body: RetryIn, call: Call = Depends(caller("notices.act"))):
    report = notices.retry(call.store, call.policy, keys=[key], force=body.force, actor=call.actor, why=body.why,
                           at=call.now, as_of=call.today)
    if report.skipped and not report.requeued:
        raise ApiError(409, f"not retried: {report.skipped[0][1]}", "key")
    return Retried(requeued=report.requeued, skipped=[Skipped(key=k, reason=r) for k, r in report.skipped])


@router.post("/day/confirm", response_model=DayRun,
             summary="Run the day confirmed: send what the flood guard held (rappel run --confirm)")
def confirm(body: Optional[ConfirmIn] = None, call: Call = Depends(caller("day.act"))):
    as_of = (body.on if body else None) or call.today
    if as_of > call.today:
        raise ApiError(422, f"{as_of} is still to come (today is {call.today})", "on")
    if (call.today - as_of).days > CONFIRM_DAYS:
        raise ApiError(422, f"{as_of} is more than {CONFIRM_DAYS} days ago: a run confirms a recent day "
                            f"(rappel run --on DATE --confirm for an older one)", "on")
    sources = load_sources(call.context.rules_dir, call.policy)
    with call.installation(guard=True, lease=True) as inst:
        facts.require_fresh(inst.store, call.policy, sources, call.now, as_of)
        result = day.run_recorded(inst.store, call.policy, inst.templates, inst.channel, as_of,
                                  clock=call.context.clock, holder=inst.lease.holder, confirm=True)
    return DayRun(date=as_of, decided=len(result.plan.notices), held=result.held,
                  outcomes=[OutcomeOut(key=o.key, status=str(o.status), detail=o.detail or "")
                            for o in result.outcomes])


@router.post("/patrons/{patron}/requests-report", response_model=ReportSent,
             summary="Email the patron the list of their active requests")
def requests_report(patron: PatronArg, call: Call = Depends(caller("requests.report"))):
    with call.installation(guard=True) as inst:
        result = patrons.requests_report(inst.store, call.policy, call.accounts, call.context.rules_dir, inst.channel,
                                         patron, call.today, call.now.astimezone(call.policy.tz))
    if result.notice is None:
        return ReportSent(sent=False, requests=0, to=None, reply="no active request: nothing sent")
    d = result.delivery
    if not d.ok:
        raise ApiError(409, f"requests report not sent to {result.patron.email}: {d.detail}")
    return ReportSent(sent=True, requests=len(result.requests), to=result.patron.email, reply=d.reply or d.reference)


@router.patch("/patrons/{patron}", response_model=Edited,
              summary="Edit a patron: every field given, or none (each refusal named with its reason)")
def edit_patron(patron: PatronArg, body: PatronPatch, call: Call = Depends(caller("patrons.edit"))):
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise ApiError(422, "nothing to change: give the fields to change")
    result = patrons.edit(call.store, call.accounts, patron, call.client.role, call.actor, changes, call.now,
                          policy=call.policy)
    view = patrons.show(call.store, call.accounts, result.patron.patron_id, call.today, role=call.client.role)
    return Edited(patron=detail(view), changed=[f for f, _, _ in result.changed], unchanged=result.unchanged)


