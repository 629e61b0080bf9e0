"""The JSON API's bodies (pydantic): what each route takes and gives, so that /openapi.json
describes every one. Values are plain: dates as YYYY-MM-DD, times as ISO 8601 with their offset
(the policy's time zone)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from engine.facts import PATRON_FIELDS

TEXT = Field(default="", max_length=1000)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -------------------------------------------------------------------------------------

class ErrorItem(BaseModel):
    field: str = Field(description="The field of the body, query or path at fault; \"\" for the request as a whole")
    message: str


class Errors(BaseModel):
    errors: list[ErrorItem]


# --- patrons ------------------------------------------------------------------------------------

class PatronSummary(BaseModel):
    patron_id: str
    barcode: str
    name: str
    account_type: str
    record_type: str
    user_group: str


class PatronSearch(BaseModel):
    patrons: list[PatronSummary]
    more: bool = Field(description="More patrons match than the limit shows")


class FieldInfo(BaseModel):
    field: str
    value: str
    ownership: str = Field(description="identity | owned (by the source of external accounts) | protected | local")
    editable_by: list[str] = Field(description="The roles that may edit it on this account")
    locally_edited: bool
    editable: bool = Field(description="Whether this client's role may edit it")
    reason: str
    where: str = Field(description="When it may not: where to make the change instead")


class PatronDetail(PatronSummary):
    source: Optional[str] = Field(description="The system external accounts come from (null: an internal account)")
    fields: list[FieldInfo]


class LoanOut(BaseModel):
    loan_id: str
    patron_id: str
    item_barcode: str
    title: str
    library: str
    due_date: dt.date
    returned_on: Optional[dt.date]
    status: str
    days_overdue: int


class Loans(BaseModel):
    loans: list[LoanOut]


class RequestOut(BaseModel):
    request_id: str
    title: str
    library: str
    pickup_library: str
    placed_on: dt.date
    status: str
    expires_on: Optional[dt.date]
    active: bool = Field(description="Listed in the requests report: an active status, not expired")


class Requests(BaseModel):
    requests: list[RequestOut]


# --- notices ------------------------------------------------------------------------------------

class LedgerRow(BaseModel):
    loan_id: str
    due_date: str
    stage: str
    status: str
    decided_on: str
    reason: str


class AttemptOut(BaseModel):
    at: str
    kind: str = Field(description="send (a run) | resend (a member of staff or a client)")
    channel: str
    destination: str
    outcome: str = Field(description="sent | retrying | failed")
    reply: str
    reference: str
    actor: str


class ActionOut(BaseModel):
    at: str
    actor: str
    action: str
    why: str
    detail: str


class MessageInfo(BaseModel):
    media_type: str
    filename: str
    size: int
    stored_at: str


class NoticeOut(BaseModel):
    key: str
    date: str
    stage: str
    channel: str
    patron_id: str
    library: Optional[str]
    recipient: str
    destination: str
    status: str
    attempts_made: int
    reference: Optional[str]
    reply: Optional[str]
    last_error: Optional[str]
    next_attempt_at: Optional[str]
    replaced_by: list[str]
    replaces: Optional[str]
    loan_ids: list[str]
    recorded_at: str
    updated_at: str
    ledger: list[LedgerRow]
    attempts: list[AttemptOut]
    staff_actions: list[ActionOut]
    message: Optional[MessageInfo] = Field(description="What is kept of the message (GET …/message gives it)")


class Notices(BaseModel):
    notices: list[NoticeOut]
    more: bool = Field(description="More notices match than the limit shows")


class Attention(BaseModel):
    failed: list[NoticeOut] = Field(description="Failed for good (retry puts them back in the queue)")
    retrying: list[NoticeOut] = Field(description="Pending after a transient failure, tried again later")
    held: list[NoticeOut] = Field(description="Pending, never attempted, while the last pass was held by the "
                                              "flood guard (POST /api/day/confirm sends them)")
    held_reason: Optional[str]


# --- the day ------------------------------------------------------------------------------------

class RunOut(BaseModel):
    kind: str
    date: Optional[str]
    outcome: str
    started: Optional[str]
    finished: Optional[str]
    holder: str
    decided: int
    sent: int
    retrying: int
    failed: int
    dropped: int
    held: int
    errors: list[str]


class Count(BaseModel):
    stage: str
    channel: str
    status: str
    count: int


class DayOut(BaseModel):
    date: dt.date
    now: str
    last_run: Optional[RunOut]
    last_completed: Optional[RunOut]
    next_run: Optional[str]
    days_behind: Optional[int]
    pending: int
    alerts: list[str]
    warnings: list[str]
    facts: dict[str, dict[str, Any]] = Field(description="kind → the last import, pull or push: finished_at, "
                                                         "source, mode, rows, age_hours")
    notices: list[Count] = Field(description="The notices of that date, by stage, channel and status")


class ConfirmIn(_In):
    on: Optional[dt.date] = Field(default=None, description="The day to run (default: today, policy time zone)")


class OutcomeOut(BaseModel):
    key: str
    status: str
    detail: str


class DayRun(BaseModel):
    date: dt.date
    decided: int
    held: Optional[str] = Field(description="Why nothing was sent, when the flood guard held it even so")
    outcomes: list[OutcomeOut]


# --- actions ------------------------------------------------------------------------------------

class Why(_In):
    why: str = Field(min_length=1, max_length=1000, description="Why, for the audit trail")


class ResendIn(Why):
    to: Optional[str] = Field(default=None, max_length=1000, description="Another address: an email address, or "
                                                                         "printer:NAME / mailbox:ADDRESS for a letter")


class RetryIn(Why):
    force: bool = Field(default=False, description="Even past the stage's window")


class Resent(BaseModel):
    notice: NoticeOut
    outcome: str
    destination: str
    reply: str
    reference: str


class Skipped(BaseModel):
    key: str
    reason: str


class Retried(BaseModel):
    requeued: list[str]
    skipped: list[Skipped]


class ReportSent(BaseModel):
    sent: bool
    requests: int = Field(description="How many active requests the report lists (0: nothing was sent)")
    to: Optional[str]
    reply: str


class Edited(BaseModel):
    patron: PatronDetail
    changed: list[str]
    unchanged: list[str]


# every patron field but the id, optional: PATCH changes those given
PatronPatch = create_model("PatronPatch", __config__=ConfigDict(extra="forbid"),
                           **{name: (Optional[str], Field(default=None, max_length=255))
                              for name in PATRON_FIELDS if name != "patron_id"})


# --- facts pushed by the library system -----------------------------------------------------------

DATE_TEXT = "YYYY-MM-DD, or an ISO 8601 timestamp (converted to the policy's time zone)"


class LoanPush(_In):
    patron_id: str = Field(max_length=64)
    library: str = Field(max_length=32, description="A library of the policy")
    due_date: str = Field(max_length=40, description=DATE_TEXT)
    item_barcode: str = Field(default="", max_length=64)
    title: str = TEXT
    returned_on: str = Field(default="", max_length=40, description=DATE_TEXT + "; \"\": on loan")
    status: str = Field(default="", max_length=64, description="The library system's status (\"\": none)")


class ReturnIn(_In):
    returned_on: str = Field(max_length=40, description=DATE_TEXT)


class RenewIn(_In):
    due_date: str = Field(max_length=40, description="The new due date: " + DATE_TEXT)


class PatronPush(_In):
    barcode: str = Field(max_length=64)
    account_type: str = Field(description="internal | external")
    record_type: str = Field(description="staff | public | contact")
    first_name: str = Field(default="", max_length=255)
    last_name: str = Field(default="", max_length=255)
    email: str = Field(default="", max_length=255)
    preferred_language: str = Field(default="", max_length=255)
    user_group: str = Field(default="", max_length=255)
    address_line1: str = Field(default="", max_length=255)
    address_line2: str = Field(default="", max_length=255)
    postal_code: str = Field(default="", max_length=255)
    city: str = Field(default="", max_length=255)
    country: str = Field(default="", max_length=255)
    phone: str = Field(default="", max_length=255)


class LoanPushed(BaseModel):
    outcome: str = Field(description="inserted | changed | unchanged")
    loan: LoanOut


class PatronPushed(BaseModel):
    outcome: str = Field(description="inserted | changed | unchanged")
    patron: PatronSummary
