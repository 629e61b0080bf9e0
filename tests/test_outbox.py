"""The outbox channel writes real files; MemoryChannel records. Both keep the channel contract."""
from __future__ import annotations

import datetime as dt
import os
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from adapters.channels import outbox
from adapters.channels.base import Channel, Delivery
from adapters.channels.memory import MemoryChannel
from adapters.channels.outbox import OutboxChannel, safe_name
from adapters.render import NoticeContext, Templates
from engine.decide import Notice, notice_key
from engine.facts import Loan, Patron
from engine.policy import parse_policy

RULES = Path(__file__).resolve().parents[1] / "rules"
RUN = dt.date(2026, 11, 23)
PATRON = Patron("P1", first_name="Zoé", last_name="Lefèvre", email="zoe.lefevre@etu.example",
                address_line1="12 rue des Écoles", postal_code="33000", city="Bordeaux")
LOANS = [Loan("L1", "P1", "SCI", dt.date(2026, 11, 16), "S-0001", "Œuvres complètes — 12 €"),
         Loan("L2", "P1", "DROIT", dt.date(2026, 10, 1), "D-0001", "Précis de droit civil")]


@pytest.fixture(scope="module")
def templates():
    return Templates(RULES, parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8")))


def email_notice(date=RUN, patron_id="P1"):
    key = notice_key(date, "first_reminder", "email", patron_id, None)
    return Notice(key, date, "first_reminder", "email", patron_id, None, ("L1",), PATRON.email, PATRON.email)


def letter_notice(library="SCI", date=RUN):
    key = notice_key(date, "letter", "letter", "P1", library)
    loan = "L1" if library == "SCI" else "L2"
    return Notice(key, date, "letter", "letter", "P1", library, (loan,), "Zoé Lefèvre, Bordeaux", "printer:x")


def render_email(templates, notice):
    return templates.email(NoticeContext.build(templates.policy, notice, PATRON, LOANS, notice.date))


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_both_channels_keep_the_contract(tmp_path):
    assert isinstance(OutboxChannel(tmp_path), Channel)
    assert isinstance(MemoryChannel(), Channel)


def test_email_is_written_as_an_eml_that_parses_back(tmp_path, templates):
    notice = email_notice()
    message = render_email(templates, notice)
    delivery = OutboxChannel(tmp_path).send_email(notice, message)
    assert delivery.ok and not delivery.permanent
    path = Path(delivery.reference)
    assert path.parent == tmp_path / "email" / "2026-11-23" and path.suffix == ".eml"
    assert files(tmp_path) == [path]
    raw = path.read_bytes()
    assert b"\r\n" in raw                                   # policy SMTP: CRLF line ends
    parsed = BytesParser(policy=email_policy.default).parsebytes(raw)
    for header in ("From", "Reply-To", "To", "Subject", "Date", "Message-ID"):
        assert parsed[header] == message[header], header
    assert parsed["Subject"] == "Premier rappel : documents en retard"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    for kind in ("plain", "html"):
        got = parsed.get_body((kind,)).get_content().replace("\r\n", "\n")
        assert got == message.get_body((kind,)).get_content()
        assert "Œuvres complètes — 12 €" in got


def test_letters_land_under_their_library_and_date(tmp_path):
    channel = OutboxChannel(tmp_path)
    sci = channel.send_letter(letter_notice("SCI"), b"%PDF-1.4 sci", "lettre.pdf")
    droit = channel.send_letter(letter_notice("DROIT", date=dt.date(2026, 11, 24)), b"%PDF-1.4 droit", "x.pdf")
    assert sci.ok and droit.ok
    assert Path(sci.reference).parent == tmp_path / "letters" / "SCI" / "2026-11-23"
    assert Path(droit.reference).parent == tmp_path / "letters" / "DROIT" / "2026-11-24"
    assert Path(sci.reference).read_bytes() == b"%PDF-1.4 sci"
    assert files(tmp_path) == sorted([Path(droit.reference), Path(sci.reference)])


def test_resending_a_notice_overwrites_its_file(tmp_path, templates):
    channel = OutboxChannel(tmp_path)
    notice = email_notice()
    first = channel.send_email(notice, render_email(templates, notice))
    second = channel.send_email(notice, render_email(templates, notice))
    assert first.reference == second.reference and len(files(tmp_path)) == 1
    letter = letter_notice()
    channel.send_letter(letter, b"%PDF old", "a.pdf")
    again = channel.send_letter(letter, b"%PDF new", "b.pdf")
    assert len(files(tmp_path / "letters")) == 1 and Path(again.reference).read_bytes() == b"%PDF new"


def test_distinct_notices_get_distinct_files(tmp_path, templates):
    channel = OutboxChannel(tmp_path)
    for patron_id in ("P1", "P/1", "P 1", "p1"):
        notice = email_notice(patron_id=patron_id)
        assert channel.send_email(notice, render_email(templates, notice)).ok
    assert len(files(tmp_path)) == 4
    assert all(p.parent == tmp_path / "email" / "2026-11-23" for p in files(tmp_path))


@pytest.mark.parametrize("key", ["2026-11-23/letter/letter/P1/SCI", "../../etc/passwd", "a/b\\c:d*?", ""])
def test_safe_name_stays_in_its_folder(key):
    name = safe_name(key)
    assert "/" not in name and "\\" not in name and not name.startswith(".") and name


def test_a_crash_while_writing_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    channel = OutboxChannel(tmp_path)
    letter = letter_notice()
    path = Path(channel.send_letter(letter, b"%PDF first", "a.pdf").reference)

    def crash(src, dst):
        raise KeyboardInterrupt("power cut")
    monkeypatch.setattr(outbox.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        channel.send_letter(letter, b"%PDF second", "a.pdf")
    assert path.read_bytes() == b"%PDF first"
    assert files(tmp_path) == [path]


def test_an_unwritable_outbox_is_a_failed_delivery_not_an_exception(tmp_path):
    blocked = tmp_path / "outbox"
    blocked.write_text("a file where the folder should be")
    delivery = OutboxChannel(blocked).send_letter(letter_notice(), b"%PDF", "a.pdf")
    assert not delivery.ok and not delivery.permanent and "cannot write" in delivery.detail


def test_written_files_are_not_world_readable(tmp_path):
    path = Path(OutboxChannel(tmp_path).send_letter(letter_notice(), b"%PDF", "a.pdf").reference)
    assert os.stat(path).st_mode & 0o777 == outbox.FILE_MODE


def test_memory_channel_records_what_it_is_sent(templates):
    channel = MemoryChannel()
    notice = email_notice()
    message = render_email(templates, notice)
    assert channel.send_email(notice, message) == Delivery(True, False, "memory:email/1", "")
    assert channel.send_letter(letter_notice(), b"%PDF", "lettre.pdf").reference == "memory:letter/1"
    assert channel.emails == [(notice, message)]
    assert channel.letters == [(letter_notice(), b"%PDF", "lettre.pdf")]
    assert channel.attempts == 2


def test_memory_channel_fails_when_told():
    refused = Delivery.failed("550 mailbox unavailable", permanent=True)
    channel = MemoryChannel(fail_with=refused)
    assert channel.send_letter(letter_notice(), b"%PDF", "a.pdf") == refused
    assert channel.letters == [] and channel.attempts == 1

    only_droit = MemoryChannel(fail_with=lambda n: refused if n.library == "DROIT" else None)
    assert only_droit.send_letter(letter_notice("DROIT"), b"%PDF", "a.pdf") == refused
    assert only_droit.send_letter(letter_notice("SCI"), b"%PDF", "a.pdf").ok
    assert [n.library for n, _, _ in only_droit.letters] == ["SCI"]


def test_the_outbox_is_local_and_checks_its_folder(tmp_path):
    channel = OutboxChannel(tmp_path / "not-yet" / "outbox")
    assert channel.local is True and MemoryChannel().local is False   # the flood guard counts only what leaves
    [check] = channel.checks()
    assert check.ok and check.detail == "writable"
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    [check] = OutboxChannel(blocked / "outbox").checks()
    assert not check.ok and "not a writable folder" in check.detail
