"""Pulls from Evergreen (PostgreSQL): the evergreen preset on an Evergreen-shaped database built from
Evergreen's published schema (tests/evergreen_site.py: Open-ILS/src/sql/Pg/*.sql,
evergreen-library-system/Evergreen commit 921164cbfe938ca0ea3865f8cabaa4bc21a88e35), on the test
PostgreSQL server (RAPPEL_TEST_DATABASE_URL; skipped without one).

What must hold:
- a pull, then a day's dry run, gives exactly the notices that a CSV import of the same facts gives
  (and those are the policy's: loans at every stage, returned, lost, claimed returned, long
  overdue (all as the shipped policy's statuses), renewed — a new circulation in Evergreen —, a pre-catalogued item);
- patrons, circulations and holds land as the CSV columns say (org unit short names as libraries,
  profiles as user groups, staff profiles as staff, an address Evergreen holds invalid as none,
  deleted users not at all; holds on the shelf, expired on the shelf, frozen, in the queue);
- the library's database is only read: a write through the pull's connection fails, and a role
  with only the README's GRANT SELECT lines can pull.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url

from adapters.sources.presets import PRESETS
from adapters.sources.sql import SqlSource
from adapters.store.schema import LOAN_FIELDS

try:
    from tests import pull_cases
    from tests.evergreen_site import Evergreen, evergreen_database
    from tests.pull_cases import cli, dry_run, facts, import_csv_files, pulled_on
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    import pull_cases
    from evergreen_site import Evergreen, evergreen_database
    from pull_cases import cli, dry_run, facts, import_csv_files, pulled_on

pytestmark = pytest.mark.postgres
DAY = "2026-11-23"
SCI, DROIT = 101, 102


def load_library(eg: Evergreen) -> None:
    """The facts of the test, as Evergreen holds them on 23 November 2026 (a Monday)."""
    eg.library(SCI, "SCI", "Bibliothèque des sciences")
    eg.library(DROIT, "DROIT", "Bibliothèque de droit")
    eg.patron(1, "2000000001", "Camille", "Durand", email="camille.durand@etu.univ.example", locale="fr-CA",
              street1="12 rue Sainte-Catherine")
    eg.patron(2, "2000000002", "Thomas", "Lefèvre", email="thomas.lefevre@etu.univ.example", pref_first="Tom",
              street1="4 allée des Œillets", post_code="33400", city="Talence")
    eg.patron(3, "2000000003", "Inès", "Martin", home=DROIT, street1="8 cours Pasteur")
    eg.patron(4, "2000000004", "Marc", "Petit", email="marc.petit@univ.example", profile=5, phone="05 56 00 00 04")
    eg.patron(5, "2000000005", "Zoé", "Bernard", valid=False)
    eg.patron(6, "2000000006", "Ancien", "Lecteur", email="ancien@etu.univ.example", deleted=True)
    out = eg.checkout
    out(101, usr=1, barcode="3000000101", title="Introduction à l'algèbre linéaire", circ_lib=SCI,
        due="2026-11-26 23:59:59+01")                                        # courtesy today
    out(102, usr=2, barcode="3000000102", title="Thermodynamique", circ_lib=SCI, due="2026-11-16 23:59:59+01")
    out(112, usr=2, barcode="3000000112", title=None, dummy_title="Thèse de M. Dupont", circ_lib=SCI,
        due="2026-11-16 23:59:59+01")                                        # pre-catalogued, same reminder
    out(103, usr=1, barcode="3000000103", title="Droit constitutionnel", circ_lib=DROIT,
        due="2026-11-02 23:59:59+01", circ_modifier="PRET_COURT", rule="7_days_0_renew")                                        # second reminder today
    out(104, usr=3, barcode="3000000104", title="Chimie organique", circ_lib=SCI,
        due="2026-10-19 23:59:59+02")                                        # letter today
    out(105, usr=3, barcode="3000000105", title="Droit des contrats", circ_lib=DROIT,
        due="2026-11-16 23:59:59+01")                                        # no email: a letter
    for circ, why in ((106, "LOST"), (107, "CLAIMSRETURNED"), (108, "LONGOVERDUE")):
        out(circ, usr=2, barcode=f"3000000{circ}", title=f"Ouvrage {circ}", circ_lib=SCI,
            due="2026-11-16 23:59:59+01")
        eg.stop_fines(circ, why)                                             # still open, never reminded
    out(113, usr=4, barcode="3000000113", title="Analyse", circ_lib=SCI, due="2026-11-16 23:59:59+01")
    out(109, usr=1, barcode="3000000109", title="Géologie", circ_lib=SCI, due="2026-11-16 23:59:59+01")
    eg.renew(109, 1109, due="2026-12-14 23:59:59+01", at="2026-11-16 10:00:00+01")   # renewed: a new circulation
    out(110, usr=2, barcode="3000000110", title="Procédure civile", circ_lib=DROIT, due="2026-11-16 23:59:59+01")
    eg.check_in(110, "2026-11-20 16:45:00+01")                               # returned
    out(111, usr=5, barcode="3000000111", title="Botanique", circ_lib=SCI, due="2026-11-16 23:59:59+01")
    eg.hold(201, usr=1, title="Le Rouge et le Noir", pickup=SCI, placed="2026-11-10 09:00+01", copy_at=DROIT,
            barcode="3000000201", shelf="2026-11-21 10:00+01", shelf_expire="2026-11-28 23:59:59+01")
    eg.hold(202, usr=2, title="Traité de droit administratif", pickup=DROIT, placed="2026-11-02 09:00+01",
            copy_at=DROIT, barcode="3000000202", shelf="2026-11-13 10:00+01", shelf_expire="2026-11-20 23:59:59+01")
    eg.hold(203, usr=1, title="Physique quantique", pickup=SCI, placed="2026-11-21 18:30+01",
            expire="2027-05-21 18:30+02")
    eg.hold(204, usr=2, title="Histoire du droit", pickup=DROIT, placed="2026-11-03 12:00+01", frozen=True)
    eg.hold(205, usr=1, title="Déjà servi", pickup=SCI, placed="2026-10-03 12:00+02")
    eg.sql("UPDATE action.hold_request SET fulfillment_time = '2026-10-20 10:00+02' WHERE id = 205")


PATRONS_CSV = """\
patron_id,barcode,first_name,last_name,email,preferred_language,account_type,record_type,user_group,address_line1,address_line2,postal_code,city,country,phone
1,2000000001,Camille,Durand,camille.durand@etu.univ.example,fr-CA,internal,public,Patrons,12 rue Sainte-Catherine,,33000,Bordeaux,France,
2,2000000002,Tom,Lefèvre,thomas.lefevre@etu.univ.example,,internal,public,Patrons,4 allée des Œillets,,33400,Talence,France,
3,2000000003,Inès,Martin,,,internal,public,Patrons,8 cours Pasteur,,33000,Bordeaux,France,
4,2000000004,Marc,Petit,marc.petit@univ.example,,internal,staff,Circulators,12 rue des Facultés,,33000,Bordeaux,France,05 56 00 00 04
5,2000000005,Zoé,Bernard,,,internal,public,Patrons,,,,,,
"""
LOANS_CSV = """\
loan_id,patron_id,item_barcode,title,library,due_date,returned_on,status,item_type,loan_policy
101,1,3000000101,Introduction à l'algèbre linéaire,SCI,2026-11-26,,,,default
102,2,3000000102,Thermodynamique,SCI,2026-11-16,,,,default
112,2,3000000112,Thèse de M. Dupont,SCI,2026-11-16,,,,default
103,1,3000000103,Droit constitutionnel,DROIT,2026-11-02,,,PRET_COURT,7_days_0_renew
104,3,3000000104,Chimie organique,SCI,2026-10-19,,,,default
105,3,3000000105,Droit des contrats,DROIT,2026-11-16,,,,default
106,2,3000000106,Ouvrage 106,SCI,2026-11-16,,lost,,default
107,2,3000000107,Ouvrage 107,SCI,2026-11-16,,claimed_returned,,default
108,2,3000000108,Ouvrage 108,SCI,2026-11-16,,lost,,default
113,4,3000000113,Analyse,SCI,2026-11-16,,,,default
109,1,3000000109,Géologie,SCI,2026-11-16,2026-11-16,,,default
1109,1,3000000109,Géologie,SCI,2026-12-14,,,,default
110,2,3000000110,Procédure civile,DROIT,2026-11-16,2026-11-20,,,default
111,5,3000000111,Botanique,SCI,2026-11-16,,,,default
"""
REQUESTS_CSV = """\
request_id,patron_id,title,library,pickup_library,placed_on,status,expires_on
201,1,Le Rouge et le Noir,DROIT,SCI,2026-11-10,on_hold_shelf,2026-11-28
202,2,Traité de droit administratif,DROIT,DROIT,2026-11-02,on_hold_shelf,2026-11-20
203,1,Physique quantique,SCI,SCI,2026-11-21,active,2027-05-21
204,2,Histoire du droit,DROIT,DROIT,2026-11-03,suspended,
"""

EXPECTED = [
    ("first_reminder", "email", "2", None, ["102", "112"]),
    ("first_reminder", "email", "4", None, ["113"]),
    ("first_reminder", "letter", "3", "DROIT", ["105"]),
    ("letter", "letter", "3", "SCI", ["104"]),
    # one envelope a day: patron 1's courtesy notice (101) and second reminder (103) are one email
    ("second_reminder", "email", "1", None, ["101", "103"]),
]


def rules_for(tmp_path: Path, url: str) -> Path:
    return pull_cases.rules_for(tmp_path, "evergreen", "evergreen", url)


def test_a_pull_then_a_dry_run_gives_the_notices_of_a_csv_import_of_the_same_facts(tmp_path):
    with evergreen_database() as eg:
        load_library(eg)
        rules = rules_for(tmp_path, eg.url)
        pulled = f"sqlite:///{tmp_path / 'pulled.db'}"
        lines = pulled_on(DAY, rules, pulled)
        assert lines == [
            "evergreen: 5 patrons pulled (5 new, 0 changed, 0 unchanged)",
            "evergreen: 14 loans pulled (14 new, 0 changed, 0 unchanged; 0 closed, absent from the pull)",
            "evergreen: 4 requests pulled (4 new, 0 changed, 0 unchanged; 0 closed, absent from the pull)"]
    imported = f"sqlite:///{tmp_path / 'imported.db'}"
    import_csv_files(tmp_path, rules, imported, on=DAY, patrons=PATRONS_CSV, loans=LOANS_CSV, requests=REQUESTS_CSV)

    assert facts(pulled) == facts(imported)
    notices = dry_run(rules, pulled, DAY)
    assert notices == dry_run(rules, imported, DAY)
    loan_stages = {"courtesy", "first_reminder", "second_reminder", "letter"}    # request notices: test_request_notices
    assert [(n["stage"], n["channel"], n["patron_id"], n["library"], n["loan_ids"]) for n in notices
            if n["stage"] in loan_stages] == EXPECTED


def test_a_write_through_the_pull_connection_fails(tmp_path):
    with evergreen_database() as eg:
        load_library(eg)
        with SqlSource(eg.url, "evergreen").reading() as reading:
            rows = reading.rows(PRESETS["evergreen"].queries["loans"], LOAN_FIELDS, {"returned_since": "2026-11-16"})
            assert sorted(row["loan_id"] for _, row in rows)[:2] == ["101", "102"]
            with pytest.raises(Exception, match="read-only transaction"):
                reading.execute("UPDATE action.circulation SET due_date = '2027-01-01' WHERE id = 101")
        for statement in ("DELETE FROM action.hold_request", "CREATE TABLE actor.rappel_was_here (id int)",
                          "SET TRANSACTION READ WRITE"):
            with SqlSource(eg.url, "evergreen").reading() as reading:     # each in a fresh transaction
                with pytest.raises(Exception, match="read-only transaction|read-write mode must be set before any query"):
                    reading.execute(statement)
        assert eg.sql("SELECT count(*) FROM action.hold_request").scalar() == 5
        assert eg.sql("SELECT due_date::text FROM action.circulation WHERE id = 101").scalar().startswith("2026-11-2")


def test_a_role_with_only_select_on_the_preset_tables_can_pull(tmp_path):
    """The README's read-only role: USAGE on Evergreen's schemas, SELECT on each table the preset
    reads, nothing else."""
    with evergreen_database() as eg:
        load_library(eg)
        role = f"rappel_ro_{uuid.uuid4().hex[:8]}"
        eg.sql(f"CREATE ROLE {role} LOGIN")
        try:
            schemas = sorted({t.split(".")[0] for t in PRESETS["evergreen"].tables})
            eg.sql(f"GRANT USAGE ON SCHEMA {', '.join(schemas)} TO {role}")
            eg.sql(f"GRANT SELECT ON {', '.join(PRESETS['evergreen'].tables)} TO {role}")
            eg.sql(f"ALTER ROLE {role} SET default_transaction_read_only = on")
            url = make_url(eg.url).set(username=role).render_as_string(hide_password=False)
            rules = rules_for(tmp_path, url)
            db = f"sqlite:///{tmp_path / 'rappel.db'}"
            result = cli("pull", "--rules", str(rules), "--db", db)
            assert result.exit_code == 0, result.output
            with pytest.raises(Exception, match="permission denied"):
                with eg.engine.connect() as conn:
                    conn.exec_driver_sql(f"SET ROLE {role}")
                    conn.exec_driver_sql("SELECT * FROM money.billable_xact")
        finally:
            eg.sql(f"DROP OWNED BY {role}")
            eg.sql(f"DROP ROLE {role}")
