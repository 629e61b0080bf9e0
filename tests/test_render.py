"""Rendering notices: email headers and parts, the recap by library, template lint, PDF letters."""
from __future__ import annotations

import datetime as dt
import io
import re
import shutil
from email import message_from_bytes
from email import policy as email_policy
from html.parser import HTMLParser
from pathlib import Path

import pypdf
import pytest

from adapters import render
from adapters.render import fonts
from adapters.render import MissingFont, NoticeContext, Templates, find_font, packaged_font
from engine.decide import Notice, notice_key
from engine.facts import Loan, Patron
from engine.policy import parse_policy

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
RUN = dt.date(2026, 11, 23)

ZOE = Patron("P1", barcode="2900001", first_name="Zoé", last_name="Lefèvre", email="zoe.lefevre@etu.example",
             address_line1="12 rue des Écoles", address_line2="Appartement 3", postal_code="33000",
             city="Bordeaux", country="France")
LOANS = [
    # triggered by first_reminder on 2026-11-23 (due 2026-11-16, 7 days before)
    Loan("L1", "P1", "SCI", dt.date(2026, 11, 16), "S-0001", "Œuvres complètes — 12 €"),
    Loan("L2", "P1", "DROIT", dt.date(2026, 11, 16), "D-0001", "Précis de droit civil"),
    # overdue, recap only
    Loan("L3", "P1", "SCI", dt.date(2026, 10, 30), "S-0002", "Chimie organique"),
    Loan("L4", "P1", "DROIT", dt.date(2026, 9, 1), "D-0002", "Code pénal annoté"),
    # not in the recap: returned, lost, not yet due, someone else's
    Loan("L5", "P1", "SCI", dt.date(2026, 10, 1), "S-0003", "Rendu déjà", returned_on=dt.date(2026, 10, 2)),
    Loan("L6", "P1", "SCI", dt.date(2026, 10, 1), "S-0004", "Perdu en route", status="lost"),
    Loan("L7", "P1", "DROIT", dt.date(2026, 12, 1), "D-0003", "Pas encore dû"),
    Loan("L8", "P2", "SCI", dt.date(2026, 10, 1), "S-0005", "Le livre d'un autre"),
]


@pytest.fixture(scope="module")
def policy():
    return parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def templates(policy):
    return Templates(RULES, policy)


def email_notice(stage="first_reminder", loan_ids=("L1", "L2"), patron=ZOE, date=RUN):
    key = notice_key(date, stage, "email", patron.patron_id, None)
    return Notice(key, date, stage, "email", patron.patron_id, None, tuple(loan_ids), patron.email, patron.email)


def letter_notice(library="SCI", loan_ids=("L1",), stage="letter", patron=ZOE, date=RUN):
    key = notice_key(date, stage, "letter", patron.patron_id, library)
    return Notice(key, date, stage, "letter", patron.patron_id, library, tuple(loan_ids),
                  ", ".join(patron.postal_lines), "printer:bu-sciences")


def context(policy, notice, patron=ZOE, loans=LOANS):
    return NoticeContext.build(policy, notice, patron, loans, RUN)


def text_and_html(msg):
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


# -- the context -------------------------------------------------------------------------------

def test_context_picks_triggered_and_overdue_loans(policy):
    ctx = context(policy, email_notice())
    assert [loan.loan_id for loan in ctx.triggered] == ["L1", "L2"]
    assert sorted(loan.loan_id for loan in ctx.overdue) == ["L1", "L2", "L3", "L4"]


def test_context_refuses_a_notice_whose_loans_are_missing(policy):
    with pytest.raises(KeyError, match="L99"):
        context(policy, email_notice(loan_ids=("L1", "L99")))


def test_variables_recap_is_grouped_in_policy_order_and_sorted_by_due_date(policy, templates):
    v = templates.variables(context(policy, email_notice()))
    assert [(g["code"], g["name"]) for g in v["recap"]] == [
        ("SCI", "Bibliothèque des sciences"), ("DROIT", "Bibliothèque de droit")]
    assert [[loan["item_barcode"] for loan in g["loans"]] for g in v["recap"]] == [
        ["S-0002", "S-0001"], ["D-0002", "D-0001"]]
    first = v["triggered"][0]
    assert first["days_overdue"] == 7 and first["library_name"] in ("Bibliothèque des sciences",
                                                                    "Bibliothèque de droit")
    assert v["library"] is None and v["letter_table"] == ""
    assert v["sender"] == {"from": "Service du contentieux <contentieux@univ.example>",
                           "reply_to": "contentieux@univ.example", "name": "Service du contentieux",
                           "address": "contentieux@univ.example"}


# -- emails ------------------------------------------------------------------------------------

def test_email_headers(policy, templates):
    msg = templates.email(context(policy, email_notice()))
    assert msg["From"] == "Service du contentieux <contentieux@univ.example>"
    assert msg["Reply-To"] == "contentieux@univ.example"
    assert msg["To"].addresses[0].addr_spec == "zoe.lefevre@etu.example"
    assert msg["To"].addresses[0].display_name == "Zoé Lefèvre"
    assert msg["Subject"] == "Premier rappel : documents en retard"
    assert msg["Date"] == "Mon, 23 Nov 2026 00:00:00 +0100"      # midnight, Europe/Paris
    assert msg["Message-ID"].endswith("@univ.example>")
    assert msg.get_content_type() == "multipart/alternative"


def test_email_is_deterministic_and_message_id_follows_the_key(policy, templates):
    one = templates.email(context(policy, email_notice()))
    two = templates.email(context(policy, email_notice()))
    assert one["Message-ID"] == two["Message-ID"]
    assert one.as_bytes() == two.as_bytes()
    other = templates.email(context(policy, email_notice(date=dt.date(2026, 11, 24))))
    assert other["Message-ID"] != one["Message-ID"]


@pytest.mark.parametrize("stage, due, words, due_text", [
    ("courtesy", dt.date(2026, 11, 26), "dans quelques jours", "à rendre le 26 novembre 2026"),
    ("first_reminder", dt.date(2026, 11, 16), "n'ont pas été rendus", "à rendre le 16 novembre 2026"),
    ("second_reminder", dt.date(2026, 11, 2), "n'ont toujours pas été rendus", "à rendre le 2 novembre 2026"),
])
def test_every_email_stage_lists_its_triggered_loans_in_both_parts(policy, templates, stage, due, words,
                                                                   due_text):
    loans = [Loan("T1", "P1", "SCI", due, "S-1000", "Les Misérables, tome 1"),
             Loan("T2", "P1", "DROIT", due, "D-1000", "Traité des obligations")]
    msg = templates.email(context(policy, email_notice(stage, ("T1", "T2")), loans=loans))
    text, html = text_and_html(msg)
    for part in (text, html):
        assert words in part
        assert "Les Misérables, tome 1" in part and "Traité des obligations" in part
        assert due_text in part    # dates in words, for the language (Babel)
    assert msg["Subject"].strip() and "\n" not in msg["Subject"]


def test_courtesy_without_overdue_loans_has_no_recap(policy, templates):
    loans = [Loan("T1", "P1", "SCI", dt.date(2026, 11, 26), "S-1000", "Le Rouge et le Noir")]
    text, html = text_and_html(templates.email(context(policy, email_notice("courtesy", ("T1",)), loans=loans)))
    assert "Récapitulatif" not in text and "Récapitulatif" not in html
    assert "26 novembre 2026" in text


def recap_of_text(text: str, library_names: list[str]) -> dict[str, list[str]]:
    """Library name -> the titles listed under it in the recap section of the text part."""
    section = text.split("Récapitulatif de tous vos retards", 1)[1]
    groups: dict[str, list[str]] = {}
    current = None
    for line in section.splitlines():
        if line in library_names:
            current = groups.setdefault(line, [])
        elif line.startswith("- ") and current is not None:
            current.append(line[2:].split(" (code-barres")[0])
        elif line.strip() and groups:
            break    # the end of the recap
    return groups


class RecapHTML(HTMLParser):
    """Collects the h3 headings after the recap's h2 and the <li> items under each."""

    def __init__(self):
        super().__init__()
        self.in_recap = False
        self.tag = None
        self.groups: dict[str, list[str]] = {}
        self.current: list[str] | None = None
        self.buffer = ""

    def handle_starttag(self, tag, attrs):
        self.tag, self.buffer = tag, ""

    def handle_data(self, data):
        self.buffer += data

    def handle_endtag(self, tag):
        if tag == "h2" and "Récapitulatif" in self.buffer:
            self.in_recap = True
        elif self.in_recap and tag == "h3":
            self.current = self.groups.setdefault(self.buffer.strip(), [])
        elif self.in_recap and tag == "li" and self.current is not None:
            self.current.append(self.buffer.split(" (code-barres")[0].strip())
        self.buffer = ""


def test_recap_groups_all_overdue_loans_library_by_library(policy, templates):
    text, html = text_and_html(templates.email(context(policy, email_notice())))
    names = ["Bibliothèque des sciences", "Bibliothèque de droit"]
    expected = {"Bibliothèque des sciences": ["Chimie organique", "Œuvres complètes — 12 €"],
                "Bibliothèque de droit": ["Code pénal annoté", "Précis de droit civil"]}
    from_text = recap_of_text(text, names)
    assert from_text == expected and list(from_text) == names
    parser = RecapHTML()
    parser.feed(html)
    assert parser.groups == expected and list(parser.groups) == names
    for absent in ("Rendu déjà", "Perdu en route", "Pas encore dû", "Le livre d'un autre"):
        assert absent not in text and absent not in html


def test_html_part_escapes_and_text_part_does_not(policy, templates):
    loans = [Loan("X", "P1", "SCI", dt.date(2026, 11, 16), "S-9", "<script>alert(1)</script> & Cie")]
    text, html = text_and_html(templates.email(context(policy, email_notice(loan_ids=("X",)), loans=loans)))
    assert "<script>alert(1)</script> & Cie" in text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Cie" in html


def test_newline_in_the_patron_name_adds_no_header(policy, tmp_path):
    rules = copy_rules(tmp_path)
    (rules / "templates" / "fr" / "first_reminder.subject.j2").write_text(
        "Rappel pour {{ patron.full_name }}\n", encoding="utf-8")
    evil = Patron("P1", first_name="Eve\r\nBcc: victim@evil.example\r\n", last_name="X\nX-Injected: 1",
                  email="eve@etu.example")
    msg = Templates(rules, policy).email(context(policy, email_notice(patron=evil), patron=evil))
    raw = msg.as_bytes()
    head = raw.split(b"\n\n", 1)[0]
    parsed = message_from_bytes(raw, policy=email_policy.default)
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert parsed["Subject"] == "Rappel pour Eve Bcc: victim@evil.example X X-Injected: 1"
    assert parsed["To"].addresses[0].addr_spec == "eve@etu.example"
    assert b"\nBcc:" not in head and b"\nX-Injected:" not in head
    assert "Bonjour Eve Bcc: victim@evil.example X X-Injected: 1," in msg.get_body(("plain",)).get_content()


def test_email_to_a_patron_without_address_is_refused(policy, templates):
    nobody = Patron("P1", first_name="Sans", last_name="Adresse")
    notice = Notice("k", RUN, "first_reminder", "email", "P1", None, ("L1",), "", "")
    with pytest.raises(ValueError, match="no email address"):
        templates.email(context(policy, notice, patron=nobody))


# -- lint --------------------------------------------------------------------------------------

def copy_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES / "templates", rules / "templates")
    return rules


def test_shipped_templates_pass_lint(templates):
    assert templates.lint() == []


def test_lint_reports_a_syntax_error_with_file_and_line(policy, tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "templates" / "fr" / "second_reminder.txt.j2"
    path.write_text('{% extends "_base.txt.j2" %}\n{% block intro %}\nBonjour {{ patron.first_name ) }}\n'
                    '{% endblock %}\n', encoding="utf-8")
    problems = Templates(rules, policy).lint()
    assert problems, "a syntax error must be reported"
    assert any(p.source.endswith("second_reminder.txt.j2") and p.line == 3 and "syntax" in p.message
               for p in problems), problems


def test_lint_reports_an_undefined_variable_with_file_and_line(policy, tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "templates" / "fr" / "courtesy.html.j2"
    path.write_text('{% extends "_base.html.j2" %}\n{% block intro %}\nCher lecteur,\n'
                    'votre surnom : {{ patron.nickname }}\n{% endblock %}\n', encoding="utf-8")
    problems = Templates(rules, policy).lint()
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.source.endswith("courtesy.html.j2") and problem.line == 4
    assert "nickname" in problem.message and "undefined" in problem.message


def test_lint_reports_a_missing_template(policy, tmp_path):
    rules = copy_rules(tmp_path)
    (rules / "templates" / "fr" / "letter.subject.j2").unlink()
    problems = Templates(rules, policy).lint()
    assert [(Path(p.source).name, p.message) for p in problems] == [("letter.subject.j2", "template file is missing")]


def test_lint_reports_an_error_in_a_shared_frame(policy, tmp_path):
    rules = copy_rules(tmp_path)
    base = rules / "templates" / "fr" / "_base.txt.j2"
    base.write_text(base.read_text(encoding="utf-8").replace("{{ sender.name }}", "{{ sender.signature }}"),
                    encoding="utf-8")
    problems = Templates(rules, policy).lint()
    assert problems and all(Path(p.source).name == "_base.txt.j2" and p.line for p in problems)


def test_sandbox_refuses_internals(policy, tmp_path):
    rules = copy_rules(tmp_path)
    (rules / "templates" / "fr" / "courtesy.subject.j2").write_text("{{ patron.__class__.__mro__ }}", encoding="utf-8")
    problems = Templates(rules, policy).lint()
    assert problems and Path(problems[0].source).name == "courtesy.subject.j2"


# -- letters -----------------------------------------------------------------------------------

def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def pdf_fonts(data: bytes) -> set[str]:
    """The base font names a PDF uses (without the subset tag)."""
    names = set()
    for page in pypdf.PdfReader(io.BytesIO(data)).pages:
        for font in page["/Resources"]["/Font"].values():
            names.add(str(font.get_object()["/BaseFont"]).lstrip("/").split("+")[-1])
    return names


UNICODE_LOANS = [*LOANS, Loan("L9", "P1", "SCI", dt.date(2026, 10, 30), "S-0009", "Cien años de soledad, le cœur")]


@pytest.fixture
def no_font_but(monkeypatch, tmp_path):
    """Only the fonts a test puts in place: no pymupdf-fonts, no system folder, no RAPPEL_FONT_DIR."""
    monkeypatch.setattr(fonts, "packaged_font", lambda: None)
    monkeypatch.setattr(fonts, "FONT_DIRS", ())
    monkeypatch.delenv("RAPPEL_FONT_DIR", raising=False)
    return tmp_path


def test_letter_pdf_has_address_titles_and_unicode(policy, templates):
    data = templates.letter_pdf(context(policy, letter_notice("SCI", ("L1",)), loans=UNICODE_LOANS))
    assert data.startswith(b"%PDF-")
    assert len(pypdf.PdfReader(io.BytesIO(data)).pages) == 1
    text = pdf_text(data)
    for expected in ["Bibliothèque des sciences", "351 cours de la Libération", *ZOE.postal_lines,
                     "Œuvres complètes — 12 €", "Chimie organique", "Cien años de soledad, le cœur", "S-0001",
                     "16/11/2026", "Le 23 novembre 2026", "Objet : Documents non rendus", "salutations distinguées"]:
        assert expected in text, expected
    for character in "œŒ€éèñ—":         # as written, never transliterated (oe, EUR)
        assert character in text, character
    assert "EUR" not in text and "Oeuvres" not in text
    for other_library in ("Précis de droit civil", "Code pénal annoté", "Bibliothèque de droit"):
        assert other_library not in text
    assert render.LETTER_TABLE not in text


def test_email_stage_sent_as_letter_uses_the_letter_wording(policy, templates):
    no_mail = Patron("P1", first_name="Noël", last_name="Cœur", address_line1="3 place de la Bourse",
                     postal_code="33000", city="Bordeaux")
    notice = letter_notice("DROIT", ("L2",), stage="first_reminder", patron=no_mail)
    text = pdf_text(templates.letter_pdf(context(policy, notice, patron=no_mail)))
    assert "Noël Cœur" in text and "Madame, Monsieur," in text and "Précis de droit civil" in text
    assert "Bonjour" not in text and "répondre à ce message" not in text and "Récapitulatif" not in text


def test_letter_pdf_is_byte_identical_when_rendered_again(policy, templates):
    ctx = context(policy, letter_notice("SCI", ("L1",)))
    assert templates.letter_pdf(ctx) == templates.letter_pdf(ctx)


@pytest.mark.parametrize("name", ["Zoé Lefèvre", "Łukasz Żółw", "Γιώργος Παπαδόπουλος"])
def test_a_letter_from_the_shared_font_is_the_letter_fpdf2_makes_alone(policy, templates, name):
    """The faces parsed once a process and embedded from a cache (adapters/render/letter_fonts.py) give
    the bytes fpdf2 gives on its own for the same subset, a name outside the shared repertoire (Greek)
    included; and a cached subset is reused for the next letter."""
    from adapters.render.letter import Letter
    from adapters.render.letter_fonts import REPERTOIRE

    first, last = name.split()
    patron = Patron("P1", first_name=first, last_name=last, address_line1="3 place de la Bourse",
                    postal_code="33000", city="Bordeaux")
    ctx = context(policy, letter_notice("SCI", ("L1",), patron=patron), patron=patron, loans=UNICODE_LOANS)
    shared = templates.letter_pdf(ctx)
    original = Letter.__init__

    def alone(self, font, shared=True):
        original(self, font, shared=False)
        for face in self.fonts.values():        # the same subset: the repertoire first, in its order
            for c in REPERTOIRE:
                if ord(c) in face.cmap:
                    face.subset.pick(ord(c))

    try:
        Letter.__init__ = alone
        by_fpdf2 = templates.letter_pdf(ctx)
    finally:
        Letter.__init__ = original
    assert shared == by_fpdf2 and templates.letter_pdf(ctx) == shared
    assert name in pdf_text(shared)


def test_letters_use_the_packaged_font_first(policy, templates, monkeypatch):
    """Noto Sans from pymupdf-fonts (a dependency) comes before any DejaVu the system has: the same
    letters on every machine."""
    monkeypatch.delenv("RAPPEL_FONT_DIR", raising=False)
    font = find_font()
    assert font == packaged_font() and sorted(font) == ["", "B"]
    assert [path.name for path in font.values()] == ["NotoSans-Regular.ttf", "NotoSans-Bold.ttf"]
    data = templates.letter_pdf(context(policy, letter_notice("SCI", ("L1",))))
    assert pdf_fonts(data) == {"NotoSans", "NotoSansBold"}     # the bold face for the headings


def test_the_packaged_font_is_written_again_when_a_cleaner_removed_it():
    font = packaged_font()
    data = font[""].read_bytes()
    shutil.rmtree(font[""].parent)
    again = packaged_font()
    assert again[""].read_bytes() == data and again["B"].is_file()


def test_system_dejavu_is_the_second_choice(policy, templates, no_font_but, monkeypatch):
    """Without pymupdf-fonts, DejaVu Sans from the first standard folder that has it."""
    system = no_font_but / "dejavu"
    system.mkdir()
    # any TrueType font under DejaVu's file names shows the search; the packaged one is at hand everywhere
    shutil.copy(packaged_font()[""], system / "DejaVuSans.ttf")
    shutil.copy(packaged_font()["B"], system / "DejaVuSans-Bold.ttf")
    monkeypatch.setattr(fonts, "FONT_DIRS", (str(no_font_but / "empty"), str(system)))
    assert find_font() == {"": system / "DejaVuSans.ttf", "B": system / "DejaVuSans-Bold.ttf"}
    text = pdf_text(templates.letter_pdf(context(policy, letter_notice("SCI", ("L1",)))))
    assert "Œuvres complètes — 12 €" in text and "Zoé Lefèvre" in text


def test_font_dir_from_the_environment_comes_first(monkeypatch, tmp_path):
    shutil.copy(packaged_font()[""], tmp_path / "DejaVuSans.ttf")
    monkeypatch.setenv("RAPPEL_FONT_DIR", str(tmp_path))
    assert find_font() == {"": tmp_path / "DejaVuSans.ttf", "B": tmp_path / "DejaVuSans.ttf"}


def test_without_a_unicode_font_lint_names_the_packages_and_no_letter_is_made(policy, templates, no_font_but):
    """No silent fallback to a core font that would print "oe" and "EUR": lint (hence rappel lint and
    rappel run) says what to install, and a letter is refused."""
    assert find_font() is None
    [problem] = templates.lint()
    assert problem.where == "letters"
    assert "fonts-dejavu-core" in problem.message and "pymupdf-fonts" in problem.message
    assert "RAPPEL_FONT_DIR" in problem.message
    with pytest.raises(MissingFont, match="fonts-dejavu-core"):
        templates.letter_pdf(context(policy, letter_notice("SCI", ("L1",))))
    templates.email(context(policy, email_notice()))     # emails need no font


def test_a_policy_without_letters_needs_no_font(no_font_but, tmp_path):
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8")
    text = text.replace("letters_after_due: true", "letters_after_due: false") \
        .replace("  - {id: letter, offset_days: 35, channel: letter}\n", "") \
        .replace("fallback: {email: letter}", "fallback: {email: none}") \
        .replace("  mandatory: [letter]\n", "")          # the stage is gone (preferences.mandatory named it)
    text = re.sub(r',\s*letter: "[^"]*"}', "}", text)      # its labels go with the stage
    email_only = parse_policy(text)
    assert Templates(RULES, email_only).lint() == []


def test_lint_refuses_a_font_without_the_letters_characters(templates, monkeypatch, tmp_path):
    from fontTools import subset
    from fontTools.ttLib import TTFont

    ascii_only = TTFont(str(packaged_font()[""]))
    subsetter = subset.Subsetter()
    subsetter.populate(unicodes=range(0x20, 0x7F))
    subsetter.subset(ascii_only)
    ascii_only.save(str(tmp_path / "DejaVuSans.ttf"))
    monkeypatch.setenv("RAPPEL_FONT_DIR", str(tmp_path))
    [problem] = templates.lint()
    assert problem.where == "letters" and problem.source == str(tmp_path / "DejaVuSans.ttf")
    assert "U+0153 œ" in problem.message and "U+20AC €" in problem.message and "U+00F1 ñ" in problem.message


def test_lint_refuses_a_font_file_it_cannot_read(templates, monkeypatch, tmp_path):
    (tmp_path / "DejaVuSans.ttf").write_bytes(b"not a font")
    monkeypatch.setenv("RAPPEL_FONT_DIR", str(tmp_path))
    [problem] = templates.lint()
    assert problem.where == "letters" and problem.source == str(tmp_path / "DejaVuSans.ttf")
    assert "cannot be read" in problem.message


def test_lint_reports_every_broken_template_at_once(policy, tmp_path):
    rules = copy_rules(tmp_path)
    (rules / "templates" / "fr" / "courtesy.subject.j2").write_text("{% if %}", encoding="utf-8")
    (rules / "templates" / "fr" / "letter.subject.j2").write_text("Lettre\n{{ nope }}", encoding="utf-8")
    problems = Templates(rules, policy).lint()
    assert sorted((Path(p.source).name, p.line) for p in problems) == [
        ("courtesy.subject.j2", 1), ("letter.subject.j2", 2)]


def test_bytes_computed_ahead_are_dropped_when_a_header_changes(policy, templates):
    msg = templates.email(context(policy, email_notice()))
    render.serialize(msg)
    assert render.wire_bytes(msg) == msg.as_bytes(policy=render.WIRE_POLICY)
    msg.replace_header("Subject", "Changed after rendering")
    assert b"Subject: Changed after rendering" in render.wire_bytes(msg)
    assert b"\r\n" in render.wire_bytes(msg) and b"\n\n" not in render.wire_bytes(msg)


@pytest.mark.parametrize("body", [
    "Madame, Monsieur,\nSauf erreur de notre part, les documents ci-dessous n'ont pas été rendus à la date prévue, "
    "et nous vous prions de bien vouloir les rapporter au plus vite à la bibliothèque, ou de nous écrire.\n"
    "[[rappel:table]]\nVeuillez agréer, Madame, Monsieur, l'expression de nos salutations distinguées.",
    "Un mot-composé-très-long-qui-tombe-juste-à-la-fin-de-la-ligne-et-que-fpdf2-peut-couper entre-temps "
    "au-delà de la marge, vis-à-vis des autres mots de la ligne qui la précèdent et la suivent ici.",
    "Anticonstitutionnellementanticonstitutionnellementanticonstitutionnellementanticonstitutionnellement x",
    "Montant\u00a0: 12,50\u00a0€ à régler\u202favant le 1er décembre, avec\tune tabulation et  deux espaces ",
])
def test_a_paragraph_broken_by_words_is_the_one_multi_cell_breaks(body):
    """Letter._paragraph breaks plain words itself and draws each line with cell(); the PDF is byte for
    byte the one multi_cell makes (long paragraphs, hyphens, a word wider than the line, special spaces)."""
    from adapters.render.letter import Letter

    v = {"library": {"name": "Bibliothèque des sciences", "address": ["351 cours de la Libération"]},
         "sender": {"name": "Service du contentieux", "address": "contentieux@univ.example"}, "language": "fr",
         "patron": {"postal_lines": ["Zoé Lefèvre", "12 rue des Écoles", "33000 Bordeaux"]},
         "library_loans": [{"title": "Œuvres complètes — 12 €", "item_barcode": "S-0001",
                            "due_date": dt.date(2026, 11, 1), "days_overdue": 22, "stage_label": ""}],
         "combined": False}
    wording = {"subject_line": "Objet : Documents non rendus, premier rappel avant la lettre recommandée", "page": "page",
               "date_line": "Le 23 novembre 2026", "columns": ["Titre", "Code-barres", "Échéance", "Jours"],
               "table_date": "dd/MM/y", "no_due": "-", "format_date": lambda day, format: day.isoformat()}
    when = dt.datetime(2026, 11, 23, 9, tzinfo=dt.timezone.utc)
    made = {}
    for fast in (True, False):
        letter = Letter(find_font())
        letter.FAST_BREAKS = fast
        made[fast] = letter.build(v, wording, body, when)
    assert made[True] == made[False]


def test_names_in_headers_are_q_encoded_whatever_the_shared_charset_table_says():
    """formataddr and Header read email.charset's shared table, which apprise changes when imported
    (utf-8 in quoted-printable): the headers must not depend on what else the process loaded, or a
    preview made without apprise differs from the message sent."""
    import email.charset as charsets

    from adapters.render import email as mail
    saved = charsets.CHARSETS["utf-8"]
    try:
        for encoding in (charsets.BASE64, charsets.QP, charsets.SHORTEST):
            charsets.add_charset("utf-8", encoding, charsets.BASE64, "utf-8")
            assert mail._address_header.__wrapped__("Zoé Lefèvre <p1@etu.example>") == \
                "=?utf-8?q?Zo=C3=A9_Lef=C3=A8vre?= <p1@etu.example>"
            assert mail._text_header.__wrapped__("Rappel : Zoé") == "=?utf-8?q?Rappel_=3A_Zo=C3=A9?="
    finally:
        charsets.CHARSETS["utf-8"] = saved
