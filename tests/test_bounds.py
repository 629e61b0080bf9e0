"""Dates and numbers out of any plausible range (engine/limits.py): refused where they are read,
at file:line:key in the policy, at their row in an import (CSV, push), exit 2, never an
OverflowError later in a run, an explain or a patron's email."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.store.database import Store
from cli import app
from engine.policy import parse_policy
from engine.yamlsource import InputError

try:
    from tests.test_csv_files import excel, loan_rows, patron_rows
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from test_csv_files import excel, loan_rows, patron_rows

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
SHIPPED = (RULES / "reminders.yaml").read_text(encoding="utf-8")


def edited(old: str, new: str) -> str:
    assert SHIPPED.count(old) == 1, old
    return SHIPPED.replace(old, new)


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if fragment in line)


# (what is written, where in the shipped policy, the key reported, the message)
POLICY_VALUES = [
    ("- {id: courtesy, offset_days: 3000000, channel: email}", "- {id: courtesy, offset_days: -3, channel: email}",
     "stages.0.offset_days", "3,000,000 is out of range: between -3,650 and 3,650"),
    ("max_delay_days: 1000000000", "max_delay_days: 2", "max_delay_days",
     "1,000,000,000 is out of range: between 0 and 3,650"),
    ("  max_per_run: 100000000000", "  max_per_run: 1000", "flood_guard.max_per_run",
     "100,000,000,000 is out of range: between 1 and 10,000,000"),
    ("restart: {resumed_on: 0001-01-01}", "# restart: {resumed_on: 2026-11-22}", "restart.resumed_on",
     "0001-01-01 is out of range: between 1970-01-01 and 2200-12-31"),
    ("restart: {resumed_on: 9999-12-31}", "# restart: {resumed_on: 2026-11-22}", "restart.resumed_on",
     "9999-12-31 is out of range: between 1970-01-01 and 2200-12-31"),
    ("max_delay_days: .inf", "max_delay_days: 2", "max_delay_days", "finite number"),
]


@pytest.mark.parametrize("new, old, where, message", POLICY_VALUES)
def test_a_number_or_date_out_of_range_is_refused_at_its_line_and_key(new, old, where, message):
    text = edited(old, new)
    with pytest.raises(InputError) as info:
        parse_policy(text, "rules/reminders.yaml")
    shown = where.replace(".0.", "[0].")
    [problem] = [p for p in info.value.problems if p.where == shown]     # other checks may say more
    assert problem.line == line_of(text, new.strip()) and message in problem.message, problem


def test_retention_and_delivery_numbers_are_bounded_too():
    """Every problem at once; a number YAML reads as text ("1e12") but pydantic would take is bounded too."""
    text = edited("  per_second: 10 ", "  per_second: 1e12 ")
    text = text.replace("  messages_days: 400", "  messages_days: 400000")
    with pytest.raises(InputError) as info:
        parse_policy(text, "rules/reminders.yaml")
    found = [(p.where, p.message) for p in info.value.problems]
    assert ("flood_guard.per_second", "1,000,000,000,000 is out of range: between 0 and 100,000") in found
    assert any(where == "retention.messages_days" for where, _ in found), found


def test_rappel_lint_exits_2_on_a_huge_offset_not_on_an_overflow(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "reminders.yaml").write_text(edited("- {id: courtesy, offset_days: -3, channel: email}",
                                                 "- {id: courtesy, offset_days: 3000000, channel: email}"))
    done = subprocess.run([sys.executable, "-m", "cli", "lint", "--rules", str(rules)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "stages[0].offset_days: 3,000,000 is out of range" in done.stderr
    assert "OverflowError" not in done.stderr + done.stdout


@pytest.fixture
def site(tmp_path):
    db = f"sqlite:///{tmp_path / 'rappel.db'}"

    def rappel(*args, rules: Path = RULES):
        return CliRunner().invoke(app, [*map(str, args), "--rules", str(rules), "--db", db])
    patrons = tmp_path / "patrons.csv"
    patrons.write_bytes(excel(patron_rows(), delimiter=",", encoding="utf-8"))
    assert rappel("import", "patrons", patrons).exit_code == 0
    rappel.db, rappel.dir = db, tmp_path
    return rappel


def loans_csv(folder: Path, *dues: str) -> Path:
    path = folder / "loans.csv"
    rows = loan_rows()[:len(dues) + 1]
    due = rows[0].index("due_date")
    for row, day in zip(rows[1:], dues):
        row[due] = day
    path.write_bytes(excel(rows, delimiter=",", encoding="utf-8", newline="\n"))
    return path


def test_due_dates_of_year_1_and_9999_are_bad_rows_and_nothing_is_imported(site):
    result = site("import", "loans", loans_csv(site.dir, "2026-11-20", "9999-12-31", "0001-01-01"))
    assert result.exit_code == 2, result.output
    path = site.dir / "loans.csv"
    assert f"{path}:3: row 2: due_date '9999-12-31' is out of range: between 1970-01-01 and 2200-12-31 " \
           f"(imports.dates in reminders.yaml)" in result.output
    assert f"{path}:4: row 3: due_date '0001-01-01' is out of range" in result.output
    store = Store(site.db)
    try:
        assert store.loan("L1") is None
    finally:
        store.close()


def test_the_import_bounds_are_the_policys_imports_dates(site, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "reminders.yaml").write_text(SHIPPED + "\nimports: {dates: {earliest: 1900-01-01, latest: 2100-01-01}}\n"
                                          if "\nimports:" not in SHIPPED else SHIPPED)
    result = site("import", "loans", loans_csv(site.dir, "1950-06-01", "2150-01-01"), rules=rules)
    assert result.exit_code == 2
    assert "row 1" not in result.output
    assert "row 2: due_date '2150-01-01' is out of range: between 1900-01-01 and 2100-01-01" in result.output


def test_imports_dates_must_be_in_order():
    with pytest.raises(InputError) as info:
        parse_policy(SHIPPED + "\nimports: {dates: {earliest: 2100-01-01, latest: 2000-01-01}}\n", "reminders.yaml")
    [problem] = info.value.problems
    assert problem.where == "imports.dates" and "must come after earliest" in problem.message


def test_a_pushed_loan_due_in_9999_is_a_bad_field(site, policy):
    from service.pushes import PushRefused, push_loan
    store = Store(site.db)
    try:
        with pytest.raises(PushRefused) as info:
            push_loan(store, policy, "L9", {"patron_id": "P1", "library": "SCI", "due_date": "9999-12-31"},
                      actor="api", now=dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc))
        assert [(e.field, e.message.split(" is ")[1][:12]) for e in info.value.errors] == [
            ("due_date", "out of range")]
    finally:
        store.close()


def test_explain_json_lines_only(site):
    """The good import of the same file still works (bounds do not refuse a plausible date)."""
    result = site("import", "loans", loans_csv(site.dir, "1970-01-01", "2200-12-31"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["inserted"] == 2
