"""Reading a library system's database: opened read-only, rows streamed, every value as CSV text.

    with SqlSource(url, "koha").reading() as reading:
        for number, row in reading.rows(query, LOAN_FIELDS, {"returned_since": day}):
            ...

- Every connection is read-only from the moment it opens: the driver sets it up as it connects
  (PyMySQL's ``init_command``: ``SET SESSION TRANSACTION … READ ONLY``; libpq's ``options``:
  ``default_transaction_read_only=on``), and the same settings are sent again before rappel's first
  query (``SET SESSION CHARACTERISTICS AS TRANSACTION … READ ONLY`` on PostgreSQL), so a write
  through it fails whatever the database user may do. Give rappel a user that can only SELECT too.
- One transaction, REPEATABLE READ, for everything a pull reads: patrons, loans and requests are
  one consistent picture of the library system (a loan's patron is in the same picture).
- Rows are streamed (a server-side cursor: PyMySQL's SSCursor, a psycopg named cursor), so a pull
  of millions of loans holds a few thousand rows in memory, never the whole result.
- Values are rendered as a CSV cell would hold them: NULL as "", dates and timestamps in ISO 8601
  (a timestamp with a time zone keeps its offset), numbers as digits.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from adapters.store.schema import OPTIONAL_FIELDS

__all__ = ["ColumnsMismatch", "QueryFailed", "Reading", "SourceUnavailable", "SqlSource", "as_text", "safe_url"]

STREAM_ROWS = 2000          # rows fetched from the server at a time

# Run on every new connection, before anything else is sent (the dialect's own first queries included).
_MYSQL = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
READ_ONLY = {
    "mysql": (_MYSQL,),
    "mariadb": (_MYSQL,),
    "postgresql": ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",),
}
# What the drivers send as they connect: libpq's options (psycopg, psycopg2), MySQL's init_command.
_LIBPQ_OPTIONS = r"-c default_transaction_read_only=on -c default_transaction_isolation=repeatable\ read"
CONNECT_TIMEOUT = 15        # seconds, unless the URL says otherwise


class SourceUnavailable(Exception):
    """The database could not be reached or refused rappel (host down, bad password, no such database)."""


class QueryFailed(Exception):
    """A query failed in the library system's database (no such table, no SELECT privilege, bad SQL)."""


class ColumnsMismatch(Exception):
    """A query does not return rappel's columns for its kind."""

    def __init__(self, missing: Sequence[str], extra: Sequence[str]):
        self.missing, self.extra = list(missing), list(extra)
        parts = []
        if missing:
            parts.append(f"it returns no column {', '.join(missing)}")
        if extra:
            parts.append(f"columns not rappel's: {', '.join(extra)}")
        super().__init__("; ".join(parts))


def safe_url(url: str) -> str:
    """The URL as it may be shown or logged: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: show nothing of it
        return "<unreadable URL>"


def as_text(value) -> str:
    """A database value as a CSV cell holds it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _driver_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split("\n", 1)[0].split()) or type(orig).__name__


class SqlSource:
    """One library system's database, for reading only."""

    def __init__(self, url: str, name: str):
        self.name = name
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in READ_ONLY:
            raise ValueError(f"rappel opens only MariaDB/MySQL and PostgreSQL databases read-only, not "
                             f"{self.dialect}")
        self.shown = parsed.render_as_string(hide_password=True)
        args: dict[str, object] = {}
        if "connect_timeout" not in parsed.query:
            args["connect_timeout"] = CONNECT_TIMEOUT
        if self.dialect == "postgresql":
            if "application_name" not in parsed.query:
                args["application_name"] = "rappel"
            given = parsed.query.get("options", "")
            args["options"] = f"{given} {_LIBPQ_OPTIONS}".strip() if isinstance(given, str) else _LIBPQ_OPTIONS
            parsed = parsed.difference_update_query(["options"])
        elif parsed.get_driver_name() in ("pymysql", "mysqldb"):
            args["init_command"] = _MYSQL
        try:
            self.engine = create_engine(parsed, poolclass=NullPool, connect_args=args)
        except ModuleNotFoundError as exc:
            extra = "mariadb" if self.dialect in ("mysql", "mariadb") else "postgres"
            raise SourceUnavailable(f"the driver of {self.shown} is not installed ({exc.name}): "
                                    f"pip install 'rappel[{extra}]' (or '.[{extra}]' from the checkout)") from None
        event.listen(self.engine, "connect", self._read_only, insert=True)

    def _read_only(self, dbapi_conn, _record) -> None:
        cursor = dbapi_conn.cursor()
        try:
            for statement in READ_ONLY[self.dialect]:
                cursor.execute(statement)
        finally:
            cursor.close()
        dbapi_conn.commit()

    def _seal(self, conn: Connection) -> None:
        """Open the transaction read-only and check that it is: once a transaction has run a
        statement, nothing inside it can make it read-write again."""
        try:
            if self.dialect == "postgresql":
                read_only = conn.exec_driver_sql("SELECT current_setting('transaction_read_only')").scalar()
            else:
                conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                read_only = "on" if self._mysql_read_only(conn) else "off"
        except DBAPIError as exc:
            raise SourceUnavailable(f"cannot open a read-only transaction on {self.shown}: "
                                    f"{_driver_message(exc)}") from None
        if read_only != "on":
            raise SourceUnavailable(f"{self.shown} did not open the transaction read-only: nothing read")

    @staticmethod
    def _mysql_read_only(conn: Connection) -> bool:
        """The session's read-only flag: transaction_read_only (MySQL 8, MariaDB 11.1+), else
        tx_read_only (MariaDB 10, MySQL 5.7)."""
        try:
            return bool(conn.exec_driver_sql("SELECT @@session.transaction_read_only").scalar())
        except DBAPIError:
            return bool(conn.exec_driver_sql("SELECT @@session.tx_read_only").scalar())

    @contextmanager
    def reading(self) -> Iterator[Reading]:
        """One read-only transaction; rolled back (nothing to keep) and closed at the end."""
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            self.engine.dispose()
            raise SourceUnavailable(f"cannot connect to {self.shown}: {_driver_message(exc)}") from None
        try:
            transaction = conn.begin()
            try:
                self._seal(conn)
                yield Reading(conn, self)
            finally:
                transaction.rollback()     # never committed: there is nothing to keep
        finally:
            conn.close()
            self.engine.dispose()


class Reading:
    """Queries inside the read-only transaction of ``SqlSource.reading``."""

    def __init__(self, conn: Connection, source: SqlSource):
        self.conn = conn
        self.source = source

    def rows(self, query: str, columns: Sequence[str], params: Mapping[str, object] | None = None
             ) -> Iterator[tuple[int, dict[str, str]]]:
        """(row number from 1, {column: text}) for each row, streamed. The query runs at once:
        QueryFailed when the database refuses it, ColumnsMismatch when its columns are not exactly
        ``columns`` (in any order), both before any row is read."""
        statement = text(query)
        used = statement.compile().params
        try:
            result = self.conn.execute(statement, {k: v for k, v in (params or {}).items() if k in used},
                                       execution_options={"stream_results": True, "max_row_buffer": STREAM_ROWS})
        except SQLAlchemyError as exc:
            raise QueryFailed(_driver_message(exc)) from None
        names = list(result.keys())
        missing = [c for c in columns if c not in names and c not in OPTIONAL_FIELDS]
        extra = [n for n in names if n not in columns] or sorted({n for n in names if names.count(n) > 1})
        if missing or extra:
            result.close()
            raise ColumnsMismatch(missing, extra)
        return self._stream(result, names)

    @staticmethod
    def _stream(result, names: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
        with result:
            try:
                for number, values in enumerate(result, start=1):
                    yield number, {name: as_text(value) for name, value in zip(names, values)}
            except SQLAlchemyError as exc:
                raise QueryFailed(_driver_message(exc)) from None

    def execute(self, statement: str):
        """A statement as given (for tests: proving that a write is refused)."""
        return self.conn.exec_driver_sql(statement)
