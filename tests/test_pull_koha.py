"""Pulls from Koha (MariaDB): the koha preset on a Koha-shaped database built from Koha's published
schema (tests/koha_site.py: installer/data/mysql/kohastructure.sql, Koha-Community/Koha commit
00545f8780390d735dad664d76d09cc67f42fdaa), on the test MariaDB server (RAPPEL_TEST_MARIADB_URL;
skipped without one).

What must hold:
- a pull, then a day's dry run, gives exactly the notices that a CSV import of the same facts gives
  (and those are the policy's: loans at every stage, returned, lost, claimed returned, renewed);
- patrons, loans and holds land as the CSV columns say (branch codes as libraries, categories as
  user groups, staff categories as staff, waiting and expired holds);
- the next pull follows Koha: a renewal moves the due date, a check-in closes the loan with its
  date, a checkout that vanished is closed by the snapshot;
- the library's database is only read: a write through the pull's connection fails, and a user
  with only the README's GRANT SELECT lines can pull.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url

from adapters.sources.presets import PRESETS
from adapters.sources.sql import SqlSource
from adapters.store.database import Store
from adapters.store.schema import LOAN_FIELDS

try:
    from tests import pull_cases
    from tests.koha_site import Koha, koha_database
    from tests.pull_cases import cli, dry_run, facts, import_csv_files, pulled_on
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    import pull_cases
    from koha_site import Koha, koha_database
    from pull_cases import cli, dry_run, facts, import_csv_files, pulled_on

pytestmark = pytest.mark.mariadb
DAY = "2026-11-23"


def load_library(koha: Koha) -> None:
    """The facts of the test, as Koha holds them on 23 November 2026 (a Monday)."""
    koha.branch("SCI", "Bibliothèque des sciences")
    koha.branch("DROIT", "Bibliothèque de droit")
    koha.category("ETU", "A")
    koha.category("PERS", "S")
    koha.patron(1, "2000000001", "Camille", "Durand", email="camille.durand@etu.univ.example", lang="fr-FR",
                streetnumber="12", address="rue Sainte-Catherine")
    koha.patron(2, "2000000002", "Thomas", "Lefèvre", email="thomas.lefevre@etu.univ.example",
                address="4 allée des Œillets\nBâtiment B", zipcode="33400", city="Talence")
    koha.patron(3, "2000000003", "Inès", "Martin", branch="DROIT", address="8 cours Pasteur")
    koha.patron(4, "2000000004", "Marc", "Petit", email="marc.petit@univ.example", category="PERS",
                phone="05 56 00 00 04")
    koha.patron(5, None, "Zoé", "Bernard", gonenoaddress=1)               # no card, an address known wrong
    checkout = koha.checkout
    checkout(101, patron=1, barcode="3000000101", title="Introduction à l'algèbre linéaire /", branch="SCI",
             due="2026-11-26 23:59:00")                                      # courtesy today
    checkout(102, patron=2, barcode="3000000102", title="Thermodynamique :", branch="SCI",
             due="2026-11-16 23:59:00", itype="BK")                                      # first reminder today
    checkout(103, patron=1, barcode="3000000103", title="Droit constitutionnel", branch="DROIT",
             due="2026-11-02 23:59:00", itype="PRET_COURT")                                      # second reminder today
    checkout(104, patron=3, barcode="3000000104", title="Chimie organique", branch="SCI",
             due="2026-10-19 23:59:00")                                      # letter today
    checkout(105, patron=3, barcode="3000000105", title="Droit des contrats", branch="DROIT",
             due="2026-11-16 23:59:00")                                      # first reminder: no email, a letter
    checkout(106, patron=2, barcode="3000000106", title="Optique", branch="SCI", due="2026-11-16 23:59:00")
    koha.lose(106)                                                           # lost: never reminded
    checkout(107, patron=2, barcode="3000000107", title="Mécanique", branch="SCI", due="2026-11-16 23:59:00")
    koha.claim_returned(107)                                                 # claimed returned, unresolved
    checkout(108, patron=4, barcode="3000000108", title="Analyse", branch="SCI", due="2026-11-16 23:59:00")
    koha.claim_returned(108, resolution="FOUND")                             # a resolved claim: a loan again
    checkout(109, patron=1, barcode="3000000109", title="Géologie", branch="SCI", due="2026-11-16 23:59:00")
    koha.renew(109, due="2026-12-14 23:59:00", at="2026-11-15 11:00:00")     # renewed before its reminder
    checkout(110, patron=2, barcode="3000000110", title="Procédure civile", branch="DROIT",
             due="2026-11-16 23:59:00")
    koha.check_in(110, "2026-11-20 16:45:00")                                # returned: in old_issues
    checkout(111, patron=5, barcode="3000000111", title="Botanique", branch="SCI", due="2026-11-16 23:59:00")
    koha.hold(201, patron=1, title="Le Rouge et le Noir", pickup="SCI", placed="2026-11-10", found="W",
              expires="2026-11-28", item_branch="DROIT", barcode="3000000201")   # waiting on the shelf
    koha.hold(202, patron=2, title="Traité de droit administratif", pickup="DROIT", placed="2026-11-02",
              found="W", expires="2026-11-20", item_branch="DROIT", barcode="3000000202")   # waited too long
    koha.hold(203, patron=1, title="Physique quantique /", pickup="SCI", placed="2026-11-21")  # in the queue


# The same facts as CSV files (what a nightly export of Koha would hold), written out by hand.
PATRONS_CSV = """\
patron_id,barcode,first_name,last_name,email,preferred_language,account_type,record_type,user_group,address_line1,address_line2,postal_code,city,country,phone
1,2000000001,Camille,Durand,camille.durand@etu.univ.example,fr-FR,internal,public,ETU,12 rue Sainte-Catherine,,33000,Bordeaux,France,
2,2000000002,Thomas,Lefèvre,thomas.lefevre@etu.univ.example,,internal,public,ETU,4 allée des Œillets Bâtiment B,,33400,Talence,France,
3,2000000003,Inès,Martin,,,internal,public,ETU,8 cours Pasteur,,33000,Bordeaux,France,
4,2000000004,Marc,Petit,marc.petit@univ.example,,internal,staff,PERS,12 rue des Facultés,,33000,Bordeaux,France,05 56 00 00 04
5,borrowernumber:5,Zoé,Bernard,,,internal,public,ETU,,,,,,
"""
LOANS_CSV = """\
loan_id,patron_id,item_barcode,title,library,due_date,returned_on,status,item_type
101,1,3000000101,Introduction à l'algèbre linéaire,SCI,2026-11-26,,,
102,2,3000000102,Thermodynamique,SCI,2026-11-16,,,BK
103,1,3000000103,Droit constitutionnel,DROIT,2026-11-02,,,PRET_COURT
104,3,3000000104,Chimie organique,SCI,2026-10-19,,,
105,3,3000000105,Droit des contrats,DROIT,2026-11-16,,,
106,2,3000000106,Optique,SCI,2026-11-16,,lost,
107,2,3000000107,Mécanique,SCI,2026-11-16,,claimed_returned,
108,4,3000000108,Analyse,SCI,2026-11-16,,,
109,1,3000000109,Géologie,SCI,2026-12-14,,,
110,2,3000000110,Procédure civile,DROIT,2026-11-16,2026-11-20,,
111,5,3000000111,Botanique,SCI,2026-11-16,,,
"""
REQUESTS_CSV = """\
request_id,patron_id,title,library,pickup_library,placed_on,status,expires_on
201,1,Le Rouge et le Noir,DROIT,SCI,2026-11-10,on_hold_shelf,2026-11-28
202,2,Traité de droit administratif,DROIT,DROIT,2026-11-02,on_hold_shelf,2026-11-20
203,1,Physique quantique,SCI,SCI,2026-11-21,active,
"""

# What the shipped policy sends on 23 November for these facts: (stage, channel, patron, library, loans).
EXPECTED = [
    ("first_reminder", "email", "2", None, ["102"]),
    ("first_reminder", "email", "4", None, ["108"]),
    ("first_reminder", "letter", "3", "DROIT", ["105"]),
    ("letter", "letter", "3", "SCI", ["104"]),
    # one envelope a day: patron 1's courtesy notice (101) and second reminder (103) are one email
    ("second_reminder", "email", "1", None, ["101", "103"]),
]


def rules_for(tmp_path: Path, url: str, extra: str = "") -> Path:
    return pull_cases.rules_for(tmp_path, "koha", "koha", url, extra)


def test_a_pull_then_a_dry_run_gives_the_notices_of_a_csv_import_of_the_same_facts(tmp_path):
    with koha_database() as koha:
        load_library(koha)
        rules = rules_for(tmp_path, koha.url)
        pulled = f"sqlite:///{tmp_path / 'pulled.db'}"
        lines = pulled_on(DAY, rules, pulled)
        assert lines == [
            "koha: 5 patrons pulled (5 new, 0 changed, 0 unchanged)",
            "koha: 11 loans pulled (11 new, 0 changed, 0 unchanged; 0 closed, absent from the pull)",
            "koha: 3 requests pulled (3 new, 0 changed, 0 unchanged; 0 closed, absent from the pull)"]

    imported = f"sqlite:///{tmp_path / 'imported.db'}"
    import_csv_files(tmp_path, rules, imported, on=DAY, patrons=PATRONS_CSV, loans=LOANS_CSV, requests=REQUESTS_CSV)

    assert facts(pulled) == facts(imported)
    notices = dry_run(rules, pulled, DAY)
    assert notices == dry_run(rules, imported, DAY)
    loan_stages = {"courtesy", "first_reminder", "second_reminder", "letter"}    # request notices: test_request_notices
    assert [(n["stage"], n["channel"], n["patron_id"], n["library"], n["loan_ids"]) for n in notices
            if n["stage"] in loan_stages] == EXPECTED
    assert {n["patron_id"]: n["recipient"] for n in notices if n["channel"] == "email"} == {
        "1": "camille.durand@etu.univ.example", "2": "thomas.lefevre@etu.univ.example",
        "4": "marc.petit@univ.example"}


def test_the_next_pull_follows_koha_renewal_check_in_and_a_vanished_checkout(tmp_path):
    with koha_database() as koha:
        load_library(koha)
        rules = rules_for(tmp_path, koha.url)
        db = f"sqlite:///{tmp_path / 'rappel.db'}"
        pulled_on("2026-11-22", rules, db)
        koha.renew(102, due="2026-12-07 23:59:00", at="2026-11-23 09:00:00")   # renewed at the desk
        koha.check_in(103, "2026-11-23 10:30:00")                              # brought back
        koha.sql("DELETE FROM issues WHERE issue_id = 105")                    # gone, with no trace
        assert pulled_on(DAY, rules, db)[1] == (
            "koha: 10 loans pulled (0 new, 2 changed, 8 unchanged; 1 closed, absent from the pull)")
    with Store(db) as store:
        assert (store.loan("102").due_date.isoformat(), store.loan("102").returned_on) == ("2026-12-07", None)
        assert store.loan("103").returned_on.isoformat() == "2026-11-23"
        assert store.loan("105").returned_on.isoformat() == DAY               # closed by the snapshot
    notices = dry_run(rules, db, DAY)
    assert [(n["stage"], n["patron_id"], n["loan_ids"]) for n in notices
            if n["stage"] in {"courtesy", "first_reminder", "second_reminder", "letter"}] == [
        ("courtesy", "1", ["101"]), ("first_reminder", "4", ["108"]), ("letter", "3", ["104"])]


def test_a_write_through_the_pull_connection_fails(tmp_path):
    with koha_database() as koha:
        load_library(koha)
        with SqlSource(koha.url, "koha").reading() as reading:
            assert [row["loan_id"] for _, row in reading.rows(
                PRESETS["koha"].queries["loans"], LOAN_FIELDS,
                {"returned_since": "2026-11-16"})][:2] == ["101", "102"]
            for statement in ("UPDATE issues SET date_due = '2027-01-01' WHERE issue_id = 101",
                              "INSERT INTO branches (branchcode, branchname) VALUES ('X', 'X')",
                              "DELETE FROM reserves"):
                with pytest.raises(Exception, match="READ ONLY"):
                    reading.execute(statement)
        with SqlSource(koha.url, "koha").reading() as reading:    # nothing inside makes it read-write again
            with pytest.raises(Exception, match="can't be changed while a transaction is in progress"):
                reading.execute("SET TRANSACTION READ WRITE")
        koha.sql("SELECT 1")
        with koha.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT date_due FROM issues WHERE issue_id = 101").scalar() \
                .isoformat() == "2026-11-26T23:59:00"
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM reserves").scalar() == 3


def test_a_user_with_only_select_on_the_preset_tables_can_pull(tmp_path):
    """The README's read-only user: GRANT SELECT on each table the preset reads, nothing else; its
    password comes from the environment (${KOHA_DB_PASSWORD})."""
    with koha_database() as koha:
        load_library(koha)
        database = make_url(koha.url).database
        user, password = f"rappel_ro_{uuid.uuid4().hex[:8]}", f"pw;{uuid.uuid4().hex[:8]}@/"
        koha.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        try:
            for table in PRESETS["koha"].tables:
                koha.sql(f"GRANT SELECT ON {database}.{table} TO '{user}'@'%'")
            base = make_url(koha.url)
            url = f"mysql+pymysql://{user}:${{KOHA_DB_PASSWORD}}@{base.host}:{base.port or 3306}/{database}"
            rules = rules_for(tmp_path, url)
            db = f"sqlite:///{tmp_path / 'rappel.db'}"
            result = cli("pull", "--rules", str(rules), "--db", db)
            assert result.exit_code == 2
            assert "environment variable KOHA_DB_PASSWORD is not set" in result.output
            assert f"{rules / 'sources.yaml'}:4: sources.koha.url" in result.output
            result = cli("pull", "--json", "--rules", str(rules), "--db", db, env={"KOHA_DB_PASSWORD": password})
            assert result.exit_code == 0, result.output
            pulled = [json.loads(line) for line in result.stdout.splitlines()]
            assert [(p["source"], p["kind"], p["mode"], p["snapshot"]) for p in pulled] == [
                ("koha", "patrons", "pull", True), ("koha", "loans", "pull", True), ("koha", "requests", "pull", True)]
            assert (pulled[0]["inserted"], pulled[2]["inserted"]) == (5, 3)   # (the loans: as of today's clock)
            with koha.engine.connect() as conn:
                grants = " ".join(r[0] for r in conn.exec_driver_sql(f"SHOW GRANTS FOR '{user}'@'%%'"))
            assert "INSERT" not in grants and "UPDATE" not in grants and "ALL PRIVILEGES" not in grants
        finally:
            koha.sql(f"DROP USER '{user}'@'%'")
    with Store(db) as store:
        assert store.loan("104").title == "Chimie organique"


def test_a_query_without_rappels_columns_names_the_file_line_and_columns(tmp_path):
    with koha_database() as koha:
        load_library(koha)
        rules = rules_for(tmp_path, koha.url, "    queries:\n      requests: |\n"
                                              "        SELECT reserve_id AS request_id, borrowernumber AS patron\n"
                                              "          FROM reserves\n")
        result = cli("pull", "--rules", str(rules), "--db", f"sqlite:///{tmp_path / 'rappel.db'}")
    assert result.exit_code == 2
    assert f"{rules / 'sources.yaml'}:6: sources.koha.queries.requests: the requests query: it returns no column " \
           f"patron_id, title, library, pickup_library, placed_on, status, expires_on; columns not rappel's: " \
           f"patron" in result.output


def test_an_unreachable_database_is_one_line_naming_the_source_without_its_password(tmp_path, monkeypatch):
    monkeypatch.setenv("KOHA_DB_PASSWORD", "s3cret")
    rules = rules_for(tmp_path, "mysql+pymysql://rappel:${KOHA_DB_PASSWORD}@127.0.0.1:1/koha")
    result = cli("pull", "--rules", str(rules), "--db", f"sqlite:///{tmp_path / 'rappel.db'}")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: koha: cannot connect to mysql+pymysql://rappel:***@127.0.0.1:1/koha")
    assert "s3cret" not in result.output


def test_a_dry_run_checks_everything_writes_nothing_and_sees_the_patrons_it_brings(tmp_path):
    """On a first pull, the loans are checked against the patrons the same pull brings in (a SQLite
    database is checked in a throwaway copy); the database is neither created nor changed."""
    with koha_database() as koha:
        load_library(koha)
        rules = rules_for(tmp_path, koha.url)
        path = tmp_path / "rappel.db"
        result = cli("pull", "--dry-run", "--rules", str(rules), "--db", f"sqlite:///{path}")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == "koha: 5 patrons checked (dry run: nothing written) (5 new, 0 changed, 0 unchanged)"
        assert lines[1].startswith("koha: ") and " loans checked (dry run: nothing written) (" in lines[1]
        assert lines[2] == ("koha: 3 requests checked (dry run: nothing written) (3 new, 0 changed, 0 unchanged; "
                            "0 would be closed, absent from the pull)")
        assert not path.exists() and list(tmp_path.glob(".rappel-dry-run-*")) == []

        assert cli("pull", "--rules", str(rules), "--db", f"sqlite:///{path}").exit_code == 0
        koha.renew(101, due="2026-12-10 23:59:00", at="2026-11-23 09:00:00")
        before = facts(f"sqlite:///{path}")
        result = cli("pull", "--dry-run", "--json", "--rules", str(rules), "--db", f"sqlite:///{path}")
        assert result.exit_code == 0, result.output
        loans = [json.loads(line) for line in result.stdout.splitlines()][1]
        assert (loans["kind"], loans["changed"], loans["dry_run"]) == ("loans", 1, True)
        assert facts(f"sqlite:///{path}") == before


def test_a_bad_row_in_koha_stops_that_kind_whole_with_the_row_named(tmp_path):
    import re

    with koha_database() as koha:
        load_library(koha)
        koha.patron(6, "2000000006", "Jean", "Doe", email="jdoe@")           # typed in a hurry at the desk
        rules = rules_for(tmp_path, koha.url)
        db = f"sqlite:///{tmp_path / 'rappel.db'}"
        result = cli("pull", "--rules", str(rules), "--db", db)
    assert result.exit_code == 2
    assert re.search(r"^error: koha: row \d+: email 'jdoe@' is not an email address$", result.stderr, re.M)
    assert facts(db) == {"patrons": [], "loans": [], "requests": []}       # nothing half-imported
