"""Upgrading a database in service (adapters/migrations): nothing it holds is lost.

A database is made by the first migration alone (0001, what the first release created), filled
with patrons, loans, notices and ledger rows, then opened by today's rappel, which upgrades it to
the head. SQLite file, and PostgreSQL when configured.
"""
from __future__ import annotations

import datetime as dt

import pytest
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect, select, text

from adapters.store.lease import Lease
from adapters.store.runs import RunLog
from adapters.store.search import search_patrons
from adapters.store.schema import metadata
from adapters.store.database import MIGRATIONS, Store, _sqlite_pragmas

ROWS = {
    "patrons": [
        {"patron_id": "P1", "barcode": "20001", "first_name": "Camille", "last_name": "Martin",
         "email": "camille.martin@etu.univ.example", "record_type": "public"},
        {"patron_id": "P2", "barcode": "20002", "first_name": "Léa", "last_name": "Dubois", "email": "",
         "record_type": "staff", "address_line1": "3 place Pey-Berland", "city": "Bordeaux"},
    ],
    "loans": [
        {"loan_id": "L1", "patron_id": "P1", "title": "Les Misérables", "library": "SCI",
         "due_date": dt.date(2026, 11, 10), "returned_on": None, "status": ""},
        {"loan_id": "L2", "patron_id": "P2", "title": "Le Rouge et le Noir", "library": "DROIT",
         "due_date": dt.date(2026, 10, 1), "returned_on": dt.date(2026, 10, 20), "status": ""},
    ],
    "requests": [
        {"request_id": "R1", "patron_id": "P1", "title": "Germinal", "library": "SCI", "pickup_library": "SCI",
         "placed_on": dt.date(2026, 11, 1), "status": "waiting", "expires_on": None},
    ],
    "notices": [
        {"key": "2026-11-17/first_reminder/email/P1/-", "run_date": dt.date(2026, 11, 17), "stage": "first_reminder",
         "channel": "email", "patron_id": "P1", "library": None, "recipient": "camille.martin@etu.univ.example",
         "destination": "camille.martin@etu.univ.example", "status": "sent", "attempts": 1,
         "reference": "outbox/email/2026-11-17/a.eml", "last_error": None},
        {"key": "2026-11-18/letter/letter/P2/DROIT", "run_date": dt.date(2026, 11, 18), "stage": "letter",
         "channel": "letter", "patron_id": "P2", "library": "DROIT", "recipient": "3 place Pey-Berland, Bordeaux",
         "destination": "mailbox:droit@univ.example", "status": "pending", "attempts": 2, "reference": None,
         "last_error": "server down"},
    ],
    "ledger": [
        {"loan_id": "L1", "due_date": dt.date(2026, 11, 10), "stage": "first_reminder", "status": "sent",
         "notice_key": "2026-11-17/first_reminder/email/P1/-", "decided_on": dt.date(2026, 11, 17),
         "reason": "due on 2026-11-17, email"},
        {"loan_id": "L2", "due_date": dt.date(2026, 10, 1), "stage": "letter", "status": "pending",
         "notice_key": "2026-11-18/letter/letter/P2/DROIT", "decided_on": dt.date(2026, 11, 18),
         "reason": "due on 2026-11-18, letter"},
        {"loan_id": "L2", "due_date": dt.date(2026, 10, 1), "stage": "first_reminder", "status": "superseded",
         "notice_key": None, "decided_on": dt.date(2026, 11, 18), "reason": "superseded by letter"},
    ],
}


def _config(conn) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _engine(url: str):
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _migrate(url: str, verb, revision: str) -> None:
    engine = _engine(url)
    with engine.begin() as conn:
        verb(_config(conn), revision)
    engine.dispose()


def _dump(engine) -> dict[str, list[dict]]:
    """Every row of the tables of 0001, as written above (only the columns written)."""
    out = {}
    with engine.connect() as conn:
        for name, rows in ROWS.items():
            table = metadata.tables[name]
            names = list(rows[0])
            key = names[:3] if name == "ledger" else names[:1]
            query = select(*(table.c[n] for n in names)).order_by(*(table.c[k] for k in key))
            out[name] = [dict(r) for r in conn.execute(query).mappings()]
    return out


def _expected() -> dict[str, list[dict]]:
    out = {}
    for table, rows in ROWS.items():
        names = list(rows[0])
        key = names[:3] if table == "ledger" else names[:1]
        full = [{n: r.get(n, "") for n in names} for r in rows]
        out[table] = sorted(full, key=lambda r: tuple(str(r[k]) for k in key))
    return out


def _head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _sql(value):
    """Dates as ISO text, as a raw INSERT of the first release's time would write them (Python 3.12
    deprecates sqlite3's implicit date adapter)."""
    return value.isoformat() if isinstance(value, dt.date) else value


@pytest.fixture
def first_release_db(db_url):
    """A database as the first migration left it, with rows in every table."""
    _migrate(db_url, command.upgrade, "0001")
    engine = _engine(db_url)
    with engine.begin() as conn:
        for table, rows in ROWS.items():
            names = sorted({n for r in rows for n in r})
            conn.execute(text(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                              f"({', '.join(':' + n for n in names)})"),
                         [{n: _sql(r.get(n, "")) for n in names} for r in rows])
    engine.dispose()
    return db_url


def test_a_database_of_the_first_release_upgrades_to_the_head_without_losing_a_row(first_release_db):
    store = Store(first_release_db)          # what every command does: upgrade to the head
    try:
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == _head()
        assert _dump(store.engine) == _expected()
        tables = set(inspect(store.engine).get_table_names())
        assert {"runs", "leases", "installation"} <= tables
        # and the upgraded database works: the ledger as before, the daemon's tables usable
        assert store.counts() == {"sent": 1, "pending": 1, "superseded": 1}
        # migration 0009 wrote the name words of the patrons already there: the desk finds them
        assert [p.patron_id for p in search_patrons(store, "LEA dub")[0]] == ["P2"]
        assert [p.key for p in store.pending()] == ["2026-11-18/letter/letter/P2/DROIT"]
        assert Lease(store.engine, ttl=10, holder="upgraded").acquire()
        RunLog(store.engine, "upgraded").note("day", dt.date(2026, 11, 23), "ok",
                                              dt.datetime(2026, 11, 23, 1, tzinfo=dt.timezone.utc))
    finally:
        store.close()


def test_each_step_upgrades_and_the_operations_step_downgrades_cleanly(first_release_db):
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    steps = [rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions("base", "heads")][::-1]
    assert steps[0] == "0001" and steps[-1] == _head() and "0004" in steps
    for revision in steps[1:]:
        _migrate(first_release_db, command.upgrade, revision)
    _migrate(first_release_db, command.downgrade, "0003")
    engine = _engine(first_release_db)
    assert not {"runs", "leases", "installation"} & set(inspect(engine).get_table_names())
    engine.dispose()
    _migrate(first_release_db, command.upgrade, "head")
    engine = _engine(first_release_db)
    assert _dump(engine) == _expected()
    engine.dispose()


def test_the_migrations_build_exactly_the_tables_the_code_declares(db_url):
    """adapters/store/schema.py and the migrations agree: nothing declared is missing from the head,
    nothing at the head is undeclared (a column added to one and forgotten in the other fails here)."""
    from alembic.autogenerate import compare_metadata

    _migrate(db_url, command.upgrade, "head")
    engine = _engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            differences = [d for d in compare_metadata(context, metadata)
                           if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]
    finally:
        engine.dispose()
    assert differences == []


def test_the_head_read_from_the_migration_files_is_alembic_s(tmp_path):
    """adapters/store/revision.py reads the head revision and a database's without alembic (a run at
    the head loads no alembic); both agree with alembic's own reading."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from adapters.store import revision
    from adapters.store.database import _alembic_config
    assert revision.head() == ScriptDirectory.from_config(_alembic_config()).get_current_head()
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        with store.engine.connect() as conn:
            assert revision.current(conn) == MigrationContext.configure(conn).get_current_revision() == revision.head()
    finally:
        store.engine.dispose()
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with empty.connect() as conn:
        assert revision.current(conn) is None
    empty.dispose()
