"""The command line (cli.py) through typer's CliRunner: what an administrator types and reads.

The installation: the shipped rules (rules/), a SQLite file, CSV exports written to tmp_path, the
file outbox. Run date Monday 2026-11-23 unless said otherwise; on that day, by the shipped policy:
    L4 (P1, due 2026-11-26)            courtesy, 3 days before due          ┐ one email to P1 (one
    L1 + L2 (P1, due 2026-11-16)        first reminder, day 7, two libraries ┘ envelope a day)
    L3 (P2, no email, due 2026-11-16)   first reminder                       → a letter, library SCI
    L5 (P3, a contact)                  nothing;  L6 (P1, lost)              nothing
Exit codes: 0 fine, 2 bad input (CSV, policy, templates, --on), 1 anything else.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import create_engine, func, select
from typer.testing import CliRunner

from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, ledger, notices
from cli import app
from engine.policy import parse_policy

RULES = Path(__file__).resolve().parent.parent / "rules"
DAY = "2026-11-23"

PATRONS_CSV = [
    ",".join(PATRON_FIELDS),
    "P1,2000000001,Camille,Durand,camille.durand@etu.univ.example,fr,external,public,undergraduate,"
    "12 rue Sainte-Catherine,,33000,Bordeaux,France,",
    "P2,2000000002,Jeanne,Moreau,,fr,internal,public,reader,8 place Gambetta,,33000,Bordeaux,France,",
    "P3,2000000003,Marc,Fournier,commandes@librairie.example,fr,internal,contact,vendor,Librairie Mollat,,"
    "33000,Bordeaux,France,",
]
LOANS_CSV = [
    ",".join(LOAN_FIELDS),
    "L1,P1,3000000001,Chimie organique,SCI,2026-11-16,,",
    "L2,P1,3000000002,Droit des obligations,DROIT,2026-11-16,,",
    "L3,P2,3000000003,Physique quantique,SCI,2026-11-16,,",
    "L4,P1,3000000004,Analyse réelle,SCI,2026-11-26,,",
    "L5,P3,3000000005,Catalogue des nouveautés,SCI,2026-11-16,,",
    "L6,P1,3000000006,Probabilités,SCI,2026-11-16,,lost",
]


def rappel(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


class Install:
    def __init__(self, tmp_path: Path, rules: Path = RULES):
        self.dir = tmp_path
        self.rules = rules
        self.db = f"sqlite:///{tmp_path / 'rappel.db'}"
        self.outbox = tmp_path / "outbox"

    def csv(self, name: str, lines: list[str]) -> Path:
        path = self.dir / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def __call__(self, command: str, *args: str, rules: Path | None = None):
        extra = ["--rules", rules or self.rules]
        if command in ("run", "explain", "import"):
            extra += ["--db", self.db]
        return rappel(command, *args, *extra)

    def ledger_count(self) -> int:
        engine = create_engine(self.db)
        try:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(ledger)).scalar_one() + \
                    conn.execute(select(func.count()).select_from(notices)).scalar_one()
        finally:
            engine.dispose()

    def files(self) -> dict[str, bytes]:
        if not self.outbox.exists():
            return {}
        return {str(p.relative_to(self.outbox)): p.read_bytes() for p in sorted(self.outbox.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch) -> Path:
    """This machine's installation id (the environment guard of a real run) lives in tmp_path: never
    in ~/.local/state, nor in the repository."""
    monkeypatch.setenv("RAPPEL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RAPPEL_INSTALLATION_ID", raising=False)
    return tmp_path / "state"


@pytest.fixture
def site(tmp_path) -> Install:
    s = Install(tmp_path)
    for kind, lines in (("patrons", PATRONS_CSV), ("loans", LOANS_CSV)):
        result = s("import", kind, s.csv(f"{kind}.csv", lines))
        assert result.exit_code == 0, result.stderr
    return s


def broken_rules(tmp_path: Path, file: str, old: str, new: str) -> tuple[Path, int]:
    """A copy of the shipped rules with one edit; returns the folder, the (1-based) edited line, the file."""
    rules = tmp_path / "broken-rules"
    shutil.copytree(RULES, rules)
    if file.startswith("templates/"):   # the French template, in templates/fr/ or templates/ itself
        file = template_path(rules, file.removeprefix("templates/")).relative_to(rules).as_posix()
    path = rules / file
    text = path.read_text(encoding="utf-8")
    if old == "^":   # at the very beginning
        text = new + text
    else:
        assert text.count(old) == 1, f"{old!r} in {file}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    line = next(i for i, content in enumerate(text.splitlines(), start=1) if new.splitlines()[0] in content)
    return rules, line, path


def template_path(rules: Path, name: str) -> Path:
    for candidate in (rules / "templates" / "fr" / name, rules / "templates" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(name)


# --- import --------------------------------------------------------------------------------------

def test_import_reports_new_and_updated_rows(tmp_path):
    s = Install(tmp_path)
    result = s("import", "patrons", s.csv("patrons.csv", PATRONS_CSV))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"{tmp_path / 'patrons.csv'}: 3 patrons imported (3 new, 0 changed, 0 unchanged)"
    result = s("import", "loans", s.csv("loans.csv", LOANS_CSV))
    assert "6 loans imported (6 new, 0 changed, 0 unchanged)" in result.stdout
    renewed = LOANS_CSV[:2] + ["L2,P1,3000000002,Droit des obligations,DROIT,2026-11-30,,",
                               "L7,P2,3000000007,Thermodynamique,SCI,2026-12-01,,"]
    result = s("import", "loans", s.csv("loans-2.csv", renewed))
    assert result.exit_code == 0
    assert "3 loans imported (1 new, 1 changed, 1 unchanged)" in result.stdout   # L1 as it was, L2 renewed


def test_a_bad_csv_exits_2_with_one_line_per_bad_row_and_imports_nothing(site):
    bad = [LOANS_CSV[0],
           "L8,P1,3000000008,Good row,SCI,2026-11-20,,",
           "L9,P9,3000000009,Unknown patron,SCI,2026-11-20,,",
           "L10,P1,3000000010,Bad date,SCI,2026-11-31,,",
           "L11,P1,3000000011,Unknown library,MEDECINE,2026-11-20,,"]
    path = site.csv("bad-loans.csv", bad)
    result = site("import", "loans", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == [f"{path}:3", f"{path}:4", f"{path}:5"]
    assert all(line.startswith("error: ") for line in lines)
    assert "unknown patron 'P9'" in lines[0]
    assert "'2026-11-31' is not a date" in lines[1]
    assert "library 'MEDECINE'" in lines[2]
    # nothing of the file went in: L8 is unknown to explain
    result = site("explain", "--loan", "L8", "--on", DAY)
    assert result.exit_code == 2 and "no loan 'L8'" in result.stderr


def test_a_csv_without_a_column_exits_2_at_line_1(site):
    path = site.csv("no-due.csv", ["loan_id,patron_id,item_barcode,title,library,returned_on,status",
                                   "L8,P1,3000000008,Good row,SCI,,"])
    result = site("import", "loans", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}:1: header: missing column(s): due_date"


def test_import_of_an_unknown_kind_exits_2(site):
    result = site("import", "books", site.dir / "loans.csv")
    assert result.exit_code == 2
    assert "unknown kind 'books'" in result.stderr


# --- run: dry run, JSON, delivery -------------------------------------------------------------------

def test_dry_run_shows_a_readable_table_and_writes_nothing(site):
    result = site("run", "--on", DAY, "--dry-run", "--outbox", site.outbox)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2026-11-23: 2 message(s) would go out (dry run)"
    assert lines[1].split() == ["stage", "channel", "patron", "library", "loans", "recipient", "destination"]
    assert set(lines[2].replace(" ", "")) == {"-"}
    rows = [line.split(None, 5) for line in lines[3:5]]
    assert [row[:5] for row in rows] == [
        ["first_reminder", "email", "P1", "-", "L1,L2,L4"],      # L4's courtesy in the same envelope
        ["first_reminder", "letter", "P2", "SCI", "L3"],
    ]
    outbox = f"outbox:{site.outbox}/"        # nothing configured: everything goes to the outbox folder
    assert [row[5].rsplit(None, 1) for row in rows] == [   # the whole address, then where it goes
        ["camille.durand@etu.univ.example", outbox],
        ["Jeanne Moreau, 8 place Gambetta, 33000 Bordeaux, France", outbox],
    ]
    assert lines[5:] == ["summary: first_reminder (email): 1 to send; first_reminder (letter): 1 to send"]
    assert site.ledger_count() == 0
    assert site.files() == {} and not site.outbox.exists()


def test_a_dry_run_on_a_database_that_is_not_there_says_so_and_creates_nothing(tmp_path):
    path = tmp_path / "typo.db"
    for args in (("run", "--on", DAY, "--dry-run"), ("explain", "--loan", "L1", "--on", DAY), ("status",)):
        result = rappel(*args, "--rules", RULES, "--db", f"sqlite:///{path}")
        assert result.exit_code == 2, (args, result.stdout)
        assert result.stderr == f"error: sqlite:///{path}: no such database file (nothing imported yet? " \
                                "`rappel import` creates it)\n"
        assert not path.exists()


def test_a_dry_run_does_not_upgrade_an_older_database(tmp_path):
    from alembic import command

    from adapters.store.database import Store, _alembic_config, migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url, upgrade=False)
    with old.engine.begin() as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    result = rappel("run", "--on", DAY, "--dry-run", "--rules", RULES, "--db", url)
    assert result.exit_code == 2
    assert "at schema revision 0001" in result.stderr and "upgrades it" in result.stderr
    with old.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one() == "0001"
    migrate(old.engine)                      # a command that writes upgrades it; then the dry run reads it
    old.close()
    assert rappel("run", "--on", DAY, "--dry-run", "--rules", RULES, "--db", url).exit_code == 0


def test_dry_run_json_is_one_object_per_line_and_nothing_else(site):
    result = site("run", "--on", DAY, "--dry-run", "--json", "--outbox", site.outbox)
    assert result.exit_code == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    wanted = {"date", "stage", "channel", "patron_id", "library", "loan_ids", "recipient"}
    assert all(wanted <= set(o) for o in objects)
    assert [{k: o[k] for k in wanted} for o in objects] == [
        {"date": DAY, "stage": "first_reminder", "channel": "email", "patron_id": "P1", "library": None,
         "loan_ids": ["L1", "L2", "L4"], "recipient": "camille.durand@etu.univ.example"},
        {"date": DAY, "stage": "first_reminder", "channel": "letter", "patron_id": "P2", "library": "SCI",
         "loan_ids": ["L3"], "recipient": "Jeanne Moreau, 8 place Gambetta, 33000 Bordeaux, France"},
    ]
    assert objects[0]["loan_stages"] == {"L1": "first_reminder", "L2": "first_reminder", "L4": "courtesy"}
    assert site.ledger_count() == 0 and site.files() == {}


def test_run_writes_emails_and_letters_to_the_outbox_once(site):
    result = site("run", "--on", DAY, "--json", "--outbox", site.outbox)
    assert result.exit_code == 0, result.stderr
    assert len([json.loads(line) for line in result.stdout.splitlines()]) == 2   # stdout: JSON only
    assert "delivered 2 of 2" in result.stderr

    files = site.files()
    emails = {name: email.message_from_bytes(data, policy=email.policy.default)
              for name, data in files.items() if name.endswith(".eml")}
    letters = {name: data for name, data in files.items() if name.endswith(".pdf")}
    assert len(emails) == 1 and len(letters) == 1      # L4's courtesy and L1 + L2 in one email
    assert all(name.startswith(f"email/{DAY}/") for name in emails)
    assert all(name.startswith(f"letters/SCI/{DAY}/") for name in letters)

    sender = parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8")).sender
    assert sender.from_ == "Service du contentieux <contentieux@univ.example>"   # the shipped policy's
    for message in emails.values():
        assert message["From"] == sender.from_
        assert message["Reply-To"] == sender.reply_to
        assert message["To"].addresses[0].addr_spec == "camille.durand@etu.univ.example"
        assert message["Subject"].strip()
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    texts = sorted(m.get_body(("plain",)).get_content() for m in emails.values())
    assert any("Chimie organique" in t and "Droit des obligations" in t for t in texts)   # L1 + L2 together
    assert any("Analyse réelle" in t for t in texts)
    html = [m.get_body(("html",)).get_content() for m in emails.values()]
    assert all("<" in h and "Camille" in h for h in html)

    [pdf] = letters.values()
    assert pdf.startswith(b"%PDF")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "Jeanne Moreau" in text and "Physique quantique" in text
    assert "Bibliothèque des sciences" in text

    again = site("run", "--on", DAY, "--outbox", site.outbox)
    assert again.exit_code == 0
    assert again.stdout.splitlines()[0] == "2026-11-23: 0 message(s) decided"
    assert "delivered 0 of 0" in again.stderr
    assert site.files() == files


# --- explain --------------------------------------------------------------------------------------

def stage_lines(output: str) -> dict[str, list[str]]:
    """'- stage (...)' lines with the reason lines under them."""
    out: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("- "):
            current = line[2:].split(" ", 1)[0]
            out[current] = [line]
        elif line.startswith("    [") and current:
            out[current].append(line.strip())
        elif not line.startswith(" "):
            current = None
    return out


def test_explain_names_each_stage_with_its_reasons(site):
    result = site("explain", "--loan", "L1", "--on", DAY)
    assert result.exit_code == 0, result.stderr
    stages = stage_lines(result.stdout)
    assert list(stages) == ["courtesy", "first_reminder", "second_reminder", "letter"]
    assert "DUE → email" in stages["first_reminder"][0]
    assert all("not due" in stages[s][0] for s in ("courtesy", "second_reminder", "letter"))
    assert "[ok] window: triggered on 2026-11-23" in stages["first_reminder"]
    assert any(r.startswith("[no] window: triggered on 2026-11-13") and "stale" in r for r in stages["courtesy"])
    assert "[no] window: triggers on 2026-12-07, 14 day(s) after 2026-11-23" in stages["second_reminder"]
    for reasons in stages.values():
        assert {r.split(":")[0] for r in reasons[1:]} >= {"[ok] status", "[ok] ledger", "[ok] audience"}

    site("run", "--on", DAY, "--outbox", site.outbox)
    stages = stage_lines(site("explain", "--loan", "L1", "--on", DAY).stdout)
    assert "not due" in stages["first_reminder"][0]
    assert "[no] ledger: already in the ledger for due date 2026-11-16" in stages["first_reminder"]
    assert "first_reminder for due 2026-11-16: sent" in site("explain", "--loan", "L1", "--on", DAY).stdout


@pytest.mark.parametrize("loan, reason", [
    ("L6", "[no] status: status 'lost' is excluded by the policy"),
    ("L5", "[no] audience: record type 'contact' does not receive this stage"),
])
def test_explain_says_why_a_loan_gets_nothing(site, loan, reason):
    result = site("explain", "--loan", loan, "--on", DAY)
    assert result.exit_code == 0, result.stderr
    stages = stage_lines(result.stdout)
    assert "not due" in stages["first_reminder"][0]
    assert reason in stages["first_reminder"]


def test_explain_gives_the_restart_as_a_reason(site, tmp_path):
    rules, _, _ = broken_rules(tmp_path, "reminders.yaml", "# restart: {resumed_on: 2026-11-22}",
                            "restart: {resumed_on: 2026-11-24}")
    result = site("explain", "--loan", "L1", "--on", DAY, rules=rules)
    assert result.exit_code == 0, result.stderr
    stages = stage_lines(result.stdout)
    assert "not due" in stages["first_reminder"][0]
    assert "[no] restart: trigger 2026-11-23 is before the restart on 2026-11-24: never sent" in stages["first_reminder"]


def test_explain_an_unknown_loan_exits_2(site):
    result = site("explain", "--loan", "L404", "--on", DAY)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no loan 'L404'")


# --- lint and schema ------------------------------------------------------------------------------

def test_lint_accepts_the_shipped_rules():
    result = rappel("lint", "--rules", RULES)
    assert result.exit_code == 0, result.stderr
    assert any(line.startswith(f"{RULES}/reminders.yaml: ok") for line in result.stdout.splitlines()), result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("file, old, new, says", [
    ("reminders.yaml", "id: first_reminder, offset_days: 7", "id: first_reminder, ofset_days: 7", "unknown key"),
    ("reminders.yaml", "timezone: Europe/Paris", "timezone: Europe/Pariss", "unknown time zone"),
    ("reminders.yaml", "  reply_to: contentieux@univ.example", "  reply_to: contentieux", "not an email address"),
    ("reminders.yaml", "letters: {printer: bu-sciences}", "letters: {printer: bu-sciences, mailbox: a@b.example}",
     "exactly one of printer or mailbox"),
    ("templates/first_reminder.txt.j2", "{% block intro %}", "{% block intro %}{{ patron.full_name }",
     "syntax error"),
])
def test_lint_points_at_the_file_and_line_of_a_mistake(tmp_path, file, old, new, says):
    rules, line, path = broken_rules(tmp_path, file, old, new)
    result = rappel("lint", "--rules", rules)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert any(f"{path}:{line}:" in err and says in err for err in result.stderr.splitlines()), result.stderr
    assert all(err.startswith("error: ") for err in result.stderr.splitlines())


@pytest.mark.parametrize("resumed_on, warned", [
    ("2026-11-22", False),      # the shipped restart day, long past
    ("2199-06-01", True),       # a year typed wrong: nothing would be sent for 170 years
])
def test_lint_warns_of_a_restart_day_in_the_future(tmp_path, resumed_on, warned):
    rules, line, path = broken_rules(tmp_path, "reminders.yaml", "# restart: {resumed_on: 2026-11-22}",
                                     f"restart: {{resumed_on: {resumed_on}}}")
    result = rappel("lint", "--rules", rules)
    assert result.exit_code == 0, result.stderr        # a warning: the policy is valid
    warnings = [err for err in result.stderr.splitlines() if "restart.resumed_on" in err]
    if warned:
        [warning] = warnings
        assert warning.startswith(f"warning: {path}:{line}: restart.resumed_on is 2199-06-01, ") and \
            "no notice is sent before then" in warning, warning
    else:
        assert warnings == []


def test_the_future_restart_warning_counts_the_days_from_the_institutions_today(tmp_path):
    from service.checks import future_restart
    rules, line, path = broken_rules(tmp_path, "reminders.yaml", "# restart: {resumed_on: 2026-11-22}",
                                     "restart: {resumed_on: 2027-01-04}")
    assert future_restart(Path(rules), dt.date(2027, 1, 4), dt.date(2026, 12, 3)) == (
        f"{path}:{line}: restart.resumed_on is 2027-01-04, 32 day(s) after today (2026-12-03): no notice is "
        f"sent before then, and none whose trigger date is earlier ever; is the date right?")


def test_schema_prints_the_json_schema_of_the_policy():
    result = rappel("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"timezone", "sender", "stages", "libraries", "restart", "max_delay_days"} <= set(schema["properties"])
    assert set(schema["required"]) >= {"timezone", "sender", "stages", "libraries"}


# --- exit codes, and nothing sent on a broken policy ---------------------------------------------------

def test_a_bad_on_date_exits_2(site):
    result = site("run", "--on", "2026-11-31", "--outbox", site.outbox)
    assert result.exit_code == 2
    assert result.stderr == "error: --on: '2026-11-31' is not a date (YYYY-MM-DD)\n"
    assert site.ledger_count() == 0 and site.files() == {}


@pytest.mark.parametrize("file, old, new", [
    ("reminders.yaml", "id: first_reminder, offset_days: 7", "id: first_reminder, ofset_days: 7"),
    ("reminders.yaml", "  - {id: letter, offset_days: 35, channel: letter}",
     "  - {id: letter, offset_days: 35, channel: letter}\n  - {id: letter, offset_days: 49, channel: letter}"),
    ("templates/courtesy.subject.j2", "^", "{{ patron.no_such_field }} "),
])
def test_nothing_is_sent_when_the_policy_is_broken(site, tmp_path, file, old, new):
    rules, _, _ = broken_rules(tmp_path, file, old, new)
    for args in (("--dry-run",), ()):
        result = site("run", "--on", DAY, "--outbox", site.outbox, *args, rules=rules)
        assert result.exit_code == 2, result.stderr
        assert result.stdout == ""
        assert result.stderr and all(e.startswith("error: ") for e in result.stderr.splitlines())
    assert site.ledger_count() == 0 and site.files() == {}
    assert site("run", "--on", DAY, "--outbox", site.outbox).exit_code == 0   # the good rules still work


def test_a_dry_run_names_a_broken_template_before_a_missing_database(tmp_path):
    """The templates are linted beside the dry run's planning: their problems still come first."""
    rules, _, _ = broken_rules(tmp_path, "templates/courtesy.subject.j2", "^", "{{ patron.no_such_field }} ")
    result = rappel("run", "--on", DAY, "--dry-run", "--rules", rules, "--db", f"sqlite:///{tmp_path / 'typo.db'}")
    assert result.exit_code == 2 and result.stdout == ""
    assert "courtesy.subject.j2" in result.stderr and "no_such_field" in result.stderr
    assert "no such database file" not in result.stderr


def test_a_missing_policy_exits_2(site, tmp_path):
    result = site("run", "--on", DAY, rules=tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "cannot read the policy" in result.stderr


def _unreachable_database(tmp_path):
    return rappel("run", "--on", DAY, "--rules", RULES, "--db", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}",
                  "--outbox", tmp_path / "outbox")


def test_other_failures_exit_1(tmp_path):
    result = _unreachable_database(tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "unable to open database file" in result.stderr
    assert result.stdout == ""


def test_other_failures_are_one_line_on_stderr(tmp_path):
    lines = _unreachable_database(tmp_path).stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


# --- a real run is guarded like the daemon: the installation, the lease ---------------------------------

def _database_id(site: Install) -> str | None:
    from adapters.store.schema import installation
    engine = create_engine(site.db)
    try:
        with engine.connect() as conn:
            return conn.execute(select(installation.c.installation_id)).scalar()
    finally:
        engine.dispose()


def _claimed_by(site: Install, installation_id: str) -> None:
    """The database belongs to another installation: a copy of production restored here."""
    from adapters.store.installation import Guard
    engine = create_engine(site.db)
    try:
        assert Guard(engine, env={"RAPPEL_INSTALLATION_ID": installation_id}).check().ok
    finally:
        engine.dispose()


def _pending_and_sent(site: Install) -> list[str]:
    engine = create_engine(site.db)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(select(notices.c.status)).scalars())
    finally:
        engine.dispose()


def test_the_first_run_claims_the_database_for_this_machine(site, state_dir):
    assert _database_id(site) is None
    result = site("run", "--on", DAY, "--outbox", site.outbox)
    assert result.exit_code == 0, result.stderr
    mine = (state_dir / "installation-id").read_text(encoding="utf-8").strip()
    assert mine and _database_id(site) == mine
    assert site("run", "--on", DAY, "--outbox", site.outbox).exit_code == 0     # and it stays this machine's


def test_a_run_on_a_database_of_another_installation_decides_and_sends_nothing(site, tmp_path):
    _claimed_by(site, "production")
    for where in ((), ("--state-dir", tmp_path / "elsewhere")):
        result = site("run", "--on", DAY, "--outbox", site.outbox, *where)
        assert result.exit_code == 1, result.stderr
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: delivery refused, nothing decided or sent: this database belongs to "
                               "installation production")
        assert "`rappel confirm-installation`" in line
    assert site.ledger_count() == 0 and site.files() == {}
    assert _database_id(site) == "production"                                   # not taken over

    shown = site("run", "--on", DAY, "--dry-run", "--outbox", site.outbox)      # a dry run sends nothing: allowed
    assert shown.exit_code == 0 and "2 message(s) would go out" in shown.stdout

    production = tmp_path / "production-state"                                  # --state-dir is honoured
    production.mkdir()
    (production / "installation-id").write_text("production\n", encoding="utf-8")
    result = site("run", "--on", DAY, "--outbox", site.outbox, "--state-dir", production)
    assert result.exit_code == 0, result.stderr
    assert "delivered 2 of 2" in result.stderr


def test_a_run_beside_an_active_daemon_is_refused(site):
    import datetime as dt

    from adapters.store.daemon_state import record_daemon_policy
    from adapters.store.lease import Lease, read_lease
    engine = create_engine(site.db)
    try:
        daemon = Lease(engine, ttl=60, holder="prod-host/4242/abcdef")
        assert daemon.acquire()
        record_daemon_policy(engine, holder="prod-host/4242/abcdef", fingerprint="f", summary={},   # as a daemon does
                             loaded_at=dt.datetime.now(dt.timezone.utc), at=dt.datetime.now(dt.timezone.utc))
        result = site("run", "--on", DAY, "--outbox", site.outbox)
        assert result.exit_code == 1, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: another instance holds the lease on this database (prod-host/4242/abcdef, "
                               "for ")
        assert "nothing decided or sent" in line
        assert site.ledger_count() == 0 and site.files() == {}
        assert read_lease(engine).holder == "prod-host/4242/abcdef" and read_lease(engine).active

        daemon.release()                                     # the daemon stopped: a run by hand may go ahead
        result = site("run", "--on", DAY, "--outbox", site.outbox)
        assert result.exit_code == 0, result.stderr
        after = read_lease(engine)
        assert after.holder != "prod-host/4242/abcdef" and not after.active      # the run gave it back
        assert daemon.acquire()                                                  # the daemon takes over at once
    finally:
        engine.dispose()


def test_a_run_holds_the_lease_while_it_runs_and_releases_it_even_on_error(site, monkeypatch):
    from service import day as pipeline
    from adapters.store.lease import read_lease

    real = pipeline.run_day
    during = []

    def watched(store, *args, **kwargs):
        during.append(read_lease(store.engine))
        return real(store, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_day", watched)
    result = site("run", "--on", DAY, "--outbox", site.outbox)
    assert result.exit_code == 0, result.stderr
    (held,) = during
    assert held.active and held.expires_in > 30
    engine = create_engine(site.db)
    try:
        assert not read_lease(engine).active

        def broken(store, *args, **kwargs):
            raise RuntimeError("the disk is full")

        monkeypatch.setattr(pipeline, "run_day", broken)
        result = site("run", "--on", "2026-11-24", "--outbox", site.outbox)
        assert result.exit_code == 1 and "the disk is full" in result.stderr
        assert not read_lease(engine).active
    finally:
        engine.dispose()


def test_a_run_that_loses_the_lease_stops_before_the_next_message(site, monkeypatch):
    """The run was paused past its lease and a daemon took over: what is left is the daemon's to send."""
    from adapters.channels import registry as delivery
    from adapters.store.lease import Lease, read_lease
    from adapters.store.schema import leases

    engine = create_engine(site.db)
    standby = Lease(engine, ttl=60, holder="standby/1/aa")
    real_build = delivery.build

    class TakenOverWhileSending:
        """The first message is being sent when the run's lease runs out and the standby takes it."""

        def __init__(self, inner):
            self.inner = inner
            self.taken = False

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def _take_over(self):
            if not self.taken:
                self.taken = True
                with engine.begin() as conn:
                    conn.execute(leases.update().values(expires_at=leases.c.expires_at - 3600))
                assert standby.acquire()

        def send_email(self, notice, message):
            self._take_over()
            return self.inner.send_email(notice, message)

        def send_letter(self, notice, pdf, filename):
            self._take_over()
            return self.inner.send_letter(notice, pdf, filename)

    monkeypatch.setattr(delivery, "build", lambda *a, **k: TakenOverWhileSending(real_build(*a, **k)))
    try:
        result = site("run", "--on", DAY, "--outbox", site.outbox)
        assert result.exit_code == 1, result.stderr
        assert "the lease was lost during the run" in result.stderr
        assert _pending_and_sent(site) == ["pending", "sent"]      # the one in flight, no other
        assert len(site.files()) == 1
        assert read_lease(engine).holder == "standby/1/aa" and read_lease(engine).active
    finally:
        engine.dispose()
