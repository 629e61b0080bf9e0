"""Plain values the engine decides on: patrons, loans, ledger entries, candidates."""
from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Literal, get_args


class Status(StrEnum):
    """What became of a ledger row (loan, stage, due date) or of a notice; stored as its text."""

    PENDING = "pending"          # decided, not delivered yet (or waiting for a retry)
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"    # a later stage was due on the same run: only that one is sent
    EXPIRED = "expired"          # its window passed (or the due date came) before it could be sent
    CANCELLED = "cancelled"      # returned, renewed, excluded, no contact, stage removed…


class OutcomeStatus(StrEnum):
    """What one delivery pass did with a notice: a ledger status, held by the flood guard, or waiting for a
    fix of the library's own (a library missing from the policy, a template that fails to render)."""

    PENDING = "pending"          # not sent: a retry is due later
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    HELD = "held"                # the flood guard kept it pending, for `rappel run --confirm`
    WAITING = "waiting"          # kept pending until the library fixes its side (policy, template): not sent


LEDGER_STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
IDENTITY_FIELDS = ("patron_id", "account_type")   # set when a patron record is created; never edited

RecordType = Literal["staff", "public", "contact"]     # who a patron record is (policy audiences, accounts)
AccountType = Literal["internal", "external"]          # where a patron record is kept: here, or a source system
RECORD_TYPES: tuple[str, ...] = get_args(RecordType)
ACCOUNT_TYPES: tuple[str, ...] = get_args(AccountType)


@dataclass(frozen=True, slots=True)
class Patron:
    patron_id: str
    barcode: str = ""
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    preferred_language: str = ""
    account_type: str = "internal"
    record_type: str = "public"
    user_group: str = ""
    address_line1: str = ""
    address_line2: str = ""
    postal_code: str = ""
    city: str = ""
    country: str = ""
    phone: str = ""
    channels: str = ""          # the patron's channels in the order they prefer them: "sms email letter"
    opt_out: str = ""           # the optional stages they want none of: "courtesy", or "all" of them

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    @property
    def has_postal_address(self) -> bool:
        """Enough to post a letter to: a street line, and a postal code or a town."""
        return bool((self.address_line1 or self.address_line2) and (self.postal_code or self.city))

    @property
    def preferred_channels(self) -> tuple[str, ...]:
        """Their channels in order of preference (empty: the policy's order)."""
        return split_names(self.channels)

    @property
    def opted_out(self) -> frozenset[str]:
        """The stage ids they opted out of ("all": every optional stage); only optional stages heed it."""
        return _name_set(self.opt_out)

    @property
    def postal_lines(self) -> list[str]:
        town = " ".join(p for p in (self.postal_code, self.city) if p)
        return [line for line in (self.full_name, self.address_line1, self.address_line2, town, self.country) if line]


PATRON_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Patron))   # the patron record's fields, in order
OPT_OUT_ALL = "all"        # in a patron's opt_out: every stage the policy marks optional


@lru_cache(maxsize=4096)     # a few distinct values among thousands of patrons: read each once
def split_names(value: str) -> tuple[str, ...]:
    """The names of a list field (channels, opt_out): separated by spaces, commas, ';' or '|', each once."""
    return tuple(dict.fromkeys(part for part in re.split(r"[\s,;|]+", value or "") if part))


@lru_cache(maxsize=4096)
def _name_set(value: str) -> frozenset[str]:
    return frozenset(split_names(value))


@dataclass(frozen=True, slots=True)
class Loan:
    loan_id: str
    patron_id: str
    library: str
    due_date: dt.date
    item_barcode: str = ""
    title: str = ""
    returned_on: dt.date | None = None
    status: str = ""
    closed_reason: str | None = None      # why rappel closed it itself, e.g. "absent from the export of …"
    item_type: str = ""                   # the item's type in the library system (Koha itype, Evergreen circ_modifier)
    loan_policy: str = ""                 # the circulation rule it was lent under, as the library system names it

    @property
    def is_open(self) -> bool:
        return self.returned_on is None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A loan near a trigger date, with what the engine needs about its patron and its ledger.

    ``recorded`` holds the stage ids already in the ledger for (loan, stage, this due date).
    """

    loan: Loan
    record_type: str
    user_group: str
    recorded: frozenset[str] = field(default_factory=frozenset)
    opt_out: frozenset[str] = field(default_factory=frozenset)   # the patron's opt-outs (Patron.opted_out)

    @classmethod
    def of(cls, loan: Loan, patron: Patron | None, recorded: frozenset[str] = frozenset()) -> Candidate:
        """A loan's candidate with what the engine reads of its patron (none known: nothing of them)."""
        if patron is None:
            return cls(loan, "", "", recorded)
        return cls(loan, patron.record_type, patron.user_group, recorded, patron.opted_out)

    def opted_out_of(self, stage_id: str) -> bool:
        """Whether the patron opted out of this stage (it counts only where the stage is optional)."""
        return stage_id in self.opt_out or OPT_OUT_ALL in self.opt_out
