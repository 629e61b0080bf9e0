"""CSV imports (adapters/sources/) on a real database: SQLite file, and PostgreSQL when configured.

Rules under test (design, "Exact semantics"; README, imports):
- rows upsert by id: a changed row updates the stored one; the report counts new and updated rows;
- a file with any bad row is rejected whole: the error names every bad row (file, line, row number,
  reason) and the database is exactly as before, even when thousands of good rows came first;
- a due timestamp with an offset is converted to a local date in the policy's time zone; a naive
  timestamp is already local.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from adapters.sources.csvfiles import import_csv
from adapters.store.facts import Staging
from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, REQUEST_FIELDS, loans, patrons, requests
from adapters.store.database import Store
from engine.yamlsource import InputError

try:
    from tests.engine_cases import d, policy_variant
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import d, policy_variant


# --- small builders: CSV text written out column by column --------------------------------------

def patron_line(patron_id, barcode, *, email="", record_type="public", account_type="internal",
                first="Camille", last="Durand", group="undergraduate") -> str:
    values = {"patron_id": patron_id, "barcode": barcode, "first_name": first, "last_name": last,
              "email": email, "preferred_language": "fr", "account_type": account_type,
              "record_type": record_type, "user_group": group, "address_line1": "12 rue des Facs",
              "postal_code": "33000", "city": "Bordeaux", "country": "France"}
    return ",".join(values.get(name, "") for name in PATRON_FIELDS)


def loan_line(loan_id, patron_id, library, due, *, returned="", status="", title=None) -> str:
    values = {"loan_id": loan_id, "patron_id": patron_id, "item_barcode": f"B-{loan_id}",
              "title": title if title is not None else f"Title {loan_id}", "library": library,
              "due_date": due, "returned_on": returned, "status": status}
    return ",".join(values.get(name, "") for name in LOAN_FIELDS)


def write(path: Path, header: tuple[str, ...] | str, lines: list[str]) -> Path:
    head = header if isinstance(header, str) else ",".join(header)
    path.write_text("\n".join([head, *lines]) + "\n", encoding="utf-8")
    return path


def snapshot(store: Store) -> dict[str, list[tuple]]:
    """Every row of the fact tables, sorted: 'the database is unchanged' compares two of these."""
    out = {}
    with store.engine.connect() as conn:
        for table in (patrons, loans, requests):
            out[table.name] = sorted(tuple(r) for r in conn.execute(select(table)))
    return out


def loan_row(store: Store, loan_id: str):
    with store.engine.connect() as conn:
        return conn.execute(select(loans).where(loans.c.loan_id == loan_id)).first()


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def with_patrons(store, policy, tmp_path):
    """P1 and P2, public patrons with an email; what loan files refer to."""
    write(tmp_path / "patrons.csv", PATRON_FIELDS, [
        patron_line("P1", "2000000001", email="p1@etu.univ.example"),
        patron_line("P2", "2000000002", email="p2@etu.univ.example"),
    ])
    import_csv(store, policy, "patrons", tmp_path / "patrons.csv")
    return store


# --- upsert by id ------------------------------------------------------------------------------

def test_patrons_insert_then_update_by_id(store, policy, tmp_path):
    first = write(tmp_path / "patrons-1.csv", PATRON_FIELDS, [
        patron_line("P1", "2000000001", email="camille.durand@etu.univ.example"),
        patron_line("P2", "2000000002", email="thomas.lefevre@etu.univ.example"),
    ])
    report = import_csv(store, policy, "patrons", first)
    assert (report.rows, report.inserted, report.updated) == (2, 2, 0)

    second = write(tmp_path / "patrons-2.csv", PATRON_FIELDS, [
        patron_line("P1", "2000000001", email="camille.durand@univ.example", record_type="staff"),  # changed
        patron_line("P3", "2000000003", email=""),                                                   # new
    ])
    report = import_csv(store, policy, "patrons", second)
    assert (report.rows, report.inserted, report.updated) == (2, 1, 1)

    p1, p2, p3 = store.patron("P1"), store.patron("P2"), store.patron("P3")
    assert (p1.email, p1.record_type) == ("camille.durand@univ.example", "staff")
    assert p2.email == "thomas.lefevre@etu.univ.example"          # not in the second file: untouched
    assert (p3.email, p3.record_type) == ("", "public")
    assert len(snapshot(store)["patrons"]) == 3


def test_loans_insert_then_update_by_id(with_patrons, policy, tmp_path):
    store = with_patrons
    first = write(tmp_path / "loans-1.csv", LOAN_FIELDS, [
        loan_line("L1", "P1", "SCI", "2026-11-20"),
        loan_line("L2", "P1", "DROIT", "2026-11-21"),
    ])
    report = import_csv(store, policy, "loans", first)
    assert (report.rows, report.inserted, report.updated) == (2, 2, 0)

    second = write(tmp_path / "loans-2.csv", LOAN_FIELDS, [
        loan_line("L1", "P1", "SCI", "2026-12-04"),                            # renewed
        loan_line("L2", "P1", "DROIT", "2026-11-21", returned="2026-11-19"),  # returned
        loan_line("L3", "P2", "SCI", "2026-11-22", status="lost"),             # new
    ])
    report = import_csv(store, policy, "loans", second)
    assert (report.rows, report.inserted, report.updated) == (3, 1, 2)

    assert store.loan("L1").due_date == d("2026-12-04")
    assert (store.loan("L2").due_date, store.loan("L2").returned_on) == (d("2026-11-21"), d("2026-11-19"))
    assert (store.loan("L3").patron_id, store.loan("L3").status) == ("P2", "lost")

    # a third file un-returns nothing by accident: re-importing the same row is an update, same values
    report = import_csv(store, policy, "loans", second)
    assert (report.inserted, report.updated) == (0, 3)
    assert store.loan("L2").returned_on == d("2026-11-19")


def test_requests_import(with_patrons, policy, tmp_path):
    store = with_patrons
    path = write(tmp_path / "requests.csv", REQUEST_FIELDS, [
        "R1,P1,Le Rouge et le Noir,SCI,DROIT,2026-11-10,active,2026-12-10",
        "R2,P2,Traité de droit administratif,DROIT,DROIT,2026-11-12,active,",
    ])
    report = import_csv(store, policy, "requests", path)
    assert (report.rows, report.inserted, report.updated) == (2, 2, 0)
    # the last column, ready_on: the day the request became the policy's ready status (none yet)
    assert snapshot(store)["requests"] == [
        ("R1", "P1", "Le Rouge et le Noir", "SCI", "DROIT", d("2026-11-10"), "active", d("2026-12-10"), None),
        ("R2", "P2", "Traité de droit administratif", "DROIT", "DROIT", d("2026-11-12"), "active", None, None),
    ]


@pytest.mark.parametrize("exports, ready_on", [
    # (status, export's date) of R1, one import after the other → its ready_on
    ([("active", "2026-12-01")], None),
    ([("on_hold_shelf", "2026-12-01")], "2026-12-01"),
    ([("active", "2026-12-01"), ("on_hold_shelf", "2026-12-03")], "2026-12-03"),
    ([("on_hold_shelf", "2026-12-01"), ("on_hold_shelf", "2026-12-03")], "2026-12-01"),   # still the first day
    ([("on_hold_shelf", "2026-12-01"), ("fulfilled", "2026-12-03")], None),
    ([("on_hold_shelf", "2026-12-01"), ("in_transit", "2026-12-02"), ("on_hold_shelf", "2026-12-05")], "2026-12-05"),
])
def test_an_import_records_the_day_a_request_became_ready(with_patrons, policy, tmp_path, exports, ready_on):
    for status, day in exports:
        path = write(tmp_path / "requests.csv", REQUEST_FIELDS, [
            f"R1,P1,Le Rouge et le Noir,SCI,DROIT,2026-11-10,{status},2026-12-10"])
        import_csv(with_patrons, policy, "requests", path, facts_date=d(day))
    [row] = snapshot(with_patrons)["requests"]
    assert row[-1] == (d(ready_on) if ready_on else None)


# --- bad files are rejected whole ----------------------------------------------------------------

@pytest.mark.parametrize("kind, fields, dropped", [
    ("patrons", PATRON_FIELDS, "email"),
    ("loans", LOAN_FIELDS, "due_date"),
    ("requests", REQUEST_FIELDS, "pickup_library"),
])
def test_missing_column_is_an_error_at_line_1(with_patrons, policy, tmp_path, kind, fields, dropped):
    store = with_patrons
    before = snapshot(store)
    header = [f for f in fields if f != dropped]
    path = write(tmp_path / f"{kind}.csv", tuple(header), [",".join("x" for _ in header)])
    with pytest.raises(InputError) as info:
        import_csv(store, policy, kind, path)
    [problem] = info.value.problems
    assert problem.line == 1
    assert dropped in problem.message and "missing column" in problem.message
    assert str(problem).startswith(f"{path}:1: ")
    assert snapshot(store) == before


def _problems_by_line(error: InputError) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for p in error.problems:
        out.setdefault(p.line, []).append(f"{p.where}: {p.message}")
    return out


def test_bad_patron_rows_reject_the_whole_file(with_patrons, policy, tmp_path):
    store = with_patrons
    before = snapshot(store)
    lines = [
        patron_line("P1", "2000000001", email="changed@univ.example"),           # line 2: good (an update)
        patron_line("P10", "2000000010", email="p10@etu.univ.example"),          # line 3: good (new)
        patron_line("P11", "2000000011", email="not-an-address"),                # line 4: bad email
        patron_line("P12", "2000000012", record_type="visitor"),                 # line 5: bad record type
        patron_line("P10", "2000000013"),                                        # line 6: P10 again
        patron_line("P14", "2000000014", account_type="ldap"),                   # line 7: bad account type
        patron_line("P15", ""),                                                  # line 8: no barcode
        patron_line("P16", "2000000002"),                                        # line 9: P2's barcode
        patron_line("P17", "2000000017", email="p17@etu.univ.example"),          # line 10: good
    ]
    path = write(tmp_path / "patrons.csv", PATRON_FIELDS, lines)
    with pytest.raises(InputError) as info:
        import_csv(store, policy, "patrons", path)

    expected = {   # line: (row number, what the reason says)
        4: ("row 3", "email 'not-an-address' is not an email address"),
        5: ("row 4", "record_type 'visitor'"),
        6: ("row 5", "patron_id 'P10' appears twice"),
        7: ("row 6", "account_type 'ldap'"),
        8: ("row 7", "barcode is empty"),
        9: ("row 8", "barcode '2000000002' already belongs to patron 'P2'"),
    }
    got = _problems_by_line(info.value)
    assert sorted(got) == sorted(expected), got
    for line, (row, reason) in expected.items():
        assert any(m.startswith(f"{row}: ") and reason in m for m in got[line]), (line, got[line])
    for line in expected:   # each problem printable as file:line
        assert f"{path}:{line}: " in str(info.value)
    assert snapshot(store) == before   # not even the good update of P1 nor the new P10


def test_bad_loan_rows_reject_the_whole_file(with_patrons, policy, tmp_path):
    store = with_patrons
    write(tmp_path / "loans-0.csv", LOAN_FIELDS, [loan_line("L1", "P1", "SCI", "2026-11-20")])
    import_csv(store, policy, "loans", tmp_path / "loans-0.csv")
    before = snapshot(store)

    lines = [
        loan_line("L1", "P1", "SCI", "2026-12-04"),                       # line 2: good (renewal)
        loan_line("L2", "P1", "DROIT", "2026-02-30"),                     # line 3: no 30 February
        loan_line("L3", "P99", "SCI", "2026-11-20"),                      # line 4: unknown patron
        loan_line("L4", "P2", "MEDECINE", "2026-11-20"),                  # line 5: unknown library
        loan_line("L5", "P2", "SCI", "20/11/2026"),                       # line 6: not ISO 8601
        loan_line("L1", "P1", "SCI", "2026-12-05"),                       # line 7: L1 again
        loan_line("L6", "P2", "SCI", "2026-11-20", returned="yesterday"),  # line 8: bad return date
        loan_line("L7", "P2", "SCI", ""),                                 # line 9: no due date
        loan_line("L8", "P2", "SCI", "2026-11-20"),                       # line 10: good
    ]
    path = write(tmp_path / "loans.csv", LOAN_FIELDS, lines)
    with pytest.raises(InputError) as info:
        import_csv(store, policy, "loans", path)

    expected = {
        3: ("row 2", "due_date '2026-02-30' is not a date"),
        4: ("row 3", "unknown patron 'P99'"),
        5: ("row 4", "library 'MEDECINE' is not a library of the policy"),
        6: ("row 5", "due_date '20/11/2026' is not a date"),
        7: ("row 6", "loan_id 'L1' appears twice"),
        8: ("row 7", "returned_on 'yesterday' is not a date"),
        9: ("row 8", "due_date is empty"),
    }
    got = _problems_by_line(info.value)
    assert sorted(got) == sorted(expected), got
    for line, (row, reason) in expected.items():
        assert any(m.startswith(f"{row}: ") and reason in m for m in got[line]), (line, got[line])
    assert snapshot(store) == before
    assert store.loan("L1").due_date == d("2026-11-20")   # the renewal on line 2 did not go through


def test_bad_request_rows_reject_the_whole_file(with_patrons, policy, tmp_path):
    store = with_patrons
    before = snapshot(store)
    path = write(tmp_path / "requests.csv", REQUEST_FIELDS, [
        "R1,P1,Le Rouge et le Noir,SCI,DROIT,2026-11-10,active,2026-12-10",   # line 2: good
        "R2,P1,Le Père Goriot,SCI,ANNEXE,2026-11-10,active,",                  # line 3: unknown pickup
        "R3,P3,Candide,SCI,SCI,2026-11-10,active,",                            # line 4: unknown patron
        "R4,P2,Zadig,SCI,SCI,,active,",                                        # line 5: no placed_on
    ])
    with pytest.raises(InputError) as info:
        import_csv(store, policy, "requests", path)
    got = _problems_by_line(info.value)
    assert sorted(got) == [3, 4, 5]
    assert "pickup_library 'ANNEXE'" in got[3][0]
    assert "unknown patron 'P3'" in got[4][0]
    assert "placed_on is empty" in got[5][0]
    assert snapshot(store) == before


def test_a_bad_row_after_thousands_of_good_ones_leaves_the_database_unchanged(with_patrons, policy, tmp_path,
                                                                               monkeypatch):
    """6,000 good rows (more than one write chunk), then a bad one: nothing of the file stays."""
    store = with_patrons
    write(tmp_path / "loans-0.csv", LOAN_FIELDS, [loan_line("L0", "P1", "SCI", "2026-11-20")])
    import_csv(store, policy, "loans", tmp_path / "loans-0.csv")
    before = snapshot(store)

    good = [loan_line("L0", "P1", "SCI", "2026-12-18")]   # line 2: a renewal of the stored loan
    good += [loan_line(f"L{i:05d}", "P2" if i % 2 else "P1", "SCI" if i % 3 else "DROIT",
                       (d("2026-11-01") + dt.timedelta(days=i % 60)).isoformat()) for i in range(1, 6000)]
    bad = loan_line("L99999", "P1", "SCI", "2026-13-01")  # line 6002: month 13
    path = write(tmp_path / "loans.csv", LOAN_FIELDS, [*good, bad])

    staged, written = [], []   # the rows go to the staging table in chunks; the loans table is not touched
    add = Staging.add
    monkeypatch.setattr(Staging, "add", lambda self, rows: (staged.append(len(rows)), add(self, rows)))

    @event.listens_for(store.engine, "before_cursor_execute")
    def spy(conn, cursor, statement, parameters, context, executemany):
        if " ".join(statement.split()).upper().startswith(("INSERT INTO LOANS", "UPDATE LOANS")):
            written.append(statement)

    try:
        with pytest.raises(InputError) as info:
            import_csv(store, policy, "loans", path)
    finally:
        event.remove(store.engine, "before_cursor_execute", spy)

    assert sum(staged) >= 5000, "no chunk was staged before the bad row: the rollback is not exercised"
    assert written == []
    [problem] = info.value.problems
    assert (problem.line, problem.where) == (6002, "row 6001")
    assert "due_date '2026-13-01' is not a date" in problem.message
    assert snapshot(store) == before
    assert store.loan("L0").due_date == d("2026-11-20")
    assert store.loan("L00001") is None

    # the same file without its bad row goes in whole
    path = write(tmp_path / "loans.csv", LOAN_FIELDS, good)
    report = import_csv(store, policy, "loans", path)
    assert (report.rows, report.inserted, report.updated) == (6000, 5999, 1)
    assert len(snapshot(store)["loans"]) == 6000
    assert store.loan("L0").due_date == d("2026-12-18")


# --- timestamps become local dates ---------------------------------------------------------------

PARIS_DATES = [
    # due_date as exported                 local date in Europe/Paris
    ("2026-11-21",                         "2026-11-21"),
    ("2026-11-20T23:30:00+00:00",          "2026-11-21"),   # 00:30 in Paris (UTC+1 in winter)
    ("2026-11-20T22:30:00-02:00",          "2026-11-21"),   # 00:30 UTC = 01:30 in Paris
    ("2026-11-20T22:59:59+00:00",          "2026-11-20"),   # 23:59:59 in Paris
    ("2026-11-20T23:00:00Z",               "2026-11-21"),   # midnight in Paris
    ("2026-11-21T00:30:00+01:00",          "2026-11-21"),   # already Paris time
    ("2026-11-20T23:30:00",                "2026-11-20"),   # naive: taken as local
    ("2026-11-20T00:10:00",                "2026-11-20"),   # naive: taken as local
    ("2026-06-30T22:30:00+00:00",          "2026-07-01"),   # summer time: UTC+2
    ("2026-06-30T21:59:00+00:00",          "2026-06-30"),
    ("2026-11-21T03:00:00+00:00",          "2026-11-21"),
]


def test_due_timestamps_become_local_dates_in_the_policy_time_zone(with_patrons, policy, tmp_path):
    store = with_patrons
    lines = [loan_line(f"T{i:02d}", "P1", "SCI", stamp) for i, (stamp, _) in enumerate(PARIS_DATES)]
    lines.append(loan_line("R01", "P1", "SCI", "2026-11-10", returned="2026-11-20T23:30:00+00:00"))
    import_csv(store, policy, "loans", write(tmp_path / "loans.csv", LOAN_FIELDS, lines))
    got = [(stamp, store.loan(f"T{i:02d}").due_date.isoformat()) for i, (stamp, _) in enumerate(PARIS_DATES)]
    assert got == PARIS_DATES
    assert store.loan("R01").returned_on == d("2026-11-21")


def test_the_time_zone_is_the_policy_s(db_url, tmp_path):
    """The same instant is 21 November in Paris and still 20 November in New York."""
    new_york = policy_variant(("timezone: Europe/Paris", "timezone: America/New_York"))
    store = Store(db_url)
    try:
        write(tmp_path / "patrons.csv", PATRON_FIELDS, [patron_line("P1", "2000000001")])
        import_csv(store, new_york, "patrons", tmp_path / "patrons.csv")
        import_csv(store, new_york, "loans", write(tmp_path / "loans.csv", LOAN_FIELDS, [
            loan_line("L1", "P1", "SCI", "2026-11-21T03:00:00+00:00"),   # 22:00 on the 20th in New York
            loan_line("L2", "P1", "SCI", "2026-11-21T05:00:00+00:00"),   # 00:00 on the 21st in New York
            loan_line("L3", "P1", "SCI", "2026-11-20T23:30:00"),          # naive: local, whatever the zone
        ]))
        assert [store.loan(i).due_date for i in ("L1", "L2", "L3")] == [
            d("2026-11-20"), d("2026-11-21"), d("2026-11-20")]
    finally:
        store.close()


def _indexes(store: Store, table: str) -> list[tuple[str, str]]:
    """The table's indexes and, on PostgreSQL, its foreign keys: (name, definition)."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            return sorted(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                                               "tbl_name = ? AND sql IS NOT NULL", (table,)).all())
        return sorted(conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
            "UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid = CAST(%s AS regclass)", (table, table)).all())


def test_a_bulk_import_rebuilds_the_indexes_as_they_were(db_url, tmp_path, policy, monkeypatch):
    """A write of many rows (BULK_ROWS, lowered here) drops the loans' secondary indexes (and, on
    PostgreSQL, the foreign key) and creates them again in the same transaction: the same indexes
    after, a day's candidates found through them, the key still checked; and an import that fails
    at its last step leaves rows and indexes as they were."""
    from adapters.store import facts
    store = Store(db_url)
    try:
        write(tmp_path / "patrons.csv", PATRON_FIELDS, [patron_line("P1", "2000000001", email="p1@etu.univ.example")])
        import_csv(store, policy, "patrons", tmp_path / "patrons.csv")
        before = _indexes(store, "loans")
        postgres = store.dialect == "postgresql"
        expected = ["ix_loans_open_due", "ix_loans_patron_id"]
        assert [name for name, _ in before] == (["fk_loans_patron_id_patrons", *expected, "pk_loans"] if postgres
                                                else expected)
        monkeypatch.setattr(facts, "BULK_ROWS", 3)
        dropped: list[str] = []

        @event.listens_for(store.engine, "before_cursor_execute")
        def seen(conn, cursor, statement, *args):
            if statement.startswith("DROP INDEX") or " DROP CONSTRAINT " in statement:
                dropped.append(statement)
        rows = [loan_line(f"L{i}", "P1", "SCI", f"2026-11-{20 + i}") for i in range(1, 6)]
        import_csv(store, policy, "loans", write(tmp_path / "loans.csv", LOAN_FIELDS, rows))
        steps = 3 if postgres else 2
        assert len(dropped) == steps and _indexes(store, "loans") == before
        candidates, _ = store.candidates(policy, d("2026-11-28"))    # the first reminder of L1 (due 11-21)
        assert "L1" in {c.loan.loan_id for c in candidates}
        with store.engine.connect() as conn:
            if postgres:
                with pytest.raises(IntegrityError):
                    conn.exec_driver_sql("INSERT INTO loans (loan_id, patron_id, library, due_date) "
                                         "VALUES ('X1', 'nobody', 'SCI', '2026-12-01')")
            else:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"

        def fail(*args, **kwargs):
            raise RuntimeError("the import's record could not be written")
        monkeypatch.setattr("adapters.sources.records.record_import", fail)
        more = [loan_line(f"M{i}", "P1", "SCI", "2026-12-01") for i in range(1, 8)]
        with pytest.raises(RuntimeError):
            import_csv(store, policy, "loans", write(tmp_path / "more.csv", LOAN_FIELDS, more))
        assert len(dropped) == 2 * steps and _indexes(store, "loans") == before
        assert store.loan("M1") is None and store.loan("L5") is not None
    finally:
        store.close()
