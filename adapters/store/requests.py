"""The requests' side of the request notices: the daily candidates, the requests of pending notices,
a request's ledger, and the day a request became ready (kept by every import of requests)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Connection, Engine

from adapters.store.schema import PATRON_FIELDS, ledger, patrons, requests
from engine.facts import Patron
from engine.policy import Policy
from engine.requests import Request, RequestCandidate, lookback_days, statuses_of_interest

__all__ = ["mark_ready", "request", "request_candidates", "request_ledger", "requests_by_id"]

KIND = "request"


def _request(row) -> Request:
    return Request(request_id=row.request_id, patron_id=row.patron_id, library=row.library,
                   pickup_library=row.pickup_library, placed_on=row.placed_on, status=row.status or "",
                   expires_on=row.expires_on, ready_on=row.ready_on, title=row.title or "")


def mark_ready(conn: Connection, policy: Policy, facts_date: dt.date) -> None:
    """After an import of requests: a request whose status is now the ready status and had no ready_on
    became ready on ``facts_date`` (the export's date); one no longer ready loses its ready_on (ready
    again later: a new day). In the import's transaction."""
    ready = policy.requests.ready_status
    conn.execute(update(requests).where(requests.c.status == ready, requests.c.ready_on.is_(None))
                 .values(ready_on=facts_date))
    conn.execute(update(requests).where(requests.c.status != ready, requests.c.ready_on.is_not(None))
                 .values(ready_on=None))


def request_candidates(engine: Engine, policy: Policy, as_of: dt.date) -> tuple[list[RequestCandidate], dict[str, Patron]]:
    """The requests a request stage may be due for on ``as_of`` (a status one is sent for, a ready_on or
    expires_on recent enough), with the request stages already in their ledger, and their patrons."""
    statuses = statuses_of_interest(policy)
    if not statuses:
        return [], {}
    since = as_of - dt.timedelta(days=lookback_days(policy))
    near = and_(requests.c.status.in_(statuses),
                or_(requests.c.ready_on >= since, requests.c.expires_on >= since))
    query = select(requests, *(patrons.c[n] for n in PATRON_FIELDS if n != "patron_id")).join(
        patrons, patrons.c.patron_id == requests.c.patron_id).where(near).order_by(requests.c.request_id)
    recorded_query = select(ledger.c.loan_id, ledger.c.stage).join(
        requests, and_(requests.c.request_id == ledger.c.loan_id, requests.c.placed_on == ledger.c.due_date)).where(
        near, ledger.c.kind == KIND)
    recorded: dict[str, set[str]] = {}
    found: dict[str, Patron] = {}
    out = []
    with engine.connect() as conn:
        for request_id, stage in conn.execute(recorded_query):
            recorded.setdefault(request_id, set()).add(stage)
        for row in conn.execute(query):
            if row.patron_id not in found:
                found[row.patron_id] = Patron(**{name: getattr(row, name) for name in PATRON_FIELDS})
            out.append(RequestCandidate(_request(row), frozenset(recorded.get(row.request_id, ())),
                                        found[row.patron_id].opted_out))
    return out, found


def requests_by_id(engine: Engine, request_ids: Iterable[str]) -> dict[str, Request]:
    ids = sorted(set(request_ids))
    out: dict[str, Request] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            for row in conn.execute(select(requests).where(requests.c.request_id.in_(ids[i:i + 500]))):
                out[row.request_id] = _request(row)
    return out


def request(engine: Engine, request_id: str) -> Request | None:
    return requests_by_id(engine, [request_id]).get(request_id)


def request_ledger(engine: Engine, request_id: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(ledger).where(ledger.c.loan_id == request_id, ledger.c.kind == KIND)
                            .order_by(ledger.c.due_date, ledger.c.decided_on)).mappings().all()
    return [dict(r) for r in rows]
