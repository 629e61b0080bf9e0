"""The day's candidates: the open loans whose due date lies in a stage's range (engine.reference's
pre-filter, on the indexed due date), less those whose ledger already settles every stage they could
be due for; each with its patron and the stages already in the ledger for its due date."""
from __future__ import annotations

import datetime as dt
from itertools import groupby

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import Select

from adapters.store.schema import PATRON_FIELDS, SHARED_VALUES, ledger, loans, patrons
from engine.facts import Candidate, Loan, Patron
from engine.policy import Policy
from engine.reference import last_stage_by_due_date

__all__ = ["candidate_queries", "read_candidates"]

NOTHING: frozenset[str] = frozenset()


def read_candidates(engine: Engine, policy: Policy, as_of: dt.date) -> tuple[list[Candidate], dict[str, Patron]]:
    """Open loans whose due date lies in a stage's range, with patron and ledger facts.

    A stage is due only while neither it nor a later stage is in the ledger for the loan's due date:
    a loan whose ledger holds the last stage it could be due for on as_of (or a later one) is not
    read (engine.reference.last_stage_by_due_date). The day after a busy day, most loans of the
    ranges were decided the day before: they stay in the database."""
    queries = candidate_queries(policy, as_of)
    if queries is None:
        return [], {}
    query, recorded_query = queries
    n = len(Loan.__match_args__)
    recorded: dict[str, set[str]] = {}
    found: dict[str, Patron] = {}
    out = []
    with engine.connect() as conn:
        for loan_id, stage in conn.execute(recorded_query):
            recorded.setdefault(loan_id, set()).add(stage)
        # the values many rows share (a library, a status, a date, a record type, a language…) are
        # kept once, not once a row: 80,000 candidates take a third less memory
        pool: dict = {}
        one = pool.setdefault
        shared_loan = [i for i, f in enumerate(Loan.__match_args__) if f in SHARED_VALUES]
        shared_patron = [i for i, f in enumerate(PATRON_FIELDS[1:], start=n) if f in SHARED_VALUES]
        for row in conn.execute(query.execution_options(yield_per=5000)):   # PostgreSQL: a server-side cursor
            patron = found.get(row[1])
            if patron is None:
                given = list(row[n:])
                for i in shared_patron:
                    given[i - n] = one(given[i - n], given[i - n])
                patron = found[row[1]] = Patron(row[1], *given)
            fields = list(row[:n])
            fields[1] = patron.patron_id
            for i in shared_loan:
                fields[i] = one(fields[i], fields[i])
            stages = recorded.get(row[0])
            out.append(Candidate.of(Loan(*fields), patron, frozenset(stages) if stages else NOTHING))
    return out, found


def candidate_queries(policy: Policy, as_of: dt.date) -> tuple[Select, Select] | None:
    """The candidates' rows (a Loan's fields in order, then its patron's) and their ledger rows
    (loan id, stage); None on a day no loan can have a stage due."""
    last = last_stage_by_due_date(policy, as_of)
    if not last:
        return None
    ids = [s.id for s in policy.stages]
    # The dates are a few days each side of each stage: an IN list of them lets both SQLite and
    # PostgreSQL seek the partial index day by day (an OR of BETWEENs made SQLite scan every open loan).
    held = ledger.alias("held")     # (the ledger rows' own query reads the ledger too)
    parts = []
    for top, days in groupby(sorted(last, key=lambda day: (last[day], day)), key=last.get):
        settled = exists().where(held.c.loan_id == loans.c.loan_id, held.c.due_date == loans.c.due_date,
                                 held.c.stage.in_(ids[top:]))
        parts.append(and_(loans.c.due_date.in_(list(days)), ~settled))
    near = and_(loans.c.returned_on.is_(None), loans.c.due_date.in_(sorted(last)), or_(*parts))   # (seek, then filter)
    query = select(*(loans.c[f] for f in Loan.__match_args__), *(patrons.c[f] for f in PATRON_FIELDS[1:])).join(
        patrons, patrons.c.patron_id == loans.c.patron_id).where(near)
    recorded_query = select(ledger.c.loan_id, ledger.c.stage).join(
        loans, and_(loans.c.loan_id == ledger.c.loan_id, loans.c.due_date == ledger.c.due_date)).where(near)
    return query, recorded_query
