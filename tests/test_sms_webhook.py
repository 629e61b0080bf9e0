"""SMS and webhooks (issue 12, item 2), against a real HTTP server in this process (tests/http_site.py).

Policy under test: the courtesy may go by email or SMS and patrons may opt out of it; the first
reminder by email, SMS or letter; the second reminder by email, SMS or the webhook; the final letter
is mandatory, on paper whatever a patron prefers. The SMS provider is an apprise json:// URL with
{to} where the number goes and its key from the environment; a provider refusing a number (HTTP 400)
sends the notice on the patron's next channel in the same run; a provider that does not answer
keeps the notice pending for its retry, on no other channel.
"""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
import pytest

from adapters.channels import outbox_files

from adapters.store.schema import patrons

try:
    from tests import delivery_site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    import delivery_site

RUN = delivery_site.RUN            # Monday 23 November 2026
ZOE_PHONE = "+33612345678"         # written 06 12 34 56 78 in her French record
LEO_PHONE = "+33698765432"

STAGES = """\
  - {{id: courtesy, offset_days: -3, channel: email, channels: [email, sms]}}
  - {{id: first_reminder, offset_days: 7, channel: email, channels: [email, sms, letter]}}
  - {{id: second_reminder, offset_days: 21, channel: email, channels: [email, sms, webhook]}}
  - {{id: letter, offset_days: 35, channel: letter}}
"""
SHIPPED_STAGES = """\
  - {{id: courtesy, offset_days: -3, channel: email}}
  - {{id: first_reminder, offset_days: 7, channel: email}}
  - {{id: second_reminder, offset_days: 21, channel: email}}
  - {{id: letter, offset_days: 35, channel: letter}}
"""


def settings(http, smtp) -> str:
    return f"""\
preferences: {{optional: [courtesy], mandatory: [letter]}}
delivery:
  email: {{url: "{smtp.url}"}}
  retry: {{first_minutes: 15, max_minutes: 360}}
  channels:
    sms: {{url: "json://{http.base}/sms?:to={{to}}&+X-Api-Key=${{SMS_KEY}}"}}
    webhook: {{url: "json://{http.base}/notices"}}
flood_guard: {{max_per_run: 1000, per_second: null}}
"""


@pytest.fixture
def site(tmp_path, monkeypatch, http_site, smtp_server):
    assert SHIPPED_STAGES in delivery_site.POLICY
    monkeypatch.setattr(delivery_site, "POLICY", delivery_site.POLICY.replace(SHIPPED_STAGES, STAGES))
    s = delivery_site.Site(tmp_path, settings(http_site, smtp_server), env={"SMS_KEY": "k-123"})
    yield s
    s.close()


def patron(site, patron_id: str, email: str, phone: str, channels: str, opt_out: str = "", **more) -> None:
    site.patron(patron_id, email, **more)
    with site.store.engine.begin() as conn:
        conn.execute(patrons.update().where(patrons.c.patron_id == patron_id)
                     .values(phone=phone, channels=channels, opt_out=opt_out))


def sms_sent(http_site) -> list[tuple[str, str, str]]:
    """(path, number, text) of each SMS the gateway accepted."""
    return [(r.path, r.json["to"], r.json["message"]) for r in http_site.received() if r.status_ok and r.path == "/sms"]


# -- preferences: sms then email, no courtesy, the final letter on paper ---------------------------

def test_sms_then_email_without_courtesy_and_a_mandatory_final_letter(site, http_site, smtp_server):
    patron(site, "P1", "zoe.lefevre@etu.example", ZOE_PHONE, "sms email letter", opt_out="courtesy")
    site.loan("L1", "P1", "2026-11-26", title="Chimie organique")      # courtesy due today: opted out
    site.loan("L2", "P1", "2026-11-16", title="Droit des obligations")  # first reminder today: by SMS
    site.loan("L3", "P1", "2026-10-19", title="Histoire du droit")      # final letter today: on paper

    result = site.run(RUN)

    assert [(n.stage, n.channel, n.loan_ids, n.destination) for n in result.plan.notices] == [
        ("first_reminder", "sms", ("L2",), ZOE_PHONE),
        ("letter", "letter", ("L3",), "printer:bu-sciences"),
    ]
    assert ("L1", "courtesy") not in site.ledger()                      # opted out: never due
    [(path, number, text)] = sms_sent(http_site)
    assert (path, number) == ("/sms", ZOE_PHONE)
    assert text == "Service du contentieux : 1 document(s) en retard depuis le 16/11/2026. Merci de les rapporter."
    assert {r.headers.get("X-Api-Key") for r in http_site.received()} == {"k-123"}     # the key from ${SMS_KEY}
    assert smtp_server.messages == []                                   # nothing by email
    assert sorted(o.status for o in result.outcomes) == ["sent", "sent"]
    letters = [p for p in site.outbox_files() if p.suffix == ".pdf"]    # no printer configured: the outbox
    assert len(letters) == 1
    sms_notice = site.notice(result.plan.notices[0].key)
    assert (sms_notice.status, sms_notice.reference) == ("sent", f"sms:{ZOE_PHONE}")


def test_an_opted_out_courtesy_is_recorded_not_sent(site, http_site):
    patron(site, "P1", "zoe.lefevre@etu.example", ZOE_PHONE, "sms email", opt_out="courtesy")
    site.loan("L1", "P1", "2026-11-26")
    result = site.run(RUN)
    assert result.plan.notices == [] and http_site.received() == []
    assert site.ledger().get(("L1", "courtesy")) is None       # the rules engine never made it due


# -- a provider refusing a number, a provider down -----------------------------------------------

def test_a_number_the_provider_refuses_falls_back_to_email_in_the_patron_order(site, http_site, smtp_server):
    patron(site, "P2", "leo.martin@etu.example", LEO_PHONE, "sms email letter")
    site.loan("M1", "P2", "2026-11-16", "SCI", "Physique quantique")
    http_site.refuse[LEO_PHONE] = 400                                   # "invalid destination number"

    result = site.run(RUN)

    [sms] = result.plan.notices
    assert sms.channel == "sms"
    outcomes = {o.key: o for o in result.outcomes}
    assert outcomes[sms.key].status == "failed"
    assert "sms: HTTP 400: refused for this recipient" in outcomes[sms.key].detail
    [email_key] = outcomes[sms.key].replaced_by
    assert email_key.split("/")[2] == "email"                           # the next in her order: email, not letter
    assert outcomes[email_key].status == "sent"
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["leo.martin@etu.example"]
    assert "Physique quantique" in received.message.get_body(("plain",)).get_content()
    row = site.ledger()[("M1", "first_reminder")]
    assert row[0] == "sent" and row[1] == email_key and "sms refused" in row[2] and "sent as email instead" in row[2]
    assert [r.status for r in http_site.received()] == [400]            # one attempt, not retried


def test_a_provider_that_does_not_answer_is_retried_not_fallen_back(site, http_site, smtp_server):
    patron(site, "P2", "leo.martin@etu.example", LEO_PHONE, "sms email")
    site.loan("M1", "P2", "2026-11-16")
    http_site.stop()                                                    # connection refused

    now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=site.policy.tz)
    result = site.run(RUN, now=now)

    [sms] = result.plan.notices
    [outcome] = result.outcomes
    assert (outcome.key, outcome.status) == (sms.key, "pending")
    assert "no answer" in outcome.detail and "next attempt after 2026-11-23 08:15" in outcome.detail
    assert smtp_server.messages == [] and site.notices() == {sms.key: "pending"}

    http_site.start()                                                   # back, on the same port
    again = site.run(RUN, now=now + dt.timedelta(minutes=20))
    assert [(o.key, o.status) for o in again.outcomes] == [(sms.key, "sent")]
    assert [number for _, number, _ in sms_sent(http_site)] == [LEO_PHONE]


def test_a_5xx_is_retried_too(site, http_site, smtp_server):
    patron(site, "P2", "leo.martin@etu.example", LEO_PHONE, "sms email")
    site.loan("M1", "P2", "2026-11-16")
    http_site.status = 503
    [outcome] = site.run(RUN).outcomes
    assert outcome.status == "pending" and "HTTP 503" in outcome.detail and smtp_server.messages == []


# -- the webhook ---------------------------------------------------------------------------------

def test_the_webhook_posts_the_notice_as_json(site, http_site, smtp_server):
    patron(site, "P3", "ines.garcia@etu.example", "", "webhook email", language="es", first="Inés", last="García")
    site.loan("W1", "P3", "2026-11-02", "SCI", "Cien años de soledad")     # second reminder today
    site.loan("W2", "P3", "2026-11-02", "DROIT", "Derecho civil")

    result = site.run(RUN)

    [notice] = result.plan.notices
    assert (notice.channel, notice.recipient) == ("webhook", "P3")
    [posted] = http_site.received()
    assert (posted.method, posted.path, posted.headers["Content-Type"]) == ("POST", "/notices", "application/json")
    body = posted.json
    assert set(body) == {"notice", "date", "stage", "stages", "channel", "patron_id", "library", "language",
                         "loans", "subject", "text"}                  # apprise's own keys removed
    assert {k: body[k] for k in ("notice", "date", "stage", "stages", "channel", "patron_id", "library",
                                 "language")} == {
        "notice": notice.key, "date": "2026-11-23", "stage": "second_reminder", "stages": ["second_reminder"],
        "channel": "webhook", "patron_id": "P3", "library": None, "language": "es"}
    assert body["loans"] == [
        {"loan_id": "W1", "title": "Cien años de soledad", "item_barcode": "B-W1", "library": "SCI",
         "due_date": "2026-11-02", "stage": "second_reminder"},
        {"loan_id": "W2", "title": "Derecho civil", "item_barcode": "B-W2", "library": "DROIT",
         "due_date": "2026-11-02", "stage": "second_reminder"}]
    assert body["subject"] and "Cien años de soledad" in body["text"]    # the Spanish templates, rendered
    assert [o.status for o in result.outcomes] == ["sent"] and smtp_server.messages == []
    assert site.notice(notice.key).destination == f"webhook:json://{http_site.base}/notices"   # where it went


def test_without_a_provider_sms_go_to_the_outbox(tmp_path, monkeypatch):
    """No delivery.channels: an SMS notice is written to the outbox like everything not configured."""
    monkeypatch.setattr(delivery_site, "POLICY", delivery_site.POLICY.replace(SHIPPED_STAGES, STAGES))
    site = delivery_site.Site(tmp_path, "preferences: {optional: [courtesy], mandatory: [letter]}\n")
    try:
        patron(site, "P1", "zoe.lefevre@etu.example", ZOE_PHONE, "sms email")
        site.loan("L2", "P1", "2026-11-16")
        result = site.run(RUN)
        assert [(n.channel, o.status) for n, o in zip(result.plan.notices, result.outcomes)] == [("sms", "sent")]
        [written] = site.outbox_files()
        assert written.parts[-3:-1] == ("sms", "2026-11-23") and written.suffix == ".txt"
        assert written.read_text(encoding="utf-8").startswith("Service du contentieux : 1 document(s) en retard")
        # under retention and erasure like the outbox's emails and letters
        assert outbox_files.expired(site.outbox, dt.date(2026, 11, 23)) == [written]
        [notice] = result.plan.notices
        assert outbox_files.of_patron(site.outbox, [SimpleNamespace(key=notice.key, date=notice.date, library=None,
                                                                    reference="")], "") == [written]
    finally:
        site.close()


def test_a_stored_number_that_is_not_e164_is_not_used_for_sms(site, http_site, smtp_server):
    """A number a pull kept as written (no country to read it in) does not reach the provider."""
    patron(site, "P4", "p4@etu.example", "06 12 34 56 78", "sms email")
    site.loan("N1", "P4", "2026-11-16")
    result = site.run(RUN)
    [notice] = result.plan.notices
    assert notice.channel == "email" and http_site.received() == []
    assert "phone '06 12 34 56 78' is not an E.164 number for sms: email instead" in \
        site.ledger()[("N1", "first_reminder")][2]
