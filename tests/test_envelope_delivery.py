"""One envelope a day and templates that tell the truth, end to end: the shipped templates, a policy
like the shipped one, a real SMTP server (aiosmtpd on 127.0.0.1) and the letters' real PDF (pypdf).

- a patron with loans at three stages in one library on one day gets one letter listing each loan
  at its stage (through the library's mailbox: the PDF attached to the email the server receives);
- a patron with an email gets one email, loans listed stage by stage under their labels;
- a combined letter whose loan was returned before it went out goes without it, or not at all;
- after a restart, a second reminder says "despite a first reminder" only when one was sent
  (fr, en, es).
"""
from __future__ import annotations

import datetime as dt
import io

import pypdf
import pytest

from engine.decide import notice_key
from service import rules as rules_
from service import notices as desk

try:
    from tests.delivery_site import RUN, Site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import RUN, Site

EMAIL = '\ndelivery:\n  email: {{url: "{url}"}}\n'
LABELS = """
labels:
  fr: {stages: {courtesy: "Bientôt à rendre", first_reminder: "Premier rappel", second_reminder: "Second rappel",
                letter: "Dernier rappel"}}
  en: {stages: {courtesy: "Due soon", first_reminder: "First reminder", second_reminder: "Second reminder",
                letter: "Final reminder"}, libraries: {DROIT: "Law Library"}}
  es: {stages: {courtesy: "Próximo vencimiento", first_reminder: "Primer aviso", second_reminder: "Segundo aviso",
                letter: "Último aviso"}, libraries: {DROIT: "Biblioteca de Derecho"}}
"""
CONTACT = '    contact: {phone: "05 56 00 00 01", hours_url: "https://bu.univ.example/droit"}\n'
ZOE = "zoe.lefevre@etu.example"
# due dates whose stage triggers on RUN (2026-11-23): courtesy D-3, first D+7, second D+21, letter D+35
COURTESY, FIRST, SECOND, LETTER = "2026-11-26", "2026-11-16", "2026-11-02", "2026-10-19"


_OPENED: list[Site] = []


@pytest.fixture(autouse=True)
def _close_sites():
    """Every site a test opens is closed after it (nothing is left open: an unclosed database fails)."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def site_for(tmp_path, server, extra: str = "") -> Site:
    site = Site(tmp_path, extra=EMAIL.format(url=server.url) + LABELS + extra)
    _OPENED.append(site)
    policy = site.rules / "reminders.yaml"
    text = policy.read_text(encoding="utf-8").replace(
        "    letters: {mailbox: droit-contentieux@univ.example}\n",
        "    letters: {mailbox: droit-contentieux@univ.example}\n" + CONTACT)
    policy.write_text(text, encoding="utf-8")
    site.policy, site.templates = rules_.load_checked(site.rules)
    return site


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def three_stages_in_droit(site: Site) -> None:
    site.patron("P1", "", first="Zoé", last="Lefèvre")           # no email: every reminder is a letter
    site.loan("L1", "P1", FIRST, "DROIT", "Précis de droit civil")
    site.loan("L2", "P1", SECOND, "DROIT", "Code pénal annoté")
    site.loan("L3", "P1", LETTER, "DROIT", "Traité des obligations")


def test_three_stages_in_one_library_on_one_day_are_one_letter(tmp_path, smtp_server):
    site = site_for(tmp_path, smtp_server)
    three_stages_in_droit(site)
    result = site.run()
    key = notice_key(RUN, "letter", "letter", "P1", "DROIT", ("L1", "L2", "L3"))
    assert [(o.key, o.status) for o in result.outcomes] == [(key, "sent")]
    [got] = smtp_server.messages                       # one envelope, to the library's mailbox
    assert got.rcpt_tos == ["droit-contentieux@univ.example"]
    body = got.message.get_body(("plain",)).get_content()
    assert "Bibliothèque : Bibliothèque de droit" in body
    assert "Étape : Premier rappel, Second rappel, Dernier rappel, du 23 novembre 2026" in body
    [attachment] = list(got.message.iter_attachments())
    text = pdf_text(attachment.get_content())
    lines = text.splitlines()
    # the table: each loan on its row with its stage (the stage column of a combined letter)
    assert "Étape" in text and "Jours de retard" in text
    for title, stage in (("Précis de droit civil", "Premier rappel"), ("Code pénal annoté", "Second rappel"),
                         ("Traité des obligations", "Dernier rappel")):
        [row] = [line for line in lines if title in line]
        assert stage in row, (title, row)
    assert "Voici où en sont les documents que vous avez empruntés" in text
    assert "(05 56 00 00 01)" in text and "https://bu.univ.example/droit" in text
    # one ledger row per loan per stage, all sent by the one letter
    assert site.ledger() == {("L1", "first_reminder"): ("sent", key, "due on 2026-11-23, letter"),
                             ("L2", "second_reminder"): ("sent", key, "due on 2026-11-23, letter"),
                             ("L3", "letter"): ("sent", key, "due on 2026-11-23, letter")}
    # the desk sees each loan at its stage, and the message kept is the one sent
    detail = desk.show(site.store, key)
    assert [(e["loan_id"], e["stage"]) for e in detail.notice.ledger] == [
        ("L1", "first_reminder"), ("L2", "second_reminder"), ("L3", "letter")]
    assert pdf_text(detail.data) == text
    # the next run the same day sends nothing more
    assert site.run().outcomes == [] and len(smtp_server.messages) == 1


def test_three_stages_by_email_are_one_email_listed_stage_by_stage(tmp_path, smtp_server):
    site = site_for(tmp_path, smtp_server)
    site.patron("P1", ZOE, first="Zoé", last="Lefèvre")
    site.loan("L5", "P1", COURTESY, "SCI", "Chimie organique")
    site.loan("L1", "P1", FIRST, "SCI", "Précis de droit civil")
    site.loan("L2", "P1", SECOND, "DROIT", "Code pénal annoté")
    site.run()
    [got] = smtp_server.messages
    assert got.rcpt_tos == [ZOE]
    assert got.message["Subject"] == "Second rappel : documents en retard"     # its most advanced stage
    for part in (got.message.get_body(("plain",)).get_content(), got.message.get_body(("html",)).get_content()):
        at = [part.index(text) for text in ("Bientôt à rendre", "Chimie organique", "Premier rappel",
                                            "Précis de droit civil", "Second rappel", "Code pénal annoté")]
        assert at == sorted(at), part
        assert "Malgré un premier rappel" not in part
    key = notice_key(RUN, "second_reminder", "email", "P1", None, ("L1", "L2", "L5"))
    assert {stage: status for (_, stage), (status, k, _) in site.ledger().items() if k == key} == {
        "courtesy": "sent", "first_reminder": "sent", "second_reminder": "sent"}


@pytest.mark.parametrize("returned, sent_titles, status", [
    (("L3",), ["Précis de droit civil", "Code pénal annoté"], "sent"),     # goes without L3
    (("L1", "L2", "L3"), [], "cancelled"),                                 # nothing left: not sent at all
])
def test_a_combined_letter_whose_loans_were_returned_before_it_went(tmp_path, smtp_server, returned, sent_titles,
                                                                    status):
    site = site_for(tmp_path, smtp_server)
    three_stages_in_droit(site)
    [letter] = site.decide_only().notices                  # decided; the run crashed before delivery
    with site.store.engine.begin() as conn:                # returned in the library system meanwhile
        from adapters.store.schema import loans
        conn.execute(loans.update().where(loans.c.loan_id.in_(returned)).values(returned_on=RUN))
    site.run()
    assert site.notices() == {letter.key: status}
    ledger = site.ledger()
    for loan_id, stage in (("L1", "first_reminder"), ("L2", "second_reminder"), ("L3", "letter")):
        assert ledger[loan_id, stage][0] == ("cancelled" if loan_id in returned else "sent")
    if not sent_titles:
        assert smtp_server.messages == []
        return
    [got] = smtp_server.messages
    text = pdf_text(next(got.message.iter_attachments()).get_content())
    assert all(title in text for title in sent_titles) and "Traité des obligations" not in text
    # what is left is filed under the most advanced stage left: the second reminder's wording
    assert "Étape : Premier rappel, Second rappel, du" in got.message.get_body(("plain",)).get_content()


# -- a restarted service: the second reminder with and without a first one actually sent ----------

WORDING = {
    "fr": ("Malgré un premier rappel", "Sauf erreur de notre part, les documents ci-dessous n'ont toujours pas"),
    "en": ("Despite a first reminder", "According to our records, the items below have still not been returned"),
    "es": ("A pesar de un primer aviso", "Según nuestros registros, los ejemplares siguientes todavía no se han"),
}


@pytest.mark.parametrize("language, first_sent", [(lang, sent) for lang in WORDING for sent in (True, False)])
def test_a_second_reminder_says_despite_a_first_reminder_only_when_one_was_sent(tmp_path, smtp_server, language,
                                                                              first_sent):
    # due 2026-11-02: first reminder 2026-11-09, second 2026-11-23. Either the service ran on the 9th,
    # or it was restarted on 2026-11-20 (restart: resumed_on) and the first reminder was never sent
    site = site_for(tmp_path, smtp_server, "" if first_sent else "restart: {resumed_on: 2026-11-20}\n")
    site.patron("P1", ZOE, first="Zoé", last="Lefèvre", language=language)
    site.loan("L2", "P1", SECOND, "SCI", "Code pénal annoté")
    if first_sent:
        site.run(dt.date(2026, 11, 9))
    assert len(smtp_server.messages) == (1 if first_sent else 0)
    site.run(RUN)
    second = smtp_server.messages[-1].message
    assert second["Content-Language"] == language
    said, neutral = WORDING[language]
    for part in (second.get_body(("plain",)).get_content(), second.get_body(("html",)).get_content()):
        assert (said in part) is first_sent and (neutral in part) is not first_sent, part
