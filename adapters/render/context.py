"""What a notice's messages are made from: its context (``NoticeContext``), the template files of a
stage, and the variables its templates see (plain dicts, lists, strings and dates only)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import lru_cache

from adapters.render.formats import midnight, one_line
from adapters.render.letter_names import LETTER_TABLE
from engine.decide import Notice
from engine.facts import Loan, Patron
from engine.envelope import Earlier
from engine.policy import Policy, Sender, Stage
from engine.presentation import Contact, library_label, sender_for, stage_label

__all__ = ["KINDS", "MAILBOX", "RENDERS", "NoticeContext", "library_values", "mailbox_variables", "notice_variables",
           "sender_values", "template_file"]

KINDS = ("subject", "txt", "html")                      # the three templates of a stage
MAILBOX = ("_mailbox.subject.j2", "_mailbox.txt.j2")     # the email carrying a letter to a library
RENDERS = {"email": "email", "letter": "letter", "sms": "text", "webhook": "json"}   # the shipped channels'


@dataclass(frozen=True)
class NoticeContext:
    """Everything one notice's messages are made from."""

    policy: Policy
    notice: Notice
    patron: Patron
    triggered: list[Loan]   # the loans in notice.loan_ids
    overdue: list[Loan]     # all the patron's open loans due before notice.date (the recap)
    as_of: dt.date          # the date the message carries
    at: dt.datetime | None = None   # when it is made: an email's Date, a letter's creation date
    history: Mapping[str, tuple[Earlier, ...]] = field(default_factory=dict)   # loan → earlier notices received

    @property
    def sender(self) -> Sender:
        """Who the notice is from (engine.presentation.sender_for: the stage's, the library's, the policy's)."""
        return sender_for(self.policy, self.notice.stage, {loan.library for loan in self.triggered})

    @property
    def sent_at(self) -> dt.datetime:
        """The time the message carries, in the policy's time zone: ``at`` (a delivery passes the
        time of its pass), else the start of ``as_of``."""
        return self.at.astimezone(self.policy.tz) if self.at else midnight(self.as_of, self.policy)

    @classmethod
    def for_delivery(cls, policy: Policy, notice: Notice, patron: Patron, triggered: list[Loan],
                     recap: Iterable[Loan], as_of: dt.date, at: dt.datetime | None = None,
                     history: Mapping[str, tuple[Earlier, ...]] | None = None) -> NoticeContext:
        """The context a delivery renders a notice with (service/dispatch.py, and `rappel preview`):
        ``triggered``, its loans still due; ``recap``, the patron's open loans due before ``as_of``
        (Store.overdue_loans), less those with a status the policy excludes; ``history``, the earlier
        notices each loan really received (engine.envelope.received)."""
        overdue = [loan for loan in recap if loan.status not in policy.excluded_statuses]
        return cls(policy=policy, notice=notice, patron=patron, triggered=list(triggered), overdue=overdue,
                   as_of=as_of, at=at, history=dict(history or {}))

    @classmethod
    def build(cls, policy: Policy, notice: Notice, patron: Patron, loans: Iterable[Loan],
              as_of: dt.date | None = None, history: Mapping[str, tuple[Earlier, ...]] | None = None) -> NoticeContext:
        """Pick the triggered and overdue loans out of the patron's loans.

        Loans with a status the policy excludes (lost, claimed returned…) stay out of the recap.
        """
        mine = [loan for loan in loans if loan.patron_id == patron.patron_id]
        by_id = {loan.loan_id: loan for loan in mine}
        missing = [i for i in notice.loan_ids if i not in by_id]
        if missing:
            raise KeyError(f"notice {notice.key}: loans not given: {', '.join(missing)}")
        overdue = [loan for loan in mine if loan.is_open and loan.due_date < notice.date
                   and loan.status not in policy.excluded_statuses]
        return cls(policy, notice, patron, [by_id[i] for i in notice.loan_ids], overdue,
                   as_of or notice.date, history=dict(history or {}))


def template_file(stage: Stage, kind: str) -> str:
    """The file name of one of a stage's templates: ``<template>.<kind>.j2``."""
    return f"{stage.template_name}.{kind}.j2"


def notice_variables(ctx: NoticeContext, language: str) -> dict:
    """The template context of one notice's messages, in ``language`` (every name: TEMPLATE_VARIABLES)."""
    policy, notice = ctx.policy, ctx.notice
    stage = policy.stage(notice.stage)
    library = library_values(policy, notice.library, language) if notice.library else None
    overdue = sorted(ctx.overdue, key=_by_due)
    triggered = [_loan(ctx, loan, language, notice.stage_of(loan.loan_id))
                 for loan in sorted(ctx.triggered, key=_by_due)]
    library_loans: list[dict] = []
    if notice.channel == "letter" and notice.library:
        mine = {loan["loan_id"]: loan for loan in triggered if loan["library_code"] == notice.library}
        seen = {loan.loan_id: loan for loan in overdue if loan.library == notice.library}
        others = [_loan(ctx, loan, language) for i, loan in seen.items() if i not in mine]
        library_loans = sorted([*mine.values(), *others], key=lambda v: (v["due_date"], v["title"], v["loan_id"]))
    stages = [{**_stage(s, policy, language), "loans": [v for v in triggered if v["stage"] == s.id]}
              for s in policy.stages if s.id in notice.stages]
    every = [set(v["received_stages"]) for v in triggered]
    return {
        "patron": {"patron_id": ctx.patron.patron_id, "barcode": ctx.patron.barcode,
                   "first_name": one_line(ctx.patron.first_name),
                   "last_name": one_line(ctx.patron.last_name),
                   "full_name": one_line(ctx.patron.full_name), "email": ctx.patron.email,
                   "postal_lines": [one_line(line) for line in ctx.patron.postal_lines]},
        "stage": _stage(stage, policy, language),
        "stages": stages,
        "combined": len(stages) > 1,
        "notice": {**_notice(notice),
                   "received": [s.id for s in policy.stages if every and all(s.id in e for e in every)],
                   "received_any": [s.id for s in policy.stages if any(s.id in e for e in every)]},
        "library": library,
        "triggered": triggered,
        "recap": _recap(ctx, overdue, language),
        "library_loans": library_loans,
        "letter_table": LETTER_TABLE if notice.channel == "letter" else "",
        "sender": sender_values(ctx.sender),
        "language": language,
        "as_of": ctx.as_of,
    }


def mailbox_variables(policy: Policy, notice: Notice, filename: str) -> dict:
    """The template context of the email that carries a letter to its library's mailbox."""
    language = policy.language
    return {"library": library_values(policy, notice.library or "", language),
            "recipient": one_line(notice.recipient), "patron_id": notice.patron_id,
            "loan_count": len(notice.loan_ids), "stage": _stage(policy.stage(notice.stage), policy, language),
            "stages": [_stage(s, policy, language) for s in policy.stages if s.id in notice.stages],
            "notice": _notice(notice), "filename": filename, "language": language, "as_of": notice.date,
            "sender": sender_values(policy.sender)}


def sender_values(sender: Sender) -> dict:
    """A sender for templates: both headers, a name to sign with and the reply address."""
    from_name, reply_address = _sender_parts(sender.from_, sender.reply_to)
    return {"from": sender.from_, "reply_to": sender.reply_to, "name": from_name or reply_address,
            "address": reply_address}


@lru_cache(maxsize=256)
def _sender_parts(from_: str, reply_to: str) -> tuple[str, str]:
    """The From's name and the Reply-To's address (parsed once a sender: every notice asks)."""
    return parseaddr(from_)[0], parseaddr(reply_to)[1]


def library_values(policy: Policy, code: str, language: str | None = None) -> dict:
    """A library for templates: its code, name (in ``language``: its label), letterhead and contact."""
    lib = policy.libraries.get(code)
    contact = lib.contact if lib else Contact()
    return {"code": code, "name": library_label(policy, code, language or policy.language),
            "address": list(lib.address) if lib else [], "phone": contact.phone, "email": contact.email,
            "hours_url": contact.hours_url, "website": contact.website}


def _stage(stage: Stage, policy: Policy, language: str) -> dict:
    return {"id": stage.id, "label": stage_label(policy, stage.id, language), "offset_days": stage.offset_days,
            "channel": stage.channel, "template": stage.template_name}


def _notice(notice: Notice) -> dict:
    return {"key": notice.key, "channel": notice.channel, "date": notice.date, "library": notice.library}


def _by_due(loan: Loan):
    return (loan.due_date, loan.title, loan.loan_id)


def _loan(ctx: NoticeContext, loan: Loan, language: str, stage: str = "") -> dict:
    """A loan for templates; ``stage``: its stage in this notice ("" for a loan only recapped)."""
    policy, as_of = ctx.policy, ctx.as_of
    earlier = ctx.history.get(loan.loan_id, ()) if stage else ()
    return {"loan_id": loan.loan_id, "title": loan.title, "item_barcode": loan.item_barcode,
            "library_code": loan.library, "library_name": library_label(policy, loan.library, language),
            "due_date": loan.due_date, "days_overdue": max(0, (as_of - loan.due_date).days),
            "days_left": max(0, (loan.due_date - as_of).days),
            "stage": stage, "stage_label": stage_label(policy, stage, language) if stage else "",
            "received": [{"stage": e.stage, "label": stage_label(policy, e.stage, language), "date": e.on,
                          "channel": e.channel} for e in earlier],
            "received_stages": [e.stage for e in earlier]}


def _recap(ctx: NoticeContext, overdue: list[Loan], language: str) -> list[dict]:
    """Overdue loans library by library: the policy's order of libraries, then unknown codes."""
    policy = ctx.policy
    order = {code: i for i, code in enumerate(policy.libraries)}
    codes = sorted({loan.library for loan in overdue}, key=lambda c: (order.get(c, len(order)), c))
    return [{**library_values(policy, code, language),
             "loans": [_loan(ctx, loan, language) for loan in overdue if loan.library == code]}
            for code in codes]
