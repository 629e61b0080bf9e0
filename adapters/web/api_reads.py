"""The JSON API's reads: patrons (by barcode or name; one with its fields, loans, requests,
notices), the notices (the filters of `rappel notices`; one with its attempts; its message), the
day (service/status.py, service/lookup.py) and the notices that need someone."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Optional

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from starlette.convertors import Convertor, register_url_convertor

from adapters.web.api_common import ERRORS, ApiError, ApiRoute, Call, caller
from adapters.web.api_models import (Attention, DayOut, FieldInfo, LoanOut, Loans, NoticeOut, Notices, PatronDetail,
                                     PatronSearch, PatronSummary, RequestOut, Requests)
from engine.facts import Loan, Patron
from service import lookup, notices, patrons, status

router = APIRouter(route_class=ApiRoute, responses=ERRORS)


class NoticeKeyConvertor(Convertor):
    """A notice's key in a path: it holds slashes (2026-11-23/courtesy/email/P1/-/…), and anything
    else a client may send (a line break too: Starlette's ``path`` stops at one), so that every such
    path reaches the route and gets the API's own answer."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("notice_key", NoticeKeyConvertor())

PatronArg = Annotated[str, Path(max_length=64, description="The patron's barcode or patron_id")]
KeyArg = Annotated[str, Path(max_length=255, description="The notice's key (as the listings give it)")]


def summary(p: Patron) -> PatronSummary:
    return PatronSummary(patron_id=p.patron_id, barcode=p.barcode, name=p.full_name, account_type=p.account_type,
                         record_type=p.record_type, user_group=p.user_group)


def loan_out(loan: Loan, as_of: dt.date) -> LoanOut:
    overdue = 0 if loan.returned_on is not None else max(0, (as_of - loan.due_date).days)
    return LoanOut(loan_id=loan.loan_id, patron_id=loan.patron_id, item_barcode=loan.item_barcode, title=loan.title,
                   library=loan.library, due_date=loan.due_date, returned_on=loan.returned_on, status=loan.status,
                   days_overdue=overdue)


def detail(view: patrons.PatronView) -> PatronDetail:
    p = view.patron
    fields = [FieldInfo(field=f.name, value=f.value, ownership=f.ownership, editable_by=list(f.editable_by),
                        locally_edited=f.locally_edited, editable=bool(f.decision and f.decision.allowed),
                        reason=f.decision.reason if f.decision else "", where=f.decision.where if f.decision else "")
              for f in view.fields]
    return PatronDetail(**summary(p).model_dump(), source=view.source if p.account_type == "external" else None,
                        fields=fields)


def notice_out(view: notices.NoticeView, tz) -> NoticeOut:
    return NoticeOut(**view.as_dict(tz))


def _view(call: Call, patron: str) -> patrons.PatronView:
    return patrons.show(call.store, call.accounts, patron, call.today, role=call.client.role)


@router.get("/patrons", response_model=PatronSearch, summary="Patrons by barcode, patron_id or name")
def search_patrons(q: Annotated[str, Query(min_length=1, max_length=200, description="A barcode, a patron_id, "
                                           "or words of the name")],
                   limit: Annotated[int, Query(ge=1, le=200)] = 20,
                   call: Call = Depends(caller("patrons.view"))):
    found, more = lookup.search(call.store, q, limit)
    return PatronSearch(patrons=[summary(p) for p in found], more=more)


@router.get("/patrons/{patron}", response_model=PatronDetail, summary="A patron: identity, account, each field's owner")
def get_patron(patron: PatronArg, call: Call = Depends(caller("patrons.view"))):
    return detail(_view(call, patron))


@router.get("/patrons/{patron}/loans", response_model=Loans, summary="A patron's open loans, with days overdue")
def patron_loans(patron: PatronArg, call: Call = Depends(caller("patrons.view"))):
    view = _view(call, patron)
    return Loans(loans=[loan_out(x, call.today) for x in view.loans])


@router.get("/patrons/{patron}/requests", response_model=Requests, summary="A patron's requests, active or not")
def patron_requests(patron: PatronArg, call: Call = Depends(caller("patrons.view"))):
    view = _view(call, patron)
    return Requests(requests=[RequestOut(**{k: r[k] for k in RequestOut.model_fields}) for r in view.requests])


@router.get("/patrons/{patron}/notices", response_model=Notices, summary="A patron's notices, newest first")
def patron_notices(patron: PatronArg, call: Call = Depends(caller("notices.view"))):
    found = notices.listing(call.store, patron=patron, limit=None)
    return Notices(notices=[notice_out(v, call.policy.tz) for v in found.notices], more=False)


@router.get("/notices", response_model=Notices, summary="The notices, newest first (rappel notices' filters)")
def list_notices(patron: Annotated[Optional[str], Query(max_length=64, description="A patron's barcode or "
                                                        "patron_id")] = None,
                 barcode: Annotated[Optional[str], Query(max_length=64, description="A document's barcode")] = None,
                 loan: Annotated[Optional[str], Query(max_length=64)] = None,
                 stage: Annotated[Optional[str], Query(max_length=64)] = None,
                 status: Annotated[Optional[str], Query(max_length=16, description="pending, sent, failed, "
                                                        "superseded, expired or cancelled")] = None,
                 since: Optional[dt.date] = None, until: Optional[dt.date] = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 call: Call = Depends(caller("notices.view"))):
    found = notices.listing(call.store, patron=patron, item=barcode, loan=loan, stage=stage, status=status,
                            since=since, until=until, limit=limit)
    return Notices(notices=[notice_out(v, call.policy.tz) for v in found.notices], more=found.more)


@router.get("/notices/{key:notice_key}/message", summary="The message kept, as it was handed over",
            responses={200: {"content": {"message/rfc822": {}, "application/pdf": {}},
                             "description": "The email (message/rfc822) or the letter (application/pdf)"}})
def notice_message(key: KeyArg, call: Call = Depends(caller("notices.view"))):
    shown = notices.show(call.store, key)
    if shown.data is None:
        raise ApiError(404, "no message is kept for this notice (nothing was handed to a channel)", "key")
    kept = shown.notice.message
    name = (kept["filename"] or "message").replace('"', "")
    return Response(shown.data, media_type=kept["media_type"],
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-Type-Options": "nosniff"})


@router.get("/notices/{key:notice_key}", response_model=NoticeOut, summary="One notice: ledger rows, attempts, actions")
def get_notice(key: KeyArg, call: Call = Depends(caller("notices.view"))):
    return notice_out(notices.show(call.store, key).notice, call.policy.tz)


@router.get("/day", response_model=DayOut, summary="The day: last runs, the next, the notices of a date")
def get_day(on: Optional[dt.date] = None, call: Call = Depends(caller("day.view"))):
    c = call.context
    report = status.status_report(call.store, c.rules_dir, call.now, state_dir=c.state_dir, env=c.env)
    day = on or call.today
    counts = [{"stage": s, "channel": ch, "status": st, "count": n}
              for s, ch, st, n in lookup.day_counts(call.store, day)]
    return DayOut(date=day, notices=counts, **{k: report[k] for k in DayOut.model_fields if k in report})


@router.get("/day/attention", response_model=Attention, summary="Failed, retrying and held notices")
def get_attention(call: Call = Depends(caller("day.view"))):
    found = lookup.attention(call.store)
    tz = call.policy.tz
    return Attention(failed=[notice_out(v, tz) for v in found.failed],
                     retrying=[notice_out(v, tz) for v in found.retrying],
                     held=[notice_out(v, tz) for v in found.held], held_reason=found.held_reason)
