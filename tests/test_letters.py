"""The letters to print (service/letters.py, `rappel letters`): a real run to the outbox keeps the
letters in the database; a day's letters come back per library and as one merged PDF.

The day. Policy: first reminder 7 days after the due date, by email — as a letter for a patron with
no email address. Loans due Monday 2026-11-16: L1 (P1, SCI), L2 (P2, DROIT), L3 (P3, SCI; P3 has an
email address: an email, not a letter). The run of Monday 2026-11-23 at 02:00 in Paris hands over two
letters (P1 at SCI, P2 at DROIT) and one email; the run of 2026-11-24 hands over nothing.
"""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from cli import app
from service import letters as service

try:
    from tests.daemon_cases import at
    from tests.delivery_site import Site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import at
    from delivery_site import Site

PARIS = dt.timezone(dt.timedelta(hours=1))    # November: UTC+1


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("RAPPEL_INSTALLATION_ID", "test-installation")
    s = Site(tmp_path)
    s.patron("P1", first="Zoé", last="Lefèvre")
    s.patron("P2", first="Léo", last="Martin")
    s.patron("P3", "p3@etu.example")
    s.loan("L1", "P1", "2026-11-16", library="SCI")
    s.loan("L2", "P2", "2026-11-16", library="DROIT")
    s.loan("L3", "P3", "2026-11-16", library="SCI")
    s.run(dt.date(2026, 11, 23), now=at("2026-11-23 02:00"))
    yield s
    s.close()


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize("on, library, expected", [
    ("2026-11-23", None, [("DROIT", "P2"), ("SCI", "P1")]),
    ("2026-11-23", "SCI", [("SCI", "P1")]),
    ("2026-11-23", "DROIT", [("DROIT", "P2")]),
    ("2026-11-24", None, []),
    ("2026-11-22", None, []),
])
def test_the_letters_handed_over_on_a_day(site, on, library, expected):
    found = service.letters_to_print(site.store, on=dt.date.fromisoformat(on), library=library, tz=PARIS, pages=True)
    assert [(r.library, r.patron_id) for r in found] == expected
    for ref in found:
        assert (ref.stage, ref.status, ref.pages) == ("first_reminder", "sent", 1)
        assert ref.destination.startswith("outbox:") and ref.filename.endswith(".pdf")
        assert ref.handed_over_at.date() == dt.date.fromisoformat(on)


def test_the_day_is_the_local_day_of_the_handover(site):
    # 02:00 in Paris is 01:00 UTC on the same date; in a zone 2 hours behind UTC it is the day before
    behind = dt.timezone(dt.timedelta(hours=-2))
    assert service.letters_to_print(site.store, on=dt.date(2026, 11, 23), tz=behind) == []
    assert len(service.letters_to_print(site.store, on=dt.date(2026, 11, 22), tz=behind)) == 2


def test_merged_pdf_has_every_letter_in_the_order_given(site):
    found = service.letters_to_print(site.store, on=dt.date(2026, 11, 23), tz=PARIS)
    merged = service.merged_letters_pdf(site.store, [r.key for r in reversed(found)])
    reader = PdfReader(io.BytesIO(merged))
    assert len(reader.pages) == 2
    first, second = (page.extract_text() for page in reader.pages)
    assert "Lefèvre" in first and "Martin" in second          # P1 (SCI) first: the order given


def test_merging_a_notice_without_a_letter_names_it(site):
    from engine.yamlsource import InputError

    found = service.letters_to_print(site.store, on=dt.date(2026, 11, 23), tz=PARIS)
    with pytest.raises(InputError) as caught:
        service.merged_letters_pdf(site.store, [found[0].key, "no-such-notice"])
    assert [p.source for p in caught.value.problems] == ["no-such-notice"]
    with pytest.raises(InputError):
        service.merged_letters_pdf(site.store, [])


def cli(site, *args):
    return CliRunner().invoke(app, ["letters", *map(str, args), "--rules", str(site.rules), "--db", site.store.url])


def test_cli_writes_one_pdf_of_a_librarys_letters(site, tmp_path):
    out = tmp_path / "print" / "sci.pdf"
    result = cli(site, "--on", "2026-11-23", "--library", "SCI", "--out", out)
    assert result.exit_code == 0, result.output
    assert "1 letter(s) of SCI handed over on 2026-11-23, 1 page(s)" in result.stdout
    assert "Lefèvre" in text_of(out.read_bytes()) and "Martin" not in text_of(out.read_bytes())


def test_cli_json_lists_one_object_per_line(site):
    result = cli(site, "--on", "2026-11-23", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["library"], x["patron_id"], x["pages"]) for x in lines] == [("DROIT", "P2", 1), ("SCI", "P1", 1)]


@pytest.mark.parametrize("args, says", [
    (("--on", "2026-13-01"), "is not a date"),
    (("--on", "2026-11-23", "--library", "NOPE"), "'NOPE' is not one of the policy's libraries (SCI, DROIT)"),
])
def test_cli_bad_input_exits_2(site, args, says):
    result = cli(site, *args)
    assert result.exit_code == 2 and says in result.stderr


def test_cli_a_day_without_letters_writes_nothing(site, tmp_path):
    out = tmp_path / "none.pdf"
    result = cli(site, "--on", "2026-11-24", "--out", out)
    assert result.exit_code == 0 and "0 letter(s)" in result.stdout and not out.exists()
