"""At the desk: what rappel sent a patron, and resend, cancel, retry (service/notices.py, `rappel notices`).

A real SMTP server (aiosmtpd, tests/delivery_site.py) and a real installation: the shipped templates,
a policy whose email goes to that server, the letters of DROIT to its mailbox through the same
server; a SQLite database (PostgreSQL too when RAPPEL_TEST_DATABASE_URL is set). Days are run one by
one at 02:00 in Paris, as the daemon runs them. Default policy: courtesy 3 days before the due date,
first reminder on day 7, second on day 21, letter on day 35, each within 2 days.

The patron's call. Zoé Lefèvre (patron P1, barcode 2900P1) borrows "Précis de droit civil" (loan L1,
document B-L1) from DROIT, due Monday 2026-11-16. Her student mailbox is closed on 2026-12-01; she
returns the book on 2026-12-10. rappel runs every day from 2026-11-12 to 2026-12-21 (40 days):

    2026-11-13  courtesy email                      accepted: 250 … Q1
    2026-11-23  first reminder email, 02:00         451 greylisted: retried
                                       03:00        accepted: 250 … Q2
    2026-12-07  second reminder email               refused: 550 5.1.1 user unknown
                letter instead, to DROIT's mailbox  accepted: 250 … Q3
    2026-12-21  (the final letter's day)            nothing: the book came back on 2026-12-10

On 2026-12-22 she calls: "I never got a reminder. Why did I get a letter? I returned that book."
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from adapters.channels.base import BaseChannel
from adapters.store.schema import attempts, loans, messages, staff_actions
from cli import app
from engine.decide import notice_key
from service import day as pipeline
from service import notices as notice_service

try:
    from tests.daemon_cases import SimClock, at, run_daemon
    from tests.delivery_site import Site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import SimClock, at, run_daemon
    from delivery_site import Site

ZOE = "zoe.lefevre@etu.example"
LEO = "leo.martin@etu.example"
MAILBOX = "mailbox:droit-contentieux@univ.example"
GREYLISTED = "451 4.7.1 Greylisted, please try again in 5 minutes"
UNKNOWN = "550 5.1.1 <zoe.lefevre@etu.example>: Recipient address rejected: User unknown"


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def days(first: str, last: str) -> list[dt.date]:
    start, end = d(first), d(last)
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def key(day: str, stage: str, patron: str = "P1", loans: tuple[str, ...] = ("L1",), channel: str = "email",
        library: str | None = None) -> str:
    return notice_key(d(day), stage, channel, patron, library, loans)


@pytest.fixture(autouse=True)
def installation_id(monkeypatch):
    """One installation id for the command line and the daemon alike (the environment guard)."""
    monkeypatch.setenv("RAPPEL_INSTALLATION_ID", "test-installation")


class Desk:
    """The installation and the commands the desk types."""

    def __init__(self, tmp_path: Path, server, db_url: str, extra: str = ""):
        self.site = Site(tmp_path, f'\ndelivery:\n  email: {{url: "{server.url}"}}\n{extra}', db_url=db_url)
        self.server = server
        self.tmp = tmp_path

    def __call__(self, *args, outbox: bool = False):
        extra = ["--outbox", str(self.site.outbox)] if outbox else []
        return CliRunner().invoke(app, [*map(str, args), *extra, "--rules", str(self.site.rules),
                                        "--db", self.site.store.url])

    def json_lines(self, *args) -> list[dict]:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines()]

    def run(self, day: str | dt.date, hour: str = "02:00"):
        day = d(day) if isinstance(day, str) else day
        return self.site.run(day, now=at(f"{day} {hour}"))

    def deliver(self, day: str, hour: str):
        """The daemon's pass between runs: what is pending and due, delivered."""
        router = self.site.router()
        try:
            return pipeline.dispatch(self.site.store, self.site.policy, self.site.templates, router, d(day),
                                     now=at(f"{day} {hour}"))
        finally:
            router.close()

    def returned(self, loan_id: str, on: str) -> None:
        with self.site.store.engine.begin() as conn:
            conn.execute(update(loans).where(loans.c.loan_id == loan_id).values(returned_on=d(on)))

    def received_by(self, address: str) -> list:
        return [m for m in self.server.messages if address in m.rcpt_tos]

    def audit(self) -> list[tuple[str, str, str, str]]:
        """(action, actor, notice key, why) of every staff action, in order."""
        with self.site.store.engine.connect() as conn:
            return [(r.action, r.actor, r.notice_key, r.why)
                    for r in conn.execute(select(staff_actions).order_by(staff_actions.c.id))]

    def close(self) -> None:
        self.site.close()


@pytest.fixture
def desk(tmp_path, smtp_server, db_url):
    made = Desk(tmp_path, smtp_server, db_url)
    yield made
    made.close()


COURTESY = key("2026-11-13", "courtesy")
FIRST = key("2026-11-23", "first_reminder")
SECOND = key("2026-12-07", "second_reminder")
LETTER = key("2026-12-07", "second_reminder", channel="letter", library="DROIT")


def zoes_forty_days(desk: Desk) -> None:
    """The scenario of the module's doc, day by day."""
    site, server = desk.site, desk.server
    site.patron("P1", ZOE, first="Zoé", last="Lefèvre")
    site.loan("L1", "P1", "2026-11-16", "DROIT", "Précis de droit civil")
    for day in days("2026-11-12", "2026-12-21"):
        if day == d("2026-11-23"):
            server.refuse[ZOE] = GREYLISTED
        if day == d("2026-12-01"):
            server.refuse[ZOE] = UNKNOWN
        if day == d("2026-12-10"):
            desk.returned("L1", "2026-12-10")
        desk.run(day)
        if day == d("2026-11-23"):
            del server.refuse[ZOE]
            desk.deliver("2026-11-23", "03:00")


def test_a_patrons_call_is_answered_from_rappel_alone(desk, tmp_path):
    zoes_forty_days(desk)
    server = desk.server
    assert [(m.rcpt_tos, m.message["Subject"]) for m in server.messages] == [
        ([ZOE], "Vos documents sont à rendre dans quelques jours"),
        ([ZOE], "Premier rappel : documents en retard"),
        (["droit-contentieux@univ.example"],
         "Courrier à imprimer et à envoyer : Zoé Lefèvre, 12 rue des Écoles, 33000 Bordeaux, France")]

    # rappel notices --patron 2900P1 --json: every notice, newest first, every step
    found = desk.json_lines("notices", "--patron", "2900P1")
    assert [(n["key"], n["status"], n["destination"]) for n in found] == [
        (LETTER, "sent", MAILBOX), (SECOND, "failed", ZOE), (FIRST, "sent", ZOE), (COURTESY, "sent", ZOE)]
    steps = [(n["stage"], a["at"], a["kind"], a["channel"], a["destination"], a["outcome"], a["reply"])
             for n in reversed(found) for a in n["attempts"]]
    assert steps == [
        ("courtesy", "2026-11-13T02:00:00+01:00", "send", "email", ZOE, "sent", "250 2.0.0 Ok: queued as Q1"),
        ("first_reminder", "2026-11-23T02:00:00+01:00", "send", "email", ZOE, "retrying", GREYLISTED),
        ("first_reminder", "2026-11-23T03:00:00+01:00", "send", "email", ZOE, "sent", "250 2.0.0 Ok: queued as Q2"),
        ("second_reminder", "2026-12-07T02:00:00+01:00", "send", "email", ZOE, "failed", UNKNOWN),
        ("second_reminder", "2026-12-07T02:00:00+01:00", "send", "letter", MAILBOX, "sent",
         "250 2.0.0 Ok: queued as Q3")]
    letter, second, first, courtesy = found
    assert second["replaced_by"] == [LETTER] and letter["replaces"] == SECOND
    assert [(e["loan_id"], e["stage"], e["status"], e["reason"]) for e in letter["ledger"]] == [
        ("L1", "second_reminder", "sent", f"email refused ({UNKNOWN}): sent as a letter instead")]
    assert second["ledger"] == [] and second["reply"] == UNKNOWN
    assert first["attempts"][-1]["reference"] == server.messages[1].message["Message-ID"]
    assert [n["message"]["media_type"] for n in found] == ["application/pdf", "message/rfc822", "message/rfc822",
                                                           "message/rfc822"]

    # notices show … --save: the very bytes the server received
    for number, shown_key in enumerate([COURTESY, FIRST]):
        shown = desk("notices", "show", shown_key, "--save", tmp_path / "desk")
        assert shown.exit_code == 0, shown.output
        saved = Path(shown.stdout.splitlines()[-1].split("saved: ")[1].split(" (")[0])
        assert saved.parent == tmp_path / "desk" and saved.suffix == ".eml"
        assert saved.read_bytes() == server.messages[number].raw
    shown = desk("notices", "show", LETTER, "--save", tmp_path / "desk")
    [attached] = server.messages[2].message.iter_attachments()
    saved = tmp_path / "desk" / attached.get_filename()
    assert saved.read_bytes() == attached.get_content() and saved.read_bytes().startswith(b"%PDF")

    # the same, for a program: one JSON object, the message's headers and text with it
    detail = json.loads(desk("notices", "show", SECOND, "--json").stdout)
    assert [r["key"] for r in detail["replacements"]] == [LETTER] and detail["replacements"][0]["status"] == "sent"
    headers = dict(detail["message"]["headers"])
    assert headers["Subject"] == "Second rappel : documents en retard" and headers["To"] == f"Zoé Lefèvre <{ZOE}>"
    assert "Précis de droit civil" in detail["message"]["text"]

    # the refused email, step by step, in words
    text = desk("notices", "show", SECOND).stdout
    assert f"status: failed — RCPT TO <{ZOE}> refused: {UNKNOWN}" in text
    assert f"replaced by: {LETTER} (letter to {MAILBOX}, sent)" in text
    assert f"L1  due 2026-11-16  second_reminder: sent  email refused ({UNKNOWN}): sent as a letter instead  " \
           f"[now on {LETTER}]" in text
    assert "2026-12-07 02:00 CET  send  email  zoe.lefevre@etu.example  failed" in text
    assert f"      reply: {UNKNOWN}" in text
    assert "  Subject: Second rappel : documents en retard" in text and f"  To: Zoé Lefèvre <{ZOE}>" in text
    assert "Précis de droit civil" in text.split("message: message/rfc822")[1]      # the text she was sent

    # her record says the same, newest first; the patron may be looked up by id too
    record = desk("patron", "show", "P1", "--on", "2026-12-22")
    assert record.exit_code == 0, record.output
    history = record.stdout.split("notices (4, newest first")[1]
    assert [line.split()[0] for line in history.splitlines() if line.startswith("      ")] == [
        LETTER, SECOND, FIRST, COURTESY]
    assert [n["key"] for n in json.loads(desk("patron", "show", "2900P1", "--json").stdout)["notices"]] == [
        LETTER, SECOND, FIRST, COURTESY]

    # nothing to retry: the refused email's loans went on the letter
    retried = desk("notices", "retry", "--failed", "--by", "marie", "--why", "checking", "--on", "2026-12-22")
    assert retried.exit_code == 0 and "0 notice(s) back in the queue" in retried.stdout
    assert f"not retried: {SECOND}: no ledger row of it is left to send" in retried.stderr


@pytest.mark.parametrize("option, value, expected", [
    ("--barcode", "B-L1", [LETTER, SECOND, FIRST, COURTESY]),     # the document: its loan, and the email replaced
    ("--loan", "L1", [LETTER, SECOND, FIRST, COURTESY]),
    ("--stage", "second_reminder", [LETTER, SECOND]),
    ("--status", "failed", [SECOND]),
    ("--since", "2026-11-20", [LETTER, SECOND, FIRST]),
    ("--until", "2026-11-30", [FIRST, COURTESY]),
])
def test_notices_are_found_by_document_loan_stage_status_and_date(desk, option, value, expected):
    zoes_forty_days(desk)
    assert [n["key"] for n in desk.json_lines("notices", option, value)] == expected
    both = desk.json_lines("notices", "--since", "2026-11-20", "--until", "2026-11-30", "--patron", "P1")
    assert [n["key"] for n in both] == [FIRST]


@pytest.mark.parametrize("args, says", [
    (["--patron", "U001"], "error: no patron with barcode or patron_id 'U001'"),
    (["--barcode", "2900P1"], "no loan of a document with barcode '2900P1'; it is patron P1's barcode: "
                              "--patron 2900P1"),
    (["--loan", "L9"], "--loan: no loan 'L9'"),
    (["--status", "lost"], "--status: 'lost' is not a status (pending, sent, failed, superseded, expired, cancelled)"),
    (["--since", "22/12/2026"], "--since: '22/12/2026' is not a date (YYYY-MM-DD)"),
    (["show", "2026-01-01/nothing"], "2026-01-01/nothing: no such notice"),
    (["show", "2026-1"], "the beginning of 4 notices' keys"),
])
def test_what_the_desk_asks_wrongly_is_said_exit_2(desk, args, says):
    zoes_forty_days(desk)
    result = desk("notices", *args)
    assert result.exit_code == 2 and says in result.stderr and result.stdout == ""


# -- resend ---------------------------------------------------------------------------------------

def _split(raw: bytes) -> tuple[dict[str, bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    fields: dict[str, bytes] = {}
    name = ""
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            fields[name] += b"\r\n" + line
        else:
            name = line.split(b":", 1)[0].decode().lower()
            fields[name] = line
    return fields, body


def test_resend_sends_the_email_kept_as_a_new_attempt_audited(desk):
    site = desk.site
    site.patron("P1", ZOE, first="Zoé", last="Lefèvre")
    site.loan("L1", "P1", "2026-11-16", "DROIT", "Précis de droit civil")
    desk.run("2026-11-23")
    resent = desk("notices", "resend", FIRST, "--by", "marie", "--why", "she says it never came", outbox=True)
    assert resent.exit_code == 0, resent.output
    assert resent.stdout.startswith(f"{FIRST}: resent to {ZOE}: sent (250 2.0.0 Ok: queued as Q2)")
    first, again = desk.server.messages
    assert again.rcpt_tos == [ZOE] and again.mail_from == first.mail_from
    (was, body), (now, body_again) = _split(first.raw), _split(again.raw)
    assert body_again == body                                    # the message she was sent, byte for byte
    assert {name for name in was if was[name] != now.get(name)} == {"date", "message-id"}
    assert now["message-id"] != was["message-id"]              # a mailbox holding the first keeps the second

    elsewhere = desk("notices", "resend", FIRST, "--to", "zoe.lefevre@gmail.example", "--by", "marie", "--why",
                     "her university mailbox is full: to her own address", outbox=True)
    assert elsewhere.exit_code == 0, elsewhere.output
    third = desk.server.messages[2]
    assert third.rcpt_tos == ["zoe.lefevre@gmail.example"]
    assert str(third.message["To"]) == "Zoé Lefèvre <zoe.lefevre@gmail.example>" and _split(third.raw)[1] == body

    [shown] = desk.json_lines("notices", "--patron", "P1")
    assert shown["status"] == "sent" and shown["attempts_made"] == 1       # the run's notice, as it was
    assert [(a["kind"], a["actor"], a["destination"], a["outcome"], a["reply"]) for a in shown["attempts"]] == [
        ("send", "", ZOE, "sent", "250 2.0.0 Ok: queued as Q1"),
        ("resend", "marie", ZOE, "sent", "250 2.0.0 Ok: queued as Q2"),
        ("resend", "marie", "zoe.lefevre@gmail.example", "sent", "250 2.0.0 Ok: queued as Q3")]
    assert shown["attempts"][1]["reference"] == str(again.message["Message-ID"])
    assert desk.audit() == [("resend", "marie", FIRST, "she says it never came"),
                            ("resend", "marie", FIRST, "her university mailbox is full: to her own address")]
    assert [a["detail"] for a in shown["staff_actions"]] == ["sent", "sent (to another address: --to)"]
    with desk.site.store.engine.connect() as conn:       # the message kept is still the one the run sent
        assert conn.scalar(select(messages.c.size).where(messages.c.notice_key == FIRST)) == len(first.raw)


def test_resend_of_a_letter_sends_the_same_pdf_to_its_mailbox(desk):
    site = desk.site
    site.patron("P1", "")                                # no email: the reminders are letters
    site.loan("L1", "P1", "2026-11-16", "DROIT")
    desk.run("2026-11-23")
    letter = key("2026-11-23", "first_reminder", channel="letter", library="DROIT")
    resent = desk("notices", "resend", letter, "--by", "paul", "--why", "the posted letter came back", outbox=True)
    assert resent.exit_code == 0, resent.output
    first, again = desk.server.messages
    assert again.rcpt_tos == first.rcpt_tos == ["droit-contentieux@univ.example"]
    [pdf], [pdf_again] = first.message.iter_attachments(), again.message.iter_attachments()
    assert pdf_again.get_content() == pdf.get_content()
    assert again.message["Message-ID"] != first.message["Message-ID"]
    assert [a[:2] for a in desk.audit()] == [("resend", "paul")]


def test_a_patron_forgotten_takes_the_files_of_their_resends_with_them(desk):
    """rappel patron forget finds in the outbox what a resend wrote there, as it finds the notice's own."""
    desk.site.patron("P1", "")
    desk.site.loan("L1", "P1", "2026-11-16", "SCI")      # no printer configured: the letter goes to the outbox
    desk.run("2026-11-23")
    letter = key("2026-11-23", "first_reminder", channel="letter", library="SCI")
    resent = desk("notices", "resend", letter, "--by", "paul", "--why", "lost in the post", outbox=True)
    assert resent.exit_code == 0, resent.output
    assert len(desk.site.outbox_files()) == 2
    desk.returned("L1", "2026-11-30")
    forgotten = desk("patron", "forget", "P1", "--by", "dpo", "--why", "request of 2026-12-20", outbox=True)
    assert forgotten.exit_code == 0, forgotten.output
    assert desk.site.outbox_files() == []


@pytest.mark.parametrize("case, args, says", [
    ("pending", [], "it is pending (it is waiting to be delivered by the next run or the daemon): only a sent or "
                    "failed notice is resent; nothing sent"),
    ("sent", ["--to", "not an address"], "--to: 'not an address' is not one email address"),
    ("sent", ["--why", " "], "--why: say why, for the audit trail"),
])
def test_resend_refuses_what_it_must_not_send(desk, case, args, says):
    desk.site.patron("P1", ZOE)
    desk.site.loan("L1", "P1", "2026-11-16")
    if case == "pending":
        desk.server.refuse[ZOE] = GREYLISTED
    desk.run("2026-11-23")
    before = len(desk.server.messages)
    options = ["--by", "marie", "--why", "asked"] if "--why" not in args else ["--by", "marie"]
    result = desk("notices", "resend", FIRST, *options, *args, outbox=True)
    assert result.exit_code == 2 and says in result.stderr
    assert len(desk.server.messages) == before and desk.audit() == []


# -- cancel ---------------------------------------------------------------------------------------

def test_a_cancelled_notice_is_never_sent_by_a_later_run_nor_by_the_daemon(desk):
    site, server = desk.site, desk.server
    for patron, address in (("P1", ZOE), ("P2", LEO), ("P3", "ines.roux@etu.example")):
        site.patron(patron, address)
        site.loan(f"L{patron[1]}", patron, "2026-11-16")
    server.refuse[ZOE] = server.refuse["ines.roux@etu.example"] = GREYLISTED      # both waiting for a retry
    desk.run("2026-11-23")
    zoe = key("2026-11-23", "first_reminder")
    ines = key("2026-11-23", "first_reminder", "P3", ("L3",))
    assert desk.site.notices()[zoe] == desk.site.notices()[ines] == "pending"

    cancelled = desk("notices", "cancel", zoe, "--by", "marie", "--why", "book returned at the desk this morning")
    assert cancelled.exit_code == 0, cancelled.output
    assert f"{zoe}: cancelled by marie (1 ledger row(s)); it will not be sent" in cancelled.stdout
    server.refuse.clear()                                 # the server takes everything again

    run = CliRunner().invoke(app, ["run", "--on", "2026-11-24", "--rules", str(site.rules), "--db", site.store.url,
                                   "--outbox", str(site.outbox)])
    assert run.exit_code == 0, run.output
    assert desk.received_by(ZOE) == [] and len(desk.received_by("ines.roux@etu.example")) == 1

    site.patron("P4", "hugo.blanc@etu.example")           # and the daemon, the next day, with work to do
    site.loan("L4", "P4", "2026-11-18")
    clock = SimClock(at("2026-11-25 01:00"), at("2026-11-25 04:00"))
    router = site.router()
    try:
        daemon = run_daemon(site.store.url, site.rules, clock, channel=router, poll_seconds=0.01)
    finally:
        router.close()
    assert daemon.exit_code == 0
    assert len(desk.received_by("hugo.blanc@etu.example")) == 1 and desk.received_by(ZOE) == []

    [shown] = desk.json_lines("notices", "--status", "cancelled")
    assert shown["key"] == zoe and shown["last_error"] == "cancelled by marie: book returned at the desk this morning"
    assert [(e["status"], e["reason"]) for e in shown["ledger"]] == [
        ("cancelled", "cancelled by marie: book returned at the desk this morning")]
    assert [(a["outcome"], a["reply"]) for a in shown["attempts"]] == [("retrying", GREYLISTED)]
    assert desk.audit() == [("cancel", "marie", zoe, "book returned at the desk this morning")]


def test_a_held_notice_cancelled_stays_unsent_when_the_rest_goes(tmp_path, smtp_server, db_url):
    desk = Desk(tmp_path, smtp_server, db_url, extra="flood_guard: {max_per_run: 1}\n")
    try:
        for patron, address in (("P1", ZOE), ("P2", LEO)):
            desk.site.patron(patron, address)
            desk.site.loan(f"L{patron[1]}", patron, "2026-11-16")
        assert {o.status for o in desk.run("2026-11-23").outcomes} == {"held"}       # 2 messages, limit 1
        result = desk("notices", "cancel", FIRST, "--by", "marie", "--why", "renewed by phone")
        assert result.exit_code == 0, result.output
        assert [o.status for o in desk.run("2026-11-23", "09:00").outcomes] == ["sent"]
        assert [m.rcpt_tos for m in smtp_server.messages] == [[LEO]]
    finally:
        desk.close()


class CancelsOnTheWay(BaseChannel):
    """The site's channel; while the first message is being sent, a clerk cancels ``other``."""

    carries = ("email", "letter")

    def __init__(self, inner, desk: Desk, other: str):
        self.inner, self.desk, self.other, self.done = inner, desk, other, False

    def is_local(self, notice) -> bool:
        return self.inner.is_local(notice)

    def send_email(self, notice, message):
        if not self.done:
            self.done = True
            notice_service.cancel(self.desk.site.store, self.other, actor="marie", why="on the phone with her",
                        at=at("2026-11-23 02:00"))
        return self.inner.send_email(notice, message)


def test_a_notice_cancelled_while_a_pass_runs_is_not_sent(desk):
    for patron, address in (("P1", ZOE), ("P2", LEO)):
        desk.site.patron(patron, address)
        desk.site.loan(f"L{patron[1]}", patron, "2026-11-16")
    leo = key("2026-11-23", "first_reminder", "P2", ("L2",))
    router = desk.site.router()
    try:
        result = desk.site.run(d("2026-11-23"), channel=CancelsOnTheWay(router, desk, leo))
    finally:
        router.close()
    assert [(o.key, o.status) for o in result.outcomes] == [(FIRST, "sent"), (leo, "cancelled")]
    assert [m.rcpt_tos for m in desk.server.messages] == [[ZOE]]
    assert desk.site.notices()[leo] == "cancelled"


def test_cancel_refuses_a_notice_that_is_not_waiting(desk):
    desk.site.patron("P1", ZOE)
    desk.site.loan("L1", "P1", "2026-11-16")
    desk.run("2026-11-23")
    result = desk("notices", "cancel", FIRST, "--by", "marie", "--why", "too late")
    assert result.exit_code == 2
    assert f"{FIRST}: it is sent: only a pending or held notice can be cancelled; nothing changed" in result.stderr
    assert desk("notices", "cancel", FIRST, "--by", "marie").exit_code == 2           # --why is required
    assert desk.audit() == []


# -- retry ----------------------------------------------------------------------------------------

def test_failed_notices_go_back_in_the_queue_within_their_window_or_forced(desk):
    site, server = desk.site, desk.server
    site.patron("P1", ZOE, address=False)                # no postal address: a refused email stays failed
    site.patron("P2", LEO, address=False)
    site.loan("L1", "P1", "2026-11-16")
    site.loan("L2", "P2", "2026-11-16")
    server.refuse[ZOE] = UNKNOWN
    server.refuse[LEO] = "550 5.1.1 <leo.martin@etu.example>: Recipient address rejected: User unknown"
    desk.run("2026-11-23")
    leo = key("2026-11-23", "first_reminder", "P2", ("L2",))
    assert site.notices() == {FIRST: "failed", leo: "failed"}
    server.refuse.clear()                                 # the registrar restored both mailboxes

    one = desk("notices", "retry", FIRST, "--by", "marie", "--why", "mailbox restored", "--on", "2026-11-24")
    assert one.exit_code == 0 and f"1 notice(s) back in the queue" in one.stdout, one.output
    assert site.ledger()[("L1", "first_reminder")][0] == "pending"
    desk.run("2026-11-24")
    assert len(desk.received_by(ZOE)) == 1 and desk.received_by(LEO) == []

    # 2026-11-27: the first reminder's window (trigger 2026-11-23, 2 days) is over
    late = desk("notices", "retry", "--failed", "--by", "marie", "--why", "mailbox restored", "--on", "2026-11-27")
    assert late.exit_code == 0 and "0 notice(s) back in the queue" in late.stdout
    assert f"not retried: {leo}: not sent within the 2-day window after 2026-11-23 (--force sends it anyway)" \
        in late.stderr
    forced = desk("notices", "retry", "--failed", "--force", "--since", "2026-11-23", "--by", "paul", "--why",
                  "the patron asked for it at the desk", "--on", "2026-11-27")
    assert forced.exit_code == 0 and f"1 notice(s) back in the queue" in forced.stdout
    desk.run("2026-11-27")
    assert len(desk.received_by(LEO)) == 1 and site.notices() == {FIRST: "sent", leo: "sent"}

    assert desk.audit() == [("retry", "marie", FIRST, "mailbox restored"),
                            ("retry", "paul", leo, "the patron asked for it at the desk")]
    [shown] = desk.json_lines("notices", "--patron", "P2")
    assert [(a["at"][:10], a["outcome"]) for a in shown["attempts"]] == [("2026-11-23", "failed"), ("2026-11-27", "sent")]
    assert [a["detail"] for a in shown["staff_actions"]] == ["forced: past its window"]


def test_retry_refuses_a_notice_that_did_not_fail(desk):
    desk.site.patron("P1", ZOE)
    desk.site.loan("L1", "P1", "2026-11-16")
    desk.run("2026-11-23")
    result = desk("notices", "retry", FIRST, "--by", "marie", "--why", "asked", "--on", "2026-11-23")
    assert result.exit_code == 2
    assert f"not retried: {FIRST}: it is sent: only a failed notice goes back in the queue" in result.stderr
    neither = desk("notices", "retry", "--by", "marie", "--why", "asked")
    assert neither.exit_code == 2 and "give the notices' keys, or --failed" in neither.stderr
    assert desk.audit() == []


# -- what is kept, and when ------------------------------------------------------------------------

LP = """#!/bin/sh
cat > {folder}/document
echo "request id is bu-sciences-42 (1 file(s))"
"""


@pytest.mark.parametrize("route", ["printer", "outbox"])
def test_a_letter_kept_is_the_pdf_the_printer_or_the_outbox_was_given(tmp_path, smtp_server, db_url, route):
    """A stand-in lp keeps the document it is fed (as lp would hand it to CUPS); the outbox, its file."""
    lp = tmp_path / "lp"
    lp.write_text(LP.format(folder=tmp_path))
    lp.chmod(0o755)
    desk = Desk(tmp_path, smtp_server, db_url, extra=f'  print: {{command: "{lp}"}}\n' if route == "printer" else "")
    try:
        desk.site.patron("P1", "")                       # no email: the first reminder is a letter
        desk.site.loan("L1", "P1", "2026-11-16", "SCI")
        desk.run("2026-11-23")
        letter = key("2026-11-23", "first_reminder", channel="letter", library="SCI")
        given = (tmp_path / "document") if route == "printer" else next(desk.site.outbox.rglob("*.pdf"))
        saved = desk("notices", "show", letter, "--save", tmp_path / "desk")
        assert saved.exit_code == 0, saved.output
        assert (tmp_path / "desk" / "2026-11-23_first_reminder_P1_SCI.pdf").read_bytes() == given.read_bytes()
        [shown] = desk.json_lines("notices", "--patron", "P1")
        [attempt] = shown["attempts"]
        went = "printer:bu-sciences" if route == "printer" else f"outbox:{desk.site.outbox}/"   # where it went
        assert (attempt["destination"], attempt["outcome"]) == (went, "sent")
        assert shown["destination"] == went
        if route == "printer":
            assert attempt["reference"] == "cups:bu-sciences/bu-sciences-42"
            assert attempt["reply"] == "request id is bu-sciences-42 (1 file(s))"
        else:
            assert attempt["reference"] == str(given) and attempt["reply"] == "written to the outbox"
    finally:
        desk.close()


def test_a_letter_put_in_the_outbox_is_resent_where_the_policy_routes_it_now(tmp_path, smtp_server, db_url):
    """No printer configured on 2026-11-23: the letter went to the outbox, and is recorded there. The
    printer is configured since: a resend prints it (the outbox was where it went, not where it goes)."""
    lp = tmp_path / "lp"
    lp.write_text(LP.format(folder=tmp_path))
    lp.chmod(0o755)
    desk = Desk(tmp_path, smtp_server, db_url)
    try:
        desk.site.patron("P1", "")
        desk.site.loan("L1", "P1", "2026-11-16", "SCI")
        desk.run("2026-11-23")
        letter = key("2026-11-23", "first_reminder", channel="letter", library="SCI")
        policy = desk.site.rules / "reminders.yaml"
        policy.write_text(policy.read_text(encoding="utf-8").replace(
            "delivery:\n", f'delivery:\n  print: {{command: "{lp}"}}\n', 1), encoding="utf-8")
        resent = desk("notices", "resend", letter, "--by", "paul", "--why", "printed at last", outbox=True)
        assert resent.exit_code == 0, resent.output
        [shown] = desk.json_lines("notices", "--patron", "P1")
        assert [(a["destination"], a["outcome"]) for a in shown["attempts"]] == [
            (f"outbox:{desk.site.outbox}/", "sent"), ("printer:bu-sciences", "sent")]
        assert (tmp_path / "document").read_bytes() == next(desk.site.outbox.rglob("*.pdf")).read_bytes()
    finally:
        desk.close()


def test_every_attempt_is_kept_with_the_message_last_handed_over(desk):
    """Greylisted on its day, sent the next: two attempts; the message kept is the one that went."""
    desk.site.patron("P1", ZOE)
    desk.site.loan("L1", "P1", "2026-11-16")
    desk.server.refuse[ZOE] = GREYLISTED
    desk.run("2026-11-23")
    del desk.server.refuse[ZOE]
    desk.run("2026-11-24")
    [sent] = desk.server.messages
    with desk.site.store.engine.connect() as conn:
        tried = conn.execute(select(attempts.c.outcome, attempts.c.reply).where(attempts.c.notice_key == FIRST)
                             .order_by(attempts.c.id)).all()
    assert [tuple(t) for t in tried] == [("retrying", GREYLISTED), ("sent", "250 2.0.0 Ok: queued as Q1")]
    assert notice_service.show(desk.site.store, FIRST).data == sent.raw
