"""Patron services: show, edit (all or nothing, audited), the desk scenario, the requests report.

The installation: the shipped rules (rules/), a fresh database (SQLite; PostgreSQL too when
RAPPEL_TEST_DATABASE_URL is set), CSV exports in tmp_path. Today is Monday 2026-11-23.
    P1 Thomas Lefèvre   external public  fr   loans L1 (due 11-16: 7 days overdue), L2 (due 11-30)
    P2 Jeanne Moreau    internal public  es   no email
    P3 Marc Fournier    internal contact      (a vendor's contact)
    P4 Lucía García     internal staff   es
Requests of P1: R1 active, R2 cancelled, R3 active but expired on 11-20, R4 in process (no expiry).
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import shutil
import socket
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from service import patrons as services
from adapters.channels.memory import MemoryChannel
from adapters.sources.csvfiles import import_csv
from service.rules import load_policy
from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, REQUEST_FIELDS, patrons
from adapters.store.database import Store
from cli import app

from conftest import RULES

DAY = dt.date(2026, 11, 23)
AT = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
HINT = "update through the campus registrar; the next synchronisation brings it in"

PATRONS = [
    "P1,2000000001,Thomas,Lefèvre,thomas.lefevre@etu.univ.example,fr,external,public,graduate,"
    "4 allée des Œillets,Bâtiment B,33400,Talence,France,",
    "P2,2000000002,Jeanne,Moreau,,es,internal,public,reader,8 place Gambetta,,33000,Bordeaux,France,05 56 00 00 03",
    "P3,2000000003,Marc,Fournier,commandes@librairie.example,fr,internal,contact,vendor,Librairie Mollat,,"
    "33000,Bordeaux,France,",
    "P4,2000000004,Lucía,García,lucia.garcia@univ.example,es,internal,staff,staff,21 cours Victor Hugo,,"
    "33000,Bordeaux,France,",
]
LOANS = [
    "L1,P1,3000000001,Chimie organique,SCI,2026-11-16,,",
    "L2,P1,3000000002,Droit des obligations,DROIT,2026-11-30,,",
    "L3,P1,3000000003,Physique quantique,SCI,2026-11-01,2026-11-10,",
]
REQUESTS = [
    "R1,P1,Le Rouge et le Noir,SCI,DROIT,2026-11-10,active,2026-12-10",
    "R2,P1,Madame Bovary,SCI,SCI,2026-11-11,cancelled,2026-12-11",
    "R3,P1,Germinal,DROIT,SCI,2026-10-20,active,2026-11-20",
    "R4,P1,Les Misérables,DROIT,DROIT,2026-11-12,in_process,",
    "R5,P4,Cien años de soledad,SCI,SCI,2026-11-15,active,2026-12-15",
    "R6,P4,La casa de los espíritus,DROIT,SCI,2026-11-02,cancelled,2026-12-02",
]


def write_csv(path: Path, header, rows) -> Path:
    path.write_text("\n".join([",".join(header), *rows]) + "\n", encoding="utf-8")
    return path


def load(url: str, tmp_path: Path) -> Store:
    store = Store(url)
    policy = load_policy(RULES)
    for kind, header, rows in (("patrons", PATRON_FIELDS, PATRONS), ("loans", LOAN_FIELDS, LOANS),
                               ("requests", REQUEST_FIELDS, REQUESTS)):
        import_csv(store, policy, kind, write_csv(tmp_path / f"{kind}.csv", header, rows))
    return store


@pytest.fixture
def store(db_url, tmp_path):
    s = load(db_url, tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def accounts():
    return services.load_accounts(RULES)


def rappel(*args, db: str):
    return CliRunner().invoke(app, [*map(str, args), "--rules", str(RULES), "--db", db])


def row_of(store: Store, patron_id: str) -> dict:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(patrons).where(patrons.c.patron_id == patron_id)).mappings().one())


def audit(store: Store) -> list[tuple]:
    return [(a["patron_id"], a["actor"], a["role"], a["source"], a["field"], a["old_value"], a["new_value"])
            for a in services.audit_trail(store, "P1") + services.audit_trail(store, "P2")]


# -- show ----------------------------------------------------------------------------------------

def test_show_marks_each_field_and_lists_loans_and_requests(store, accounts):
    view = services.show(store, accounts, "2000000001", DAY)
    fields = {f.name: f for f in view.fields}
    assert fields["email"].ownership == "owned" and fields["email"].editable_by == ()
    assert fields["address_line1"].ownership == "owned"
    assert fields["user_group"].ownership == "protected" and fields["user_group"].editable_by == ("user_manager",)
    assert fields["preferred_language"].editable_by == ("circulation_desk", "user_manager")
    assert fields["record_type"].ownership == "local"
    assert fields["patron_id"].ownership == "identity"
    assert [(x.loan_id, view.days_overdue(x)) for x in view.loans] == [("L1", 7), ("L2", 0)]   # L3 returned
    assert [(r["request_id"], r["active"]) for r in view.requests] == [
        ("R3", False), ("R1", True), ("R2", False), ("R4", True)]


def test_show_on_an_internal_account_as_a_role(store, accounts):
    view = services.show(store, accounts, "2000000002", DAY, role="circulation_desk")
    mine = {f.name: f.decision for f in view.fields}
    assert mine["address_line1"].allowed and mine["postal_code"].allowed
    assert not mine["user_group"].allowed and mine["user_group"].where == "ask someone with the role user_manager"


def test_show_cli_text_and_json(store):
    out = rappel("patron", "show", "2000000001", "--on", "2026-11-23", db=store.url)
    assert out.exit_code == 0, out.output
    text = out.output
    assert "account: external, from the student information system; record type: public" in text
    assert "email              thomas.lefevre@etu.univ.example         owned by the student information system" in text
    assert "user_group         graduate                                editable by user_manager; protected" in text
    assert "due 2026-11-16  7 day(s) overdue" in text and "due 2026-11-30  not overdue" in text
    assert "requests (2 active)" in text
    data = json.loads(rappel("patron", "show", "2000000001", "--on", "2026-11-23", "--json", db=store.url).output)
    assert data["account_type"] == "external" and data["source"] == "the student information system"
    assert [(x["loan_id"], x["days_overdue"]) for x in data["loans"]] == [("L1", 7), ("L2", 0)]
    assert {f["field"]: f["ownership"] for f in data["fields"]}["phone"] == "owned"
    unknown = rappel("patron", "show", "U001", db=store.url)
    assert unknown.exit_code == 2 and unknown.output == "error: no patron with barcode or patron_id 'U001'\n"


@pytest.mark.parametrize("command", [["show"], ["edit", "--as", "circulation_desk", "--by", "marie",
                                                "--set", "phone=05 56 00 00 09"]])
def test_a_patron_is_looked_up_by_patron_id_as_by_barcode(store, command):
    """The desk has a card (its barcode) or a record id from another system (the patron_id): both work."""
    name, *options = command
    by_id = rappel("patron", name, "P2", *options, db=store.url)
    by_barcode = rappel("patron", name, "2000000002", *options, db=store.url)
    assert by_id.exit_code == 0 and by_barcode.exit_code == 0, (by_id.output, by_barcode.output)
    assert "Jeanne Moreau" in by_id.output and "Jeanne Moreau" in by_barcode.output
    if name == "show":
        assert by_id.output == by_barcode.output
    else:
        assert "1 field(s) changed" in by_id.output and "phone: already '+33556000009'" in by_barcode.output


def test_a_value_that_is_one_patrons_barcode_and_anothers_id_is_refused(store, accounts):
    """Not one patron: nothing is shown or changed, and the refusal says what to give for each."""
    with store.engine.begin() as conn:
        conn.execute(patrons.update().where(patrons.c.patron_id == "P4").values(barcode="P2"))
    both = rappel("patron", "show", "P2", db=store.url)
    assert both.exit_code == 2 and both.stderr == (
        "error: 'P2' is both the barcode of patron P4 and the id of patron P2: give '2000000002' for P2, "
        "'P4' for P4\n")
    assert services.show(store, accounts, "2000000002", DAY).patron.patron_id == "P2"
    assert services.show(store, accounts, "P4", DAY).patron.patron_id == "P4"


# -- edit ----------------------------------------------------------------------------------------

def test_allowed_edit_is_applied_and_audited(store, accounts):
    result = services.edit(store, accounts, "2000000002", "circulation_desk", "marie",
                           {"address_line1": "10 rue Sainte-Catherine", "postal_code": "33000", "email": "jm@example.org"},
                           AT)
    assert result.changed == [("address_line1", "8 place Gambetta", "10 rue Sainte-Catherine"),
                              ("email", "", "jm@example.org")]
    assert result.unchanged == ["postal_code"]
    assert row_of(store, "P2")["address_line1"] == "10 rue Sainte-Catherine"
    trail = services.audit_trail(store, "P2")
    assert [(a["actor"], a["role"], a["source"], a["field"], a["old_value"], a["new_value"]) for a in trail] == [
        ("marie", "circulation_desk", "edit", "address_line1", "8 place Gambetta", "10 rue Sainte-Catherine"),
        ("marie", "circulation_desk", "edit", "email", "", "jm@example.org")]
    assert all(a["changed_at"].replace(tzinfo=None) in (AT.replace(tzinfo=None), AT.astimezone(dt.timezone.utc)
                                                        .replace(tzinfo=None)) for a in trail)


@pytest.mark.parametrize("barcode,role,changes,refused,invalid", [
    # one refused field: nothing applied, not even the allowed one
    ("2000000001", "circulation_desk", {"preferred_language": "en", "address_line1": "1 rue X"}, ["address_line1"], []),
    ("2000000002", "circulation_desk", {"city": "Talence", "user_group": "staff"}, ["user_group"], []),
    ("2000000003", "circulation_desk", {"email": "a@b.example"}, ["email"], []),             # a contact
    ("2000000002", "intern", {"city": "Talence"}, ["city"], []),                             # unknown role
    ("2000000002", "circulation_desk", {"patron_id": "P9"}, ["patron_id"], []),
    # values
    ("2000000002", "circulation_desk", {"email": "jeanne@", "postal_code": "330"}, [], ["email", "postal_code"]),
    ("2000000002", "user_manager", {"barcode": "2000000004"}, [], ["barcode"]),               # taken
    ("2000000002", "user_manager", {"record_type": "vendor"}, [], ["record_type"]),
])
def test_refused_or_invalid_edits_change_nothing(store, accounts, barcode, role, changes, refused, invalid):
    before = {pid: row_of(store, pid) for pid in ("P1", "P2", "P3")}
    with pytest.raises(services.EditRefused) as err:
        services.edit(store, accounts, barcode, role, "marie", changes, AT)
    assert [d.request.field for d in err.value.decisions if not d.allowed] == refused
    assert sorted(err.value.problems) == sorted(invalid)
    assert all(d.where for d in err.value.decisions if not d.allowed)
    assert {pid: row_of(store, pid) for pid in before} == before
    assert audit(store) == []


def test_edit_cli_explains_each_refusal(store):
    out = rappel("patron", "edit", "2000000001", "--as", "circulation_desk", "--set", "address_line1=1 rue X",
                 "--set", "user_group=staff", "--set", "postal_code=ABC", "--by", "marie", db=store.url)
    assert out.exit_code == 2
    assert (f"refused: address_line1: address_line1 of an external account is owned by the student information "
            f"system; instead: {HINT}") in out.output
    assert "refused: user_group: circulation_desk may not edit user_group; instead: ask someone with the role " \
           "user_manager" in out.output
    assert "invalid: postal_code: 'ABC' is not a postal code in France" in out.output
    assert "nothing changed for patron P1" in out.output
    for bad in (["--set", "nonsense=1"], ["--set", "city"], ["--set", "city=A", "--set", "city=B"]):
        out = rappel("patron", "edit", "2000000002", "--as", "circulation_desk", *bad, db=store.url)
        assert out.exit_code == 2, out.output


# -- the desk scenario, end to end through the command line ------------------------------------------

def test_desk_scenario(store, tmp_path):
    db = store.url
    # 1. an internal account: the address is edited at the desk, and audited
    out = rappel("patron", "edit", "2000000002", "--as", "circulation_desk", "--by", "marie",
                 "--set", "address_line1=12 rue Judaïque", "--set", "postal_code=33000", db=db)
    assert out.exit_code == 0, out.output
    assert "address_line1: '8 place Gambetta' -> '12 rue Judaïque'" in out.output
    assert row_of(store, "P2")["address_line1"] == "12 rue Judaïque"
    assert audit(store) == [("P2", "marie", "circulation_desk", "edit", "address_line1", "8 place Gambetta",
                             "12 rue Judaïque")]

    # 2. the same edit on an external account: refused, with where to make it instead
    out = rappel("patron", "edit", "2000000001", "--as", "circulation_desk", "--by", "marie",
                 "--set", "address_line1=12 rue Judaïque", db=db)
    assert out.exit_code == 2 and HINT in out.output
    assert row_of(store, "P1")["address_line1"] == "4 allée des Œillets"

    # 3. a protected field of the external account is edited locally
    out = rappel("patron", "edit", "2000000001", "--as", "user_manager", "--by", "paul",
                 "--set", "user_group=visiting_scholar", db=db)
    assert out.exit_code == 0 and "protected: later synchronisations keep this value" in out.output

    # 4. the synchronisation: the registrar changed the address and the email, and the group
    source = PATRONS[0].replace("4 allée des Œillets,Bâtiment B,33400,Talence", "12 rue Judaïque,,33000,Bordeaux") \
                       .replace("thomas.lefevre@", "t.lefevre@").replace(",graduate,", ",postgraduate,") \
                       .replace(",fr,external", ",en,external")
    export = write_csv(tmp_path / "sis.csv", PATRON_FIELDS, [source])
    out = rappel("sync", export, db=db)
    assert out.exit_code == 0, out.output
    assert "0 patron(s) were created, 1 updated" in out.output
    assert "= P1 user_group: local value 'visiting_scholar' kept (source: 'postgraduate')" in out.output
    p1 = row_of(store, "P1")
    assert (p1["address_line1"], p1["address_line2"], p1["postal_code"], p1["city"], p1["email"]) == \
           ("12 rue Judaïque", "", "33000", "Bordeaux", "t.lefevre@etu.univ.example")     # owned: the source's
    assert p1["user_group"] == "visiting_scholar"                                          # protected, edited here
    assert p1["preferred_language"] == "en"                                                # protected, not edited
    assert row_of(store, "P2")["address_line1"] == "12 rue Judaïque"                       # internal: untouched
    assert "missing from the file" not in out.output                                       # P1 was in it
    synced = [a for a in audit(store) if a[3] == "sync"]
    assert {a[4] for a in synced} == {"address_line1", "address_line2", "postal_code", "city", "email",
                                      "preferred_language"}
    shown = rappel("patron", "show", "2000000001", "--on", "2026-11-23", db=db).output
    assert "user_group         visiting_scholar                        editable by user_manager; protected: " \
           "edited here, kept by synchronisations" in shown


# -- the requests report ---------------------------------------------------------------------------

def test_requests_report_lists_active_requests_only(store, accounts):
    channel = MemoryChannel()
    result = services.requests_report(store, load_policy(RULES), accounts, RULES, channel, "2000000001", DAY, AT)
    assert result.delivery.ok and [r["title"] for r in result.requests] == ["Le Rouge et le Noir", "Les Misérables"]
    (notice, message), = channel.emails
    assert notice.stage == "requests_report" and notice.recipient == "thomas.lefevre@etu.univ.example"
    assert message["Subject"] == "Vos demandes en cours" and message["Content-Language"] == "fr"
    text = message.get_body(("plain",)).get_content()
    assert "Le Rouge et le Noir" in text and "Bibliothèque : Bibliothèque des sciences ; retrait : Bibliothèque " \
                                              "de droit" in text
    assert "Demandé le 10 novembre 2026, expire le 10 décembre 2026" in text
    assert "Madame Bovary" not in text and "Germinal" not in text                # cancelled, expired
    html = message.get_body(("html",)).get_content()
    assert "<td>Les Misérables</td>" in html and "Germinal" not in html


def test_requests_report_in_the_patrons_language(store, accounts):
    channel = MemoryChannel()
    result = services.requests_report(store, load_policy(RULES), accounts, RULES, channel, "2000000004", DAY, AT)
    assert result.language == "es"
    (_, message), = channel.emails
    assert message["Subject"] == "Sus solicitudes en curso"
    text = message.get_body(("plain",)).get_content()
    assert "Hola, Lucía García:" in text
    assert "Solicitado el 15 de noviembre de 2026, vence el 15 de diciembre de 2026" in text


def test_requests_report_without_requests_or_email(store, accounts):
    channel = MemoryChannel()
    policy = load_policy(RULES)
    nothing = services.requests_report(store, policy, accounts, RULES, channel, "2000000003", DAY, AT)
    assert nothing.notice is None and channel.emails == []
    out = rappel("patron", "requests-report", "2000000003", db=store.url)
    assert out.exit_code == 0 and "has no active request: nothing sent" in out.output


def test_requests_report_cli_to_the_outbox(store, tmp_path):
    out = rappel("patron", "requests-report", "2000000001", "--on", "2026-11-23", "--outbox", tmp_path / "ob",
                 db=store.url)
    assert out.exit_code == 0, out.output
    assert "sent 2 active request(s) to thomas.lefevre@etu.univ.example (fr)" in out.output
    (eml,) = (tmp_path / "ob").rglob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "thomas.lefevre@etu.univ.example"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_requests_report_received_by_a_real_smtp_server(store, accounts):
    from aiosmtpd.controller import Controller

    from adapters.channels.smtp import SmtpEmailChannel

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        policy = load_policy(RULES)
        channel = SmtpEmailChannel(f"mailto://127.0.0.1:{port}", policy.sender.from_, policy.sender.reply_to,
                                   timeout=10)
        result = services.requests_report(store, policy, accounts, RULES, channel, "2000000004", DAY, AT)
        getattr(channel, "close", lambda: None)()
    finally:
        controller.stop()
    assert result.delivery.ok, result.delivery
    (envelope,) = received
    assert envelope.rcpt_tos == ["lucia.garcia@univ.example"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == "Sus solicitudes en curso" and message["Content-Language"] == "es"
    text = message.get_body(("plain",)).get_content()
    assert "Cien años de soledad" in text                           # P4's active request
    assert "La casa de los espíritus" not in text                   # P4's, cancelled
    assert "Le Rouge et le Noir" not in text                        # another patron's


def test_requests_report_cli_through_the_policys_smtp_server(store, tmp_path):
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = _free_port()
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    with open(rules / "reminders.yaml", "a", encoding="utf-8") as policy:
        policy.write(f'\ndelivery:\n  email: {{url: "mailto://127.0.0.1:{port}"}}\n')
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = CliRunner().invoke(app, ["patron", "requests-report", "2000000001", "--on", "2026-11-23",
                                       "--outbox", str(tmp_path / "ob"), "--rules", str(rules), "--db", store.url])
    finally:
        controller.stop()
    assert out.exit_code == 0, out.output
    (envelope,) = received
    assert envelope.rcpt_tos == ["thomas.lefevre@etu.univ.example"]
    assert not (tmp_path / "ob").exists()
    text = email.message_from_bytes(envelope.content, policy=email.policy.default).get_body(("plain",)).get_content()
    assert "Le Rouge et le Noir" in text and "Les Misérables" in text     # active, in process
    assert "Germinal" not in text and "Madame Bovary" not in text         # expired on 2026-11-20, cancelled


# -- lint and schema --------------------------------------------------------------------------------

def test_lint_checks_the_account_policy(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    out = CliRunner().invoke(app, ["lint", "--rules", str(rules)])
    assert out.exit_code == 0, out.output
    assert f"{rules}/accounts.yaml: ok (5 roles; external accounts from the student information system)" in out.output
    text = (rules / "accounts.yaml").read_text(encoding="utf-8")
    (rules / "accounts.yaml").write_text(text.replace("may_edit: [email, phone,", "may_edit: [emial, phone,", 1),
                                         encoding="utf-8")
    out = CliRunner().invoke(app, ["lint", "--rules", str(rules)])
    assert out.exit_code == 2
    assert f"error: {rules}/accounts.yaml:34: roles.circulation_desk.may_edit[0]: Input should be" in out.output
    (rules / "accounts.yaml").write_text(text, encoding="utf-8")
    (rules / "templates" / "es" / "requests_report.txt.j2").write_text("{{ patron.nickname }}\n", encoding="utf-8")
    out = CliRunner().invoke(app, ["lint", "--rules", str(rules)])
    assert out.exit_code == 2 and "requests_report.txt.j2" in out.output and "nickname" in out.output
    (rules / "accounts.yaml").unlink()
    out = CliRunner().invoke(app, ["lint", "--rules", str(rules)])
    assert out.exit_code == 0 and "accounts.yaml: absent (needed by rappel patron and rappel sync only)" in out.output


def test_schema_of_the_account_policy():
    out = CliRunner().invoke(app, ["schema", "--accounts"])
    schema = json.loads(out.output)
    assert schema["title"] == "rappel account policy (rules/accounts.yaml)"
    assert set(schema["required"]) == {"account_types", "record_types", "roles"}
    assert json.loads(CliRunner().invoke(app, ["schema"]).output)["title"].startswith("rappel reminder policy")


def test_one_list_of_patron_fields_and_record_types():
    """The patrons table, the CSV columns and the account policy all name the Patron's fields and the
    record types of engine/facts.py, in the same order."""
    from adapters.sources.records import CHOICES
    from engine import accounts as account_policy
    from engine.facts import ACCOUNT_TYPES, PATRON_FIELDS as FACT_FIELDS, RECORD_TYPES

    assert tuple(patrons.c.keys()) == FACT_FIELDS == PATRON_FIELDS == (
        "patron_id", "barcode", "first_name", "last_name", "email", "preferred_language", "account_type",
        "record_type", "user_group", "address_line1", "address_line2", "postal_code", "city", "country", "phone",
        "channels", "opt_out")
    assert RECORD_TYPES == ("staff", "public", "contact") and ACCOUNT_TYPES == ("internal", "external")
    assert CHOICES == {"account_type": ACCOUNT_TYPES, "record_type": RECORD_TYPES}
    assert tuple(account_policy.RecordTypes.model_fields) == RECORD_TYPES
    assert tuple(account_policy.AccountTypes.model_fields) == ACCOUNT_TYPES
