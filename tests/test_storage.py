"""Storage (adapters/storage.py) on a real database: SQLite file, and PostgreSQL when configured.

- alembic migrations create the schema of adapters/schema.py, and opening again changes nothing;
- the daily pre-filter has its partial index ix_loans_open_due (open loans by due date), and on
  SQLite the candidate query goes through it;
- Store.candidates returns exactly the open loans whose due date lies in a stage's range for the
  run date, each with the ledger stages recorded for its *current* due date;
- Store.record writes a plan's notices and ledger rows in one transaction: a (loan, stage, due)
  already in the ledger makes it raise, and nothing of that plan is written.
"""
from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import IntegrityError

from adapters.store.schema import ledger, loans, metadata, notices, patrons
from adapters.store.database import MIGRATIONS, Store, migrate
from engine.decide import Decision, Notice, Plan

try:
    from tests.engine_cases import d, default_policy, with_restart
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import d, default_policy, with_restart


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def alembic_head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def add_patrons(store: Store, *rows: dict) -> None:
    base = {"first_name": "", "last_name": "", "email": "", "preferred_language": "fr", "account_type": "internal",
            "record_type": "public", "user_group": "", "address_line1": "", "address_line2": "",
            "postal_code": "", "city": "", "country": "", "phone": ""}
    with store.engine.begin() as conn:
        store.upsert(conn, patrons, [{**base, "barcode": f"BC-{r['patron_id']}", **r} for r in rows])


def add_loans(store: Store, *rows: tuple) -> None:
    """rows: (loan_id, patron_id, due date, returned_on or None, status)."""
    with store.engine.begin() as conn:
        store.upsert(conn, loans, [
            {"loan_id": lid, "patron_id": pid, "item_barcode": f"B-{lid}", "title": f"Title {lid}",
             "library": "SCI", "due_date": d(due), "returned_on": d(ret) if ret else None, "status": status}
            for lid, pid, due, ret, status in rows])


def notice(key: str, day: str, stage: str, patron_id: str = "P1") -> Notice:
    return Notice(key, d(day), stage, "email", patron_id, None, (), f"{patron_id.lower()}@univ.example",
                  f"{patron_id.lower()}@univ.example")


def ledger_rows(store: Store) -> list[tuple]:
    with store.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(
            select(ledger.c.loan_id, ledger.c.due_date, ledger.c.stage, ledger.c.status, ledger.c.notice_key,
                   ledger.c.decided_on)))


def notice_keys(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.scalars(select(notices.c.key)))


# --- migrations ----------------------------------------------------------------------------------

def test_migrations_create_the_schema_at_alembic_head(store):
    assert current_revision(store) == alembic_head()
    names = set(inspect(store.engine).get_table_names())
    assert {"patrons", "loans", "requests", "notices", "ledger", "alembic_version"} <= names
    # the migrated database is exactly adapters/schema.py: no table, column or index missing or extra
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diffs == []


def test_opening_again_is_a_no_op(store, db_url):
    add_patrons(store, {"patron_id": "P1"})
    add_loans(store, ("L1", "P1", "2026-11-20", None, ""))
    head = current_revision(store)

    again = Store(db_url, upgrade=False)
    ddl = []

    @event.listens_for(again.engine, "before_cursor_execute")
    def spy(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().split(" ", 1)[0].upper() in ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"):
            ddl.append(statement)

    migrate(again.engine)
    assert ddl == []
    assert current_revision(again) == head
    assert again.loan("L1").due_date == d("2026-11-20")
    again.close()

    third = Store(db_url)   # the ordinary way, upgrade on open
    assert current_revision(third) == head and third.loan("L1") is not None
    third.close()


def test_the_pre_filter_index_is_partial_on_open_loans(store):
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'ix_loans_open_due'"
                                    )).scalar_one()
        assert "due_date" in sql and "returned_on IS NULL" in sql
    else:
        with store.engine.connect() as conn:
            sql = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_loans_open_due' "
                                    "AND schemaname = current_schema()")).scalar_one()
        assert "(due_date)" in sql and "WHERE (returned_on IS NULL)" in sql


def _candidate_query_plans(store: Store) -> list[list[str]]:
    """EXPLAIN QUERY PLAN of every statement Store.candidates runs on the loans table (SQLite)."""
    add_patrons(store, *({"patron_id": f"P{i}"} for i in range(20)))
    add_loans(store, *((f"L{i:04d}", f"P{i % 20}", (d("2026-01-01") + dt.timedelta(days=i % 400)).isoformat(),
                        "2026-12-01" if i % 7 == 0 else None, "") for i in range(3000)))
    seen = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def spy(conn, cursor, statement, parameters, context, executemany):
        if "FROM" in statement and "loans" in statement:
            seen.append((statement, parameters))

    try:
        store.candidates(default_policy(), d("2026-11-23"))
    finally:
        event.remove(store.engine, "before_cursor_execute", spy)
    assert len(seen) >= 1
    plans = []
    with store.engine.connect() as conn:
        for statement, parameters in seen:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            plans.append([r[-1] for r in rows if " loans" in r[-1]])
    return plans


def test_on_sqlite_the_candidate_query_uses_the_pre_filter_index(sqlite_url):
    store = Store(sqlite_url)
    try:
        for plan in _candidate_query_plans(store):
            assert plan and all("ix_loans_open_due" in step for step in plan), plan
    finally:
        store.close()


def test_on_sqlite_the_candidate_query_seeks_the_due_date_ranges(sqlite_url):
    store = Store(sqlite_url)
    try:
        for plan in _candidate_query_plans(store):
            assert plan and all(step.startswith("SEARCH loans USING INDEX ix_loans_open_due (due_date")
                                for step in plan), plan
    finally:
        store.close()


# --- the daily candidates --------------------------------------------------------------------------

# Run date Monday 2026-11-23, the shipped policy (courtesy -3, first +7, second +21, letter +35, each
# caught up within 2 days). A loan is a candidate when one of its triggers falls on 2026-11-21..23:
#   courtesy        due 2026-11-24 .. 2026-11-26
#   first_reminder  due 2026-11-14 .. 2026-11-16
#   second_reminder due 2026-10-31 .. 2026-11-02
#   letter          due 2026-10-17 .. 2026-10-19
LOANS = [
    # loan          due           returned      status   candidate?
    ("due-today",   "2026-11-23", None,         "",      False),   # courtesy would need the run before due
    ("courtesy-2",  "2026-11-24", None,         "",      True),    # courtesy triggered 11-21, 2 days late
    ("courtesy-0",  "2026-11-26", None,         "",      True),    # courtesy triggers today
    ("courtesy+1",  "2026-11-27", None,         "",      False),   # courtesy triggers tomorrow
    ("first-3",     "2026-11-13", None,         "",      False),   # first reminder 3 days late: stale
    ("first-2",     "2026-11-14", None,         "",      True),
    ("first-0",     "2026-11-16", None,         "",      False),   # its first reminder is in the ledger: settled
    ("first+1",     "2026-11-17", None,         "",      False),
    ("second-3",    "2026-10-30", None,         "",      False),
    ("second-2",    "2026-10-31", None,         "",      True),
    ("second-0",    "2026-11-02", None,         "",      True),
    ("second+1",    "2026-11-03", None,         "",      False),
    ("letter-3",    "2026-10-16", None,         "",      False),
    ("letter-2",    "2026-10-17", None,         "",      True),
    ("letter-0",    "2026-10-19", None,         "",      True),
    ("letter+1",    "2026-10-20", None,         "",      False),
    ("returned",    "2026-11-15", "2026-11-20", "",      False),   # returned: never a candidate
    ("lost",        "2026-11-15", None,         "lost",  True),    # open: the engine excludes it
    ("renewed",     "2026-11-15", None,         "",      True),    # renewed from 2026-11-08
    ("staff",       "2026-11-15", None,         "",      True),    # a staff patron's loan
]


def _load_candidates_case(store: Store) -> None:
    add_patrons(store, {"patron_id": "P1"}, {"patron_id": "P2", "record_type": "staff", "user_group": "staff"})
    add_loans(store, *((lid, "P2" if lid == "staff" else "P1", due, ret, status)
                       for lid, due, ret, status, _ in LOANS))
    # ledger: "renewed" had courtesy and first_reminder for its old due date 2026-11-08, and a courtesy
    # for its current one (its first reminder is still to come); "first-0" already had its first
    # reminder today (a second run of the day): the last stage it could be due for is in the ledger.
    store.record(Plan(as_of=d("2026-11-15"), notices=[notice("k1", "2026-11-05", "courtesy")], decisions=[
        Decision("renewed", "courtesy", d("2026-11-08"), "pending", "k1", "old due date"),
        Decision("renewed", "first_reminder", d("2026-11-08"), "superseded", None, "old due date"),
        Decision("renewed", "courtesy", d("2026-11-15"), "pending", "k1", "current due date"),
        Decision("first-0", "first_reminder", d("2026-11-16"), "pending", "k1", "today"),
        Decision("first+1", "courtesy", d("2026-11-17"), "pending", "k1", "not a candidate today"),
    ]))


def test_candidates_are_exactly_the_open_loans_in_the_due_ranges(store):
    _load_candidates_case(store)
    cands, found = store.candidates(default_policy(), d("2026-11-23"))
    got = sorted(c.loan.loan_id for c in cands)
    assert got == sorted(lid for lid, *_, wanted in LOANS if wanted)
    assert len(got) == len(set(got))   # once each, even when two ranges could overlap

    by_id = {c.loan.loan_id: c for c in cands}
    assert by_id["renewed"].recorded == frozenset({"courtesy"})          # not the old due date's rows
    assert all(not c.recorded for lid, c in by_id.items() if lid != "renewed")
    assert (by_id["staff"].record_type, by_id["staff"].user_group) == ("staff", "staff")
    assert (by_id["first-2"].record_type, by_id["first-2"].user_group) == ("public", "")
    assert by_id["lost"].loan.status == "lost"
    assert by_id["courtesy-2"].loan.due_date == d("2026-11-24")
    assert set(found) == {"P1", "P2"} and found["P2"].record_type == "staff"


def test_candidates_after_a_restart_start_from_the_restart_day(store):
    """Restart on Sunday 2026-11-22: triggers before it are never sent, so those loans are not read."""
    _load_candidates_case(store)
    cands, _ = store.candidates(with_restart(d("2026-11-22")), d("2026-11-23"))
    got = sorted(c.loan.loan_id for c in cands)
    # courtesy-2 (trigger 11-21), first-2 (11-21), second-2 (11-21), letter-2 (11-21) drop out;
    # the loans due 2026-11-15 trigger their first reminder on 11-22: still in
    assert got == sorted(lid for lid, *_, wanted in LOANS
                         if wanted and lid not in ("courtesy-2", "first-2", "second-2", "letter-2"))


def test_no_candidates_on_a_quiet_day(store):
    _load_candidates_case(store)
    cands, found = store.candidates(default_policy(), d("2027-06-01"))
    assert (cands, found) == ([], {})


# --- record(): one transaction ------------------------------------------------------------------

def test_record_writes_notices_and_every_decision(store):
    add_patrons(store, {"patron_id": "P1"})
    add_loans(store, ("L1", "P1", "2026-11-16", None, ""), ("L2", "P1", "2026-11-16", None, ""),
              ("L3", "P1", "2026-11-02", None, ""))
    key = "2026-11-23/first_reminder/email/P1/-"
    store.record(Plan(as_of=d("2026-11-23"), notices=[notice(key, "2026-11-23", "first_reminder")], decisions=[
        Decision("L1", "first_reminder", d("2026-11-16"), "pending", key, "due"),
        Decision("L2", "first_reminder", d("2026-11-16"), "pending", key, "due"),
        Decision("L3", "first_reminder", d("2026-11-02"), "superseded", None, "superseded by second_reminder"),
    ]))
    assert notice_keys(store) == [key]
    assert ledger_rows(store) == [
        ("L1", d("2026-11-16"), "first_reminder", "pending", key, d("2026-11-23")),
        ("L2", d("2026-11-16"), "first_reminder", "pending", key, d("2026-11-23")),
        ("L3", d("2026-11-02"), "first_reminder", "superseded", None, d("2026-11-23")),
    ]
    [pending] = store.pending()
    assert (pending.key, pending.stage, pending.attempts) == (key, "first_reminder", 0)
    assert pending.entries == (("L1", d("2026-11-16")), ("L2", d("2026-11-16")))


def test_a_duplicate_ledger_key_raises_and_writes_nothing_of_the_plan(store):
    add_patrons(store, {"patron_id": "P1"}, {"patron_id": "P2"})
    add_loans(store, ("L1", "P1", "2026-11-16", None, ""), ("L2", "P2", "2026-11-16", None, ""))
    k1 = "2026-11-23/first_reminder/email/P1/-"
    store.record(Plan(as_of=d("2026-11-23"), notices=[notice(k1, "2026-11-23", "first_reminder")], decisions=[
        Decision("L1", "first_reminder", d("2026-11-16"), "pending", k1, "due")]))
    before = (notice_keys(store), ledger_rows(store))

    k2 = "2026-11-24/first_reminder/email/P2/-"
    plan = Plan(as_of=d("2026-11-24"), notices=[notice(k2, "2026-11-24", "first_reminder", "P2")], decisions=[
        Decision("L2", "first_reminder", d("2026-11-16"), "pending", k2, "due"),
        Decision("L1", "first_reminder", d("2026-11-16"), "pending", k2, "due again: must not be written"),
    ])
    with pytest.raises(IntegrityError):
        store.record(plan)
    assert (notice_keys(store), ledger_rows(store)) == before   # neither P2's notice nor L2's row

    # the same (loan, stage) with another due date (a renewal) is a new key
    store.record(Plan(as_of=d("2026-11-24"), decisions=[
        Decision("L1", "first_reminder", d("2026-11-30"), "superseded", None, "renewed")]))
    assert len(ledger_rows(store)) == 2
