"""`rappel preview`: a stage's messages rendered as a run sends them, recording nothing.

The installation (tests/delivery_site.py): emails through a real SMTP server (aiosmtpd), the DROIT
library's letters to its mailbox through the same server, no printer configured (the SCI letters
go to the outbox). Run date Monday 2026-11-23, first reminders (due date + 7) for loans due
2026-11-16:
    P1 (email, French)    L1 (SCI) + L2 (DROIT), and L5 due 2026-10-01 in the recap   → one email
    P2 (no email)         L3 (SCI) → a letter to the outbox; L4 (DROIT) → a letter to the mailbox
    P3 (email, Spanish)   L6 (SCI)                                                      → an email in Spanish
    P4 (a contact)        L7 (SCI)                                                      → nothing
"""
from __future__ import annotations

import email
import email.policy
import hashlib
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select
from typer.testing import CliRunner

import cli
from conftest import RULES
from adapters.store.schema import patrons

try:
    from tests.delivery_site import RUN, Site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import RUN, Site

DAY = RUN.isoformat()


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAPPEL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RAPPEL_INSTALLATION_ID", raising=False)
    return tmp_path / "state"


@pytest.fixture
def site(tmp_path, smtp_server, state_dir):
    s = Site(tmp_path, f'\ndelivery:\n  email: {{url: "{smtp_server.url}"}}\n')
    s.patron("P1", "p1@etu.example", first="Zoé", last="Lefèvre")
    s.patron("P2")                                            # no email: letters
    s.patron("P3", "p3@etu.example", first="Lucía", last="García", language="es")
    s.patron("P4", "p4@librairie.example")
    with s.store.engine.begin() as conn:
        conn.execute(patrons.update().where(patrons.c.patron_id == "P4").values(record_type="contact"))
    s.loan("L1", "P1", "2026-11-16", "SCI", "Chimie organique")
    s.loan("L2", "P1", "2026-11-16", "DROIT", "Droit des obligations")
    s.loan("L5", "P1", "2026-10-01", "SCI", "Œuvres complètes")
    s.loan("L3", "P2", "2026-11-16", "SCI", "Physique quantique")
    s.loan("L4", "P2", "2026-11-16", "DROIT", "Code civil")
    s.loan("L6", "P3", "2026-11-16", "SCI", "Cien años de soledad")
    s.loan("L7", "P4", "2026-11-16", "SCI", "Catalogue")
    yield s
    s.close()


def rappel(site: Site, *args):
    return CliRunner().invoke(cli.app, [*map(str, args), "--rules", str(site.rules)])


def preview(site: Site, out: Path, *args):
    return rappel(site, "preview", "--out", out, "--db", site.store.url, *args)


def database(site: Site) -> tuple[str, dict]:
    """The database file's digest and every row of every table."""
    digest = hashlib.sha256(Path(site.store.url.removeprefix("sqlite:///")).read_bytes()).hexdigest()
    meta = MetaData()
    meta.reflect(site.store.engine)
    with site.store.engine.connect() as conn:
        rows = {name: sorted(map(tuple, conn.execute(select(table)))) for name, table in meta.tables.items()}
    return digest, rows


def undated(raw: bytes) -> bytes:
    """An email's bytes without its Date header (the time it was made)."""
    out, count = re.subn(rb"^Date: [^\r\n]*\r\n", b"", raw, count=1, flags=re.M)
    assert count == 1
    return out


def undated_pdf(pdf: bytes) -> bytes:
    """A PDF's bytes without its creation date and the file identifier derived from it."""
    pdf, dates = re.subn(rb"/CreationDate \(D:[^)]*\)", b"/CreationDate ()", pdf)
    pdf, ids = re.subn(rb"/ID \[<[0-9A-F]+><[0-9A-F]+>\]", b"/ID []", pdf)
    assert dates == 1 and ids == 1
    return pdf


def only(folder: Path, suffix: str, part: str) -> Path:
    (path,) = [p for p in folder.iterdir() if p.name.endswith(suffix) and part in p.name]
    return path


def test_a_preview_is_what_the_run_sends_and_records_nothing(site, smtp_server, tmp_path):
    out = tmp_path / "preview"
    before = database(site)
    for patron in ("P1", "P2", "P3"):
        result = preview(site, out, "--stage", "first_reminder", "--patron", patron, "--on", DAY)
        assert result.exit_code == 0, result.stderr
    assert database(site) == before                      # nothing recorded: the same bytes, the same rows
    assert smtp_server.messages == [] and not site.outbox.exists()
    assert sorted(re.search(r"_(P\d_[A-Z-]+)_.*?\.(.*)$", p.name).groups() for p in out.iterdir()) == [
        ("P1_-", "eml"), ("P1_-", "html"), ("P2_DROIT", "mailbox.eml"), ("P2_DROIT", "pdf"), ("P2_SCI", "pdf"),
        ("P3_-", "eml"), ("P3_-", "html")]

    result = rappel(site, "run", "--on", DAY, "--db", site.store.url, "--outbox", site.outbox)
    assert result.exit_code == 0, result.stderr
    sent = {m.rcpt_tos[0]: m.raw for m in smtp_server.messages}
    assert set(sent) == {"p1@etu.example", "p3@etu.example", "droit-contentieux@univ.example"}

    for address, patron in (("p1@etu.example", "P1"), ("p3@etu.example", "P3")):
        shown = only(out, ".eml", f"_{patron}_").read_bytes()
        assert undated(shown) == undated(sent[address].replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"))
    p3 = email.message_from_bytes(only(out, ".eml", "_P3_").read_bytes(), policy=email.policy.default)
    assert p3["Subject"] == "Primer aviso: ejemplares con retraso" and p3["Content-Language"] == "es"
    html = only(out, ".html", "_P1_").read_text(encoding="utf-8")
    assert "Chimie organique" in html and "Œuvres complètes" in html and html.lstrip().startswith("<")

    (letter,) = [p for p in site.outbox_files() if p.suffix == ".pdf"]       # SCI: no printer, the outbox
    assert undated_pdf(only(out, ".pdf", "_P2_SCI_").read_bytes()) == undated_pdf(letter.read_bytes())

    mailbox = email.message_from_bytes(sent["droit-contentieux@univ.example"], policy=email.policy.default)
    shown = email.message_from_bytes(only(out, ".mailbox.eml", "_P2_DROIT_").read_bytes(),
                                     policy=email.policy.default)
    assert [(k, v) for k, v in shown.items() if k != "Date"] == [(k, v) for k, v in mailbox.items() if k != "Date"]
    assert shown.get_body(("plain",)).get_content() == mailbox.get_body(("plain",)).get_content()
    (attached,) = [p.get_content() for p in mailbox.iter_attachments()]
    assert undated_pdf(only(out, ".pdf", "_P2_DROIT_").read_bytes()) == undated_pdf(attached)

    again = tmp_path / "again"                          # the ledger aside: after the run, the same message
    assert preview(site, again, "--stage", "first_reminder", "--patron", "P1", "--on", DAY).exit_code == 0
    assert undated(only(again, ".eml", "_P1_").read_bytes()) == undated(only(out, ".eml", "_P1_").read_bytes())


def test_a_preview_is_dated_when_it_is_made_in_the_policy_s_time_zone(site, tmp_path):
    import datetime as dt
    import zoneinfo

    result = preview(site, tmp_path / "p", "--stage", "first_reminder", "--patron", "P1", "--on", DAY)
    assert result.exit_code == 0, result.stderr
    message = email.message_from_bytes(only(tmp_path / "p", ".eml", "_P1_").read_bytes(), policy=email.policy.default)
    dated = message["Date"].datetime
    now = dt.datetime.now(zoneinfo.ZoneInfo("Europe/Paris"))
    assert abs((now - dated).total_seconds()) < 120                    # now, not midnight of the run day
    assert dated.utcoffset() == now.utcoffset()


def test_another_language_and_the_nearest_date_the_stage_applies(site, tmp_path):
    """P1's courtesy (due date - 3) is not due on 2026-11-23 for any loan; the nearest trigger is
    2026-09-28 (L5), then 2026-11-13 (L1, L2): 2026-11-13 is the nearest to the 23rd."""
    result = preview(site, tmp_path / "p", "--stage", "courtesy", "--patron", "P1", "--on", DAY, "--lang", "en")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ("note: courtesy is due for none of patron P1's loans on 2026-11-23; shown for "
                             "2026-11-13, the nearest date it is\n")
    assert result.stdout.splitlines()[0] == "2026-11-13: courtesy by email for P1, loans L1,L2 -> p1@etu.example"
    message = email.message_from_bytes(only(tmp_path / "p", ".eml", "_P1_").read_bytes(), policy=email.policy.default)
    assert message["Content-Language"] == "en"
    assert "Chimie organique" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("stage", ["courtesy", "first_reminder", "second_reminder", "letter"])
@pytest.mark.parametrize("language", ["fr", "en", "es"])
def test_the_sample_renders_every_stage_without_a_database(tmp_path, stage, language):
    """The shipped rules: an email stage gives the email and, after the due date, the letter a patron
    without email would get; the letter stage a letter; the database is never opened."""
    rules = Path(__file__).resolve().parent.parent / "rules"
    nowhere = tmp_path / "no.db"
    result = CliRunner().invoke(cli.app, ["preview", "--stage", stage, "--sample", "--lang", language, "--on", DAY,
                                          "--out", str(tmp_path / "p"), "--rules", str(rules),
                                          "--db", f"sqlite:///{nowhere}"])
    assert result.exit_code == 0, result.stderr
    suffixes = sorted(p.name.split(".", 1)[1] for p in (tmp_path / "p").iterdir())
    wanted = {"courtesy": ["eml", "html"], "letter": ["pdf"]}.get(stage, ["eml", "html", "pdf"])
    assert suffixes == wanted
    assert not nowhere.exists()
    for eml in (tmp_path / "p").glob("*.eml"):
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert message["Content-Language"] == language
        assert "Titre d'exemple" in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("args, code, says", [
    (("--stage", "rappel", "--patron", "P1"), 2, "error: --stage: no stage 'rappel' in the policy (its stages: "
                                                 "courtesy, first_reminder, second_reminder, letter)"),
    (("--stage", "courtesy", "--patron", "P9"), 2, "error: --patron: no patron 'P9' in the database"),
    (("--stage", "courtesy"), 2, "error: --patron: give either --patron ID or --sample"),
    (("--stage", "courtesy", "--patron", "P1", "--sample"), 2, "error: --patron: give either --patron ID or --sample"),
    (("--stage", "courtesy", "--patron", "P1", "--lang", "de"), 2,
     "error: --lang: no templates for language 'de' (the policy's languages: fr, en, es)"),
    (("--stage", "first_reminder", "--patron", "P4"), 1,
     "error: patron P4 gets no first_reminder: record type 'contact' does not receive this stage: nothing written "
     "(--sample previews the templates with a made-up patron)"),
    (("--stage", "courtesy", "--patron", "P2"), 1,
     "error: patron P2 gets no courtesy: no email address; a letter before the due date would arrive too late: "
     "nothing written (--sample previews the templates with a made-up patron)"),
])
def test_what_cannot_be_previewed_says_why(site, tmp_path, args, code, says):
    result = preview(site, tmp_path / "p", "--on", DAY, *args)
    assert (result.exit_code, result.stderr.strip()) == (code, says)
    assert not (tmp_path / "p").exists()


def test_a_patron_without_an_open_loan_has_nothing_to_preview(site, tmp_path):
    site.patron("P5", "p5@etu.example")
    result = preview(site, tmp_path / "p", "--stage", "courtesy", "--patron", "P5", "--on", DAY)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: patron P5 has no open loan: nothing written")


def test_a_request_stage_previews_its_sample_on_each_of_its_channels(tmp_path):
    """`rappel preview --stage hold_ready --sample`: the request notice's email (and its SMS when the
    stage offers sms), for a made-up patron with two requests ready that day; a patron's preview of
    a request stage is refused, saying to use --sample."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    policy = rules / "reminders.yaml"
    text = policy.read_text(encoding="utf-8")
    assert text.count("  - {id: hold_ready, when: ready, channel: email}") == 1
    policy.write_text(text.replace("  - {id: hold_ready, when: ready, channel: email}",
                                   "  - {id: hold_ready, when: ready, channel: email, channels: [email, sms]}"),
                      encoding="utf-8")
    out = tmp_path / "p"
    result = CliRunner().invoke(cli.app, ["preview", "--stage", "hold_ready", "--sample", "--on", "2026-12-02",
                                          "--lang", "en", "--out", str(out), "--rules", str(rules)])
    assert result.exit_code == 0, result.output
    assert "2026-12-02: hold_ready by email for P-SAMPLE, requests R-SAMPLE-1,R-SAMPLE-2" in result.stdout
    assert sorted(p.suffix for p in out.iterdir()) == [".eml", ".html", ".txt"]
    eml = email.message_from_bytes(next(out.glob("*.eml")).read_bytes(), policy=email.policy.default)
    text = eml.get_body(("plain",)).get_content()
    assert "Titre d'exemple" in text and "Autre titre" in text
    sms = next(out.glob("*.sms.txt")).read_text(encoding="utf-8")
    assert "2 request(s) ready to collect at" in sms
    refused = CliRunner().invoke(cli.app, ["preview", "--stage", "hold_ready", "--patron", "P1", "--on", "2026-12-02",
                                           "--out", str(tmp_path / "q"), "--rules", str(rules),
                                           "--db", f"sqlite:///{tmp_path / 'r.db'}"])
    assert refused.exit_code == 2 and "--patron: hold_ready is a request stage: preview it with --sample" \
        in refused.stderr, refused.output
