"""Facts pushed by the library system in real time, through the JSON API: a loan upserted,
returned or renewed; a patron upserted. Each is one record through the import path
(service.imports.import_records): the same checks as a CSV row (dates, libraries, declared
statuses, a known patron, a barcode nobody else has), all or nothing.

Freshness: a push counts as fresh facts. It is recorded in fact_imports (mode ``push``, source
``api:NAME``; one row per client and kind, the latest), so the freshness guard (service/facts.py)
measures the loans' age from the last push: a site whose library system pushes every change as it
happens is not refused as stale between two changes. A site that pushes and also imports a nightly
export should keep that export: a push does not say that the other loans are current.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from adapters.sources.records import ImportReport
from adapters.store.database import Store
from adapters.store.schema import LOAN_FIELDS
from engine.facts import PATRON_FIELDS, Loan, Patron
from engine.policy import Policy
from engine.yamlsource import InputError
from service.imports import import_records

__all__ = ["FieldError", "Pushed", "PushRefused", "UnknownLoan", "push_loan", "push_patron", "renew_loan",
           "return_loan"]

FIELDS = {"loans": LOAN_FIELDS, "patrons": PATRON_FIELDS}


@dataclass(frozen=True)
class FieldError:
    field: str          # "" when the problem is the record's as a whole
    message: str

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message}


class PushRefused(Exception):
    """The record is refused, nothing changed: each field and its problem."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors))


class UnknownLoan(LookupError):
    pass


@dataclass(frozen=True)
class Pushed:
    report: ImportReport
    loan: Loan | None = None
    patron: Patron | None = None

    @property
    def outcome(self) -> str:
        """inserted | changed | unchanged"""
        r = self.report
        return "inserted" if r.inserted else "changed" if r.changed else "unchanged"


def _field_of(kind: str, message: str) -> str:
    """The field a problem of the import path names (its messages start with it)."""
    first = message.split(" ", 1)[0].rstrip(":")
    if first in FIELDS[kind]:
        return first
    return "patron_id" if message.startswith("unknown patron") else ""


def _push(store: Store, policy: Policy, kind: str, row: dict, actor: str, now: dt.datetime) -> ImportReport:
    record = {name: "" for name in FIELDS[kind]}
    record.update({k: ("" if v is None else v.isoformat() if isinstance(v, dt.date) else str(v))
                   for k, v in row.items()})
    try:
        report = import_records(store, policy, kind, [(1, record)], source=actor, mode="push", now=now)
    except InputError as exc:
        raise PushRefused([FieldError(_field_of(kind, p.message), p.message) for p in exc.problems]) from None
    if report.erased:
        raise PushRefused([FieldError("patron_id", f"patron {report.erased[0]!r} was erased here (rappel patron "
                                                   f"forget): a push does not bring them back")])
    return report


def push_loan(store: Store, policy: Policy, loan_id: str, values: dict, *, actor: str, now: dt.datetime) -> Pushed:
    """Insert or replace the loan (every field given; a field left out is empty, as in a CSV row)."""
    report = _push(store, policy, "loans", {**values, "loan_id": loan_id}, actor, now)
    return Pushed(report, loan=store.loan(loan_id))


def _stored_loan(store: Store, loan_id: str) -> dict:
    loan = store.loan(loan_id)
    if loan is None:
        raise UnknownLoan(loan_id)
    return {"loan_id": loan.loan_id, "patron_id": loan.patron_id, "item_barcode": loan.item_barcode,
            "title": loan.title, "library": loan.library, "due_date": loan.due_date,
            "returned_on": loan.returned_on, "status": loan.status}


def return_loan(store: Store, policy: Policy, loan_id: str, returned_on: str, *, actor: str,
                now: dt.datetime) -> Pushed:
    """The loan returned on that day: its notices still pending are cancelled when delivery re-checks them."""
    row = {**_stored_loan(store, loan_id), "returned_on": returned_on}
    if not str(returned_on).strip():
        raise PushRefused([FieldError("returned_on", "returned_on is empty")])
    return Pushed(_push(store, policy, "loans", row, actor, now), loan=store.loan(loan_id))


def renew_loan(store: Store, policy: Policy, loan_id: str, due_date: str, *, actor: str, now: dt.datetime) -> Pushed:
    """The loan renewed: its new due date (the stages count from it; a renewed loan is a new due date)."""
    row = {**_stored_loan(store, loan_id), "due_date": due_date}
    return Pushed(_push(store, policy, "loans", row, actor, now), loan=store.loan(loan_id))


def push_patron(store: Store, policy: Policy, patron_id: str, values: dict, *, actor: str,
                now: dt.datetime) -> Pushed:
    """Insert or replace the patron (every field given; a field left out is empty, as in a CSV row)."""
    report = _push(store, policy, "patrons", {**values, "patron_id": patron_id}, actor, now)
    return Pushed(report, patron=store.patron(patron_id))
