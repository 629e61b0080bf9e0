"""The statements of an import, on one connection inside one transaction.

The rows of an export are loaded into a temporary staging table (validated, in chunks), then
compared with the stored ones in SQL: what is new, changed or unchanged, which rows of the file
clash (an id twice, an unknown patron, a barcode that is someone else's), and, for a snapshot,
which open loans (active requests) of its libraries it no longer lists. Nothing of the file is
held in memory, whatever its size; the stored tables are written only by ``apply``.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from typing import NamedTuple

from sqlalchemy import (Column, Date, Index, Integer, MetaData, Table, and_, case, delete, exists, func, insert,
                        literal, or_, select, true, update)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from adapters.store.names import rewrite_words
from adapters.store.schema import (LOAN_FIELDS, PATRON_FIELDS, REQUEST_FIELDS, fact_imports, loans, patrons,
                                   requests)
from engine.imports import CLOSED_REQUEST

__all__ = ["FIELDS", "Clash", "Comparison", "Staging"]

TABLES = {"patrons": patrons, "loans": loans, "requests": requests}
FIELDS = {"patrons": PATRON_FIELDS, "loans": LOAN_FIELDS, "requests": REQUEST_FIELDS}


class Clash(NamedTuple):
    """A row of the file that clashes with another one, or with the database."""

    row: int
    line: int | None
    message: str


class Comparison(NamedTuple):
    rows: int
    inserted: int
    changed: int
    unchanged: int
    reopened: int          # loans closed by an earlier snapshot that this export lists open again


def _iso(row: tuple, dates: list[int]) -> tuple:
    values = list(row)
    for i in dates:
        if values[i] is not None:
            values[i] = values[i].isoformat()
    return tuple(values)


BULK_ROWS = 50_000     # an import writing this many rows (and a quarter of its table) rebuilds its indexes


class Staging:
    """The temporary table of one import of ``kind``, bound to ``conn`` (its transaction)."""

    def __init__(self, conn: Connection, kind: str):
        self.conn = conn
        self.kind = kind
        self.target = TABLES[kind]
        self.fields = FIELDS[kind]
        self.key = self.fields[0]
        # _seq: the order read (SQLite's rowid; PostgreSQL keeps no index of it up while loading: 0.35 s
        # of server time for 1,000,000 rows, and the checks that read it join or sort once)
        columns = [Column("_seq", Integer, primary_key=conn.dialect.name == "sqlite", autoincrement=False),
                   Column("_row", Integer), Column("_line", Integer)]                    # as the source numbers it
        columns += [Column(name, self.target.c[name].type, nullable=True) for name in self.fields]
        self.table = Table(f"rappel_import_{kind}", MetaData(), *columns, prefixes=["TEMPORARY"])
        # SQLite's driver runs DDL outside the transaction: a table left by an import that failed on
        # this pooled connection is dropped first, and this one is dropped when the import ends
        self.table.drop(conn, checkfirst=True)
        self.table.create(conn)
        self.unique = False                           # no id twice: known once the key is indexed unique
        self.rebuilt: list[tuple[str, str]] | None = None   # a bulk write's (drop, create) statements (``lock``)

    def add(self, rows: list[tuple]) -> None:
        """Rows of the file: (_seq, _row, _line, every field in order, None where a value was bad).

        Straight to the driver (the rows are plain values): COPY on PostgreSQL, executemany else."""
        if not rows:
            return
        names = [c.name for c in self.table.columns]
        raw = self.conn.connection.driver_connection
        if self.conn.dialect.name == "postgresql":
            with raw.cursor() as cursor, cursor.copy(f"COPY {self.table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        if self.conn.dialect.name == "sqlite":    # dates as SQLAlchemy writes them: ISO text
            dates = [i for i, c in enumerate(self.table.columns) if isinstance(c.type, Date)]
            rows = [_iso(row, dates) for row in rows] if dates else rows
        marks = ", ".join(["?" if self.conn.dialect.paramstyle == "qmark" else "%s"] * len(names))
        self.conn.exec_driver_sql(f"INSERT INTO {self.table.name} ({', '.join(names)}) VALUES ({marks})", rows)

    def indexed(self) -> None:
        """Index the loaded rows for the comparisons (faster built once, after loading). On PostgreSQL
        the key's index is tried unique first: built, it says that no id appears twice (the check
        ``clashes`` then skips); and the table is analyzed (nothing analyzes a temporary table, and
        without statistics the planner probes an index a million times where one hash join does)."""
        key = f"rappel_import_{self.kind}_key"
        if self.conn.dialect.name == "postgresql":
            try:
                with self.conn.begin_nested():
                    Index(key, self.table.c[self.key], unique=True).create(self.conn)
                self.unique = True
            except IntegrityError:
                pass
        if not self.unique:
            Index(key, self.table.c[self.key]).create(self.conn)
        if self.kind == "patrons":
            Index("rappel_import_patrons_barcode", self.table.c.barcode).create(self.conn)
        if self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql(f"ANALYZE {self.table.name}")

    def drop(self) -> None:
        self.table.drop(self.conn, checkfirst=True)

    # --- rows that clash ------------------------------------------------------------------------
    def clashes(self, limit: int) -> tuple[list[Clash], int]:
        """The rows that clash, by row (at most ``limit`` of each sort), and how many there are in all."""
        s = self.table
        found: list[Clash] = []
        total = 0
        key = s.c[self.key]
        earlier = s.alias("earlier")
        first = (select(key.label("k"), func.min(s.c._seq).label("first")).where(key.is_not(None))
                 .group_by(key).having(func.count() > 1).subquery())
        twice = (select(s.c._row, s.c._line, key, earlier.c._row).join(first, first.c.k == key)
                 .join(earlier, earlier.c._seq == first.c.first).where(s.c._seq > first.c.first))
        if not self.unique:
            total += self._collect(twice, limit, found,
                                   lambda r: f"{self.key} {r[2]!r} appears twice in the file (also row {r[3]})")
        if self.kind in ("loans", "requests"):
            unknown = select(s.c._row, s.c._line, s.c.patron_id).where(
                s.c.patron_id.is_not(None), s.c.patron_id != "",
                ~exists().where(patrons.c.patron_id == s.c.patron_id))
            total += self._collect(unknown, limit, found, lambda r: f"unknown patron {r[2]!r} (import patrons first)")
        if self.kind == "patrons":
            total += self._barcodes(limit, found)
        found.sort(key=lambda c: c.row)
        return found, total

    def _barcodes(self, limit: int, found: list[Clash]) -> int:
        s = self.table
        owned = (select(s.c._row, s.c._line, s.c.barcode, patrons.c.patron_id)
                 .join(patrons, and_(patrons.c.barcode == s.c.barcode, patrons.c.patron_id != s.c.patron_id))
                 .where(s.c.barcode != ""))
        total = self._collect(owned, limit, found, lambda r: f"barcode {r[2]!r} already belongs to patron {r[3]!r}")
        earlier = s.alias("earlier")
        first = (select(s.c.barcode.label("b"), func.min(s.c._seq).label("first")).where(s.c.barcode != "")
                 .group_by(s.c.barcode).having(func.count() > 1).subquery())
        again = (select(s.c._row, s.c._line, s.c.barcode, earlier.c.patron_id, earlier.c._row)
                 .join(first, first.c.b == s.c.barcode).join(earlier, earlier.c._seq == first.c.first)
                 .where(s.c._seq > first.c.first, earlier.c.patron_id.is_distinct_from(s.c.patron_id)))
        return total + self._collect(again, limit, found, lambda r: f"barcode {r[2]!r} already belongs to patron "
                                                                    f"{r[3]!r} (row {r[4]})")

    def _collect(self, query, limit: int, found: list[Clash], message) -> int:
        rows = self.conn.execute(query.order_by(self.table.c._seq).limit(limit + 1)).all()
        found.extend(Clash(r[0], r[1], message(r)) for r in rows[:limit])
        if len(rows) <= limit:
            return len(rows)
        return self.conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()

    # --- what the file changes ------------------------------------------------------------------
    def _differs(self, stored, given):
        """A stored row differs from the file's: a field, or a reason rappel closed it for (cleared)."""
        changes = [stored.c[name].is_distinct_from(given[name]) for name in self.fields[1:]]
        if self.kind == "loans":
            changes.append(stored.c.closed_reason.is_not(None))
        return or_(*changes)

    def compare(self) -> Comparison:
        s, t = self.table, self.target
        matched = t.c[self.key].is_not(None)
        given = {name: s.c[name] for name in self.fields}
        reopened = (and_(matched, t.c.returned_on.is_not(None), t.c.closed_reason.is_not(None),
                         s.c.returned_on.is_(None)) if self.kind == "loans" else literal(False))
        query = select(func.count(),
                       func.coalesce(func.sum(case((~matched, 1), else_=0)), 0),
                       func.coalesce(func.sum(case((and_(matched, self._differs(t, given)), 1), else_=0)), 0),
                       func.coalesce(func.sum(case((reopened, 1), else_=0)), 0)
                       ).select_from(s.outerjoin(t, t.c[self.key] == s.c[self.key]))
        rows, inserted, changed, reopen = self.conn.execute(query).one()
        return Comparison(rows, inserted, changed, rows - inserted - changed, reopen)

    def libraries(self) -> tuple[str, ...]:
        """The libraries the file names."""
        column = self.table.c.library
        return tuple(sorted(self.conn.scalars(select(column).where(column.is_not(None)).distinct())))

    def _still_open(self):
        t = self.target
        return t.c.returned_on.is_(None) if self.kind == "loans" else t.c.status != CLOSED_REQUEST

    def _open(self, libraries: Collection[str]):
        return and_(self._still_open(), self.target.c.library.in_(sorted(libraries)))

    def _absent(self):
        return ~exists().where(self.table.c[self.key] == self.target.c[self.key])

    def open_by_library(self, libraries: Collection[str]) -> dict[str, tuple[int, int]]:
        """For every library with open loans (active requests): how many, and how many of them are
        absent from the file (counted only for ``libraries``, the snapshot's). One pass. PostgreSQL:
        an outer join (no id is twice in the file by now), a hash join rather than a subquery per open
        loan (1,000,000: 0.7 s, not 1.8 s); SQLite probes the staging index per open loan either way,
        and the subquery is the faster (1.6 s, not 2.1 s)."""
        s, t = self.table, self.target
        source, gone = t, self._absent()
        if self.conn.dialect.name == "postgresql":
            source, gone = t.outerjoin(s, s.c[self.key] == t.c[self.key]), s.c[self.key].is_(None)
        absent = case((and_(t.c.library.in_(sorted(libraries)), gone), 1), else_=0)
        query = (select(t.c.library, func.count(), func.coalesce(func.sum(absent), 0))
                 .select_from(source).where(self._still_open()).group_by(t.c.library))
        return {library: (n, gone) for library, n, gone in self.conn.execute(query)}

    # --- writing --------------------------------------------------------------------------------
    def lock(self, writes: int = 0) -> None:
        """Begin the writing transaction (just begun on ``conn``) holding the write lock at once, on
        SQLite: the writes then never meet a snapshot that another process's commit made stale (SQLite
        refuses that write at once, 'database is locked', whatever the busy timeout). ``writes``: how
        many rows ``apply`` will write; a bulk write (``_bulk``) drops the target's secondary indexes
        (and foreign keys) here, before anything else is written, and ``apply`` creates them again."""
        if self.conn.dialect.name == "sqlite":
            self.conn.exec_driver_sql("BEGIN IMMEDIATE")
        self.rebuilt = self._bulk(writes)
        if self._guarded():     # no other writer until the commit (readers go on): ``apply`` inserts the new rows plainly
            self.conn.exec_driver_sql(f'LOCK TABLE "{self.target.name}" IN SHARE ROW EXCLUSIVE MODE')
        for drop, _ in self.rebuilt or ():
            self.conn.exec_driver_sql(drop)

    def _guarded(self) -> bool:
        return self.rebuilt is not None and self.conn.dialect.name == "postgresql"

    def close_absent(self, libraries: Collection[str], facts_date: dt.date, reason: str) -> int:
        """Close what is open in those libraries and absent from the file: loans returned on
        ``facts_date`` with ``reason``; requests marked closed."""
        values = ({"returned_on": facts_date, "closed_reason": reason} if self.kind == "loans"
                  else {"status": CLOSED_REQUEST})
        result = self.conn.execute(update(self.target).where(self._open(libraries), self._absent()).values(**values))
        return result.rowcount

    def apply(self, dialect: str) -> None:
        """Insert the new rows and update the changed ones: the rows of the file joined with the stored
        ones, only those that differ written (the upsert then meets a conflict per changed row, not
        per row of the file; in a bulk write on PostgreSQL, whose lock keeps other writers out, the new
        rows are inserted plainly: 2.7 s for 1,000,000 rather than 5 s as an upsert); the indexes and
        keys a bulk write dropped (``lock``) created again."""
        s, t = self.table, self.target
        stored = t.alias("stored")
        given = {name: s.c[name] for name in self.fields}
        new = stored.c[self.key].is_(None)
        rows = (select(*given.values())                       # each with a WHERE: SQLite's upsert grammar wants one
                .select_from(s.outerjoin(stored, stored.c[self.key] == s.c[self.key])))
        renamed = self._renamed() if self.kind == "patrons" else []
        if self._guarded():
            self._upsert(dialect, rows.where(~new, self._differs(stored, given)))   # first: joined with
            self.conn.execute(insert(t).from_select(list(self.fields), rows.where(new)))   # the table before
        else:
            self._upsert(dialect, rows.where(or_(new, self._differs(stored, given))))
        for _, create in reversed(self.rebuilt or ()):     # the indexes, then the keys they may serve
            self.conn.exec_driver_sql(create)
        if self._guarded():      # the new rows' statistics, for the plans of the next import and the day's run
            self.conn.exec_driver_sql(f'ANALYZE "{t.name}"')
        self.rebuilt = None
        rewrite_words(self.conn, renamed)

    def _upsert(self, dialect: str, rows) -> None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = dialect_insert(self.target).from_select(list(self.fields), rows)
        values = {name: stmt.excluded[name] for name in self.fields[1:]}
        if self.kind == "loans":
            values["closed_reason"] = None   # the library system's word about the loan replaces rappel's
        excluded = {name: stmt.excluded[name] for name in self.fields}
        self.conn.execute(stmt.on_conflict_do_update(index_elements=[self.key], set_=values,
                                                     where=self._differs(self.target, excluded)))

    def _bulk(self, writes: int) -> list[tuple[str, str]] | None:
        """None unless the write is a bulk one, else the (drop, create) statements of the target's
        secondary indexes, and on PostgreSQL of its foreign keys, run before the write and after it,
        in the same transaction. A bulk write: many rows (BULK_ROWS), at least a quarter of the table
        (the first import of a library system's loans). Measured here for 1,000,000 new loans: SQLite
        10.5 s with the indexes kept up, 2.4 s rebuilt; PostgreSQL 23 s with the foreign key checked
        row by row (a trigger per row) and the indexes kept up, 9 s with both created again (one join
        validates the key). A unique index stays (it keeps the rows unique while they are written); a
        failure rolls the indexes back with the rows. Readers see the table as it was until the commit
        on SQLite (WAL); on PostgreSQL, the table (and the one its foreign key names) is locked from
        ``lock`` to the commit: readers wait those seconds (a first import, as a rule)."""
        if writes < BULK_ROWS:
            return None
        name = self.target.name
        if writes * 4 < self.conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar_one():
            return None
        if self.conn.dialect.name == "postgresql":
            table = f"CAST('\"{name}\"' AS regclass)"
            keys = self.conn.exec_driver_sql(
                f"SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = {table} "
                f"AND contype = 'f' ORDER BY conname").all()
            indexes = self.conn.exec_driver_sql(
                f"SELECT CAST(CAST(indexrelid AS regclass) AS text), pg_get_indexdef(indexrelid) FROM pg_index WHERE "
                f"indrelid = {table} AND NOT indisunique ORDER BY 1").all()
            return ([(f'ALTER TABLE "{name}" DROP CONSTRAINT "{key}"', f'ALTER TABLE "{name}" ADD CONSTRAINT '
                      f'"{key}" {definition}') for key, definition in keys]
                    + [(f"DROP INDEX {index}", sql) for index, sql in indexes])
        if self.conn.dialect.name != "sqlite":
            return []
        rows = self.conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (name,)).all()
        return [(f'DROP INDEX "{n}"', sql) for n, sql in rows if not sql.lstrip().upper().startswith("CREATE UNIQUE")]

    def _renamed(self) -> list[tuple[str, str, str]]:
        """(patron_id, first_name, last_name) of the staged patrons that are new or change name: their
        words for the desk's search are rewritten (adapters/store/names.py)."""
        s, t = self.table, self.target
        query = (select(s.c.patron_id, s.c.first_name, s.c.last_name)
                 .outerjoin(t, t.c.patron_id == s.c.patron_id)
                 .where(or_(t.c.patron_id.is_(None), t.c.first_name != s.c.first_name,
                            t.c.last_name != s.c.last_name)))
        return [(pid, first or "", last or "") for pid, first, last in self.conn.execute(query)]


def record_import(conn: Connection, *, kind: str, source: str, mode: str, facts_date: dt.date | None,
                  finished_at: dt.datetime, counts: Iterable[tuple[str, int]]) -> None:
    """The row of fact_imports of a successful import (what the freshness guard reads). A push (one
    record from the JSON API) replaces the previous push of its kind by the same client: one row per
    client and kind, the latest, rather than one a record."""
    if mode == "push":
        conn.execute(delete(fact_imports).where(fact_imports.c.kind == kind, fact_imports.c.source == source,
                                                fact_imports.c.mode == "push"))
    conn.execute(insert(fact_imports).values(kind=kind, source=source, mode=mode, facts_date=facts_date,
                                             finished_at=_stored(conn, finished_at), **dict(counts)))


def _stored(conn: Connection, value: dt.datetime) -> dt.datetime:
    """A timestamp as written: UTC (naive on SQLite, which keeps no offset)."""
    value = value.astimezone(dt.timezone.utc)
    return value.replace(tzinfo=None) if conn.dialect.name == "sqlite" else value
