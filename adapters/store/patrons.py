"""Patron records: what `rappel patron` and `rappel sync` read and write (patrons, their open loans
and requests, the audit trail, the fields edited locally).

The use cases (service/patrons.py, service/sync.py) decide; this module runs their statements. A
use case that reads several things sees them through one connection (``reading``); one that writes
does it in one transaction (``writing``), all or nothing, deciding inside it: the rows it locks
stay locked until it ends. Every value handed out is plain: engine.facts values, dicts, sets.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection

from adapters.store.database import Store
from adapters.store.errors import AmbiguousPatron, UnknownPatron
from adapters.store.names import rewrite_patrons, rewrite_words
from adapters.store.schema import loans, patron_audit, patron_local_edits, patrons, requests
from engine.facts import PATRON_FIELDS, Loan, Patron

__all__ = ["IN_LIMIT", "AmbiguousPatron", "PatronReader", "PatronWriter", "UnknownPatron", "audit_trail", "known_patron_ids",
           "reading", "writing"]

NAME_FIELDS = frozenset({"first_name", "last_name"})   # what the desk's search words come from
IN_LIMIT = 2000       # values in one SQL IN list (SQLite allows 32,766 since 3.32)

REQUEST_COLUMNS = ("request_id", "title", "library", "pickup_library", "placed_on", "expires_on", "status")




def _patron(row) -> Patron:
    return Patron(**{name: getattr(row, name) for name in PATRON_FIELDS})


class PatronReader:
    """Reads bound to one connection (one snapshot of the database)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def find(self, ident: str, *, lock: bool = False) -> Patron:
        """The patron whose barcode or patron_id this is; ``lock``: locked until the transaction ends.
        UnknownPatron, saying both were tried, when there is none; AmbiguousPatron when it is one
        patron's barcode and another's id (it says what to give for each, as `patron forget` does)."""
        query = select(patrons).where(or_(patrons.c.barcode == ident, patrons.c.patron_id == ident))
        found = [_patron(row) for row in self.conn.execute(query.with_for_update() if lock else query)]
        if not found:
            raise UnknownPatron(f"no patron with barcode or patron_id {ident!r}")
        if len(found) > 1:
            by_barcode = next(p for p in found if p.barcode == ident)
            by_id = next(p for p in found if p.patron_id == ident)
            raise AmbiguousPatron(f"{ident!r} is both the barcode of patron {by_barcode.patron_id} and the id of "
                                  f"patron {by_id.patron_id}: give {by_id.barcode!r} for {by_id.patron_id}, "
                                  f"{by_barcode.patron_id!r} for {by_barcode.patron_id}")
        return found[0]

    def locally_edited(self, patron_id: str) -> set[str]:
        """The protected fields of this patron edited here (synchronisations keep their value)."""
        return set(self.conn.scalars(select(patron_local_edits.c.field)
                                     .where(patron_local_edits.c.patron_id == patron_id)))

    def open_loans(self, patron_id: str) -> list[Loan]:
        """The loans not returned, by due date."""
        query = (select(loans).where(loans.c.patron_id == patron_id, loans.c.returned_on.is_(None))
                 .order_by(loans.c.due_date, loans.c.loan_id))
        return [Loan(r.loan_id, r.patron_id, r.library, r.due_date, r.item_barcode, r.title, r.returned_on, r.status)
                for r in self.conn.execute(query)]

    def requests(self, patron_id: str) -> list[dict]:
        """Every request of the patron, oldest first: request_id, title, library, pickup_library,
        placed_on, expires_on, status."""
        query = (select(*(requests.c[c] for c in REQUEST_COLUMNS)).where(requests.c.patron_id == patron_id)
                 .order_by(requests.c.placed_on, requests.c.request_id))
        return [dict(r) for r in self.conn.execute(query).mappings()]

    def barcode_owner(self, barcode: str) -> str | None:
        """The id of the patron holding this barcode, if any."""
        return self.conn.scalar(select(patrons.c.patron_id).where(patrons.c.barcode == barcode))

    def external_ids(self) -> Iterator[str]:
        """The id of every external account."""
        return iter(self.conn.scalars(select(patrons.c.patron_id).where(patrons.c.account_type == "external")))

    def governed(self, patron_ids: list[str], fields: list[str]) -> dict[str, tuple]:
        """patron_id → (account_type, *the values of ``fields``), for those of ``patron_ids`` that exist."""
        columns = [patrons.c.patron_id, patrons.c.account_type, *(patrons.c[f] for f in fields)]
        out: dict[str, tuple] = {}
        for part in _slices(patron_ids, IN_LIMIT):
            out.update((r[0], tuple(r[1:])) for r in self.conn.execute(select(*columns)
                                                                       .where(patrons.c.patron_id.in_(part))))
        return out

    def edited_fields(self, patron_ids: list[str]) -> set[tuple[str, str]]:
        """(patron_id, field) of every field of these patrons edited locally."""
        out: set[tuple[str, str]] = set()
        for part in _slices(patron_ids, IN_LIMIT):
            out.update((pid, f) for pid, f in self.conn.execute(
                select(patron_local_edits.c.patron_id, patron_local_edits.c.field)
                .where(patron_local_edits.c.patron_id.in_(part))))
        return out


class PatronWriter(PatronReader):
    """Reads and writes inside one transaction."""

    def create(self, rows: list[dict]) -> None:
        """New patrons, one dict of PATRON_FIELDS each."""
        if rows:
            self.conn.execute(insert(patrons), rows)
            rewrite_patrons(self.conn, rows)

    def change(self, patron_id: str, values: dict[str, str]) -> None:
        """Set some fields of one patron."""
        self.conn.execute(update(patrons).where(patrons.c.patron_id == patron_id).values(values))
        if NAME_FIELDS & values.keys():
            self._rename([patron_id])

    def change_many(self, fields: list[str], rows: list[tuple[str, dict[str, str]]]) -> None:
        """Set ``fields`` of many patrons at once: (patron_id, {field: value}) each, every field given."""
        if not rows:
            return
        stmt = (update(patrons).where(patrons.c.patron_id == bindparam("b_patron_id"))
                .values({f: bindparam(f"b_{f}") for f in fields}))
        self.conn.execute(stmt, [{"b_patron_id": pid, **{f"b_{f}": v for f, v in values.items()}}
                                 for pid, values in rows])
        if NAME_FIELDS & set(fields):
            self._rename([pid for pid, _ in rows])

    def _rename(self, patron_ids: list[str]) -> None:
        """Rewrite the search words of these patrons from their names as now written."""
        named: list[tuple[str, str, str]] = []
        for part in _slices(patron_ids, IN_LIMIT):
            named += self.conn.execute(select(patrons.c.patron_id, patrons.c.first_name, patrons.c.last_name)
                                       .where(patrons.c.patron_id.in_(part))).all()
        rewrite_words(self.conn, named)

    def audit(self, changes: Iterable[tuple[str, str, str, str]], *, at: dt.datetime, actor: str, role: str,
              source: str) -> None:
        """One audit row per (patron_id, field, old, new): who (actor, role), when, by what (edit, sync)."""
        at = at.astimezone(dt.timezone.utc)     # SQLite keeps no offset: every time is stored in UTC
        rows = [{"patron_id": pid, "changed_at": at, "actor": actor, "role": role, "source": source,
                 "field": f, "old_value": old, "new_value": new} for pid, f, old, new in changes]
        if rows:
            self.conn.execute(insert(patron_audit), rows)

    def mark_edited(self, patron_id: str, fields: list[str], *, at: dt.datetime, actor: str) -> None:
        """Remember these protected fields as edited here (now, by ``actor``), replacing earlier marks."""
        if not fields:
            return
        self.conn.execute(patron_local_edits.delete().where(patron_local_edits.c.patron_id == patron_id,
                                                            patron_local_edits.c.field.in_(fields)))
        self.conn.execute(insert(patron_local_edits), [
            {"patron_id": patron_id, "field": f, "edited_at": at.astimezone(dt.timezone.utc), "actor": actor}
            for f in fields])


@contextmanager
def reading(store: Store) -> Iterator[PatronReader]:
    """Reads through one connection."""
    with store.engine.connect() as conn:
        yield PatronReader(conn)


@contextmanager
def writing(store: Store, *, commit: bool = True) -> Iterator[PatronWriter]:
    """One transaction: committed when the block ends without error and ``commit`` holds (false: a
    dry run), rolled back otherwise."""
    with store.engine.connect() as conn:
        trans = conn.begin()
        try:
            yield PatronWriter(conn)
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise
        if commit:
            trans.commit()
        else:
            trans.rollback()


def audit_trail(store: Store, patron_id: str) -> list[dict]:
    """Every audited change of a patron, oldest first (each row as a dict of its columns)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(patron_audit).where(patron_audit.c.patron_id == patron_id)
                            .order_by(patron_audit.c.id)).mappings().all()
    return [dict(r) for r in rows]


def known_patron_ids(store: Store) -> set[str]:
    return store.known_ids(patrons)


def _slices(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
