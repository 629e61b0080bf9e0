"""Email through apprise to a real SMTP server (aiosmtpd on 127.0.0.1, started by the test).

The shipped templates and a policy like the shipped one, with `delivery: {email: {url: mailto://
127.0.0.1:PORT}}`: what the server receives (envelope, headers, both parts, the recap library by
library, the mailbox letter's attachment), and what is recorded when it is down or refuses.
"""
from __future__ import annotations

import datetime as dt
import io
from html.parser import HTMLParser

import apprise
import pypdf
import pytest

from adapters.render import message_id
from adapters.channels.smtp import SmtpEmailChannel
from engine.decide import notice_key

try:
    from tests.delivery_site import RUN, Site, SmtpServer, _Handler, free_port
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import RUN, Site, SmtpServer, _Handler, free_port

EMAIL = "\ndelivery:\n  email: {{url: \"{url}\"}}\n"
KEY = notice_key(RUN, "first_reminder", "email", "P1", None, ("L1", "L2"))
KEY_L1 = notice_key(RUN, "first_reminder", "email", "P1", None, ("L1",))   # when L1 is her only loan
ZOE = "zoe.lefevre@etu.example"


class Refusing(_Handler):
    """The shared handler, refusing at each step as told: ``refuse`` (RCPT TO, by address, as
    before; "*" for every address), ``refuse_data`` (the reply after DATA, by recipient),
    ``refuse_mail`` (the reply to every MAIL FROM). ``asked`` lists every RCPT TO it was given."""

    def __init__(self):
        super().__init__()
        self.refuse_data: dict[str, str] = {}
        self.refuse_mail: str | None = None
        self.asked: list[str] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_mail:
            return self.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.asked.append(address)
        if "*" in self.refuse:
            return self.refuse["*"]
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        for address in envelope.rcpt_tos:
            if address in self.refuse_data:
                return self.refuse_data[address]
        return await super().handle_DATA(server, session, envelope)


def refusing_server(port: int | None = None) -> SmtpServer:
    smtp = SmtpServer(port)
    smtp.handler = Refusing()
    return smtp.start()


@pytest.fixture
def server():
    smtp = refusing_server()
    yield smtp
    smtp.stop()


@pytest.fixture
def site(tmp_path, server, db_url):     # SQLite, and PostgreSQL when RAPPEL_TEST_DATABASE_URL is set
    s = Site(tmp_path, EMAIL.format(url=server.url), db_url=db_url)
    yield s
    s.close()


def utc(when: dt.datetime) -> dt.datetime:
    """A stored time: SQLite gives it back naive (it is UTC), PostgreSQL in the session's zone."""
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


def zoe_and_her_loans(site: Site) -> None:
    site.patron("P1", ZOE, first="Zoé", last="Lefèvre")
    site.loan("L1", "P1", "2026-11-16", "SCI", "Œuvres complètes — 12 €")    # first reminder today
    site.loan("L2", "P1", "2026-11-16", "DROIT", "Précis de droit civil")     # first reminder today
    site.loan("L3", "P1", "2026-10-30", "SCI", "Chimie organique")           # overdue: recap only
    site.loan("L4", "P1", "2026-09-01", "DROIT", "Code pénal annoté")         # overdue: recap only
    site.loan("L5", "P1", "2026-10-01", "SCI", "Perdu en route", status="lost")   # excluded: nowhere


class Recap(HTMLParser):
    """h3 headings after the recap's h2, with the <li> items under each."""

    def __init__(self):
        super().__init__()
        self.on, self.current, self.buffer, self.groups = False, None, "", {}

    def handle_starttag(self, tag, attrs):
        self.buffer = ""

    def handle_data(self, data):
        self.buffer += data

    def handle_endtag(self, tag):
        if tag == "h2" and "Récapitulatif" in self.buffer:
            self.on = True
        elif self.on and tag == "h3":
            self.current = self.groups.setdefault(self.buffer.strip(), [])
        elif self.on and tag == "li" and self.current is not None:
            self.current.append(self.buffer.split(" (code-barres")[0].strip())


def text_recap(text: str) -> dict[str, list[str]]:
    groups, current = {}, None
    for line in text.split("Récapitulatif de tous vos retards", 1)[1].splitlines()[1:]:
        if line.startswith("- ") and current is not None:
            groups[current].append(line[2:].split(" (code-barres")[0])
        elif line.strip() and not line.startswith("- "):
            if groups and not line.startswith("Bibliothèque"):
                break
            current = line.strip()
            groups[current] = []
    return groups


# -- what the server receives ------------------------------------------------------------------

def test_the_email_received_has_the_policy_headers_both_parts_and_the_recap_by_library(site, server):
    zoe_and_her_loans(site)
    result = site.run()
    assert [(o.key, o.status) for o in result.outcomes] == [(KEY, "sent")]
    [got] = server.messages
    assert got.mail_from == "contentieux@univ.example" and got.rcpt_tos == [ZOE]   # one recipient: her
    msg = got.message
    assert msg["From"] == "Service du contentieux <contentieux@univ.example>"
    assert msg["Reply-To"] == "contentieux@univ.example"
    assert msg["To"].addresses[0].addr_spec == ZOE and msg["To"].addresses[0].display_name == "Zoé Lefèvre"
    assert msg["Subject"] == "Premier rappel : documents en retard"
    assert msg["Message-ID"] == message_id(KEY, "contentieux@univ.example")      # from the ledger key
    assert len(msg.get_all("Message-ID")) == 1 and len(msg.get_all("Date")) == 1
    assert msg["Date"] == "Mon, 23 Nov 2026 00:00:00 +0100"
    assert msg["Content-Language"] == "fr"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    text, html = msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Œuvres complètes — 12 €" in part and "Précis de droit civil" in part
        assert "à rendre le 16 novembre 2026" in part
        assert "Perdu en route" not in part
    expected = {"Bibliothèque des sciences": ["Chimie organique", "Œuvres complètes — 12 €"],
                "Bibliothèque de droit": ["Code pénal annoté", "Précis de droit civil"]}
    assert text_recap(text) == expected and list(text_recap(text)) == list(expected)
    parser = Recap()
    parser.feed(html)
    assert parser.groups == expected and list(parser.groups) == list(expected)


def test_the_server_reply_and_the_message_id_are_kept_with_the_row(site, server):
    zoe_and_her_loans(site)
    site.run()
    row = site.notice(KEY)
    assert (row.status, row.attempts) == ("sent", 1)
    assert row.reply == "250 2.0.0 Ok: queued as Q1"
    assert row.reference == server.messages[0].message["Message-ID"]
    assert row.next_attempt_at is None and row.last_error is None


def test_one_transaction_per_recipient(site, server):
    for n in range(1, 5):
        site.patron(f"P{n}", f"p{n}@etu.example")
        site.loan(f"L{n}", f"P{n}", "2026-11-16")
    site.run()
    assert sorted(tuple(m.rcpt_tos) for m in server.messages) == [(f"p{n}@etu.example",) for n in range(1, 5)]
    assert len({m.message["Message-ID"] for m in server.messages}) == 4
    assert set(site.notices().values()) == {"sent"}


def test_a_library_mailbox_gets_the_letter_as_a_pdf_attachment(site, server):
    site.patron("P1", ZOE, first="Zoé", last="Lefèvre")
    site.loan("L1", "P1", "2026-10-19", "DROIT", "Précis de droit civil")     # letter on day 35: today
    site.loan("L2", "P1", "2026-10-19", "SCI", "Chimie organique")            # printer library: outbox
    site.run()
    key = notice_key(RUN, "letter", "letter", "P1", "DROIT", ("L1",))
    [got] = server.messages
    assert got.rcpt_tos == ["droit-contentieux@univ.example"]
    msg = got.message
    assert msg["To"] == "droit-contentieux@univ.example"
    assert msg["From"] == "Service du contentieux <contentieux@univ.example>"
    assert msg["Subject"] == "Courrier à imprimer et à envoyer : Zoé Lefèvre, 12 rue des Écoles, 33000 Bordeaux, France"
    assert msg["Message-ID"] == message_id(key, "contentieux@univ.example")
    assert "Bibliothèque de droit" in msg.get_body(("plain",)).get_content()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "2026-11-23_letter_P1_DROIT.pdf"
    pdf = attachment.get_content()
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "Zoé Lefèvre" in text and "Précis de droit civil" in text and "Chimie organique" not in text
    row = site.notice(key)
    assert row.status == "sent" and row.reply == "250 2.0.0 Ok: queued as Q1"
    assert row.reference.startswith("mailbox:droit-contentieux@univ.example <")
    # the printer library's letter went to the outbox: no print: section
    assert [p.name for p in site.outbox_files()][0].endswith(".pdf")
    assert site.notice(notice_key(RUN, "letter", "letter", "P1", "SCI", ("L2",))).status == "sent"


# -- a server that is down, a recipient that is refused -----------------------------------------

def test_a_server_that_is_down_is_retried_later_with_the_reason_stored(tmp_path, db_url):
    port = free_port()                                 # nothing listens there yet
    site = Site(tmp_path, EMAIL.format(url=f"mailto://127.0.0.1:{port}"), db_url=db_url)
    try:
        zoe_and_her_loans(site)
        site.patron("P2", "p2@etu.example")
        site.loan("M1", "P2", "2026-11-16")
        first = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
        result = site.run(now=first)
        assert [o.status for o in result.outcomes] == ["pending", "pending"]
        row = site.notice(KEY)
        assert (row.status, row.attempts) == ("pending", 1)
        assert "Connection refused" in row.last_error and "Connection refused" in row.reply
        assert utc(row.next_attempt_at) == first + dt.timedelta(minutes=15)
        other = site.notice(notice_key(RUN, "first_reminder", "email", "P2", None, ("M1",)))
        assert "not attempted" in other.last_error   # the second did not wait for a timeout
        assert set(v[0] for v in site.ledger().values()) == {"pending"}

        # ten minutes later: not yet time to try again
        assert site.run(now=first + dt.timedelta(minutes=10)).outcomes == []
        assert site.notice(KEY).attempts == 1

        # the server is back; the next pass after the wait delivers, once
        server = SmtpServer(port).start()
        try:
            result = site.run(now=first + dt.timedelta(minutes=16))
            assert sorted(o.status for o in result.outcomes) == ["sent", "sent"]
            assert len(server.messages) == 2
            row = site.notice(KEY)
            assert (row.status, row.attempts, row.reply) == ("sent", 2, row.reply)
            assert row.reply.startswith("250 ") and row.next_attempt_at is None
            assert site.run(now=first + dt.timedelta(hours=2)).outcomes == []
            assert len(server.messages) == 2
        finally:
            server.stop()
    finally:
        site.close()


def test_each_transient_failure_doubles_the_wait(tmp_path):
    site = Site(tmp_path, EMAIL.format(url=f"mailto://127.0.0.1:{free_port()}") +
                "  retry: {first_minutes: 10, max_minutes: 30}\n")
    try:
        zoe_and_her_loans(site)
        now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
        waits = []
        for _ in range(4):
            site.run(now=now)
            row = site.notice(KEY)
            nxt = utc(row.next_attempt_at)
            waits.append(int((nxt - now).total_seconds() // 60))
            now = nxt
        assert waits == [10, 20, 30, 30]
        assert site.notice(KEY).attempts == 4
    finally:
        site.close()


def test_a_refused_recipient_gets_a_letter_instead_with_the_reason_stored(site, server):
    zoe_and_her_loans(site)
    server.refuse[ZOE] = "550 5.1.1 <zoe.lefevre@etu.example>: Recipient address rejected: User unknown"
    result = site.run()
    letters = (notice_key(RUN, "first_reminder", "letter", "P1", "DROIT", ("L2",)),
               notice_key(RUN, "first_reminder", "letter", "P1", "SCI", ("L1",)))
    assert [(o.key, o.status, o.replaced_by) for o in result.outcomes] == [
        (KEY, "failed", letters), (letters[0], "sent", ()), (letters[1], "sent", ())]
    row = site.notice(KEY)
    assert row.status == "failed" and row.replaced_by == " ".join(letters)
    assert row.reply == "550 5.1.1 <zoe.lefevre@etu.example>: Recipient address rejected: User unknown"
    assert row.last_error.startswith("RCPT TO <zoe.lefevre@etu.example> refused: 550 5.1.1")
    ledger = site.ledger()
    assert ledger[("L1", "first_reminder")][:2] == ("sent", letters[1])   # SCI: a letter to print (outbox)
    assert ledger[("L2", "first_reminder")][:2] == ("sent", letters[0])   # DROIT: to the library's mailbox
    assert all("550 5.1.1" in ledger[(loan, "first_reminder")][2] and "letter instead" in
               ledger[(loan, "first_reminder")][2] for loan in ("L1", "L2"))
    # the DROIT letter reached the library's mailbox, the SCI letter is in the outbox
    [mailbox] = server.messages
    assert mailbox.rcpt_tos == ["droit-contentieux@univ.example"]
    pdf = list(mailbox.message.iter_attachments())[0].get_content()
    assert "Précis de droit civil" in pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert [p.suffix for p in site.outbox_files()] == [".pdf"]
    assert site.run(RUN + dt.timedelta(days=1)).outcomes == []   # nothing repeated


def test_without_a_postal_address_the_refused_email_stays_failed(site, server):
    site.patron("P1", ZOE, address=False)
    site.loan("L1", "P1", "2026-11-16")
    server.refuse[ZOE] = "550 5.1.1 user unknown"
    [outcome] = site.run().outcomes
    assert outcome.status == "failed" and "no postal address" in outcome.detail
    assert site.ledger()[("L1", "first_reminder")][0] == "failed"
    assert "550 5.1.1 user unknown" in site.ledger()[("L1", "first_reminder")][2]


def test_fallback_none_leaves_the_refused_email_failed(tmp_path, server):
    site = Site(tmp_path, EMAIL.format(url=server.url) + "fallback: {email: none}\n")
    try:
        site.patron("P1", ZOE)
        site.loan("L1", "P1", "2026-11-16")
        server.refuse[ZOE] = "553 5.1.3 bad address syntax"
        [outcome] = site.run().outcomes
        assert (outcome.status, outcome.replaced_by) == ("failed", ())
        assert site.notice(KEY_L1).reply == "553 5.1.3 bad address syntax"
        assert site.outbox_files() == []
    finally:
        site.close()


def test_a_greylisting_4xx_is_retried_not_fallen_back(site, server):
    site.patron("P1", ZOE)
    site.loan("L1", "P1", "2026-11-16")
    server.refuse[ZOE] = "450 4.2.0 Greylisted, please try again later"
    now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    [outcome] = site.run(now=now).outcomes
    assert outcome.status == "pending"
    assert site.notice(KEY_L1).reply == "450 4.2.0 Greylisted, please try again later"
    del server.refuse[ZOE]
    [outcome] = site.run(now=now + dt.timedelta(hours=1)).outcomes
    assert outcome.status == "sent" and len(server.messages) == 1


# -- which refusals are the patron's address, which are the server refusing rappel ----------------

LETTER, REFUSED, LATER = "letter", "waits: the server refuses rappel", "waits: transient"

REPLIES = [
    # step       reply                                                                  outcome
    # the recipient's address is bad: enhanced 5.1.x, 5.2.x (at RCPT TO or after DATA)
    ("RCPT TO", "550 5.1.1 <zoe.lefevre@etu.example>: Recipient address rejected: User unknown", LETTER),
    ("RCPT TO", "550 5.1.2 <zoe.lefevre@etu.example>: Recipient address rejected: Domain not found", LETTER),
    ("RCPT TO", "553 5.1.3 Bad recipient address syntax", LETTER),
    ("RCPT TO", "550 5.1.0 Address rejected", LETTER),
    ("RCPT TO", "551 5.1.6 User has moved; please try zoe@ailleurs.example", LETTER),
    ("RCPT TO", "556 5.1.10 Recipient address has null MX", LETTER),
    ("RCPT TO", "550 5.2.1 Mailbox disabled, not accepting messages", LETTER),
    ("RCPT TO", "552 5.2.2 Mailbox full", LETTER),
    ("RCPT TO", "552 5.2.2 User over quota", LETTER),
    ("DATA",    "550 5.1.1 User unknown", LETTER),                  # a server that checks recipients late
    ("DATA",    "552 5.2.2 Mailbox over quota", LETTER),
    # …or a server without enhanced codes: 550, 551, 553 at RCPT TO
    ("RCPT TO", "550 No such user here", LETTER),
    ("RCPT TO", "551 User not local; please try <zoe@ailleurs.example>", LETTER),
    ("RCPT TO", "553 Requested action not taken: mailbox name not allowed", LETTER),
    # every other 5xx is the server refusing rappel: relay, login, policy, system, protocol
    ("RCPT TO", "554 5.7.1 <zoe.lefevre@etu.example>: Relay access denied", REFUSED),
    ("RCPT TO", "530 5.7.0 Authentication required", REFUSED),
    ("RCPT TO", "550 5.7.1 Message rejected by policy", REFUSED),
    ("RCPT TO", "550 5.7.1 Client host rejected: listed as a spam source", REFUSED),
    ("RCPT TO", "550 5.3.0 Other mail system problem", REFUSED),
    ("RCPT TO", "552 5.3.4 Message too big for system", REFUSED),
    ("RCPT TO", "500 5.5.1 Command unrecognized", REFUSED),
    ("RCPT TO", "501 5.5.4 Syntax error in parameters", REFUSED),
    ("RCPT TO", "550 5.4.4 Unable to route", REFUSED),
    ("RCPT TO", "550 5.1.7 Bad sender's mailbox address syntax", REFUSED),    # 5.1.x about the sender
    ("RCPT TO", "550 5.1.8 Bad sender's system address", REFUSED),
    ("RCPT TO", "550 5.1.0 <contentieux@univ.example>: Sender address rejected: User unknown", REFUSED),
    ("RCPT TO", "554 Relay access denied", REFUSED),                          # no enhanced code, not 550/551/553
    ("RCPT TO", "552 Too many recipients", REFUSED),
    ("RCPT TO", "550 4.1.1 Mailbox unknown, maybe", REFUSED),                 # classes disagree: not the address
    ("DATA",    "554 5.7.1 Message rejected as spam", REFUSED),
    ("DATA",    "550 5.7.1 Message content rejected by policy", REFUSED),
    ("DATA",    "552 5.3.4 Message size exceeds fixed limit", REFUSED),
    ("DATA",    "554 5.6.0 Content conversion not permitted", REFUSED),
    ("DATA",    "554 Transaction failed", REFUSED),
    ("DATA",    "550 Mailbox unavailable", REFUSED),                          # basic codes count at RCPT TO only
    ("MAIL FROM", "553 5.1.8 <contentieux@univ.example>: Sender address rejected: Domain not found", REFUSED),
    ("MAIL FROM", "550 5.7.1 Sender not allowed to relay", REFUSED),
    ("MAIL FROM", "530 5.7.0 Must issue a STARTTLS command first", REFUSED),
    # 4xx: transient, as before
    ("RCPT TO", "450 4.2.0 Greylisted, please try again later", LATER),
    ("RCPT TO", "452 4.2.2 Mailbox full", LATER),
    ("DATA",    "451 4.3.0 Temporary failure", LATER),
]


def refuse_at(server: SmtpServer, step: str, reply: str, address: str = ZOE) -> None:
    if step == "RCPT TO":
        server.refuse[address] = reply
    elif step == "DATA":
        server.handler.refuse_data[address] = reply
    else:
        server.handler.refuse_mail = reply


@pytest.mark.parametrize("step, reply, outcome", REPLIES, ids=[f"{s}-{r[:14]}" for s, r, _ in REPLIES])
def test_only_a_bad_address_falls_back_to_paper(site, server, step, reply, outcome):
    site.patron("P1", ZOE)
    site.loan("L1", "P1", "2026-11-16")                          # SCI: its letter goes to the outbox
    refuse_at(server, step, reply)
    now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    result = site.run(now=now)
    row = site.notice(KEY_L1)
    assert row.reply == reply                                     # the server's words, kept as before
    assert server.messages == []
    letter = notice_key(RUN, "first_reminder", "letter", "P1", "SCI", ("L1",))
    where = f"RCPT TO <{ZOE}>" if step == "RCPT TO" else step
    assert row.last_error.startswith(f"{where} refused: {reply}")
    if outcome == LETTER:
        assert [(o.key, o.status, o.replaced_by) for o in result.outcomes] == [
            (KEY_L1, "failed", (letter,)), (letter, "sent", ())]
        assert row.status == "failed" and row.replaced_by == letter
        assert "refuses rappel" not in row.last_error
        assert site.ledger()[("L1", "first_reminder")][:2] == ("sent", letter)
        assert [p.suffix for p in site.outbox_files()] == [".pdf"]
        return
    # it waits: pending, retried with backoff, nothing on paper
    assert [(o.key, o.status, o.replaced_by) for o in result.outcomes] == [(KEY_L1, "pending", ())]
    assert (row.status, row.attempts, row.replaced_by) == ("pending", 1, None)
    assert utc(row.next_attempt_at) == now + dt.timedelta(minutes=15)
    assert site.ledger()[("L1", "first_reminder")][0] == "pending"
    assert site.outbox_files() == []
    says = "the server refuses rappel itself" in row.last_error and "not the recipient's address" in row.last_error
    assert says == (outcome == REFUSED)


def test_a_relay_that_refuses_rappel_stops_the_pass_and_everything_waits(site, server):
    zoe_and_her_loans(site)
    for n in (2, 3, 4):
        site.patron(f"P{n}", f"p{n}@etu.example")
        site.loan(f"M{n}", f"P{n}", "2026-11-16", "DROIT")
    server.refuse["*"] = "554 5.7.1 <p@etu.example>: Relay access denied"
    now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    result = site.run(now=now)
    assert [o.status for o in result.outcomes] == ["pending"] * 4       # no letters for anybody
    assert len(server.handler.asked) == 1                                 # the others were not tried
    rows = [site.notice(o.key) for o in result.outcomes]
    first, *others = sorted(rows, key=lambda r: "not attempted" in r.last_error)
    assert first.reply == "554 5.7.1 <p@etu.example>: Relay access denied"
    assert "the server refuses rappel itself" in first.last_error
    for row in others:
        assert row.last_error.startswith(f"not attempted: 127.0.0.1:{server.port} refused rappel ")
        assert "554 5.7.1" in row.last_error and row.status == "pending"
    assert site.outbox_files() == [] and server.messages == []
    assert {v[0] for v in site.ledger().values()} == {"pending"}

    # the site fixes its relay: the next pass after the wait sends the emails, still no letters
    del server.refuse["*"]
    result = site.run(now=now + dt.timedelta(minutes=16))
    assert [o.status for o in result.outcomes] == ["sent"] * 4
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted([ZOE, "p2@etu.example", "p3@etu.example",
                                                                      "p4@etu.example"])
    assert site.outbox_files() == []


def test_a_refusal_of_rappel_that_lasts_expires_with_the_window_not_as_paper(site, server):
    site.patron("P1", ZOE)
    site.loan("L1", "P1", "2026-11-16")
    server.refuse[ZOE] = "530 5.7.0 Authentication required"
    now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    for day, hours in ((RUN, 0), (RUN, 6), (RUN + dt.timedelta(days=1), 30)):   # inside the window
        [outcome] = site.run(day, now=now + dt.timedelta(hours=hours)).outcomes
        assert outcome.status == "pending"
    assert site.notice(KEY_L1).attempts == 3
    # 26 November: past the 2-day window after the 23rd; it expires, nothing goes on paper
    [outcome] = site.run(RUN + dt.timedelta(days=3), now=now + dt.timedelta(days=3)).outcomes
    assert outcome.status == "expired"
    row = site.notice(KEY_L1)
    assert row.status == "expired" and row.reply == "530 5.7.0 Authentication required"
    assert site.ledger()[("L1", "first_reminder")][0] == "expired"
    assert site.outbox_files() == [] and server.messages == []


def test_a_bad_address_does_not_stop_the_pass(site, server):
    site.patron("P1", ZOE)
    site.loan("L1", "P1", "2026-11-16")
    site.patron("P2", "p2@etu.example")
    site.loan("M2", "P2", "2026-11-16")
    server.refuse[ZOE] = "550 5.1.1 User unknown"
    outcomes = {o.key: o.status for o in site.run().outcomes}
    assert outcomes[KEY_L1] == "failed" and outcomes[notice_key(RUN, "first_reminder", "email", "P2", None,
                                                                  ("M2",))] == "sent"
    assert [m.rcpt_tos for m in server.messages] == [["p2@etu.example"]]


# -- what a patron's data cannot do ---------------------------------------------------------------

NOT_ONE_ADDRESS = [
    "zoe@etu.example, victim@evil.example",
    "zoe@etu.example\r\nBcc: victim@evil.example",
    "Zoé <zoe@etu.example>",
    "zoe@etu.example victim@evil.example",
]


@pytest.mark.parametrize("address", NOT_ONE_ADDRESS)
def test_an_address_that_is_not_one_address_sends_nothing_to_anyone(site, server, address):
    """The address was edited after the decision: dispatch's last check, the same predicate."""
    site.patron("P1", ZOE)
    site.loan("L1", "P1", "2026-11-16")
    site.decide_only()                 # an email to Zoé is decided …
    site.patron("P1", address)         # … then her address is edited before it goes
    [outcome, *letters] = site.run().outcomes
    assert outcome.status == "failed" and server.messages == []     # nobody got an email
    assert [o.status for o in letters] == ["sent"]                     # a letter instead (the outbox)


@pytest.mark.parametrize("address", NOT_ONE_ADDRESS)
def test_an_address_that_is_not_one_address_is_routed_to_a_letter_when_deciding(site, server, address):
    site.patron("P1", address)
    site.loan("L1", "P1", "2026-11-16")
    result = site.run()
    [notice] = result.plan.notices
    assert (notice.stage, notice.channel, notice.library) == ("first_reminder", "letter", "SCI")
    status, key, reason = site.ledger()[("L1", "first_reminder")]
    assert key == notice.key and f"email {address!r} is not one valid address; letter instead" in reason
    assert [o.status for o in result.outcomes] == ["sent"] and server.messages == []


def test_a_name_with_line_breaks_adds_no_header_on_the_wire(site, server):
    site.patron("P1", ZOE, first="Eve\r\nBcc: victim@evil.example", last="X\nX-Injected: 1")
    site.loan("L1", "P1", "2026-11-16")
    site.run()
    [got] = server.messages
    head = got.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head and b"\nX-Injected" not in head
    assert got.rcpt_tos == [ZOE] and got.message["Bcc"] is None


# -- the channel itself ---------------------------------------------------------------------------

def test_check_reads_the_greeting_without_sending(server):
    channel = SmtpEmailChannel(server.url, "Service <svc@univ.example>", "svc@univ.example")
    [check] = channel.checks()
    assert check.ok and check.detail.startswith("220 ") and f"127.0.0.1:{server.port}" in check.target
    assert server.messages == []
    down = SmtpEmailChannel(f"mailto://127.0.0.1:{free_port()}", "svc@univ.example", "svc@univ.example")
    [check] = down.checks()
    assert not check.ok and "Connection refused" in check.detail


def test_rappel_registers_nothing_in_apprise_s_process_wide_registry(site, server):
    from apprise.manager_plugins import NotificationManager
    from apprise.plugins.email import NotifyEmail

    registry = NotificationManager()     # a singleton: the registry every Apprise object uses
    before = set(registry.schemas())
    zoe_and_her_loans(site)
    site.run()
    assert set(registry.schemas()) == before
    assert registry["mailto"] is NotifyEmail and "rappel-lp" not in registry
    assert apprise.Apprise.instantiate("rappel-lp://bu-sciences") is None


def test_an_unusable_url_is_an_input_error_with_its_line(tmp_path):
    from engine.yamlsource import InputError

    site = Site(tmp_path, EMAIL.format(url="mailto://smtp.univ.example?mode=carrier-pigeon"))
    try:
        with pytest.raises(InputError) as err:
            site.router()
        [problem] = err.value.problems
        text = (site.rules / "reminders.yaml").read_text(encoding="utf-8").splitlines()
        assert problem.where == "delivery.email.url" and "carrier-pigeon" in text[problem.line - 1]
        assert "secure mode" in problem.message
    finally:
        site.close()
