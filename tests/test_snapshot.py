"""Full exports (snapshots) and records from any source (service.imports.import_records), on a real
database: a SQLite file, and PostgreSQL when configured.

Rules under test (README, "Feeding rappel"):
- an import counts new, changed and unchanged rows (an unchanged row is not written);
- a snapshot is the complete list of the open loans of its libraries (those it names, or the ones
  given): an open loan absent from it is closed on the export's date with the reason recorded; a
  loan already returned, or of another library, is left as it is; a loan listed again reopens;
- a snapshot that is empty, or would close more than imports.max_closed_share of the open loans of
  its libraries, changes nothing and is refused (exit 1) unless confirmed; a dry run says so;
- a snapshot of requests closes the active requests it does not list; one of patrons deletes none;
- every successful import is one row of fact_imports; a refused, failed or dry-run one is none;
- with `statuses:` declared, a loan row with another status is rejected with its row number and
  the declared values.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from adapters.store.database import Store
from adapters.store.schema import LOAN_FIELDS, fact_imports, loans, patrons, requests
from engine.yamlsource import InputError
from service.imports import import_records
from service.session import Refused

try:
    from tests.engine_cases import d, policy_variant
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import d, policy_variant

NOW = dt.datetime(2026, 12, 1, 5, 30, tzinfo=dt.timezone.utc)     # 06:30 in Paris, 1 December


def loan(loan_id, library="SCI", due="2026-12-20", *, patron="P1", returned="", status="", title=None) -> dict:
    return {"loan_id": loan_id, "patron_id": patron, "item_barcode": f"B-{loan_id}",
            "title": title if title is not None else f"Titre {loan_id}", "library": library, "due_date": due,
            "returned_on": returned, "status": status}


def records(rows: list[dict]) -> list[tuple[int, dict]]:
    return list(enumerate(rows, start=1))


def stored(store: Store) -> dict[str, tuple]:
    """loan → (returned_on, closed_reason, due_date, title)."""
    with store.engine.connect() as conn:
        return {r.loan_id: (r.returned_on and r.returned_on.isoformat(), r.closed_reason, r.due_date.isoformat(),
                            r.title) for r in conn.execute(select(loans))}


def everything(store: Store) -> dict[str, list]:
    with store.engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                for t in (patrons, loans, requests, fact_imports)}


@pytest.fixture
def store(db_url, policy):
    s = Store(db_url)
    import_records(s, policy, "patrons", records([
        {"patron_id": p, "barcode": f"2000{p}", "account_type": "internal", "record_type": "public",
         "email": f"{p.lower()}@etu.univ.example"} for p in ("P1", "P2")]), source="patrons.csv", now=NOW)
    yield s
    s.close()


def test_counts_new_changed_unchanged(store, policy):
    first = import_records(store, policy, "loans", records([loan("L1"), loan("L2"), loan("L3")]),
                           source="loans-1.csv", now=NOW)
    assert (first.rows, first.inserted, first.changed, first.unchanged, first.closed) == (3, 3, 0, 0, 0)
    second = import_records(store, policy, "loans", records([
        loan("L1"),                                   # as it was
        loan("L2", due="2027-01-03"),                 # renewed
        loan("L3", returned="2026-11-30"),            # returned
        loan("L4"),                                   # new
    ]), source="loans-2.csv", now=NOW)
    assert (second.rows, second.inserted, second.changed, second.unchanged) == (4, 1, 2, 1)
    assert second.updated == 3                        # the rows that were there, changed or not
    assert stored(store)["L2"][2] == "2027-01-03" and stored(store)["L3"][0] == "2026-11-30"


def test_unchanged_rows_are_not_written(store, policy):
    import_records(store, policy, "loans", records([loan("L1"), loan("L2")]), source="a.csv", now=NOW)
    written = []

    from sqlalchemy import event

    @event.listens_for(store.engine, "after_cursor_execute")
    def spy(conn, cursor, statement, parameters, context, executemany):
        if " ".join(statement.split()).upper().startswith("INSERT INTO LOANS"):
            written.append(cursor.rowcount)
    try:
        import_records(store, policy, "loans", records([loan("L1"), loan("L2", title="Titre corrigé")]),
                       source="b.csv", now=NOW)
    finally:
        event.remove(store.engine, "after_cursor_execute", spy)
    assert written == [1]          # one statement; only L2 is rewritten


# --- snapshots ---------------------------------------------------------------------------------

def test_a_snapshot_closes_the_open_loans_of_its_libraries_it_does_not_list(store, policy):
    import_records(store, policy, "loans", records(
        [loan(f"S{i:02d}") for i in range(1, 11)]                      # ten open loans in SCI
        + [loan("S-returned", returned="2026-11-20"),                  # already returned
           loan("D1", "DROIT"), loan("D2", "DROIT")]),                 # DROIT: not in the export below
        source="first.csv", now=NOW)
    tonight = [loan(f"S{i:02d}") for i in range(1, 10) if i != 4]     # S04 and S10 returned since
    report = import_records(store, policy, "loans", records(tonight), source="nightly.csv", snapshot=True,
                            facts_date=d("2026-12-01"), now=NOW)
    assert (report.rows, report.inserted, report.changed, report.unchanged, report.closed) == (8, 0, 0, 8, 2)
    assert report.libraries == ("SCI",) and report.outside == ("DROIT",)
    after = stored(store)
    assert after["S04"][:2] == after["S10"][:2] == ("2026-12-01", "absent from the export of 2026-12-01")
    assert after["S01"][:2] == (None, None)
    assert after["S-returned"][:2] == ("2026-11-20", None)          # not closed again, not redated
    assert after["D1"][:2] == after["D2"][:2] == (None, None)        # another library's loans
    with store.engine.connect() as conn:
        last = conn.execute(select(fact_imports).order_by(fact_imports.c.id.desc())).first()
    assert (last.kind, last.source, last.mode, last.facts_date, last.rows, last.inserted, last.changed,
            last.unchanged, last.closed) == ("loans", "nightly.csv", "snapshot", d("2026-12-01"), 8, 0, 0, 8, 2)


def test_libraries_given_are_the_snapshot_s_scope(store, policy):
    import_records(store, policy, "loans", records([loan(f"S{i}") for i in range(1, 10)] + [loan("D1", "DROIT")]),
                   source="first.csv", now=NOW)
    report = import_records(store, policy, "loans", records([loan(f"S{i}") for i in range(1, 10)]),
                            source="nightly.csv", snapshot=True, libraries=["SCI", "DROIT"], now=NOW)
    assert (report.closed, report.libraries, report.outside) == (1, ("DROIT", "SCI"), ())
    assert stored(store)["D1"][:2] == ("2026-12-01", "absent from the export of 2026-12-01")   # today in Paris
    with pytest.raises(InputError, match="not a library of the policy: MEDECINE"):
        import_records(store, policy, "loans", [], source="x.csv", snapshot=True, libraries=["MEDECINE"], now=NOW)


def test_a_loan_listed_again_reopens_and_the_file_s_word_replaces_the_reason(store, policy):
    """A loan closed by one export and listed, open, by the next: the library system says the patron
    has it (an export that missed it, a return cancelled at the desk); stages apply to it again, from
    the ledger as it is (what was cancelled stays cancelled)."""
    rows = [loan(f"S{i}") for i in range(1, 10)]
    import_records(store, policy, "loans", records(rows), source="1.csv", now=NOW)
    import_records(store, policy, "loans", records(rows[1:]), source="2.csv", snapshot=True,
                   facts_date=d("2026-12-01"), now=NOW)
    assert stored(store)["S1"][:2] == ("2026-12-01", "absent from the export of 2026-12-01")
    again = import_records(store, policy, "loans", records(rows), source="3.csv", snapshot=True,
                           facts_date=d("2026-12-02"), now=NOW)
    assert (again.changed, again.reopened, again.unchanged, again.closed) == (1, 1, 8, 0)
    assert stored(store)["S1"][:2] == (None, None)
    # closed again, then given returned by the library system: its date, and no reason of rappel's
    import_records(store, policy, "loans", records(rows[1:]), source="4.csv", snapshot=True,
                   facts_date=d("2026-12-03"), now=NOW)
    returned = import_records(store, policy, "loans", records([loan("S1", returned="2026-12-02")]),
                              source="5.csv", now=NOW)
    assert (returned.changed, returned.reopened) == (1, 0)
    assert stored(store)["S1"][:2] == ("2026-12-02", None)


@pytest.mark.parametrize("kept, refused", [
    # of 10 open loans, the export lists   refused without --confirm?
    (10, False),
    (8, False),                            # 20 % closed: the limit itself
    (7, True),                             # 30 %
    (5, True),                             # half the rows: a truncated export
    (0, True),                             # empty
])
def test_the_guard_against_a_truncated_export(store, policy, kept, refused):
    rows = [loan(f"S{i:02d}") for i in range(1, 11)]
    import_records(store, policy, "loans", records(rows), source="first.csv", now=NOW)
    before = everything(store)
    tonight = records(rows[:kept])
    if not refused:
        report = import_records(store, policy, "loans", tonight, source="nightly.csv", snapshot=True, now=NOW)
        assert report.closed == 10 - kept
        return
    dry = import_records(store, policy, "loans", tonight, source="nightly.csv", snapshot=True, dry_run=True,
                         now=NOW)
    assert dry.refused and everything(store) == before
    with pytest.raises(Refused) as info:
        import_records(store, policy, "loans", tonight, source="nightly.csv", snapshot=True, now=NOW)
    assert info.value.code == 1 and str(info.value).startswith("nightly.csv: ")
    if kept:
        assert f"would close {10 - kept} of the 10 open loans of SCI" in str(info.value)
        assert "more than imports.max_closed_share (20 %)" in str(info.value)
    else:
        assert "the export is empty" in str(info.value)
    assert everything(store) == before                               # nothing, not even fact_imports
    confirmed = import_records(store, policy, "loans", tonight, source="nightly.csv", snapshot=True,
                               confirm=True, libraries=["SCI"], now=NOW)
    assert confirmed.closed == 10 - kept
    assert all(r[0] == "2026-12-01" for lid, r in stored(store).items() if lid not in {r["loan_id"] for r in rows[:kept]})


def test_max_closed_share_is_the_policy_s(db_url):
    lenient = policy_variant(append="imports: {max_closed_share: 60%}\n")
    assert lenient.imports.max_closed_share == 0.6
    s = Store(db_url)
    try:
        import_records(s, lenient, "patrons", records([{"patron_id": "P1", "barcode": "1", "account_type": "internal",
                                                        "record_type": "public"}]), source="p.csv", now=NOW)
        import_records(s, lenient, "loans", records([loan(f"S{i}") for i in range(10)]), source="1.csv", now=NOW)
        report = import_records(s, lenient, "loans", records([loan(f"S{i}") for i in range(5)]), source="2.csv",
                                snapshot=True, now=NOW)
        assert report.closed == 5
    finally:
        s.close()


def test_a_dry_run_counts_everything_and_writes_nothing(store, policy):
    import_records(store, policy, "loans", records([loan(f"S{i}") for i in range(1, 10)]), source="1.csv", now=NOW)
    before = everything(store)
    report = import_records(store, policy, "loans", records([loan(f"S{i}") for i in range(2, 10)] + [loan("S10")]),
                            source="2.csv", snapshot=True, dry_run=True, now=NOW)
    assert (report.dry_run, report.inserted, report.unchanged, report.closed, report.refused) == (True, 1, 8, 1, "")
    assert everything(store) == before


def test_bad_records_name_their_row_and_change_nothing(store, policy):
    before = everything(store)
    with pytest.raises(InputError) as info:
        import_records(store, policy, "loans", [
            (1, loan("L1")),
            (2, loan("L2", due="2026-02-30")),
            (3, loan("L3", patron="P9")),
            (4, loan("L1")),
        ], source="koha:loans", snapshot=True, now=NOW)
    assert [str(p) for p in info.value.problems] == [
        "koha:loans: row 2: due_date '2026-02-30' is not a date (YYYY-MM-DD or an ISO 8601 timestamp)",
        "koha:loans: row 3: unknown patron 'P9' (import patrons first)",
        "koha:loans: row 4: loan_id 'L1' appears twice in the file (also row 1)",
    ]
    assert everything(store) == before


# --- requests and patrons ------------------------------------------------------------------------

def request(request_id, library="SCI", status="active") -> dict:
    return {"request_id": request_id, "patron_id": "P1", "title": f"Titre {request_id}", "library": library,
            "pickup_library": library, "placed_on": "2026-11-20", "status": status, "expires_on": ""}


def test_a_snapshot_of_requests_closes_the_ones_it_does_not_list(store, policy):
    import_records(store, policy, "requests", records([request(f"R{i}") for i in range(1, 7)]), source="1.csv",
                   now=NOW)
    report = import_records(store, policy, "requests", records([request(f"R{i}") for i in range(2, 7)]),
                            source="2.csv", snapshot=True, now=NOW)
    assert report.closed == 1
    with store.engine.connect() as conn:
        statuses = dict(conn.execute(select(requests.c.request_id, requests.c.status)).all())
    assert statuses == {"R1": "closed", "R2": "active", "R3": "active", "R4": "active", "R5": "active",
                        "R6": "active"}


def test_a_snapshot_of_patrons_deletes_no_one(store, policy):
    report = import_records(store, policy, "patrons", records([
        {"patron_id": "P1", "barcode": "2000P1", "account_type": "internal", "record_type": "public",
         "email": "p1@etu.univ.example"}]), source="patrons.csv", snapshot=True, now=NOW)
    assert (report.rows, report.unchanged, report.closed) == (1, 1, 0)
    assert store.patron("P2") is not None


# --- declared statuses ---------------------------------------------------------------------------

DECLARED = policy_variant(("exclude_statuses: [lost, claimed_returned]",
                           'statuses: {"": on_loan, lost: exclude, claimed_returned: exclude, perdu: exclude}'))


def test_an_undeclared_status_is_a_bad_row(store):
    before = everything(store)
    with pytest.raises(InputError) as info:
        import_records(store, DECLARED, "loans", records([
            loan("L1"), loan("L2", status="perdu"), loan("L3", status="Perdu "), loan("L4", status="recalled")]),
            source="loans.csv", now=NOW)
    declared = "\"\" (no status), lost, claimed_returned, perdu"
    assert [str(p) for p in info.value.problems] == [
        f"loans.csv: row 3: status 'Perdu' is not one of the statuses the policy declares ({declared})",
        f"loans.csv: row 4: status 'recalled' is not one of the statuses the policy declares ({declared})",
    ]
    assert everything(store) == before


def test_without_declared_statuses_any_status_goes_in(store, policy):
    report = import_records(store, policy, "loans", records([loan("L1", status="recalled")]), source="l.csv",
                            now=NOW)
    assert report.inserted == 1


def test_rows_are_stored_as_given(store, policy):
    import_records(store, policy, "loans", records([loan("L1", due="2026-11-20T23:30:00+00:00")]), source="l.csv",
                   now=NOW)
    with store.engine.connect() as conn:
        row = conn.execute(select(*(loans.c[f] for f in LOAN_FIELDS))).one()
    assert tuple(row) == ("L1", "P1", "B-L1", "Titre L1", "SCI", d("2026-11-21"), None, "", "", "")


def test_item_type_and_loan_policy_are_stored_and_compared(store, policy):
    """Optional columns: stored as given, "" when absent; a change of item type is a change."""
    first = {**loan("L1"), "item_type": "PRET_COURT", "loan_policy": "3 jours"}
    report = import_records(store, policy, "loans", [(1, first)], source="l.csv", now=NOW)
    assert report.inserted == 1
    again = import_records(store, policy, "loans", [(1, first)], source="l.csv", now=NOW)
    assert (again.changed, again.unchanged) == (0, 1)
    changed = import_records(store, policy, "loans", [(1, {**first, "item_type": "LIVRE"})], source="l.csv", now=NOW)
    assert changed.changed == 1
    with store.engine.connect() as conn:
        assert tuple(conn.execute(select(loans.c.item_type, loans.c.loan_policy)).one()) == ("LIVRE", "3 jours")
    assert store.loan("L1").item_type == "LIVRE" and store.loan("L1").loan_policy == "3 jours"


def test_values_a_driver_hands_over_are_taken_as_their_text(store, policy):
    """A SQL pull that passes a date or a number as it came from the driver, not as text."""
    values = {**loan("L1"), "due_date": d("2026-12-20"), "returned_on": None, "item_barcode": 3000001}
    report = import_records(store, policy, "loans", [(1, values)], source="pull", mode="pull", now=NOW)
    assert report.inserted == 1
    assert stored(store)["L1"][:3] == (None, None, "2026-12-20")
    with store.engine.connect() as conn:
        assert conn.execute(select(loans.c.item_barcode)).scalar_one() == "3000001"
        assert conn.execute(select(fact_imports.c.mode).order_by(fact_imports.c.id.desc())).first()[0] == "pull"
