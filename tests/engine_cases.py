"""Shared helpers for the engine tests: the shipped policy, variants of it, and small facts.

Kept out of conftest.py on purpose (that file belongs to someone else); import what you need:

    from tests.engine_cases import DEFAULT_POLICY, policy_variant, d, cand, patron, simulate
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engine import decide
from engine.facts import Candidate, Loan, Patron
from engine.policy import Policy, parse_policy

ROOT = Path(__file__).resolve().parents[1]
REMINDERS = ROOT / "rules" / "reminders.yaml"
STAGE_IDS = ("courtesy", "first_reminder", "second_reminder", "letter")


def d(text: str) -> dt.date:
    """A date written out: d("2026-11-22")."""
    return dt.date.fromisoformat(text)


def reminders_text() -> str:
    return REMINDERS.read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def default_policy() -> Policy:
    return parse_policy(reminders_text(), str(REMINDERS))


def policy_variant(*replacements: tuple[str, str], append: str = "") -> Policy:
    """The shipped policy with its YAML text edited: each (old, new) must match exactly once."""
    text = reminders_text()
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in reminders.yaml"
        text = text.replace(old, new)
    return parse_policy(text + append, "variant.yaml")


def with_restart(resumed_on: dt.date, policy: Policy | None = None) -> Policy:
    """A policy with `restart: {resumed_on: ...}` (by editing the commented line of the YAML)."""
    if policy is None:
        return policy_variant(("# restart: {resumed_on: 2026-11-22}",
                               f"restart: {{resumed_on: {resumed_on.isoformat()}}}"))
    return Policy.model_validate({**policy.model_dump(by_alias=True), "restart": {"resumed_on": resumed_on}})


def loan(due: str | dt.date, *, loan_id: str = "L1", patron_id: str = "P1", library: str = "SCI",
         returned: str | dt.date | None = None, status: str = "") -> Loan:
    due = d(due) if isinstance(due, str) else due
    returned = d(returned) if isinstance(returned, str) else returned
    return Loan(loan_id=loan_id, patron_id=patron_id, library=library, due_date=due,
                item_barcode=f"B-{loan_id}", title=f"Title of {loan_id}", returned_on=returned, status=status)


def cand(due: str | dt.date, *, recorded=(), record_type: str = "public", group: str = "", **loan_kw) -> Candidate:
    return Candidate(loan=loan(due, **loan_kw), record_type=record_type, user_group=group,
                     recorded=frozenset(recorded))


def patron(patron_id: str = "P1", *, email: str | None = None, record_type: str = "public",
           group: str = "") -> Patron:
    if email is None:
        email = f"{patron_id.lower()}@etu.univ.example"
    return Patron(patron_id=patron_id, barcode=f"BC-{patron_id}", first_name="Camille", last_name=patron_id,
                  email=email, record_type=record_type, user_group=group,
                  address_line1="12 rue des Facs", postal_code="33000", city="Bordeaux")


def patrons_for(cands: list[Candidate], **kw) -> dict[str, Patron]:
    return {c.loan.patron_id: patron(c.loan.patron_id, **kw) for c in cands}


@dataclass
class Simulation:
    """What daily runs produced: each decision as (date, loan_id, stage, status), and the notices."""

    decisions: list[tuple[dt.date, str, str, str]] = field(default_factory=list)
    notices: list[decide.Notice] = field(default_factory=list)

    def sent(self, loan_id: str) -> dict[str, dt.date]:
        """stage id -> date it went out (pending) for one loan; fails if a stage went out twice."""
        out: dict[str, dt.date] = {}
        for day, lid, stage, status in self.decisions:
            if lid == loan_id and status == "pending":
                assert stage not in out, f"{loan_id}/{stage} went out twice: {out[stage]} and {day}"
                out[stage] = day
        return out

    def other(self, loan_id: str) -> list[tuple[dt.date, str, str]]:
        return [(day, stage, status) for day, lid, stage, status in self.decisions
                if lid == loan_id and status != "pending"]


def simulate(policy: Policy, loans: list[Loan], patrons: dict[str, Patron], start: dt.date, end: dt.date,
             *, record_type: str = "public", group: str = "") -> Simulation:
    """Run plan_day every day from start to end (inclusive), feeding back the ledger.

    Every decision (pending, superseded, cancelled) becomes a ledger entry keyed
    (loan, stage, due date), which is what later runs see as ``recorded``.
    """
    ledger: dict[tuple[str, dt.date], set[str]] = {}
    sim = Simulation()
    day = start
    while day <= end:
        cands = [Candidate(loan=ln, record_type=record_type, user_group=group,
                           recorded=frozenset(ledger.get((ln.loan_id, ln.due_date), ())))
                 for ln in loans]
        plan = decide.plan_day(policy, cands, patrons, day)
        for dec in plan.decisions:
            ledger.setdefault((dec.loan_id, dec.due_date), set()).add(dec.stage)
            sim.decisions.append((day, dec.loan_id, dec.stage, dec.status))
        sim.notices.extend(plan.notices)
        day += dt.timedelta(days=1)
    return sim
