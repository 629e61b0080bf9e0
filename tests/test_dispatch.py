"""Dispatch of the outbox: routing, settings from the environment, the flood guard, pacing, retries
and a crash between the commit and the sending. A real SMTP server where a server is involved."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from adapters.channels import registry as delivery
from adapters.store.schema import messages
from adapters.store.sent import unpack

from engine.delivery import retry_wait
from adapters.channels.base import BaseChannel, Channel
from adapters.channels.memory import MemoryChannel
from adapters.channels.mailbox import MailboxChannel
from adapters.channels.outbox import OutboxChannel
from adapters.channels.printer import PrintChannel
from adapters.channels.sms import SmsChannel
from adapters.channels.smtp import SmtpEmailChannel
from adapters.channels.webhook import WebhookChannel
from engine.decide import Notice, notice_key
from engine.policy import parse_policy
from engine.yamlsource import InputError

try:
    from tests.delivery_site import POLICY, RUN, Site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import POLICY, RUN, Site


@pytest.fixture
def server(smtp_server):
    return smtp_server


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """The command line keeps this machine's installation id in a state folder: the test's own."""
    monkeypatch.setenv("RAPPEL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RAPPEL_INSTALLATION_ID", raising=False)
    return tmp_path / "state"


def email_site(tmp_path, server, extra=""):
    return Site(tmp_path, f'\ndelivery:\n  email: {{url: "{server.url}"}}\n{extra}')


def patrons_with_first_reminders(site: Site, count: int) -> None:
    for n in range(1, count + 1):
        site.patron(f"P{n}", f"p{n}@etu.example")
        site.loan(f"L{n}", f"P{n}", "2026-11-16")


# -- routing: one registration per route, the outbox for the rest --------------------------------

def notice(channel: str, destination: str, library: str | None = None) -> Notice:
    return Notice(notice_key(RUN, "letter", channel, "P1", library), RUN, "letter", channel, "P1", library, ("L1",),
                  "x", destination)


@pytest.mark.parametrize("delivery_yaml, email, printer, mailbox", [
    # delivery: section                                   emails   printer letters  mailbox letters
    ("",                                                  "outbox", "outbox",        "outbox"),
    ('delivery: {email: {url: "mailto://smtp.x.org"}}',   "smtp",   "outbox",        "mailbox"),
    ("delivery: {print: {command: lp}}",                  "outbox", "print",         "outbox"),
    ('delivery: {email: {url: "mailto://a.x.org"}, print: {}, mailbox: {url: "mailtos://b.x.org"}}',
                                                          "smtp",   "print",         "mailbox"),
])
def test_each_route_goes_to_its_registered_channel_or_the_outbox(tmp_path, delivery_yaml, email, printer, mailbox):
    policy = parse_policy(POLICY.format(extra=delivery_yaml))
    router = delivery.build(policy, None, env={}, outbox=tmp_path / "outbox")
    assert router.channel_for(notice("email", "p1@etu.example")).name == email
    assert router.channel_for(notice("letter", "printer:bu-sciences", "SCI")).name == printer
    assert router.channel_for(notice("letter", "mailbox:droit@univ.example", "DROIT")).name == mailbox
    assert router.channel_for(notice("letter", "unconfigured", "XYZ")).name == "outbox"
    assert router.is_local(notice("email", "p1@etu.example")) == (email == "outbox")


def test_the_registry_has_one_line_per_route():
    assert [reg.route for reg in delivery.REGISTRY] == ["email", "printer", "mailbox", "sms", "webhook"]


@pytest.mark.parametrize("make", [
    lambda tmp: OutboxChannel(tmp),
    lambda tmp: MemoryChannel(),
    lambda tmp: SmtpEmailChannel("mailto://127.0.0.1:25", "a@b.example", "a@b.example"),
    lambda tmp: PrintChannel("lp"),
    lambda tmp: MailboxChannel(SmtpEmailChannel("mailto://127.0.0.1:25", "a@b.example", "a@b.example"),
                               lambda n, pdf, name: None),
    lambda tmp: delivery.Router({}, OutboxChannel(tmp)),
    lambda tmp: SmsChannel("json://127.0.0.1:9/sms?:to={to}"),
    lambda tmp: WebhookChannel("json://127.0.0.1:9/notices"),
])
def test_every_channel_keeps_the_contract(tmp_path, make):
    assert isinstance(make(tmp_path), Channel)


# -- settings from the environment ----------------------------------------------------------------

SECRET = '\ndelivery:\n  email: {url: "mailtos://${SMTP_USER}:${SMTP_PASSWORD}@smtp.univ.example:587"}\n'


def test_a_missing_variable_is_an_input_error_naming_file_line_and_variable(tmp_path):
    site = Site(tmp_path, SECRET, env={"SMTP_USER": "rappel"})
    try:
        problems = delivery.environment_problems(site.policy, site.env, site.rules)
        [problem] = problems
        assert problem.source == str(site.rules / "reminders.yaml")
        lines = (site.rules / "reminders.yaml").read_text(encoding="utf-8").splitlines()
        assert "SMTP_PASSWORD" in lines[problem.line - 1]
        assert problem.where == "delivery.email.url"
        assert "environment variable SMTP_PASSWORD is not set" in problem.message
        with pytest.raises(InputError):
            site.router()
    finally:
        site.close()


def test_variables_are_url_encoded_inside_a_url(tmp_path):
    site = Site(tmp_path, SECRET, env={"SMTP_USER": "rappel", "SMTP_PASSWORD": "p@ss/w:rd%"})
    try:
        router = site.router()
        mail = router.routes["email"].server
        assert (mail.user, mail.password, mail.smtp_host, mail.port) == ("rappel", "p@ss/w:rd%", "smtp.univ.example", 587)
        assert mail.secure_mode == "starttls"
    finally:
        site.close()


def test_an_empty_variable_is_an_error_too(tmp_path):
    site = Site(tmp_path, SECRET, env={"SMTP_USER": "rappel", "SMTP_PASSWORD": ""})
    try:
        [problem] = delivery.environment_problems(site.policy, site.env, site.rules)
        assert "SMTP_PASSWORD is empty" in problem.message
    finally:
        site.close()


@pytest.mark.parametrize("setting, says", [
    ('email: {url: "mailtos://rappel:hunter2@smtp.univ.example"}', "must come from the environment"),
    ('email: {url: "mailtos://smtp.univ.example?user=rappel&pass=hunter2"}', "must come from the environment"),
    ('email: {url: "smtp://smtp.univ.example"}', "mailto:// or mailtos://"),
    ('email: {url: "mailto://smtp.univ.example?to=everyone@univ.example"}', "one recipient per message"),
    ('print: {command: "lp -U ${USER"}', "${NAME}"),
])
def test_the_policy_refuses_secrets_and_bad_urls_with_their_line(setting, says):
    text = POLICY.format(extra=f"delivery:\n  {setting}\n")
    with pytest.raises(InputError) as err:
        parse_policy(text, "reminders.yaml")
    [problem] = err.value.problems
    assert says in problem.message and text.splitlines()[problem.line - 1].strip().startswith(setting.split(":")[0])


# -- the flood guard --------------------------------------------------------------------------------

def test_a_run_over_the_limit_sends_nothing_and_says_so(tmp_path, server):
    site = email_site(tmp_path, server, "flood_guard: {max_per_run: 3, per_second: null}\n")
    try:
        patrons_with_first_reminders(site, 4)
        result = site.run()
        assert len(result.plan.notices) == 4                        # decided and recorded…
        assert {o.status for o in result.outcomes} == {"held"}      # …but nothing sent
        assert "4 messages would go out, more than flood_guard.max_per_run (3)" in result.held
        assert "--confirm" in result.held
        assert server.messages == [] and set(site.notices().values()) == {"pending"}

        again = site.run()                                          # a later pass holds them too
        assert again.held and server.messages == []

        confirmed = site.run(confirm=True)
        assert [o.status for o in confirmed.outcomes] == ["sent"] * 4 and len(server.messages) == 4
    finally:
        site.close()


def test_the_limit_counts_only_what_would_leave(tmp_path, server):
    site = email_site(tmp_path, server, "flood_guard: {max_per_run: 2, per_second: null}\n")
    try:
        patrons_with_first_reminders(site, 2)
        for n in (3, 4, 5):
            site.patron(f"P{n}")                                    # no email: letters, to the outbox
            site.loan(f"L{n}", f"P{n}", "2026-11-16")
        result = site.run()
        assert result.held is None and sorted(o.status for o in result.outcomes) == ["sent"] * 5
    finally:
        site.close()


def test_notices_that_would_expire_do_not_count(tmp_path, server):
    site = email_site(tmp_path, server, "flood_guard: {max_per_run: 2, per_second: null}\n")
    try:
        patrons_with_first_reminders(site, 4)
        site.decide_only(RUN)                                       # the run died after committing
        # five days later: past the 2-day window, all four expire; nothing is held, nothing sent
        result = site.run(RUN + dt.timedelta(days=5))
        assert result.held is None
        assert sorted(o.status for o in result.outcomes) == ["expired"] * 4 and server.messages == []
    finally:
        site.close()


def refused_patrons(site: Site, server, libraries: dict[str, str]) -> None:
    """One patron per library given, each with a first reminder today, whose address the server refuses."""
    for patron, library in libraries.items():
        site.patron(patron, f"{patron.lower()}@etu.example")
        site.loan(f"L{patron}", patron, "2026-11-16", library)
        server.refuse[f"{patron.lower()}@etu.example"] = "550 5.1.1 User unknown"


def letter_key(patron: str, library: str) -> str:
    return notice_key(RUN, "first_reminder", "letter", patron, library, (f"L{patron}",))


def test_fallback_letters_count_against_the_limit_and_wait_for_confirm(tmp_path, server):
    site = email_site(tmp_path, server, "flood_guard: {max_per_run: 5, per_second: null}\n")
    try:
        # four emails refused for good: three become letters to DROIT's mailbox (through the server),
        # one a letter for SCI's printer (the outbox: never counted)
        refused_patrons(site, server, {"P1": "DROIT", "P2": "DROIT", "P3": "DROIT", "P4": "SCI"})
        result = site.run()
        statuses = {o.key: o.status for o in result.outcomes}
        emails = [notice_key(RUN, "first_reminder", "email", p, None, (f"L{p}",)) for p in ("P1", "P2", "P3", "P4")]
        assert [statuses[k] for k in emails] == ["failed"] * 4
        mailbox = [letter_key(p, "DROIT") for p in ("P1", "P2", "P3")]
        assert statuses[letter_key("P4", "SCI")] == "sent"                 # the outbox does not count
        # 4 emails tried + 1 mailbox letter = 5 messages left the machine; the other 2 letters wait
        assert sorted(statuses[k] for k in mailbox) == ["held", "held", "sent"]
        assert len(server.messages) == 1 and server.messages[0].rcpt_tos == ["droit-contentieux@univ.example"]
        assert "2 letter(s) replacing refused emails" in result.held
        assert "flood_guard.max_per_run (5" in result.held and "rappel run --confirm" in result.held
        held = [k for k in mailbox if statuses[k] == "held"]
        ledger = site.ledger()
        for key in held:                                   # not lost, not sent: pending, ready to go
            row = site.notice(key)
            assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, None)
        assert sorted(ledger[(f"L{p}", "first_reminder")][0] for p in ("P1", "P2", "P3")) == \
            ["pending", "pending", "sent"]
        assert {ledger[(f"L{p}", "first_reminder")][1] for p in ("P1", "P2", "P3")} == set(mailbox)

        confirmed = site.run(confirm=True)                  # --confirm lets them go, nothing else repeats
        assert sorted((o.key, o.status) for o in confirmed.outcomes) == sorted((k, "sent") for k in held)
        assert confirmed.held is None
        assert [m.rcpt_tos for m in server.messages] == [["droit-contentieux@univ.example"]] * 3
        assert {site.notices()[k] for k in mailbox} == {"sent"}
        assert {v[0] for v in site.ledger().values()} == {"sent"}
    finally:
        site.close()


def test_a_confirmed_run_sends_the_fallback_letters_at_once(tmp_path, server):
    site = email_site(tmp_path, server, "flood_guard: {max_per_run: 1, per_second: null}\n")
    try:
        refused_patrons(site, server, {"P1": "DROIT"})
        result = site.run(confirm=True)
        assert [(o.key, o.status) for o in result.outcomes] == [
            (notice_key(RUN, "first_reminder", "email", "P1", None, ("LP1",)), "failed"),
            (letter_key("P1", "DROIT"), "sent")]
        assert len(server.messages) == 1
    finally:
        site.close()


def test_the_command_line_says_when_fallback_letters_are_held(tmp_path, server, state_dir):
    from typer.testing import CliRunner

    import cli

    site = email_site(tmp_path, server, "flood_guard: {max_per_run: 1, per_second: null}\n")
    try:
        refused_patrons(site, server, {"P1": "DROIT"})
        runner = CliRunner()
        args = ["run", "--on", RUN.isoformat(), "--rules", str(site.rules), "--db", site.store.url,
                "--outbox", str(site.outbox)]
        held = runner.invoke(cli.app, args)
        assert held.exit_code == 1, held.stderr
        assert "flood guard: 1 letter(s) replacing refused emails" in held.stderr and "--confirm" in held.stderr
        assert server.messages == []
        assert site.notice(letter_key("P1", "DROIT")).status == "pending"
        sent = runner.invoke(cli.app, args + ["--confirm"])
        assert sent.exit_code == 0, sent.stderr
        assert "delivered 1 of 1 pending message(s)" in sent.stderr
        assert [m.rcpt_tos for m in server.messages] == [["droit-contentieux@univ.example"]]
    finally:
        site.close()


def test_the_pacer_spaces_messages():
    clock = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        clock[0] += seconds

    pacer = delivery.Pacer(4, clock=lambda: clock[0], sleep=sleep)
    for _ in range(4):
        pacer.wait()
    assert slept == [0.25, 0.25, 0.25]
    clock[0] += 10          # a pause longer than the interval: no wait
    pacer.wait()
    assert slept == [0.25, 0.25, 0.25]
    unlimited = delivery.Pacer(None, clock=lambda: clock[0], sleep=sleep)
    unlimited.wait()
    unlimited.wait()
    assert len(slept) == 3


def test_the_router_paces_servers_not_the_outbox(tmp_path):
    waits = []

    class Counting(delivery.Pacer):
        def wait(self):
            waits.append(1)

    memory = MemoryChannel()
    router = delivery.Router({"email": memory}, OutboxChannel(tmp_path), Counting(None))
    router.send_email(notice("email", "p@x.example"), None)
    router.send_letter(notice("letter", "printer:bu-sciences", "SCI"), b"%PDF", "a.pdf")
    assert len(waits) == 1 and memory.attempts == 1


# -- retries --------------------------------------------------------------------------------------

@pytest.mark.parametrize("attempts_before, minutes", [(0, 15), (1, 30), (2, 60), (3, 120), (4, 240), (5, 360),
                                                      (9, 360), (400, 360)])
def test_the_wait_doubles_up_to_the_maximum(attempts_before, minutes):
    policy = parse_policy(POLICY.format(extra=""))
    assert retry_wait(policy, attempts_before) == dt.timedelta(minutes=minutes)


# -- a crash between the commit and the sending -----------------------------------------------------

def test_a_crash_after_the_commit_loses_nothing_the_next_run_sends(tmp_path, server):
    site = email_site(tmp_path, server, "flood_guard: {max_per_run: 100, per_second: null}\n")
    try:
        patrons_with_first_reminders(site, 3)
        plan = site.decide_only(RUN)            # decisions committed, then the process died
        assert len(plan.notices) == 3 and server.messages == []
        result = site.run(RUN + dt.timedelta(days=1))
        assert result.plan.notices == []       # nothing decided twice
        assert sorted(o.status for o in result.outcomes) == ["sent"] * 3
        assert sorted(m.rcpt_tos[0] for m in server.messages) == ["p1@etu.example", "p2@etu.example",
                                                                  "p3@etu.example"]
        assert set(site.notices().values()) == {"sent"}
    finally:
        site.close()


class _DieAfter(BaseChannel):
    """Delivers through the real channel, then the process dies before rappel records it."""

    def __init__(self, inner, deliveries: int):
        self.inner, self.left, self.name = inner, deliveries, "dying"

    def send_email(self, notice, message):
        delivered = self.inner.send_email(notice, message)
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt("killed after the server accepted the message")
        return delivered

    def send_letter(self, notice, pdf, filename):
        return self.inner.send_letter(notice, pdf, filename)


def test_a_crash_while_sending_repeats_only_the_message_in_flight(tmp_path, server):
    site = email_site(tmp_path, server, "flood_guard: {max_per_run: 100, per_second: null}\n")
    try:
        patrons_with_first_reminders(site, 3)
        router = site.router()
        with pytest.raises(KeyboardInterrupt):
            site.run(channel=_DieAfter(router, 2))
        router.close()
        assert sorted(site.notices().values()) == ["pending", "pending", "sent"]
        site.run(RUN + dt.timedelta(days=1))
        assert set(site.notices().values()) == {"sent"}
        recipients = sorted(m.rcpt_tos[0] for m in server.messages)
        assert recipients == ["p1@etu.example", "p2@etu.example", "p2@etu.example", "p3@etu.example"]
        ids = [m.message["Message-ID"] for m in server.messages if m.rcpt_tos == ["p2@etu.example"]]
        assert ids[0] == ids[1]    # the repeat has the same Message-ID: mail clients show one message
    finally:
        site.close()


def test_the_command_line_run_uses_the_policy_s_delivery(tmp_path, server, state_dir):
    from typer.testing import CliRunner

    import cli

    site = Site(tmp_path, '\ndelivery:\n  email: {url: "mailto://127.0.0.1:${SMTP_PORT}"}\n'
                          "flood_guard: {max_per_run: 1, per_second: null}\n")
    try:
        patrons_with_first_reminders(site, 2)
        runner = CliRunner()
        args = ["run", "--on", RUN.isoformat(), "--rules", str(site.rules), "--db", site.store.url,
                "--outbox", str(site.outbox)]
        missing = runner.invoke(cli.app, args, env={"SMTP_PORT": None})
        assert missing.exit_code == 2 and "environment variable SMTP_PORT is not set" in missing.stderr
        held = runner.invoke(cli.app, args, env={"SMTP_PORT": str(server.port)})
        assert held.exit_code == 1 and "flood guard: 2 messages would go out" in held.stderr
        assert server.messages == []
        sent = runner.invoke(cli.app, args + ["--confirm"], env={"SMTP_PORT": str(server.port)})
        assert sent.exit_code == 0, sent.stderr
        assert "delivered 2 of 2 pending message(s)" in sent.stderr and len(server.messages) == 2
        lint = runner.invoke(cli.app, ["lint", "--rules", str(site.rules), "--check-delivery"],
                             env={"SMTP_PORT": str(server.port)})
        assert f"ok   delivery.email: 127.0.0.1:{server.port} (insecure): 220 " in lint.stdout, lint.stdout
        assert len(server.messages) == 2     # the check sent nothing
        server.stop()
        down = runner.invoke(cli.app, ["lint", "--rules", str(site.rules), "--check-delivery"],
                             env={"SMTP_PORT": str(server.port)})
        assert down.exit_code == 1 and "FAIL delivery.email" in down.stdout and "Connection refused" in down.stdout
    finally:
        site.close()


# -- what a delivery records: when the message is dated, where it went ----------------------------

def test_messages_are_dated_when_sent_and_outbox_deliveries_are_recorded_as_the_outbox(tmp_path, server):
    """Emails through SMTP, the DROIT library's letters to its mailbox through the same server, and no
    printer configured: the SCI letter goes to the outbox and is recorded there, not at its printer.
    The pass runs at 10:15:30 UTC on Monday 23 November 2026: 11:15:30 in Paris."""
    from pypdf import PdfReader

    sent_at = dt.datetime(2026, 11, 23, 10, 15, 30, tzinfo=dt.timezone.utc)
    site = email_site(tmp_path, server)
    try:
        site.patron("P1", "p1@etu.example")
        site.patron("P2")                                        # no email: letters
        site.loan("L1", "P1", "2026-11-16")                      # first reminder, email
        site.loan("L2", "P2", "2026-11-16", library="SCI")       # letter to bu-sciences: not configured
        site.loan("L3", "P2", "2026-11-16", library="DROIT")     # letter to the DROIT mailbox
        router = delivery.build(site.policy, site.templates, env={}, outbox=site.outbox, rules_dir=site.rules,
                                clock=lambda: sent_at)
        try:
            result = site.run(now=sent_at, channel=router)
        finally:
            router.close()
        assert sorted(o.status for o in result.outcomes) == ["sent"] * 3
        by_to = {m.rcpt_tos[0]: m.message for m in server.messages}
        assert set(by_to) == {"p1@etu.example", "droit-contentieux@univ.example"}
        assert by_to["p1@etu.example"]["Date"] == "Mon, 23 Nov 2026 11:15:30 +0100"
        assert by_to["droit-contentieux@univ.example"]["Date"] == "Mon, 23 Nov 2026 11:15:30 +0100"

        (email_key,) = [n.key for n in result.plan.notices if n.channel == "email"]
        (sci_key,) = [n.key for n in result.plan.notices if n.library == "SCI"]
        (droit_key,) = [n.key for n in result.plan.notices if n.library == "DROIT"]
        assert site.notice(email_key).destination == "p1@etu.example"
        assert site.notice(droit_key).destination == "mailbox:droit-contentieux@univ.example"
        sci = site.notice(sci_key)
        assert sci.destination == f"outbox:{site.outbox}/"       # not "printer:bu-sciences"
        (pdf,) = site.outbox_files()
        assert sci.reference == str(pdf)
        created = PdfReader(pdf).metadata["/CreationDate"]
        assert created.startswith("D:20261123111530+01")          # the letter is dated like the emails
    finally:
        site.close()


# -- rendering in worker processes ------------------------------------------------------------------

@pytest.mark.parametrize("workers_from", [1, 10_000])
def test_a_pass_rendered_in_worker_processes_delivers_what_the_thread_delivers(tmp_path, monkeypatch, workers_from):
    """From WORKERS_FROM due notices the batches are read and rendered in forked processes, each a part
    of the batch: the same outcomes, files and kept messages as the helper thread gives, in the order
    of the batch; a notice cancelled by staff after it was rendered is still not sent."""
    from service import dispatch as dispatch_
    from service import render_ahead
    from adapters.store import notices as queue

    monkeypatch.setattr(render_ahead, "WORKERS", 2)
    monkeypatch.setattr(render_ahead, "WORKERS_FROM", workers_from)
    monkeypatch.setattr(dispatch_, "BATCH", 4)
    site = Site(tmp_path)
    try:
        for n in range(1, 12):          # emails, and letters for those without an address
            site.patron(f"P{n}", f"p{n}@etu.example" if n % 3 else "", first="Zoé")
            site.loan(f"L{n}", f"P{n}", "2026-11-16", library="SCI" if n % 2 else "DROIT")
        plan = site.decide_only()
        keys = sorted(n.key for n in plan.notices)
        original = dispatch_._deliver

        def cancel_the_fifth(store, policy, channel, now, item, *rest):
            if item.pending.key == keys[4]:
                queue.cancel(store, keys[4], actor="marie", why="returned at the desk", at=now)
            return original(store, policy, channel, now, item, *rest)

        monkeypatch.setattr(dispatch_, "_deliver", cancel_the_fifth)
        router = site.router()
        try:
            outcomes = dispatch_.dispatch(site.store, site.policy, site.templates, router, RUN)
        finally:
            router.close()
        assert [o.key for o in outcomes] == keys
        assert {o.key: o.status for o in outcomes} == {k: "cancelled" if k == keys[4] else "sent" for k in keys}
        files = site.outbox_files()
        assert len(files) == 10 and {f.suffix for f in files} == {".eml", ".pdf"}
        with site.store.engine.connect() as conn:
            kept = conn.execute(select(messages.c.notice_key, messages.c.body)).all()
        by_file = {f.name: f.read_bytes() for f in files}
        assert len(kept) == 10 and all(unpack(body) in by_file.values() for _, body in kept)
    finally:
        site.close()


def test_each_outcome_is_committed_before_the_next_message_is_handed_over(tmp_path):
    """One commit a message (adapters/store/notices.py Later): the outcome of a message goes with the
    next one's ``sending`` mark, so when a message is handed over, every message before it is
    recorded sent (with its attempt), this one is marked sending, and none after it is touched."""
    from adapters.store.schema import attempts, notices
    from service.dispatch import dispatch

    site = Site(tmp_path)
    try:
        for n in range(1, 6):
            site.patron(f"P{n}", f"p{n}@etu.example")
            site.loan(f"L{n}", f"P{n}", "2026-11-16")
        keys = sorted(n.key for n in site.decide_only().notices)
        seen = []

        class Watching(MemoryChannel):
            def send_email(self, notice, message):
                with site.store.engine.connect() as conn:
                    status = dict(conn.execute(select(notices.c.key, notices.c.status)).all())
                    marks = dict(conn.execute(select(attempts.c.notice_key, attempts.c.outcome)).all())
                seen.append((notice.key, status, marks))
                return super().send_email(notice, message)

        outcomes = dispatch(site.store, site.policy, site.templates, Watching(), RUN)
        assert [o.status for o in outcomes] == ["sent"] * 5
        assert [key for key, _, _ in seen] == keys
        for n, (key, status, marks) in enumerate(seen):
            assert [status[k] for k in keys] == ["sent"] * n + ["pending"] * (5 - n)
            assert marks == {**{k: "sent" for k in keys[:n]}, key: "sending"}
        with site.store.engine.connect() as conn:              # the last one, at the end of the pass
            assert set(conn.scalars(select(notices.c.status))) == {"sent"}
            assert sorted(conn.execute(select(attempts.c.notice_key, attempts.c.outcome)).all()) == \
                [(k, "sent") for k in keys]
    finally:
        site.close()
