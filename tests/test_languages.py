"""Languages: templates per stage and language (fr, en, es shipped), chosen by the patron's
preferred_language with the policy's default; dates and amounts formatted for the language."""
from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import pypdf
import pytest

from adapters.render import NoticeContext, Templates, format_money, pick_language
from engine.decide import Notice, notice_key
from engine.facts import Loan, Patron
from engine.policy import parse_policy
from engine.yamlsource import InputError

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
RUN = dt.date(2026, 11, 23)
LOANS = [Loan("L1", "P1", "SCI", dt.date(2026, 11, 16), "S-1", "Œuvres complètes — 12 €"),
         Loan("L2", "P1", "DROIT", dt.date(2026, 10, 1), "D-1", "España: años de niñez")]


@pytest.fixture(scope="module")
def policy():
    return parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def templates(policy):
    return Templates(RULES, policy)


def patron(language: str) -> Patron:
    return Patron("P1", first_name="Zoé", last_name="Núñez", email="zoe@etu.example", preferred_language=language,
                  address_line1="12 rue des Écoles", postal_code="33000", city="Bordeaux")


def context(policy, language, stage="first_reminder", channel="email", library=None, loans=LOANS):
    notice = Notice(notice_key(RUN, stage, channel, "P1", library), RUN, stage, channel, "P1", library, ("L1",),
                    "zoe@etu.example", "zoe@etu.example" if channel == "email" else "printer:bu-sciences")
    return NoticeContext.build(policy, notice, patron(language), loans, RUN)


@pytest.mark.parametrize("preferred, chosen", [
    ("fr", "fr"), ("en", "en"), ("es", "es"),
    ("FR", "fr"), ("fr-CA", "fr"), ("es_ES", "es"), ("en-GB", "en"),
    ("fre", "fr"), ("spa", "es"), ("eng", "en"),          # MARC / ISO 639-2 codes, as ILS exports them
    ("de", "fr"), ("ger", "fr"), ("", "fr"), ("  ", "fr"), ("klingon", "fr"),   # no templates: the default
])
def test_the_patron_s_language_when_there_are_templates_for_it(policy, preferred, chosen):
    assert pick_language(preferred, policy) == chosen


@pytest.mark.parametrize("language, subject, salutation, due, recap, closing", [
    ("fr", "Premier rappel : documents en retard", "Bonjour Zoé Núñez,", "à rendre le 16 novembre 2026",
     "Récapitulatif de tous vos retards, bibliothèque par bibliothèque", "Cordialement,"),
    ("en", "First reminder: overdue items", "Hello Zoé Núñez,", "due November 16, 2026",
     "All your overdue items, library by library", "Kind regards,"),
    ("es", "Primer aviso: ejemplares con retraso", "Hola, Zoé Núñez:", "fecha de devolución: 16 de noviembre de 2026",
     "Resumen de todos sus retrasos, biblioteca por biblioteca", "Un cordial saludo,"),
])
def test_each_language_has_its_own_words_and_dates(policy, templates, language, subject, salutation, due, recap,
                                                   closing):
    msg = templates.email(context(policy, language))
    assert msg["Subject"] == subject
    assert msg["Content-Language"] == language
    text, html = msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()
    assert f'<html lang="{language}">' in html
    for part in (text, html):
        assert salutation in part and due in part and recap in part and closing in part
        assert "Œuvres complètes — 12 €" in part and "España: años de niñez" in part


@pytest.mark.parametrize("language, heading, date_line, columns", [
    ("fr", "Objet : Documents non rendus : dernier rappel", "Le 23 novembre 2026",
     ["Titre", "Code-barres", "Échéance", "16/11/2026"]),
    ("en", "Re: Items not returned: final reminder", "November 23, 2026", ["Title", "Barcode", "Due", "16 Nov 2026"]),
    ("es", "Asunto: Ejemplares no devueltos: último aviso", "23 de noviembre de 2026",
     ["Título", "Código de barras", "Vencimiento", "16/11/2026"]),
])
def test_letters_are_written_in_the_patron_s_language(policy, templates, language, heading, date_line, columns):
    """On every machine (the font is a dependency): French and Spanish words exactly as written."""
    loans = [*LOANS, Loan("L3", "P1", "SCI", dt.date(2026, 10, 30), "S-3", "Le cœur — Años de niñez")]
    pdf = templates.letter_pdf(context(policy, language, "letter", "letter", "SCI", loans))
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    for expected in (heading, date_line, *columns, "Zoé Núñez", "Œuvres complètes — 12 €", "Le cœur — Años de niñez"):
        assert expected in text, expected
    for character in "œŒ€éñ":
        assert character in text, character
    assert "EUR" not in text and "Oeuvres" not in text and "coeur" not in text      # never transliterated
    assert pypdf.PdfReader(io.BytesIO(pdf)).pages[0].mediabox.height == pytest.approx(841.89, abs=0.1)   # A4


@pytest.mark.parametrize("language, amount", [("fr", "12,50\u00a0€"), ("en", "€12.50"), ("es", "12,50\u00a0€")])
def test_amounts_are_formatted_for_the_language(language, amount):
    assert format_money(12.5, language=language) == amount


def test_the_money_and_date_filters_work_in_templates(policy, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES / "templates", rules / "templates")
    (rules / "templates" / "es" / "first_reminder.subject.j2").write_text(
        "Aviso del {{ as_of|date('full') }}: {{ 2.5|money }} por día", encoding="utf-8")
    msg = Templates(rules, policy).email(context(policy, "es"))
    assert msg["Subject"] == "Aviso del lunes, 23 de noviembre de 2026: 2,50 € por día"


def test_lint_checks_every_language(policy, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES / "templates", rules / "templates")
    (rules / "templates" / "en" / "letter.subject.j2").unlink()
    (rules / "templates" / "es" / "courtesy.txt.j2").write_text(
        '{% extends "_base.txt.j2" %}\n{% block intro %}\n{{ patron.apodo }}\n{% endblock %}\n', encoding="utf-8")
    problems = Templates(rules, policy).lint()
    found = sorted((Path(p.source).relative_to(rules / "templates").as_posix(), p.line) for p in problems)
    assert found == [("en/letter.subject.j2", None), ("es/courtesy.txt.j2", 3)]
    assert any("apodo" in p.message and "in es" in p.message for p in problems)


def test_a_missing_language_folder_falls_back_to_the_shared_templates(tmp_path):
    """A one-language site keeps its templates in rules/templates/ itself."""
    rules = tmp_path / "rules"
    shutil.copytree(RULES / "templates" / "fr", rules / "templates")
    policy = parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8").replace(
        "languages: [fr, en, es]", "languages: [fr]"))
    templates = Templates(rules, policy)
    assert templates.lint() == []
    assert templates.email(context(policy, "es"))["Subject"] == "Premier rappel : documents en retard"


@pytest.mark.parametrize("line, says", [
    ("languages: [en, es]", "the default language 'fr' must be one of them"),
    ("languages: [fr, EN]", "language codes are 2 or 3 lower-case letters"),
])
def test_the_languages_setting_is_checked(line, says):
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8").replace("languages: [fr, en, es]", line)
    with pytest.raises(InputError) as err:
        parse_policy(text, "reminders.yaml")
    assert any(says in p.message and p.where == "languages" for p in err.value.problems), err.value.problems
