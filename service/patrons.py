"""Patron services: look a patron up by barcode or patron_id, see their notice history
(service/notices.py), edit what the account policy allows (audited), and email a report of their
active requests (its rendering: adapters/render/report.py).
Synchronising external accounts from their source system is service/sync.py.

Every decision "may this role edit this field?" comes from engine/accounts.py (durable-rules,
cross-checked); the reads and writes are adapters/store/patrons.py's. An edit is all or nothing:
one transaction, and nothing is written when anything is refused.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from adapters.channels.base import Channel, Delivery
from adapters.channels.registry import REGISTRY
from adapters.render.email import message_id
from adapters.render.formats import pick_language
from adapters.render.report import REPORT_TEMPLATE, render_report
from adapters.store import patrons as records
from adapters.store.database import Store
from adapters.store.patrons import UnknownPatron
from engine.accounts import (EDITABLE_FIELDS, AccountsPolicy, EditDecision, EditRequest,
                             decide_edits, value_problems)
from engine.decide import Notice
from engine.facts import PATRON_FIELDS, Loan, Patron, split_names
from engine.phones import PhoneProblem, normalise
from engine.policy import Policy
from engine.preferences import preference_problems
from engine.yamlsource import InputError, Problem
from service import notices as notice_views
from service.rules import ACCOUNTS_FILE, load_accounts

__all__ = ["ACCOUNTS_FILE", "EditRefused", "EditResult", "PatronView", "UnknownPatron", "audit_trail", "edit",
           "load_accounts", "requests_report", "show"]


# -- show --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldView:
    name: str
    value: str
    ownership: str                 # identity | owned | protected | local
    editable_by: tuple[str, ...]   # roles that may edit it on this account
    locally_edited: bool           # a protected field edited here: synchronisations keep it
    decision: EditDecision | None  # for the role asked about (show --as ROLE)

    def as_dict(self) -> dict:
        out = {"field": self.name, "value": self.value, "ownership": self.ownership,
               "editable_by": list(self.editable_by), "locally_edited": self.locally_edited}
        if self.decision is not None:
            out["decision"] = self.decision.as_dict()
        return out


@dataclass(frozen=True)
class PatronView:
    patron: Patron
    as_of: dt.date
    source: str                    # the source system of external accounts
    fields: list[FieldView]
    loans: list[Loan]
    requests: list[dict]
    notices: list = field(default_factory=list)     # service.notices.NoticeView, newest first

    def days_overdue(self, loan: Loan) -> int:
        return max(0, (self.as_of - loan.due_date).days)

    def as_dict(self, tz: dt.tzinfo = dt.timezone.utc) -> dict:
        p = self.patron
        return {
            "patron_id": p.patron_id, "barcode": p.barcode, "name": p.full_name,
            "account_type": p.account_type, "record_type": p.record_type, "user_group": p.user_group,
            "source": self.source if p.account_type == "external" else None,
            "as_of": self.as_of.isoformat(),
            "fields": [f.as_dict() for f in self.fields],
            "loans": [{"loan_id": x.loan_id, "title": x.title, "item_barcode": x.item_barcode, "library": x.library,
                       "due_date": x.due_date.isoformat(), "days_overdue": self.days_overdue(x), "status": x.status}
                      for x in self.loans],
            "requests": [{**r, "placed_on": r["placed_on"].isoformat(),
                          "expires_on": r["expires_on"].isoformat() if r["expires_on"] else None}
                         for r in self.requests],
            "notices": [n.as_dict(tz) for n in self.notices],
        }


def show(store: Store, accounts: AccountsPolicy, barcode: str, as_of: dt.date, role: str | None = None, *,
         decide=decide_edits) -> PatronView:
    """A patron's record (by barcode or patron_id), each field with who may edit it, open loans,
    requests, and every notice rappel decided for them, newest first. ``decide``: the engine's
    decide_edits, or a caller's memo of it (the staff interface keeps its answers per policy: they
    depend only on the policy, the account and record type, the role and the field)."""
    with records.reading(store) as db:
        patron = db.find(barcode)
        edited = db.locally_edited(patron.patron_id)
        open_loans = db.open_loans(patron.patron_id)
        reqs = _requests(db, patron.patron_id, accounts, as_of)
    roles = list(accounts.roles)
    asked = [EditRequest(patron.account_type, patron.record_type, r, f) for f in PATRON_FIELDS for r in roles]
    if role is not None:
        asked += [EditRequest(patron.account_type, patron.record_type, role, f) for f in PATRON_FIELDS]
    decisions = decide(accounts, asked)
    by_field: dict[str, list[str]] = {f: [] for f in PATRON_FIELDS}
    for d in decisions[:len(roles) * len(PATRON_FIELDS)]:
        if d.allowed:
            by_field[d.request.field].append(d.request.role)
    mine = dict(zip(PATRON_FIELDS, decisions[len(roles) * len(PATRON_FIELDS):])) if role is not None else {}
    fields = [FieldView(f, getattr(patron, f), accounts.ownership(patron.account_type, f), tuple(by_field[f]),
                        f in edited, mine.get(f)) for f in PATRON_FIELDS]
    return PatronView(patron, as_of, accounts.external.source, fields, open_loans, reqs,
                      notice_views.history(store, patron.patron_id))


def _requests(db: records.PatronReader, patron_id: str, accounts: AccountsPolicy, as_of: dt.date) -> list[dict]:
    """The patron's requests, each marked active (a status the policy counts as active, not expired)."""
    active = set(accounts.requests_report.active_statuses)
    out = []
    for r in db.requests(patron_id):
        expired = r["expires_on"] is not None and r["expires_on"] < as_of
        out.append({**r, "active": r["status"] in active and not expired})
    return out


# -- edit --------------------------------------------------------------------------------------

@dataclass
class EditResult:
    patron: Patron                         # after the edit
    decisions: list[EditDecision]
    changed: list[tuple[str, str, str]]    # (field, old, new)
    unchanged: list[str]                   # fields already holding the value asked for


class EditRefused(Exception):
    """Nothing was changed: every refusal and bad value, each explained."""

    def __init__(self, patron: Patron, decisions: list[EditDecision], problems: dict[str, str]):
        self.patron, self.decisions, self.problems = patron, decisions, problems
        lines = [f"{d.request.field}: refused: {d.reason} ({d.where})" for d in decisions if not d.allowed]
        lines += [f"{name}: {message}" for name, message in problems.items()]
        super().__init__("; ".join(lines))


def edit(store: Store, accounts: AccountsPolicy, barcode: str, role: str, actor: str, changes: dict[str, str],
         at: dt.datetime, policy: Policy | None = None) -> EditResult:
    """Apply every change, or none: each field must be allowed for the role and each value valid.

    Every change is audited (who, role, when, field, old and new value). A protected field of an
    external account edited here is remembered, so later synchronisations keep the local value.
    ``policy``: the preference fields (channels, opt_out) are checked against its stages and the
    registered channels, written one way ("sms email").
    """
    unknown = [f for f in changes if f not in PATRON_FIELDS]
    if unknown:
        raise InputError([Problem("--set", None, f, f"not a patron field ({', '.join(EDITABLE_FIELDS)})")
                          for f in unknown])
    if not changes:
        raise InputError([Problem("--set", None, "", "nothing to change: give --set FIELD=VALUE")])
    changes = {f: v.strip() for f, v in changes.items()}
    with records.writing(store) as db:
        patron = db.find(barcode, lock=True)
        decisions = decide_edits(accounts, [EditRequest(patron.account_type, patron.record_type, role, f)
                                            for f in changes])
        problems = value_problems(accounts, changes, patron)
        if changes.get("phone") and "phone" not in problems:
            try:        # stored as E.164, read in the patron's country (as edited) or sms.country
                changes["phone"] = normalise(changes["phone"], changes.get("country", patron.country),
                                             policy.sms.country if policy is not None else None)
            except PhoneProblem as exc:
                problems["phone"] = str(exc)
        if policy is not None:
            problems.update(preference_problems(policy, changes, REGISTRY.specs()))
            changes.update({f: " ".join(split_names(changes[f])) for f in ("channels", "opt_out")
                            if f in changes and f not in problems})
        new_barcode = changes.get("barcode")
        if new_barcode and new_barcode != patron.barcode and "barcode" not in problems:
            owner = db.barcode_owner(new_barcode)
            if owner is not None:
                problems["barcode"] = f"{new_barcode!r} already belongs to patron {owner!r}"
        if problems or not all(d.allowed for d in decisions):
            raise EditRefused(patron, decisions, problems)
        changed = [(f, getattr(patron, f), v) for f, v in changes.items() if getattr(patron, f) != v]
        if changed:
            db.change(patron.patron_id, {f: new for f, _, new in changed})
            db.audit([(patron.patron_id, f, old, new) for f, old, new in changed],
                     at=at, actor=actor, role=role, source="edit")
            protected = [f for f, _, _ in changed if accounts.ownership(patron.account_type, f) == "protected"]
            db.mark_edited(patron.patron_id, protected, at=at, actor=actor)
        after = db.find(patron.barcode if "barcode" not in changes else changes["barcode"])
    return EditResult(after, decisions, changed, [f for f, v in changes.items() if getattr(patron, f) == v])


def audit_trail(store: Store, patron_id: str) -> list[dict]:
    """Every audited change of a patron, oldest first."""
    return records.audit_trail(store, patron_id)


# -- the requests report -------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportResult:
    patron: Patron
    language: str
    requests: list[dict]
    notice: Notice | None          # None: nothing to send
    delivery: Delivery | None


def requests_report(store: Store, policy: Policy, accounts: AccountsPolicy, rules_dir: Path, channel: Channel,
                    barcode: str, as_of: dt.date, at: dt.datetime) -> ReportResult:
    """Email the patron the list of their active requests, in their language, through ``channel``."""
    with records.reading(store) as db:
        patron = db.find(barcode)
        active = [r for r in _requests(db, patron.patron_id, accounts, as_of) if r["active"]]
    language = pick_language(patron.preferred_language, policy)
    if not active:
        return ReportResult(patron, language, [], None, None)
    if not patron.email:
        raise InputError([Problem(f"patron {barcode}", None, "email",
                                  "the patron has no email address: nothing sent (edit it, or print the list)")])
    message = render_report(policy, rules_dir, patron, active, language, as_of, at)
    key = f"{as_of.isoformat()}/{REPORT_TEMPLATE}/email/{patron.patron_id}/{at.strftime('%H%M%S')}"
    message["Message-ID"] = message_id(key, policy.sender.from_)
    notice = Notice(key, as_of, REPORT_TEMPLATE, "email", patron.patron_id, None, (), patron.email, patron.email)
    return ReportResult(patron, language, active, notice, channel.send_email(notice, message))
