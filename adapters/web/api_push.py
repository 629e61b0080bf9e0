"""Facts pushed by the library system in real time (a role with facts.push): a loan upserted,
returned, renewed; a patron upserted. Each goes through the import path (service/pushes.py): the
same checks as a CSV row, a 422 naming each field and its problem when refused, nothing changed."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from adapters.web.api_common import ERRORS, ApiRoute, Call, caller
from adapters.web.api_models import LoanPush, LoanPushed, PatronPush, PatronPushed, RenewIn, ReturnIn
from adapters.web.api_reads import loan_out, summary
from service import pushes

router = APIRouter(route_class=ApiRoute, responses=ERRORS)

LoanArg = Annotated[str, Path(min_length=1, max_length=64, description="The loan's id in the library system")]
PatronIdArg = Annotated[str, Path(min_length=1, max_length=64, description="The patron's patron_id")]


def _loan(call: Call, pushed: pushes.Pushed) -> LoanPushed:
    return LoanPushed(outcome=pushed.outcome, loan=loan_out(pushed.loan, call.today))


@router.put("/loans/{loan_id}", response_model=LoanPushed, summary="Insert or replace a loan (a CSV row's checks)")
def put_loan(loan_id: LoanArg, body: LoanPush, call: Call = Depends(caller("facts.push"))):
    return _loan(call, pushes.push_loan(call.store, call.policy, loan_id, body.model_dump(), actor=call.actor,
                                        now=call.now))


@router.post("/loans/{loan_id}/return", response_model=LoanPushed, summary="A loan returned")
def return_loan(loan_id: LoanArg, body: ReturnIn, call: Call = Depends(caller("facts.push"))):
    return _loan(call, pushes.return_loan(call.store, call.policy, loan_id, body.returned_on, actor=call.actor,
                                          now=call.now))


@router.post("/loans/{loan_id}/renew", response_model=LoanPushed, summary="A loan renewed: its new due date")
def renew_loan(loan_id: LoanArg, body: RenewIn, call: Call = Depends(caller("facts.push"))):
    return _loan(call, pushes.renew_loan(call.store, call.policy, loan_id, body.due_date, actor=call.actor,
                                         now=call.now))


@router.put("/patrons/{patron}", response_model=PatronPushed, summary="Insert or replace a patron (a CSV row's checks)")
def put_patron(patron: PatronIdArg, body: PatronPush, call: Call = Depends(caller("facts.push"))):
    pushed = pushes.push_patron(call.store, call.policy, patron, body.model_dump(), actor=call.actor, now=call.now)
    return PatronPushed(outcome=pushed.outcome, patron=summary(pushed.patron))
