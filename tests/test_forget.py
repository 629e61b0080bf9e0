"""`rappel patron forget` (service/retention.py): after it, nothing of the patron is left anywhere.

A patron with distinctive values (name, email, postal address, phone, barcode) and another one go
through the real pipeline with the shipped policy and templates: a courtesy email to the outbox
folder on 2026-11-13, a first reminder on 2026-11-23 that the server refuses for the first one
(550, the address quoted: it becomes a letter), the letters of day 35 to the outbox on 2026-12-21,
a requests report; a member of staff edits the phone (patron_audit) and resends a notice
(staff_actions, with a note naming the patron); the stored messages and attempts are written as
delivery keeps them. The loan is returned, the patron erased; then every column of every table
of the database (compressed message bodies decoded: emails part by part, PDFs as text) and every
file of the outbox is searched for each of the patron's values. SQLite, and PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import zlib
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import MetaData, insert, select

from adapters.channels.memory import MemoryChannel
from adapters.channels.outbox import OutboxChannel
from adapters.render import Templates
from adapters.store.database import Store
from adapters.store.schema import attempts, loans, messages, notices, patrons, requests, runs, staff_actions
from service import day as pipeline
from service import patrons as services
from service import retention
from service.rules import load_accounts, load_policy
from service.session import Refused
from engine.facts import Patron
from engine.retention import KEPT_FIELDS, PERSONAL_FIELDS, erasure

try:
    from tests.daemon_cases import RULES, d, loan_row, patron_row, seed
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import RULES, d, loan_row, patron_row, seed

UTC = dt.timezone.utc
ZEPHIRINE = {"patron_id": "P777", "barcode": "ZQV-4481-77", "first_name": "Zéphirine",
             "last_name": "Quarteron-Vasseur", "email": "zephirine.qv@example.org", "preferred_language": "fr",
             "account_type": "internal", "record_type": "public", "user_group": "graduate",
             "address_line1": "7 impasse des Glycines-Mauves", "address_line2": "Résidence Hélianthe, bât. C",
             "postal_code": "33170", "city": "Gradignan", "country": "France", "phone": "+33 6 71 82 93 04"}
NEW_PHONE = "+33 7 55 44 12 90"
PERSONAL = [ZEPHIRINE[f] for f in ("barcode", "first_name", "last_name", "email", "address_line1", "address_line2",
                                   "postal_code", "city", "phone")] + [NEW_PHONE, "+33755441290"]   # as edited: E.164
OTHER = patron_row("P2")
REFUSAL = "550 5.1.1 <zephirine.qv@example.org>: Recipient address rejected: User unknown"
AT = dt.datetime(2026, 12, 22, 9, 30, tzinfo=UTC)


# --- what an erasure does to values, pure ------------------------------------------------------------

def test_an_erasure_blanks_the_personal_fields_and_keeps_the_categories():
    erased = erasure(Patron(**ZEPHIRINE), "erased-0123456789abcdef",
                     former=[("phone", "+33 6 00 00 00 01"), ("email", ""), ("city", "Pessac")])
    assert erased.blanked == {**{f: "" for f in PERSONAL_FIELDS}, "barcode": "erased-0123456789abcdef"}
    assert set(PERSONAL_FIELDS) | set(KEPT_FIELDS) == set(ZEPHIRINE) and not set(PERSONAL_FIELDS) & set(KEPT_FIELDS)
    assert "+33 6 00 00 00 01" in erased.terms and "" not in erased.terms
    assert "Pessac" not in erased.terms and "Gradignan" not in erased.terms    # a town alone is nobody


@pytest.mark.parametrize("text, scrubbed", [
    ("550 5.1.1 <ZEPHIRINE.QV@example.org>: Recipient address rejected", "550 5.1.1 <[erased]>: Recipient address "
                                                                        "rejected"),
    ("Zéphirine Quarteron-Vasseur phoned", "[erased] phoned"),
    ("email 'zephirine.qv@example.org' is not one valid address", "email '[erased]' is not one valid address"),
    ("Zéphirine Quarteron-Vasseur, 7 impasse des Glycines-Mauves, Résidence Hélianthe, bât. C, 33170 Gradignan, "
     "France", "[erased]"),                                     # a letter's recipient, as a notice keeps it
    ("barcode ZQV-4481-77_old", "barcode [erased]_old"),
    ("Zéphirinette", "Zéphirinette"),                           # only whole values
    ("printer:bu-sciences", "printer:bu-sciences"),
    ("FR", "FR"),
    ("no printer at Gradignan, France", "no printer at Gradignan, France"),   # places alone are left
])
def test_free_text_loses_the_patrons_values(text, scrubbed):
    assert erasure(Patron(**ZEPHIRINE), "erased-x").scrub(text) == scrubbed


# --- what is found where --------------------------------------------------------------------------

def texts(value) -> list[str]:
    """What a stored value says: text as it is; bytes decompressed, an email decoded header by header
    and part by part (a PDF attachment as text), a PDF as its text."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, bytes):
        return []
    try:
        value = zlib.decompress(value)
    except zlib.error:
        pass
    if value.startswith(b"%PDF"):
        return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(value)).pages]
    out = [value.decode("latin-1")]
    message = email.message_from_bytes(value, policy=email.policy.default)
    out += [str(v) for v in message.values()]
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if payload:
            out += texts(payload) if part.get_content_type() == "application/pdf" else [part.get_content()]
    return out


def found_in_database(store: Store, values: list[str]) -> dict[str, set[str]]:
    """table.column → the values found there, over every table the database has."""
    meta = MetaData()
    meta.reflect(store.engine)
    wanted = [v.casefold() for v in values]
    found: dict[str, set[str]] = {}
    with store.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    for text in texts(value):
                        text = " ".join(text.split()).casefold()
                        for original, folded in zip(values, wanted):
                            if folded in text:
                                found.setdefault(f"{table.name}.{column}", set()).add(original)
    return found


def found_in_files(folder: Path, values: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = " ".join(" ".join(texts(path.read_bytes())).split()).casefold()
        hits = {v for v in values if v.casefold() in text}
        if hits:
            found[str(path.relative_to(folder))] = hits
    return found


# --- the installation: the pipeline, a staff edit, a resend, what delivery keeps -------------------------

def deliver_as_delivery_keeps_it(store: Store) -> None:
    """The messages as sent and one attempt per notice, where the pipeline did not keep them itself."""
    with store.engine.begin() as conn:
        stored = set(conn.scalars(select(messages.c.notice_key)))
        tried = set(conn.scalars(select(attempts.c.notice_key)))
        for n in conn.execute(select(notices)).all():
            if n.key not in tried:
                conn.execute(insert(attempts).values(notice_key=n.key, at=AT, channel=n.channel,
                                                     destination=n.destination, outcome=n.status,
                                                     reply=n.reply or "", reference=n.reference or ""))
            if n.key not in stored and n.reference and Path(n.reference).is_file():
                body = Path(n.reference).read_bytes()
                conn.execute(insert(messages).values(
                    notice_key=n.key, media_type="application/pdf" if body.startswith(b"%PDF") else "message/rfc822",
                    filename=Path(n.reference).name, body=zlib.compress(body), size=len(body), stored_at=AT))


@pytest.fixture
def installation(db_url, tmp_path):
    store = Store(db_url)
    policy = load_policy(RULES)
    templates = Templates(RULES, policy)
    outbox = tmp_path / "outbox"
    seed(store, [ZEPHIRINE, OTHER], [loan_row("L1", "P777", "2026-11-16"), loan_row("L2", "P2", "2026-11-16")])
    with store.engine.begin() as conn:
        conn.execute(insert(requests).values(request_id="R1", patron_id="P777", title="Traité des glycines",
                                             library="SCI", pickup_library="SCI", placed_on=d("2026-11-02"),
                                             status="active", expires_on=d("2026-12-30")))
    to_outbox = OutboxChannel(outbox)
    refusing = MemoryChannel(refuse={ZEPHIRINE["email"]: REFUSAL})
    for day, channel in (("2026-11-13", to_outbox), ("2026-11-23", refusing), ("2026-12-21", to_outbox)):
        result = pipeline.run_day(store, policy, templates, channel, d(day))
        assert result.outcomes, day
        with store.engine.begin() as conn:       # the run history, as the daemon writes it
            failed = [f"{o.key}: {o.detail}" for o in result.outcomes if o.status == "failed"]
            conn.execute(insert(runs).values(kind="day", run_date=d(day), started_at=AT, finished_at=AT, outcome="ok",
                                             errors="\n".join(failed)))
    accounts = load_accounts(RULES)
    services.edit(store, accounts, ZEPHIRINE["barcode"], "circulation_desk", "marie", {"phone": NEW_PHONE}, AT)
    services.requests_report(store, policy, accounts, RULES, to_outbox, ZEPHIRINE["barcode"], d("2026-12-21"), AT)
    deliver_as_delivery_keeps_it(store)
    with store.engine.begin() as conn:
        key = conn.scalar(select(notices.c.key).where(notices.c.patron_id == "P777", notices.c.stage == "courtesy"))
        conn.execute(insert(staff_actions).values(at=AT, actor="marie", action="resend", notice_key=key,
                                                  patron_id="P777", why="Zéphirine Quarteron-Vasseur phoned (+33 6 "
                                                  "71 82 93 04): resend to zephirine.qv@example.org"))
        conn.execute(loans.update().where(loans.c.loan_id == "L1").values(returned_on=d("2026-12-22")))
    yield store, policy, outbox
    store.close()


def test_after_forget_no_value_of_the_patron_is_left_in_any_table_or_file(installation):
    store, policy, outbox = installation
    before = found_in_database(store, PERSONAL)
    # the search finds them where the pipeline put them (compressed bodies, PDFs, audit, notes, history)
    assert {"patrons.barcode", "patrons.first_name", "patrons.email", "patrons.address_line1", "patrons.phone",
            "notices.recipient", "notices.destination", "notices.reply", "notices.last_error", "ledger.reason",
            "messages.body", "attempts.destination", "attempts.reply", "staff_actions.why", "patron_audit.old_value",
            "patron_audit.new_value", "runs.errors"} <= set(before), sorted(before)
    assert {ZEPHIRINE["first_name"], ZEPHIRINE["address_line1"], ZEPHIRINE["email"]} <= before["messages.body"]
    files_before = found_in_files(outbox, PERSONAL)
    assert any(p.startswith("letters/") for p in files_before) and any(p.startswith("email/") for p in files_before)
    with store.engine.connect() as conn:
        counts_before = {t.name: len(conn.execute(select(t)).all()) for t in (notices, loans, attempts)}
        other_before = conn.execute(select(patrons).where(patrons.c.patron_id == "P2")).one()

    report = retention.forget(store, policy, ZEPHIRINE["barcode"], by="dpo", why="request by email of 2026-12-20 "
                              "from Zéphirine Quarteron-Vasseur", at=AT, outbox=outbox)

    assert found_in_database(store, PERSONAL) == {}
    assert found_in_files(outbox, PERSONAL) == {}
    assert report.files == len(files_before) and not report.problems
    with store.engine.connect() as conn:
        # the rows are kept, without the patron: what was sent when, and to which library's printer
        assert {t.name: len(conn.execute(select(t)).all()) for t in (notices, loans, attempts)} == counts_before
        row = conn.execute(select(patrons).where(patrons.c.patron_id == "P777")).one()
        assert (row.account_type, row.record_type, row.user_group, row.preferred_language) == \
            ("internal", "public", "graduate", "fr")
        assert row.barcode.startswith("erased-") and row.first_name == row.email == row.phone == ""
        assert conn.execute(select(patrons).where(patrons.c.patron_id == "P2")).one() == other_before
        assert conn.execute(select(staff_actions.c.actor, staff_actions.c.why).where(
            staff_actions.c.action == "forget")).all() == [("dpo", "request by email of 2026-12-20 from [erased]")]
        assert conn.execute(select(messages.c.notice_key).where(messages.c.notice_key.like("%/P777/%"))).all() == []
    # the other patron's messages and rows are untouched
    assert len(found_in_files(outbox, [OTHER["email"]])) == 1      # the courtesy email (the letter has no email)
    assert {"notices.recipient", "messages.body", "attempts.destination"} <= set(
        found_in_database(store, [OTHER["email"]]))


def test_an_open_loan_refuses_and_changes_nothing(installation):
    store, policy, outbox = installation
    with store.engine.begin() as conn:
        conn.execute(loans.update().where(loans.c.loan_id == "L1").values(returned_on=None))
    before = found_in_database(store, PERSONAL)
    files = found_in_files(outbox, PERSONAL)
    with pytest.raises(Refused) as refused:
        retention.forget(store, policy, "P777", by="dpo", why="request", at=AT, outbox=outbox)
    assert str(refused.value) == ("patron P777 has 1 open loan (L1 due 2026-11-16 at SCI): nothing erased; the "
                                  "loans must be returned or closed in the library system (and imported) first")
    assert refused.value.code == 1
    assert found_in_database(store, PERSONAL) == before and found_in_files(outbox, PERSONAL) == files


def test_a_dry_run_counts_and_changes_nothing(installation):
    store, policy, outbox = installation
    before = found_in_database(store, PERSONAL)
    files = found_in_files(outbox, PERSONAL)
    report = retention.forget(store, policy, "P777", by="dpo", why="request", at=AT, outbox=outbox, dry_run=True)
    assert report.dry_run and report.files == len(files)
    # notices: the courtesy email, the refused first reminder, its letter, the letter of day 35; messages
    # deleted: the four delivery kept (each handed to a channel); attempts and ledger rows changed: those
    # naming the patron (the refused email's attempt: a delivery to the outbox is recorded with the outbox
    # as its destination)
    assert report.changed == {"messages": 4, "notices": 4, "attempts": 1, "ledger": 1, "staff_actions": 1, "loans": 1,
                              "patron_audit": 1, "runs": 1, "requests": 1, "patrons": 1}
    assert found_in_database(store, PERSONAL) == before and found_in_files(outbox, PERSONAL) == files
