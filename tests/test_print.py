"""Letters printed through a real CUPS daemon with a PDF printer (cups-pdf).

The tests start their own cupsd (tests/cups_site.py), listening only on a socket in a temporary
folder, with one cups-pdf queue whose output folder is another temporary folder; nothing of the
machine's own CUPS is used.
cups-pdf reads a queue's settings from /etc/cups/cups-pdf-<queue>.conf (the one thing written
outside the temporary folder, removed afterwards) and its backend runs only as root. The queue
renders through pdftocairo so the printed PDF keeps its text, which the test reads back.

Where cupsd, cups-pdf or root is missing the CUPS tests skip and say which; .ci/run installs
cups and printer-driver-cups-pdf from Debian's packages. The tests with a stand-in lp run anywhere.
"""
from __future__ import annotations

import datetime as dt
import io
import os
import shlex
import shutil
import textwrap
import time
from pathlib import Path

import pypdf
import pytest

from adapters.channels.printer import CupsPrint, PrintChannel, job_id, printer_enabled
from engine.decide import Notice, notice_key

try:
    from tests.delivery_site import RUN, Site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import RUN, Site

try:
    from tests.cups_site import cups, needs_cups  # noqa: F401 - cups is a fixture
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from cups_site import cups, needs_cups  # noqa: F401


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(path.read_bytes())).pages)


def letter(printer: str, key: str = "k") -> Notice:
    return Notice(key, RUN, "letter", "letter", "P1", "SCI", ("L1",), "x", f"printer:{printer}")


SPANISH = {"LANG": "es_ES.UTF-8", "LC_ALL": "es_ES.UTF-8", "LC_MESSAGES": "es_ES.UTF-8", "LANGUAGE": "es"}


@pytest.fixture
def spanish(monkeypatch):
    """rappel's own environment in Spanish, as on a Spanish-speaking site. CUPS picks its language
    from these variables even where glibc has no es_ES locale installed (it has its own catalogues),
    so lp and lpstat would answer in Spanish; a marker shows the rest of the environment is kept."""
    for name, value in SPANISH.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RAPPEL_TEST_MARKER", "kept")


def recorded_env(path: Path) -> dict[str, str]:
    """The environment a stand-in recorded with ``env -0``."""
    return dict(item.split("=", 1) for item in path.read_text().split("\0") if "=" in item)


def assert_c_locale(env: dict[str, str]) -> None:
    assert env["LC_ALL"] == "C" and env["LANG"] == "C" and env["LC_MESSAGES"] == "C"
    assert env["RAPPEL_TEST_MARKER"] == "kept"         # the rest of the environment is passed on
    assert env.get("PATH") == os.environ["PATH"]


def two_runs(site: Site):
    """The day's run, then a later pass past any retry time: what the second one does."""
    first = site.run().outcomes
    later = dt.datetime.combine(RUN, dt.time(18), tzinfo=site.policy.tz)
    return first, site.run(now=later).outcomes


# -- through a real cupsd ----------------------------------------------------------------------

@needs_cups
def test_a_letter_is_printed_on_the_library_printer_and_its_job_id_recorded(tmp_path, cups):
    site = Site(tmp_path, f'\ndelivery:\n  print: {{server: "{cups.socket}"}}\n'
                          "flood_guard: {max_per_run: 10, per_second: null}\n", printer=cups.queue)
    try:
        site.patron("P1", "zoe.lefevre@etu.example", first="Zoé", last="Lefèvre")
        site.loan("L1", "P1", "2026-10-19", "SCI", "Œuvres complètes — 12 €")    # letter (day 35) today
        site.loan("L2", "P1", "2026-10-19", "SCI", "Chimie organique")
        before = set(cups.output.glob("*.pdf"))
        [outcome] = site.run().outcomes
        key = notice_key(RUN, "letter", "letter", "P1", "SCI", ("L1", "L2"))
        assert (outcome.key, outcome.status) == (key, "sent")
        row = site.notice(key)
        assert row.reference.startswith(f"cups:{cups.queue}/{cups.queue}-")        # the CUPS job id
        assert row.reply.startswith(f"request id is {cups.queue}-")
        text = pdf_text(cups.printed(before))
        for expected in ("Zoé Lefèvre", "12 rue des Écoles", "Œuvres complètes — 12 €", "Chimie organique",
                         "Bibliothèque des sciences", "Le 23 novembre 2026"):
            assert expected in text, expected
        assert site.outbox_files() == []      # printed, not written to the outbox
    finally:
        site.close()


@needs_cups
def test_an_unknown_printer_is_retried_with_cups_reason(cups):
    delivery = PrintChannel(server=cups.socket).send_letter(letter("no-such-printer"), b"%PDF-1.4", "a.pdf")
    assert not delivery.ok and not delivery.permanent
    assert "no-such-printer" in delivery.detail and "does not exist" in delivery.reply


@needs_cups
def test_check_delivery_asks_cups_about_each_printer_without_printing(cups):
    before = set(cups.output.glob("*.pdf"))
    ok, missing = PrintChannel(server=cups.socket, printers=[cups.queue, "no-such-printer"]).checks()
    assert ok.ok and ok.detail.startswith(f"printer {cups.queue} ")   # idle, or now printing
    assert not missing.ok and "no-such-printer" in missing.detail
    assert set(cups.output.glob("*.pdf")) == before


@needs_cups
def test_under_a_spanish_locale_the_letter_is_printed_once_and_its_job_id_recorded(tmp_path, cups, spanish):
    """Under LANG/LC_ALL=es_ES CUPS answers "la id solicitada es …": rappel runs lp in the C locale,
    so it reads the job id, records it once and prints nothing again on the next pass. The site's
    command is a wrapper that records the environment lp gets, then runs the real lp."""
    wrapper = tmp_path / "lp-wrapper"
    wrapper.write_text(f"#!/bin/sh\necho call >> {tmp_path}/calls\nenv -0 > {tmp_path}/lp.env\n"
                       f"exec {shlex.quote(shutil.which('lp'))} \"$@\"\n")
    wrapper.chmod(0o755)
    site = Site(tmp_path, f'\ndelivery:\n  print: {{command: "{wrapper}", server: "{cups.socket}"}}\n'
                          "flood_guard: {max_per_run: 10, per_second: null}\n", printer=cups.queue)
    try:
        # P2: a file name of its own (cups-pdf names its PDFs after the job's title)
        site.patron("P2", "ines.nunez@etu.example", first="Inés", last="Núñez")
        site.loan("L9", "P2", "2026-10-19", "SCI", "España: años de niñez — 12 €")
        before = set(cups.output.glob("*.pdf"))
        [outcome], again = two_runs(site)
        key = notice_key(RUN, "letter", "letter", "P2", "SCI", ("L9",))
        assert (outcome.key, outcome.status) == (key, "sent")
        assert again == []                                   # nothing pending: not printed a second time
        assert (tmp_path / "calls").read_text() == "call\n"  # lp ran once
        row = site.notice(key)
        assert row.status == "sent" and row.reference.startswith(f"cups:{cups.queue}/{cups.queue}-")
        assert row.reply.startswith(f"request id is {cups.queue}-")
        assert_c_locale(recorded_env(tmp_path / "lp.env"))
        printed = cups.printed(before)
        assert "España: años de niñez — 12 €" in pdf_text(printed)
        time.sleep(1)
        assert sorted(set(cups.output.glob("*.pdf")) - before) == [printed]   # one PDF, one job
        # and the check sees the printer, whatever the locale
        [check] = PrintChannel(server=cups.socket, printers=[cups.queue]).checks()
        assert check.ok and check.detail.startswith(f"printer {cups.queue} "), check.detail
    finally:
        site.close()


# -- with a stand-in lp (anywhere) ---------------------------------------------------------------

@pytest.fixture
def fake_lp(tmp_path):
    """A stand-in for lp: records its arguments and the document, answers like lp."""
    script = tmp_path / "lp"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        printf '%s\\n' "$@" > {tmp_path}/argv
        cat > {tmp_path}/document
        echo "request id is bu-sciences-42 (0 file(s))"
        """))
    script.chmod(0o755)
    return tmp_path


def test_the_service_feeds_the_pdf_to_lp_with_the_site_s_settings(fake_lp):
    channel = PrintChannel(f"{fake_lp / 'lp'} -U rappel", server="print.univ.example:631",
                           options=["media=A4", "sides=one-sided"])
    delivery = channel.send_letter(letter("bu-sciences"), b"%PDF-1.4 the letter", "2026-11-23_letter_P1_SCI.pdf")
    assert delivery.ok and delivery.reference == "cups:bu-sciences/bu-sciences-42"
    assert delivery.reply == "request id is bu-sciences-42 (0 file(s))"
    assert (fake_lp / "argv").read_text().split("\n")[:-1] == [
        "-U", "rappel", "-h", "print.univ.example:631", "-d", "bu-sciences", "-t", "2026-11-23_letter_P1_SCI.pdf",
        "-o", "media=A4", "-o", "sides=one-sided"]
    assert (fake_lp / "document").read_bytes() == b"%PDF-1.4 the letter"


def test_a_missing_lp_is_a_transient_failure(tmp_path):
    delivery = PrintChannel(str(tmp_path / "no" / "lp")).send_letter(letter("bu-sciences"), b"%PDF", "a.pdf")
    assert not delivery.ok and not delivery.permanent and "command not found" in delivery.detail


def test_lp_refusing_is_a_transient_failure_with_its_words(tmp_path):
    script = tmp_path / "lp"
    script.write_text("#!/bin/sh\ncat > /dev/null\necho 'lp: Unable to connect to server' >&2\nexit 1\n")
    script.chmod(0o755)
    delivery = PrintChannel(str(script)).send_letter(letter("bu-sciences"), b"%PDF", "a.pdf")
    assert not delivery.ok and not delivery.permanent
    assert delivery.reply == "lp: Unable to connect to server"


@pytest.mark.parametrize("printer", ["", "two words", "a/b", "x#y"])
def test_a_queue_name_cups_cannot_have_is_refused(printer):
    with pytest.raises(ValueError):
        CupsPrint(printer)


def test_the_service_url_round_trips():
    service = CupsPrint("bu-sciences")
    assert service.url() == "rappel-lp://bu-sciences"
    assert CupsPrint.parse_url(service.url())["printer"] == "bu-sciences"


@pytest.fixture
def spanish_lp(tmp_path):
    """A stand-in lp that records its environment and always answers in Spanish (a site's wrapper
    might), with a stand-in lpstat beside it that records its environment too."""
    lp = tmp_path / "lp"
    lp.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo call >> {tmp_path}/calls
        env -0 > {tmp_path}/lp.env
        cat > /dev/null
        echo "la id solicitada es bu-sciences-42 (1 archivo(s))"
        """))
    lpstat = tmp_path / "lpstat"
    lpstat.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        env -0 > {tmp_path}/lpstat.env
        echo "printer bu-sciences is idle.  enabled since Mon 23 Nov 2026 08:00:00 CET"
        """))
    for script in (lp, lpstat):
        script.chmod(0o755)
    return tmp_path


def test_lp_and_lpstat_run_in_the_c_locale_with_the_rest_of_the_environment(spanish_lp, spanish):
    channel = PrintChannel(str(spanish_lp / "lp"), printers=["bu-sciences"])
    delivery = channel.send_letter(letter("bu-sciences"), b"%PDF-1.4", "a.pdf")
    assert delivery.ok and delivery.reference == "cups:bu-sciences/bu-sciences-42"
    assert_c_locale(recorded_env(spanish_lp / "lp.env"))
    [check] = channel.checks()
    assert check.ok
    assert_c_locale(recorded_env(spanish_lp / "lpstat.env"))


def test_a_site_under_a_spanish_locale_records_the_job_id_once_and_prints_once(spanish_lp, spanish):
    """The site's delivery.print.command answers in Spanish: the letter is sent, its job id
    recorded, and the next pass prints nothing again."""
    site = Site(spanish_lp, f'\ndelivery:\n  print: {{command: "{spanish_lp / "lp"}"}}\n'
                            "flood_guard: {max_per_run: 10, per_second: null}\n")
    try:
        site.patron("P1", "zoe.lefevre@etu.example", first="Zoé", last="Núñez")
        site.loan("L1", "P1", "2026-10-19", "SCI", "Œuvres complètes")
        [outcome], again = two_runs(site)
        assert outcome.status == "sent" and again == []
        assert (spanish_lp / "calls").read_text() == "call\n"
        row = site.notice(outcome.key)
        assert (row.status, row.reference) == ("sent", "cups:bu-sciences/bu-sciences-42")
        assert row.reply == "la id solicitada es bu-sciences-42 (1 archivo(s))"
        assert_c_locale(recorded_env(spanish_lp / "lp.env"))
    finally:
        site.close()


def test_lp_succeeding_without_a_job_id_is_printed_not_retried(tmp_path):
    """lp's exit status decides: 0 is a queued job even when its answer cannot be read, so the
    letter is never printed again; the row says there was no job id."""
    script = tmp_path / "lp"
    script.write_text("#!/bin/sh\ncat > /dev/null\necho 'Auftrag angenommen'\n")
    script.chmod(0o755)
    delivery = PrintChannel(str(script)).send_letter(letter("bu-sciences"), b"%PDF", "a.pdf")
    assert delivery.ok and delivery.reference == "cups:bu-sciences"
    assert "no job id" in delivery.detail and delivery.reply == "Auftrag angenommen"


@pytest.mark.parametrize("output, expected", [
    ("request id is bu-sciences-42 (1 file(s))", "bu-sciences-42"),
    ("la id solicitada es bu-sciences-42 (1 archivo(s))", "bu-sciences-42"),
    ("l'identifiant de la requête est bu-sciences-7 (1 fichier(s))", "bu-sciences-7"),
    ("Anfrage-ID ist BU-Sciences-9 (1 Datei(en))", "BU-Sciences-9"),
    ("request id is bu-sciences-lettres-3 (1 file(s))", "bu-sciences-lettres-3"),   # another queue: as lp says
    ("bu-sciences-lettres-3", None),                       # not this printer's id
    ("lp: Error - unable to print", None),
    ("", None),
])
def test_the_job_id_is_read_in_any_language(output, expected):
    assert job_id(output, "bu-sciences") == expected


@pytest.mark.parametrize("output, enabled", [
    ("printer bu-sciences is idle.  enabled since Mon 23 Nov 2026 08:00:00 CET\n", True),
    ("printer bu-sciences now printing bu-sciences-42.  enabled since Mon 23 Nov 2026\n", True),
    ("printer bu-sciences disabled since Mon 23 Nov 2026 08:00:00 CET -\n\tPaper jam\n", False),
    ("printer bu-sciences is idle.  enabled since Mon 23 Nov 2026\n\tReady (disabled duplex unit)\n", True),
    ("printer bu-sciences-annexe is idle.  enabled since Mon 23 Nov 2026\n", False),   # another queue
    ("la impresora bu-sciences está inactiva.  activada desde lun 23 nov 2026\n", False),
    ("lpstat: Invalid destination name in list \"bu-sciences\".\n", False),
])
def test_lpstat_s_answer_is_read_line_by_line(output, enabled):
    assert printer_enabled(output, "bu-sciences") is enabled
