"""`rappel patron forget` at the command line, and what comes after an erasure: a later import or
synchronisation from the library system does not bring the patron back.

The patron P777 (barcode ZQV-4481-77) borrowed L1, due 2026-11-16, returned 2026-12-22 unless a
test keeps it open; P2 is another patron. Shipped policy and accounts.yaml.
"""
from __future__ import annotations

import csv
import datetime as dt
import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from adapters.store.database import Store
from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, loans, patrons
from cli import app
from service import retention, sync
from service.rules import load_accounts, load_policy

try:
    from tests.daemon_cases import RULES, d, loan_row, patron_row, seed
    from tests.test_forget import ZEPHIRINE
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import RULES, d, loan_row, patron_row, seed
    from test_forget import ZEPHIRINE

AT = dt.datetime(2026, 12, 22, 9, 30, tzinfo=dt.timezone.utc)


@pytest.fixture
def db(sqlite_url):
    store = Store(sqlite_url)
    returned = {**loan_row("L1", "P777", "2026-11-16"), "returned_on": d("2026-12-22")}
    seed(store, [ZEPHIRINE, patron_row("P2")], [returned, loan_row("L2", "P2", "2026-11-16")])
    store.close()
    return sqlite_url


def rappel(*args: str, db: str, tmp_path=None):
    outbox = ["--outbox", str(tmp_path / "outbox")] if tmp_path else []
    return CliRunner().invoke(app, [*args, "--rules", str(RULES), "--db", db, *outbox])


def patron(db: str, patron_id: str) -> dict:
    with Store(db) as store, store.engine.connect() as conn:
        return dict(conn.execute(select(patrons).where(patrons.c.patron_id == patron_id)).mappings().one())


def test_forget_says_what_it_erased_and_a_second_time_that_it_was_done(db, tmp_path):
    first = rappel("patron", "forget", "ZQV-4481-77", "--by", "dpo", "--why", "request of 2026-12-20", db=db,
                   tmp_path=tmp_path)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        "patron P777 erased",
        "  personal data removed from: loans 1, patrons 1",
        "  kept: patron id P777, the dates and statuses of their loans, notices and ledger rows; later imports "
        "skip this patron"]
    assert patron(db, "P777")["email"] == "" and patron(db, "P2")["email"] == "p2@etu.univ.example"
    again = rappel("patron", "forget", "P777", "--by", "dpo", "--why", "request of 2026-12-20", db=db,
                   tmp_path=tmp_path)
    assert again.exit_code == 0, again.output
    today = dt.datetime.now(load_policy(RULES).tz).date()
    assert again.stdout == f"patron P777 was already erased on {today} by dpo: nothing to do\n"


def test_forget_dry_run_in_json_changes_nothing(db, tmp_path):
    result = rappel("patron", "forget", "P777", "--by", "dpo", "--why", "request", "--dry-run", "--json", db=db,
                    tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert json.loads(line) == {"patron_id": "P777", "dry_run": True, "erased_before": None,
                                "changed": {"loans": 1, "patrons": 1}, "outbox_files": 0, "problems": []}
    assert patron(db, "P777")["email"] == ZEPHIRINE["email"]


@pytest.mark.parametrize("args, code, message", [
    (["P2"], 1, "error: patron P2 has 1 open loan (L2 due 2026-11-16 at SCI): nothing erased; the loans must be "
                "returned or closed in the library system (and imported) first"),
    (["NOBODY"], 2, "error: no patron with barcode or id 'NOBODY'"),
])
def test_forget_refuses_an_open_loan_and_an_unknown_patron(db, tmp_path, args, code, message):
    result = rappel("patron", "forget", *args, "--by", "dpo", "--why", "request", db=db, tmp_path=tmp_path)
    assert (result.exit_code, result.stderr.strip()) == (code, message)
    assert result.stdout == ""


def test_forget_needs_who_and_why(db, tmp_path):
    result = rappel("patron", "forget", "P777", "--by", " ", "--why", "", db=db, tmp_path=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["error: --by: say who erases (for the record)",
                                          "error: --why: say why (the request, its date)"]
    assert patron(db, "P777")["email"] == ZEPHIRINE["email"]


def test_a_barcode_that_is_another_patrons_id_is_not_guessed(db, tmp_path):
    with Store(db) as store:
        seed(store, [{**patron_row("P9"), "barcode": "P777"}], [])
    result = rappel("patron", "forget", "P777", "--by", "dpo", "--why", "request", db=db, tmp_path=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: P777: both the barcode of patron P9 and the id of patron P777: give "
                                     "ZQV-4481-77 to erase P777, P9 to erase P9")


def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows([r.get(f) or "" for f in header] for r in rows)
    return path


def test_a_later_import_skips_the_erased_patron_and_says_so(db, tmp_path):
    with Store(db) as store:
        retention.forget(store, load_policy(RULES), "P777", by="dpo", why="request", at=AT)
    p2 = {**patron_row("P2"), "city": "Talence"}
    patrons_csv = _csv(tmp_path / "patrons.csv", PATRON_FIELDS, [ZEPHIRINE, p2])
    result = rappel("import", "patrons", str(patrons_csv), db=db)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{patrons_csv}: 1 patrons imported (0 new, 1 changed, 0 unchanged)\n"
    assert result.stderr == (f"{patrons_csv}: 1 row(s) skipped, of patrons erased here (rappel patron forget): "
                             f"P777; erase them in the library system too\n")
    assert patron(db, "P777")["first_name"] == "" and patron(db, "P2")["city"] == "Talence"
    loan = {**loan_row("L1", "P777", "2026-11-16"), "title": "Traité des glycines"}
    loans_csv = _csv(tmp_path / "loans.csv", LOAN_FIELDS, [loan])
    assert rappel("import", "loans", str(loans_csv), db=db).exit_code == 0
    with Store(db) as store, store.engine.connect() as conn:
        assert conn.execute(select(loans.c.title, loans.c.returned_on).where(loans.c.loan_id == "L1")).one() == \
            ("", d("2026-12-22"))


def test_a_synchronisation_skips_an_erased_external_account(db, tmp_path):
    external = {**ZEPHIRINE, "account_type": "external"}
    with Store(db) as store:
        seed(store, [external], [])
        policy = load_policy(RULES)
        retention.forget(store, policy, "P777", by="dpo", why="request", at=AT)
        report = sync.sync(store, policy, load_accounts(RULES), _csv(tmp_path / "sis.csv", PATRON_FIELDS, [external]),
                           AT)
    assert (report.created, report.updated, report.erased, report.missing) == ([], 0, ["P777"], [])
    assert patron(db, "P777")["email"] == ""
