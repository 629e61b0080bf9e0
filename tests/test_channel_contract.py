"""One contract, every channel: the same rows run over memory, outbox, smtp, mailbox and print.

Like apprise's AppriseURLTester: a table of channels (what each one is) and a table of rows (what
every channel must do), crossed. Real parts where the channel has them: a real SMTP server
in-process (aiosmtpd) for smtp and mailbox, a folder for the outbox, a real HTTP server in-process
(tests/http_site.py) for sms and webhook, the test's own cupsd with a PDF printer for print (skipped where CUPS is not installed, as in test_print.py). Adding a channel
is one row in CHANNELS and one rig below.
"""
from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.channels.base import BaseChannel, Check
from adapters.channels.mailbox import MailboxChannel
from adapters.channels.memory import MemoryChannel
from adapters.channels.outbox import OutboxChannel
from adapters.channels.printer import PrintChannel
from adapters.channels.sms import SmsChannel
from adapters.channels.smtp import SmtpEmailChannel
from adapters.channels.webhook import WebhookChannel
from adapters.render import NoticeContext, Templates
from engine.decide import Notice, notice_key
from engine.facts import Loan, Patron
from engine.policy import Policy

try:
    from tests.cups_site import cups  # noqa: F401 - a fixture, asked for by the print rig only
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from cups_site import cups  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
RUN = dt.date(2026, 11, 23)
ZOE = "zoe.lefevre@etu.example"
MAILBOX = "droit-contentieux@univ.example"          # the DROIT library's mailbox in rules/reminders.yaml
REFUSED = "550 5.1.1 <{}>: Recipient address rejected: User unknown"

CHANNELS = [
    # channel   local  carries
    ("memory",  False, ("email", "letter")),
    ("outbox",  True,  ("email", "letter", "text", "json")),
    ("smtp",    False, ("email",)),
    ("mailbox", False, ("letter",)),
    ("print",   False, ("letter",)),
    ("sms",     False, ("text",)),
    ("webhook", False, ("json",)),
]
KINDS = ("email", "letter", "text", "json")
PHONE = "+33612345678"


# -- what is sent: a real email and a real letter, rendered from the shipped templates -------------

PATRON = Patron("P1", barcode="29000001", first_name="Zoé", last_name="Lefèvre", email=ZOE,
                address_line1="12 rue des Écoles", postal_code="33000", city="Bordeaux", country="France")


def _notice(channel: str, library: str | None, destination: str, recipient: str) -> Notice:
    return Notice(notice_key(RUN, "first_reminder", channel, "P1", library, ("L1",)), RUN, "first_reminder",
                  channel, "P1", library, ("L1",), recipient, destination)


@dataclass(frozen=True)
class Samples:
    policy: Policy
    templates: Templates

    def email(self) -> tuple[Notice, tuple]:
        notice = _notice("email", None, ZOE, ZOE)
        return notice, (self.templates.email(self._context(notice)),)

    def letter(self, destination: str) -> tuple[Notice, tuple]:
        library = "DROIT" if destination.startswith("mailbox:") else "SCI"
        notice = _notice("letter", library, destination, "Zoé Lefèvre, 12 rue des Écoles, 33000 Bordeaux")
        return notice, (self.templates.letter_pdf(self._context(notice)), f"2026-11-23_first_reminder_P1_{library}.pdf")

    def text(self) -> tuple[Notice, tuple]:
        notice = _notice("sms", None, PHONE, PHONE)
        return notice, (self.templates.render(self._context(notice), ("sms",))["sms"],)

    def document(self) -> tuple[Notice, tuple]:
        notice = _notice("webhook", None, "P1", "P1")
        return notice, (self.templates.message(self._context(notice), "json"),)

    def _context(self, notice: Notice) -> NoticeContext:
        loan = Loan("L1", "P1", notice.library or "SCI", dt.date(2026, 11, 16), "B-L1", "Œuvres complètes — 12 €")
        return NoticeContext.build(self.policy, notice, PATRON, [loan], RUN)


@pytest.fixture(scope="module")
def samples() -> Samples:
    from engine.policy import parse_policy

    rules = ROOT / "rules"
    policy = parse_policy((rules / "reminders.yaml").read_text(encoding="utf-8"), str(rules / "reminders.yaml"))
    return Samples(policy, Templates(rules, policy))


# -- one rig per channel: the channel, what it is sent, and how to make it fail as servers fail ---

@dataclass
class Rig:
    channel: BaseChannel
    sample: Callable[[str], tuple[Notice, tuple]]     # kind ("email", "letter") → (notice, send arguments)
    arrived: Callable[[], int]                        # how many messages reached the other end
    refuse: Callable[[Notice], None] | None = None    # make the server refuse this notice's recipient for good
    down: Callable[[], None] | None = None            # make the server unreachable
    settle: Callable[[int], None] = lambda count: None   # wait until `count` messages have arrived
    no_refusal: str = ""                              # why there is no recipient to refuse, when there is none

    def send(self, kind: str):
        notice, args = self.sample(kind)
        return send_kind(self.channel, kind)(notice, *args)


def send_kind(channel: BaseChannel, kind: str):
    return {"email": channel.send_email, "letter": channel.send_letter, "text": channel.send_text,
            "json": channel.send_json}[kind]


def _any_sample(samples, kind: str):
    return {"email": samples.email, "text": samples.text, "json": samples.document}.get(
        kind, lambda: samples.letter("printer:bu-sciences"))()


def memory_rig(request, tmp_path, samples) -> Rig:
    channel = MemoryChannel()
    return Rig(channel, lambda kind: samples.email() if kind == "email" else samples.letter("printer:bu-sciences"),
               lambda: len(channel.emails) + len(channel.letters),
               refuse=lambda notice: channel.refuse.update({notice.recipient: REFUSED.format(notice.recipient)}),
               down=lambda: setattr(channel, "down", "421 4.3.2 Service not available, try again later"))


def sms_rig(request, tmp_path, samples) -> Rig:
    site = request.getfixturevalue("http_site")
    channel = SmsChannel(site.url("json", "/sms") + "?:to={to}")
    return Rig(channel, lambda kind: samples.text(), lambda: len([r for r in site.received() if r.status_ok]),
               refuse=lambda notice: site.refuse.update({notice.destination: 400}), down=site.stop)


def webhook_rig(request, tmp_path, samples) -> Rig:
    site = request.getfixturevalue("http_site")
    channel = WebhookChannel(site.url("json", "/notices"))
    return Rig(channel, lambda kind: samples.document(), lambda: len([r for r in site.received() if r.status_ok]),
               refuse=lambda notice: site.refuse.update({notice.key: 422}), down=site.stop)


def outbox_rig(request, tmp_path, samples) -> Rig:
    root = tmp_path / "outbox"
    channel = OutboxChannel(root)

    def down():          # the folder cannot be written: a file stands where it should be
        shutil.rmtree(root, ignore_errors=True)
        root.write_text("not a folder")

    return Rig(channel, lambda kind: _any_sample(samples, kind),
               lambda: sum(1 for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0, down=down,
               no_refusal="the outbox writes every notice to a folder: no recipient to refuse")


def smtp_rig(request, tmp_path, samples) -> Rig:
    server = request.getfixturevalue("smtp_server")
    channel = SmtpEmailChannel(server.url, samples.policy.sender.from_, samples.policy.sender.reply_to, timeout=5)
    return Rig(channel, lambda kind: samples.email(), lambda: len(server.messages),
               refuse=lambda notice: server.refuse.update({notice.recipient: REFUSED.format(notice.recipient)}),
               down=server.stop)


def mailbox_rig(request, tmp_path, samples) -> Rig:
    server = request.getfixturevalue("smtp_server")
    transport = SmtpEmailChannel(server.url, samples.policy.sender.from_, samples.policy.sender.reply_to, timeout=5)
    channel = MailboxChannel(transport, samples.templates.mailbox_email)
    return Rig(channel, lambda kind: samples.letter(f"mailbox:{MAILBOX}"), lambda: len(server.messages),
               refuse=lambda notice: server.refuse.update({MAILBOX: REFUSED.format(MAILBOX)}),
               down=server.stop)


def print_rig(request, tmp_path, samples) -> Rig:
    cups = request.getfixturevalue("cups")      # skips where CUPS is not installed
    channel = PrintChannel(server=cups.socket, printers=[cups.queue], timeout=20)
    before = set(cups.output.glob("*.pdf"))

    def down():          # the CUPS server is gone (a socket nobody listens on)
        channel.server = str(tmp_path / "no-cups.sock")

    def settle(count: int):
        if count:
            cups.printed(before)

    return Rig(channel, lambda kind: samples.letter(f"printer:{cups.queue}"),
               lambda: len(set(cups.output.glob("*.pdf")) - before), down=down, settle=settle,
               no_refusal="CUPS refuses no recipient: every printing failure is the site's, transient")


RIGS = {"memory": memory_rig, "outbox": outbox_rig, "smtp": smtp_rig, "mailbox": mailbox_rig, "print": print_rig,
        "sms": sms_rig, "webhook": webhook_rig}


# -- the rows: what every channel does ------------------------------------------------------------

def sends_what_it_carries(rig: Rig, local: bool, carries: tuple[str, ...]):
    for kind in carries:
        delivery = rig.send(kind)
        assert delivery.ok and not delivery.permanent, delivery
        assert delivery.reference, "a sent notice says where it went"
    rig.settle(len(carries))
    assert rig.arrived() == len(carries)


def a_refused_recipient_is_a_permanent_failure(rig: Rig, local: bool, carries: tuple[str, ...]):
    if rig.refuse is None:
        pytest.skip(rig.no_refusal)
    notice, args = rig.sample(carries[0])
    rig.refuse(notice)
    delivery = send_kind(rig.channel, carries[0])(notice, *args)
    assert not delivery.ok and delivery.permanent, delivery
    assert rig.arrived() == 0


def a_server_down_is_a_transient_failure(rig: Rig, local: bool, carries: tuple[str, ...]):
    rig.down()
    delivery = rig.send(carries[0])
    assert not delivery.ok and not delivery.permanent, delivery
    assert delivery.detail, "the reason is kept for the notice's row"
    assert rig.arrived() == 0


def refuses_what_it_does_not_carry_for_good(rig: Rig, local: bool, carries: tuple[str, ...]):
    others = [kind for kind in KINDS if kind not in carries]
    if not others:
        pytest.skip(f"{rig.channel.name} carries every kind")
    notice, _ = rig.sample(carries[0])
    for other in others:
        args = {"email": (None,), "letter": (b"%PDF-1.4", "a.pdf"), "text": ("hello",), "json": ({},)}[other]
        delivery = send_kind(rig.channel, other)(notice, *args)
        assert not delivery.ok and delivery.permanent and f"not {other}s" in delivery.detail
    assert rig.arrived() == 0


def checks_say_how_its_servers_are_without_sending(rig: Rig, local: bool, carries: tuple[str, ...]):
    checks = rig.channel.checks()
    assert isinstance(checks, list) and all(isinstance(c, Check) for c in checks)
    assert all(c.ok for c in checks), checks
    assert rig.arrived() == 0


def close_twice_is_harmless(rig: Rig, local: bool, carries: tuple[str, ...]):
    assert rig.send(carries[0]).ok
    rig.channel.close()
    rig.channel.close()


def says_what_it_is(rig: Rig, local: bool, carries: tuple[str, ...]):
    channel = rig.channel
    assert isinstance(channel, BaseChannel)
    assert (channel.local, channel.carries) == (local, carries)
    notice, _ = rig.sample(carries[0])
    assert channel.is_local(notice) is local
    assert channel.description.startswith(channel.name)


ROWS = [sends_what_it_carries, a_refused_recipient_is_a_permanent_failure, a_server_down_is_a_transient_failure,
        refuses_what_it_does_not_carry_for_good, checks_say_how_its_servers_are_without_sending,
        close_twice_is_harmless, says_what_it_is]


@pytest.mark.parametrize("row", ROWS, ids=[row.__name__ for row in ROWS])
@pytest.mark.parametrize("name, local, carries", CHANNELS, ids=[c[0] for c in CHANNELS])
def test_channel_contract(request, tmp_path, samples, name, local, carries, row):
    rig = RIGS[name](request, tmp_path, samples)
    assert rig.channel.name == name
    try:
        row(rig, local, carries)
    finally:
        rig.channel.close()


def test_every_registered_route_has_a_row(tmp_path):
    """A channel added to the registry without a row in CHANNELS is a channel nobody checked."""
    from adapters.channels.registry import REGISTRY, build
    from engine.policy import parse_policy

    text = (ROOT / "rules" / "reminders.yaml").read_text(encoding="utf-8")
    text += ('\ndelivery: {email: {url: "mailto://smtp.univ.example"}, print: {}, mailbox: {}, channels: '
             '{sms: {url: "json://sms.univ.example/send?:to={to}"}, webhook: {url: "json://hooks.univ.example/"}}}\n')
    router = build(parse_policy(text, channels=REGISTRY.specs()), None, env={}, outbox=tmp_path / "outbox")
    try:
        assert set(router.routes) == {r.route for r in REGISTRY}           # every route configured…
        built = {channel.name for channel in [*router.routes.values(), router.fallback]}
        assert built <= {name for name, _, _ in CHANNELS}                  # …and each of its channels has a row
    finally:
        router.close()
