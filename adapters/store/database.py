"""Storage: SQLAlchemy 2 Core on SQLite (default) or PostgreSQL, schema by alembic migrations."""
from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from sqlalchemy import and_, bindparam, create_engine, delete, event, func, insert, make_url, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError

from adapters.store.candidates import read_candidates
from adapters.store.revision import MIGRATIONS, DatabaseNotReady, _alembic_config, migrate, require_current_schema
from adapters.store.names import rewrite_patrons
from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, attempts, ledger, loans, notices, patrons
from adapters.store.sent import Handover, keep
from engine.decide import Notice, Plan
from engine.facts import Candidate, Loan, Patron, Status
from engine.policy import Policy

DEFAULT_URL = "sqlite:///rappel.db"
WAITING = "waiting: "      # the start of a pending notice's last_error while it waits for the library's fix

# The database's errors by the names the rest of rappel catches them (only adapters/ import SQLAlchemy):
# DatabaseUnavailable, the database refused or lost the connection, and StatementError, a statement
# failed; either one's .orig is the driver's own error, when it gave one.
DatabaseUnavailable = DBAPIError


def database_url(explicit: str | None) -> str:
    return explicit or os.environ.get("RAPPEL_DB_URL") or DEFAULT_URL


def busy_seconds() -> float:
    """How long a SQLite statement waits for another process's write to end ($RAPPEL_SQLITE_BUSY_SECONDS, 30)."""
    try:
        return max(0.0, float(os.environ.get("RAPPEL_SQLITE_BUSY_SECONDS") or 30))
    except ValueError:
        return 30.0


def _sqlite_pragmas(dbapi_conn, _record):
    """Every connection: WAL (readers never wait for a writer, nor a writer for them) and a busy timeout."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_seconds() * 1000)}")
    cur.close()


def locked(exc: BaseException) -> bool:
    """A statement refused because another process writes (SQLite's 'database is locked', 'busy')."""
    text = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, OperationalError) and ("locked" in text or "busy" in text)


def _loan(row) -> Loan:
    return Loan(loan_id=row.loan_id, patron_id=row.patron_id, library=row.library, due_date=row.due_date,
                item_barcode=row.item_barcode, title=row.title, returned_on=row.returned_on, status=row.status,
                closed_reason=row.closed_reason, item_type=row.item_type or "", loan_policy=row.loan_policy or "")


def _patron(row) -> Patron:
    return Patron(**{name: getattr(row, name) for name in PATRON_FIELDS})


class Store:
    """Every read and write rappel does. One instance per command; methods open short transactions."""

    PATIENCE = 600.0      # seconds delivery keeps trying a commit the database refuses as locked

    def __init__(self, url: str | None = None, *, upgrade: bool = True, pool_size: int | None = None):
        """``pool_size``: connections kept for a process of many threads (`rappel serve`), as many
        more when busy; None: SQLAlchemy's default."""
        self.url = database_url(url)
        self.patience = self.PATIENCE
        self.engine = create_engine(self.url) if pool_size is None else \
            create_engine(self.url, pool_size=pool_size, max_overflow=pool_size)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if upgrade:
            migrate(self.engine)

    @classmethod
    def existing(cls, url: str | None = None) -> Store:
        """The database as it is, for commands that change nothing: DatabaseNotReady when there is none
        (a SQLite file is not created) or when its schema is older or newer than this version's."""
        url = database_url(url)
        path = make_url(url).database
        if make_url(url).get_backend_name() == "sqlite" and path not in (None, "", ":memory:") \
                and not Path(path).exists():
            raise DatabaseNotReady(f"{url}: no such database file (nothing imported yet? `rappel import` "
                                   f"creates it)")
        store = cls(url, upgrade=False)
        try:
            require_current_schema(store.engine, url)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.engine.dispose()

    def patiently(self, work: Callable[[], object]):
        """``work()`` (one transaction), again while another process's write (a long import) locks the
        database, for ``patience`` seconds; then its error is raised. Delivery commits through it."""
        deadline, pause = time.monotonic() + self.patience, 0.05
        while True:
            try:
                return work()
            except OperationalError as exc:
                if not locked(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # --- facts -----------------------------------------------------------------------------
    def known_ids(self, table) -> set[str]:
        pk = list(table.primary_key.columns)[0]
        with self.engine.connect() as conn:
            return set(conn.scalars(select(pk)))

    def barcodes(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(patrons.c.barcode, patrons.c.patron_id)).all())

    def upsert(self, conn: Connection, table, rows: list[dict]) -> None:
        """Insert rows, replacing those whose primary key exists (same code on SQLite and PostgreSQL)."""
        if not rows:
            return
        stmt = (postgresql if self.dialect == "postgresql" else sqlite).insert(table)
        pk = [c.name for c in table.primary_key.columns]
        stmt = stmt.on_conflict_do_update(
            index_elements=pk, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in pk})
        conn.execute(stmt, rows)
        if table is patrons:        # the desk's search words follow the names
            rewrite_patrons(conn, rows)

    def open_loans_by_library(self) -> dict[str, int]:
        """library → how many open loans it has (`rappel lint --db`: libraries missing from the policy)."""
        query = select(loans.c.library, func.count()).where(loans.c.returned_on.is_(None)).group_by(loans.c.library)
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    def patron(self, patron_id: str) -> Patron | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(patrons).where(patrons.c.patron_id == patron_id)).first()
        return _patron(row) if row else None

    def loan(self, loan_id: str) -> Loan | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(loans).where(loans.c.loan_id == loan_id)).first()
        return _loan(row) if row else None

    def loans_by_id(self, loan_ids: Iterable[str]) -> dict[str, Loan]:
        out: dict[str, Loan] = {}
        ids = list(loan_ids)
        with self.engine.connect() as conn:
            for chunk in _chunks(ids, 500):
                for row in conn.execute(select(loans).where(loans.c.loan_id.in_(chunk))):
                    out[row.loan_id] = _loan(row)
        return out

    def patrons_by_id(self, patron_ids: Iterable[str]) -> dict[str, Patron]:
        out: dict[str, Patron] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(patron_ids), 500):
                for row in conn.execute(select(patrons).where(patrons.c.patron_id.in_(chunk))):
                    out[row.patron_id] = _patron(row)
        return out

    def overdue_loans(self, patron_ids: Iterable[str], as_of: dt.date) -> dict[str, list[Loan]]:
        """Every open loan past its due date, per patron (the recap of a notice)."""
        out: dict[str, list[Loan]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(patron_ids)), 500):
                query = select(loans).where(loans.c.patron_id.in_(chunk), loans.c.returned_on.is_(None),
                                            loans.c.due_date < as_of).order_by(loans.c.due_date, loans.c.loan_id)
                for row in conn.execute(query):
                    out.setdefault(row.patron_id, []).append(_loan(row))
        return out

    # --- the daily candidates ------------------------------------------------------------
    def candidates(self, policy: Policy, as_of: dt.date) -> tuple[list[Candidate], dict[str, Patron]]:
        """The day's candidates (adapters/store/candidates.py): open loans whose due date lies in a
        stage's range (indexed), less those whose ledger settles them, with patron and ledger facts."""
        return read_candidates(self.engine, policy, as_of)

    def ledger_for(self, loan_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ledger).where(ledger.c.loan_id == loan_id, ledger.c.kind == "loan")
                                .order_by(ledger.c.due_date, ledger.c.decided_on)).mappings().all()
        return [dict(r) for r in rows]

    # --- the ledger and the outbox -------------------------------------------------------
    def record(self, plan: Plan) -> None:
        """Write every decision and notice of a plan in one transaction (before any delivery)."""
        with self.engine.begin() as conn:
            if plan.notices:
                conn.execute(insert(notices), [
                    {"key": n.key, "run_date": n.date, "stage": n.stage, "channel": n.channel,
                     "patron_id": n.patron_id, "library": n.library, "recipient": n.recipient,
                     "destination": n.destination, "status": n.status} for n in plan.notices])
            if plan.decisions:
                conn.execute(insert(ledger), [
                    {"loan_id": d.loan_id, "due_date": d.due_date, "stage": d.stage, "status": d.status,
                     "notice_key": d.notice_key, "decided_on": plan.as_of, "reason": d.reason, "kind": d.kind}
                    for d in plan.decisions])

    def pending(self) -> list[Notice]:
        """The notices waiting for delivery, oldest first, each with its ledger rows still pending
        (by loan id) and the attempts made."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(notices).where(notices.c.status == Status.PENDING)
                                .order_by(notices.c.run_date, notices.c.key)).all()
            entries: dict[str, list] = {}
            keys = [r.key for r in rows]
            for chunk in _chunks(keys, 500):
                for e in conn.execute(select(ledger.c.notice_key, ledger.c.loan_id, ledger.c.due_date, ledger.c.stage)
                                      .where(ledger.c.notice_key.in_(chunk), ledger.c.status == Status.PENDING)
                                      .order_by(ledger.c.loan_id)):
                    entries.setdefault(e.notice_key, []).append((e.loan_id, e.due_date, e.stage))
        out = []
        for r in rows:
            rows_of = entries.get(r.key, ())
            mine = tuple((loan_id, due) for loan_id, due, _ in rows_of)
            out.append(Notice(key=r.key, date=r.run_date, stage=r.stage, channel=r.channel, patron_id=r.patron_id,
                              library=r.library, loan_ids=tuple(sorted({loan_id for loan_id, _ in mine})),
                              recipient=r.recipient, destination=r.destination, entries=mine,
                              attempts=r.attempts, status=Status(r.status),
                              loan_stages=tuple((loan_id, st) for loan_id, _, st in rows_of if st != r.stage)))
        return out

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(ledger.c.status, func.count()).group_by(ledger.c.status)).all())

    # --- delivery: replies, retries with backoff, fallbacks (adapters/pipeline.py) ---------------
    def retry_times(self) -> dict[str, dt.datetime]:
        """Pending notices waiting for a retry: key → the time of their next attempt (UTC)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(notices.c.key, notices.c.next_attempt_at).where(
                notices.c.status == Status.PENDING, notices.c.next_attempt_at.is_not(None))).all()
        return {key: when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc) for key, when in rows}

    def settle_delivery(self, key: str, status: Status, **outcome) -> None:
        """Record a notice's outcome in one transaction (``settling``)."""
        self.transact(self.settling(key, status, **outcome))

    def transact(self, write: Callable[[Connection], object]) -> None:     # write(conn), patiently
        def work():
            with self.engine.begin() as conn:
                write(conn)
        self.patiently(work)

    def settling(self, key: str, status: Status, *, reference: str | None = None, error: str | None = None,
                 reply: str | None = None, next_attempt_at: dt.datetime | None = None,
                 entry_status: dict[tuple[str, dt.date], tuple[str, str]] | None = None,
                 kept: Handover | None = None, destination: str | None = None) -> Callable[[Connection], None]:
        """The statements that record a notice's outcome, what delivery keeps with it (the server's
        reply, when to try again, where it went when the channel put it elsewhere than decided:
        ``destination``, e.g. the outbox for a letter whose printer is not configured) and its ledger
        rows', to run in a transaction (delivery runs a sent message's in the transaction that marks
        the next one: adapters/store/notices.py Later). ``entry_status`` overrides the status of some
        ledger rows ((loan, due) → (status, reason)), e.g. a loan returned since the decision is
        cancelled while the rest is sent. ``kept``: the attempt and the message handed to the channel
        (adapters/store/sent.py), in place of the attempt's ``sending`` mark."""
        if next_attempt_at is not None:     # in UTC, as every stored time (SQLite keeps no offset)
            next_attempt_at = next_attempt_at.astimezone(dt.timezone.utc)
        given = {name: value for name, value in (("reference", reference), ("last_error", error), ("reply", reply),
                                                 ("destination", destination)) if value is not None}
        statement = _settle_statement(tuple(given))
        params = {"settle_key": key, "settle_status": status, "settle_next": next_attempt_at,
                  **{f"settle_{name}": value for name, value in given.items()}}

        def write(conn: Connection) -> None:
            conn.execute(statement, params)
            self._settle_ledger(conn, key, status, error, entry_status)
            keep(conn, key, kept)
        return write

    def reroute(self, key: str, *, error: str, reply: str | None, replacements: list[Notice],
                moves: dict[tuple[str, dt.date], tuple[str, str]],
                entry_status: dict[tuple[str, dt.date], tuple[str, str]] | None = None,
                kept: Handover | None = None) -> None:
        """A notice that failed for good is replaced by others (an email by letters), in one transaction:
        it is marked failed with its reason; the new notices are pending; its ledger rows move to them
        (``moves``: (loan, due) → (new key, reason)); ``entry_status`` rows are settled as given;
        ``kept``, the attempt refused and its message, is recorded with them."""
        now = func.now()

        def write(conn: Connection) -> None:
            conn.execute(update(notices).where(notices.c.key == key).values(
                status=Status.FAILED, updated_at=now, attempts=notices.c.attempts + 1, last_error=error,
                next_attempt_at=None, replaced_by=" ".join(n.key for n in replacements),
                **({"reply": reply} if reply is not None else {})))
            if replacements:
                conn.execute(insert(notices), [
                    {"key": n.key, "run_date": n.date, "stage": n.stage, "channel": n.channel,
                     "patron_id": n.patron_id, "library": n.library, "recipient": n.recipient,
                     "destination": n.destination, "status": n.status} for n in replacements])
            for (loan_id, due), (new_key, reason) in moves.items():
                conn.execute(update(ledger).where(ledger.c.notice_key == key, ledger.c.loan_id == loan_id,
                                                  ledger.c.due_date == due)
                             .values(notice_key=new_key, reason=reason, updated_at=now))
            self._settle_ledger(conn, key, Status.FAILED, error, entry_status)
            keep(conn, key, kept)
        self.transact(write)

    @staticmethod
    def _settle_ledger(conn: Connection, key: str, status: str, error: str | None,
                       entry_status: dict[tuple[str, dt.date], tuple[str, str]] | None) -> None:
        for (loan_id, due), (st, reason) in (entry_status or {}).items():
            conn.execute(update(ledger).where(ledger.c.notice_key == key, ledger.c.loan_id == loan_id,
                                              ledger.c.due_date == due)
                         .values(status=st, reason=reason, updated_at=func.now()))
        if status != Status.PENDING:
            conn.execute(_settle_rows(bool(error)), {"rows_key": key, "rows_status": status, "rows_reason": error})


# Built once (a delivery settles one notice a message): the notice's outcome, with the columns given …
@lru_cache(maxsize=64)
def _settle_statement(given: tuple[str, ...]):
    values = {"status": bindparam("settle_status"), "updated_at": func.now(), "attempts": notices.c.attempts + 1,
              "next_attempt_at": bindparam("settle_next", type_=notices.c.next_attempt_at.type),
              **{name: bindparam(f"settle_{name}", type_=notices.c[name].type) for name in given}}
    return update(notices).where(notices.c.key == bindparam("settle_key")).values(**values)


# … and its pending ledger rows' (with the reason, when there is one)
@lru_cache(maxsize=4)
def _settle_rows(with_reason: bool):
    values = {"status": bindparam("rows_status"), "updated_at": func.now()}
    if with_reason:
        values["reason"] = bindparam("rows_reason")
    return update(ledger).where(ledger.c.notice_key == bindparam("rows_key"),
                                ledger.c.status == Status.PENDING).values(**values)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


__all__ = ["Store", "database_url", "migrate", "DEFAULT_URL", "WAITING", "busy_seconds", "locked", "LOAN_FIELDS", "DatabaseUnavailable",
           "StatementError"]
