"""Retention and erasure, decided: when each kind of record is past its time, and what erasing a
patron leaves of them. Pure: today's date, the patron and the token are passed in.

- ``Retention``: the policy's ``retention:`` section, and ``check_retention``, what it must hold.
- ``cutoffs``: for each kind of record the policy limits (``retention:``), the last local day whose
  records go and the instant before which timestamps go. A record of day D kept N days is deleted
  by the purge of day D + N: stored on 2025-10-28 and kept 400 days, it is still there on
  2026-12-01 and gone on 2026-12-02.
- ``erasure``: what `rappel patron forget` does to a patron's values: the personal fields blanked
  (the barcode, unique, replaced by a token that identifies nobody), and the patron's values to
  remove from free text wherever they were copied (servers' replies, reasons, staff notes).
- ``forget_refusal``: why a patron may not be erased yet (an open loan: the library still needs to
  reach them).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from engine.facts import Loan, Patron

__all__ = ["CATEGORIES", "ERASED", "Retention", "check_retention", "IDENTIFYING_FIELDS", "KEPT_FIELDS", "PERSONAL_FIELDS", "Cutoff", "Erasure", "cutoffs", "erasure",
           "forget_refusal"]

UTC = dt.timezone.utc
CATEGORIES = ("messages", "ledger", "audit")      # retention.<category>_days

# The fields that say who a patron is, blanked by an erasure. The others are kept: the library
# system's id (what the ledger and the loans refer to, meaningless outside it), the kind of
# account, the record type, the group and the language (categories, for counts).
PERSONAL_FIELDS = ("barcode", "first_name", "last_name", "email", "address_line1", "address_line2", "postal_code",
                   "city", "country", "phone")
KEPT_FIELDS = ("patron_id", "account_type", "record_type", "user_group", "preferred_language")
# The values removed from free text wherever they were copied: those that point at one person (a
# postal code, a town or a country alone do not, and are left in other rows' text).
IDENTIFYING_FIELDS = ("barcode", "first_name", "last_name", "email", "address_line1", "address_line2", "phone")
ERASED = "[erased]"           # what replaces a patron's value in free text
MIN_TERM = 3                  # shorter values ("FR", "33") identify nobody and are left in free text


class Retention(BaseModel):
    """How long rappel keeps what it holds about patrons (GDPR: storage limitation), in days. A
    record of day D is kept N days and deleted by the purge of day D + N (local dates in
    `timezone`); null keeps that kind of record forever. Without this section nothing is deleted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages_days: int | None = Field(
        default=400, ge=1, description="The messages as sent (the email, the letter's PDF): their copy in the "
                                       "database and the files of the outbox folder")
    ledger_days: int | None = Field(
        default=1095, ge=1, description="Notices and their ledger rows (never one still pending), delivery "
                                        "attempts, the run history, returned loans and expired requests")
    audit_days: int | None = Field(
        default=1095, ge=1, description="Patron edits and synchronisations (patron_audit) and staff actions; "
                                        "the record that a patron was erased is kept")


def check_retention(r: Retention, longest_window: int, catch_up_days: int) -> None:
    """ValueError ("retention.KEY: why", as the policy's checks say it) when ledger rows would go
    before every day that may still decide their notice (the daemon evaluates missed days as far
    back as ``catch_up_days``, or the longest window), or a message would outlive its notice."""
    missed = max(catch_up_days, longest_window)
    shortest = missed + longest_window + 1
    if r.ledger_days is not None and r.ledger_days < shortest:
        raise ValueError(f"retention.ledger_days: at least {shortest} days: a ledger row must outlive every "
                         f"day that may still decide its notice (the longest catch-up window, {longest_window} "
                         f"days, after up to {missed} missed days), or the notice could be sent twice")
    if r.ledger_days is not None and (r.messages_days is None or r.messages_days > r.ledger_days):
        kept = "forever (null)" if r.messages_days is None else f"{r.messages_days} days"
        raise ValueError(f"retention.messages_days: {kept} is longer than ledger_days ({r.ledger_days}): "
                         f"a message is deleted with its notice; give at most {r.ledger_days}")


class _Limited(Protocol):
    """What the cut-offs need of a policy (engine.policy.Policy)."""

    retention: Retention | None
    tz: ZoneInfo


@dataclass(frozen=True)
class Cutoff:
    category: str
    days: int
    last_day: dt.date          # records dated on or before this local day are past their time
    before: dt.datetime        # timestamps before this instant (UTC: the next day's start, local) are

    def expired(self, day: dt.date) -> bool:
        return day <= self.last_day

    def as_dict(self) -> dict:
        return {"days": self.days, "last_day": self.last_day.isoformat(),
                "before": self.before.isoformat(timespec="seconds")}


def cutoffs(policy: _Limited, today: dt.date) -> dict[str, Cutoff]:
    """The kinds of record the policy limits, each with its cut-off on ``today`` (none: keep all)."""
    kept = policy.retention
    if kept is None:
        return {}
    out = {}
    for category in CATEGORIES:
        days = getattr(kept, f"{category}_days")
        if days is None:
            continue
        last = today - dt.timedelta(days=days)
        start = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=policy.tz)
        out[category] = Cutoff(category, days, last, start.astimezone(UTC))
    return out


@dataclass(frozen=True)
class Erasure:
    """What becomes of one patron's values."""

    patron_id: str
    blanked: dict[str, str]        # field → its value after the erasure
    terms: tuple[str, ...]         # the patron's values, to remove from free text (longest first)

    @cached_property
    def _pattern(self) -> re.Pattern | None:
        if not self.terms:
            return None
        # whole values only: not preceded or followed by a letter or digit ("Léa" is not in "Léandre")
        return re.compile(r"(?<![^\W_])(?:" + "|".join(re.escape(t) for t in self.terms) + r")(?![^\W_])",
                          re.IGNORECASE)

    def scrub(self, text: str | None) -> str | None:
        """``text`` without the patron's values (each replaced by [erased])."""
        pattern = self._pattern
        if not text or pattern is None:
            return text
        return pattern.sub(ERASED, text)

    def mentions(self, text: str | None) -> bool:
        return self.scrub(text) != text


def erasure(patron: Patron, token: str, former: Iterable[tuple[str, str]] = ()) -> Erasure:
    """Blank the personal fields; the barcode (unique, never empty) becomes ``token``. ``former``:
    (field, value) the patron's fields held before or were edited to (the audit trail's), removed
    from free text as well."""
    blanked = {name: "" for name in PERSONAL_FIELDS}
    blanked["barcode"] = token
    values = [getattr(patron, name).strip() for name in IDENTIFYING_FIELDS] + [patron.full_name]
    values += [", ".join(patron.postal_lines)]       # a letter's recipient, as a notice keeps it
    values += [value.strip() for name, value in former if name in IDENTIFYING_FIELDS]
    terms = sorted({v for v in values if len(v) >= MIN_TERM}, key=lambda v: (-len(v), v))
    return Erasure(patron.patron_id, blanked, tuple(terms))


def forget_refusal(patron: Patron, open_loans: Iterable[Loan]) -> str | None:
    """Why this patron may not be erased now, or None. Their notices still pending are not a reason:
    with every loan returned, none of them can be sent any more (they are cancelled)."""
    loans = sorted(open_loans, key=lambda loan: (loan.due_date, loan.loan_id))
    if not loans:
        return None
    shown = ", ".join(f"{loan.loan_id} due {loan.due_date} at {loan.library}"
                      + (f" ({loan.status})" if loan.status else "") for loan in loans[:5])
    more = f" and {len(loans) - 5} more" if len(loans) > 5 else ""
    count = "1 open loan" if len(loans) == 1 else f"{len(loans)} open loans"
    return (f"patron {patron.patron_id} has {count} ({shown}{more}): nothing erased; "
            f"the loans must be returned or closed in the library system (and imported) first")
