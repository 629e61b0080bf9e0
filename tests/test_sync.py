"""`rappel sync`: external accounts brought in line with the source system's export.

Owned fields take the source's values; protected fields too, unless edited here; library-local
fields (record_type) are set at creation only; internal accounts are never touched; accounts
missing from the file are reported, not deleted; a bad file changes nothing; --dry-run writes
nothing. On SQLite, and on PostgreSQL when RAPPEL_TEST_DATABASE_URL is set.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from service import patrons as services
from service import sync as syncing
from adapters.sources.csvfiles import import_csv
from service.rules import load_policy
from adapters.store.schema import PATRON_FIELDS, patron_audit, patron_local_edits, patrons
from adapters.store.database import Store
from cli import app
from engine.yamlsource import InputError

from conftest import RULES

AT = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.timezone.utc)
P1 = dict(zip(PATRON_FIELDS, ["P1", "2000000001", "Thomas", "Lefèvre", "thomas@etu.univ.example", "fr", "external",
                              "public", "graduate", "4 allée des Œillets", "", "33400", "Talence", "France", "", "", ""]))
P2 = dict(P1, patron_id="P2", barcode="2000000002", first_name="Jeanne", last_name="Moreau",
          email="jeanne@univ.example", account_type="internal", user_group="reader")
P3 = dict(P1, patron_id="P3", barcode="2000000003", first_name="Inès", last_name="Petit", email="ines@etu.univ.example")
# what the source says about P1 now: every field different
SOURCE_P1 = dict(P1, barcode="2000000091", first_name="Tom", last_name="Lefebvre", email="tom@etu.univ.example",
                 preferred_language="en", record_type="staff", user_group="postgraduate", address_line1="1 rue Neuve",
                 address_line2="Bât. C", postal_code="33000", city="Bordeaux", country="France", phone="+33600000000")


def csv_text(rows: list[dict], header=PATRON_FIELDS) -> str:
    return "\n".join([",".join(header), *(",".join(r[f] for f in header) for r in rows)]) + "\n"


def write(tmp_path: Path, rows: list[dict], name="sis.csv", **kw) -> Path:
    path = tmp_path / name
    path.write_text(csv_text(rows, **kw), encoding="utf-8")
    return path


@pytest.fixture
def store(db_url, tmp_path):
    s = Store(db_url)
    import_csv(s, load_policy(RULES), "patrons", write(tmp_path, [P1, P2, P3], "patrons.csv"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def accounts():
    return services.load_accounts(RULES)


@pytest.fixture(scope="module")
def policy():
    return load_policy(RULES)


def snapshot(store: Store) -> tuple:
    with store.engine.connect() as conn:
        return (sorted(tuple(r) for r in conn.execute(select(patrons))),
                conn.scalar(select(func.count()).select_from(patron_audit)),
                sorted(tuple(r) for r in conn.execute(select(patron_local_edits.c.patron_id,
                                                              patron_local_edits.c.field))))


def get(store: Store, patron_id: str) -> dict:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(patrons).where(patrons.c.patron_id == patron_id)).mappings().one())


# -- what happens to each field of an external account ----------------------------------------------

@pytest.mark.parametrize("field,edited_here,kept", [
    # owned by the source: always the source's value
    ("barcode", False, False), ("first_name", False, False), ("last_name", False, False), ("email", False, False),
    ("address_line1", False, False), ("address_line2", False, False), ("postal_code", False, False),
    ("city", False, False), ("phone", False, False),
    # protected: the source's value, unless edited here
    ("user_group", False, False), ("user_group", True, True),
    ("preferred_language", False, False), ("preferred_language", True, True),
    # library-local: set when the account is created, then never changed by a synchronisation
    ("record_type", False, True), ("record_type", True, True),
])
def test_each_field_after_a_sync(store, policy, accounts, tmp_path, field, edited_here, kept):
    local = {"user_group": "visiting", "preferred_language": "es", "record_type": "contact"}.get(field)
    assert local is None or local not in (P1[field], SOURCE_P1[field])    # an edit the sync could undo
    if edited_here:
        services.edit(store, accounts, "2000000001", "user_manager", "paul", {field: local}, AT)
    before = get(store, "P1")[field]
    syncing.sync(store, policy, accounts, write(tmp_path, [SOURCE_P1, P3]), AT)
    assert get(store, "P1")[field] == (before if kept else SOURCE_P1[field])


def test_sync_creates_updates_keeps_and_reports(store, policy, accounts, tmp_path):
    services.edit(store, accounts, "2000000001", "user_manager", "paul", {"user_group": "visiting"}, AT)
    new = dict(P1, patron_id="P9", barcode="2000000099", first_name="Nuevo", email="nuevo@etu.univ.example",
               preferred_language="es")
    p2_from_source = dict(P2, account_type="external", email="someone-else@etu.univ.example")
    report = syncing.sync(store, policy, accounts, write(tmp_path, [SOURCE_P1, new, p2_from_source]), AT)
    assert report.rows == 3 and report.created == ["P9"] and report.updated == 1 and report.unchanged == 0
    assert report.internal == ["P2"] and report.missing == ["P3"]
    assert report.kept == [("P1", "user_group", "visiting", "postgraduate")]
    assert {(c[1], c[2], c[3]) for c in report.changes if c[0] == "P1"} >= {
        ("email", "thomas@etu.univ.example", "tom@etu.univ.example"), ("city", "Talence", "Bordeaux")}
    assert get(store, "P9") == {**new, "account_type": "external"}
    assert get(store, "P2") == P2                                 # internal: never touched
    assert get(store, "P3") == P3                                 # missing from the file: kept
    with store.engine.connect() as conn:
        synced = conn.execute(select(patron_audit.c.actor, patron_audit.c.source, patron_audit.c.field,
                                     patron_audit.c.old_value, patron_audit.c.new_value)
                              .where(patron_audit.c.source == "sync")).all()
    assert ("sync", "sync", "email", "thomas@etu.univ.example", "tom@etu.univ.example") in synced
    assert len(synced) == len(report.changes)
    again = syncing.sync(store, policy, accounts, write(tmp_path, [SOURCE_P1, new, p2_from_source]), AT)
    assert (again.created, again.updated, again.changes, again.unchanged) == ([], 0, [], 2)
    assert snapshot(store)[1] == 1 + len(report.changes)         # the edit's row, the first sync's: no more


def test_dry_run_shows_changes_and_writes_nothing(store, policy, accounts, tmp_path):
    before = snapshot(store)
    new = dict(P3, patron_id="P9", barcode="2000000099")
    report = syncing.sync(store, policy, accounts, write(tmp_path, [SOURCE_P1, new]), AT, dry_run=True)
    assert report.created == ["P9"] and report.updated == 1 and report.missing == ["P3"]
    assert ("P1", "email", "thomas@etu.univ.example", "tom@etu.univ.example") in report.changes
    assert snapshot(store) == before
    out = CliRunner().invoke(app, ["sync", str(tmp_path / "sis.csv"), "--dry-run", "--rules", str(RULES),
                                   "--db", store.url])
    assert out.exit_code == 0, out.output
    assert "1 patron(s) would be created, 1 updated, 0 unchanged (dry run: nothing written)" in out.output
    assert "  + P9: new external account" in out.output
    assert "  ~ P1 email: 'thomas@etu.univ.example' -> 'tom@etu.univ.example'" in out.output
    assert "  ~ P1 city: 'Talence' -> 'Bordeaux'" in out.output
    assert "1 external account(s) missing from the file, kept (not deleted):\n  P3" in out.output
    assert snapshot(store) == before


# -- a bad file changes nothing ---------------------------------------------------------------------

BAD = [
    ("an email that is not one", lambda rows: rows[:-1] + [dict(rows[-1], email="nobody@")],
     "row 40: email 'nobody@' is not an email address"),
    ("an internal account in the source's file", lambda rows: rows[:-1] + [dict(rows[-1], account_type="internal")],
     "row 40: account_type 'internal': a synchronisation brings external accounts only"),
    ("an id twice", lambda rows: rows + [rows[0]], "row 41: patron_id 'P1' appears twice in the file"),
    ("a barcode of another patron", lambda rows: rows[:-1] + [dict(rows[-1], barcode="2000000002")],
     "row 40: barcode '2000000002' already belongs to patron 'P2'"),
    ("an unknown record type", lambda rows: rows[:-1] + [dict(rows[-1], record_type="vendor")],
     "row 40: record_type 'vendor' is not one of staff, public, contact"),
]


@pytest.mark.parametrize("what,spoil,message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_changes_nothing(store, policy, accounts, tmp_path, monkeypatch, what, spoil, message):
    monkeypatch.setattr(syncing, "CHUNK", 7)      # good rows are written before the bad one is read
    rows = [SOURCE_P1, P3] + [dict(P3, patron_id=f"P{i}", barcode=f"30000{i}") for i in range(100, 138)]
    before = snapshot(store)
    with pytest.raises(InputError) as err:
        syncing.sync(store, policy, accounts, write(tmp_path, spoil(rows)), AT)
    assert message in str(err.value)
    assert snapshot(store) == before


def test_a_file_with_missing_columns_or_unreadable(store, policy, accounts, tmp_path):
    before = snapshot(store)
    with pytest.raises(InputError, match="missing column"):
        syncing.sync(store, policy, accounts, write(tmp_path, [SOURCE_P1], header=[f for f in PATRON_FIELDS if f != "city"]),
                      AT)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(csv_text([SOURCE_P1]).encode("latin-1"))
    with pytest.raises(InputError, match="is not valid UTF-8: save as UTF-8 or pass --encoding cp1252"):
        syncing.sync(store, policy, accounts, latin1, AT)
    out = CliRunner().invoke(app, ["sync", str(tmp_path / "nope.csv"), "--rules", str(RULES), "--db", store.url])
    assert out.exit_code == 2 and "cannot read" in out.output
    assert snapshot(store) == before
