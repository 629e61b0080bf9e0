"""What people read about the policy (engine/presentation.py, adapters/render/formats.py): dates in
the language's typography, stage and library names from labels, who a notice is from, and lint
refusing a stage template that would mix two languages in one message."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from adapters.render import Templates
from adapters.render.formats import format_day
from engine.policy import parse_policy
from engine.presentation import library_label, sender_for, stage_label
from engine.yamlsource import InputError

RULES = Path(__file__).resolve().parent.parent / "rules"
TEXT = (RULES / "reminders.yaml").read_text(encoding="utf-8")
SAMPLE = (Path(__file__).resolve().parent.parent / "service" / "sample" / "reminders.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("day, form, language, text", [
    ("2026-12-01", "long", "fr", "1er décembre 2026"),
    ("2026-12-01", "full", "fr", "mardi 1er décembre 2026"),
    ("2026-12-01", "medium", "fr", "1er déc. 2026"),
    ("2026-12-01", "d MMMM", "fr", "1er décembre"),
    ("2026-12-01", "short", "fr", "01/12/2026"),           # figures: no ordinal
    ("2026-12-11", "long", "fr", "11 décembre 2026"),
    ("2026-12-21", "long", "fr", "21 décembre 2026"),
    ("2026-12-01", "long", "fr_CA", "1er décembre 2026"),
    ("2026-12-01", "long", "en", "December 1, 2026"),
    ("2026-12-01", "long", "es", "1 de diciembre de 2026"),
])
def test_dates_in_the_languages_typography(day, form, language, text):
    assert format_day(dt.date.fromisoformat(day), form, language=language) == text


@pytest.mark.parametrize("stage, language, label", [
    ("first_reminder", "fr", "Premier rappel"),
    ("first_reminder", "en", "First reminder"),
    ("letter", "es", "Último aviso"),
    ("letter", "de", "Dernier rappel"),          # no German labels: the default language's
])
def test_stage_labels(stage, language, label):
    assert stage_label(parse_policy(TEXT), stage, language) == label


def test_a_stage_without_any_label_is_shown_by_its_id_in_words():
    policy = parse_policy(TEXT.replace('first_reminder: "Premier rappel", ', ""))
    assert stage_label(policy, "first_reminder", "fr") == "first reminder"


@pytest.mark.parametrize("code, language, label", [
    ("DROIT", "fr", "Bibliothèque de droit"),      # no fr label: its name
    ("DROIT", "en", "Law Library"),
    ("SCI", "es", "Biblioteca de Ciencias"),
    ("NOPE", "en", "NOPE"),
])
def test_library_labels(code, language, label):
    assert library_label(parse_policy(TEXT), code, language) == label


@pytest.mark.parametrize("stage, libraries, sender", [
    ("courtesy", {"DROIT"}, "Bibliothèque de droit <droit@univ.example>"),      # the library's own
    ("courtesy", {"SCI"}, "Service du contentieux <contentieux@univ.example>"),  # SCI has none
    ("courtesy", {"DROIT", "SCI"}, "Service du contentieux <contentieux@univ.example>"),   # two libraries
    ("first_reminder", {"DROIT"}, "Service du contentieux <contentieux@univ.example>"),   # sender: service
    ("letter", {"DROIT"}, "Service du contentieux <contentieux@univ.example>"),
])
def test_who_a_notice_is_from(stage, libraries, sender):
    assert sender_for(parse_policy(SAMPLE), stage, libraries).from_ == sender


@pytest.mark.parametrize("edit, says", [
    (("first_reminder: \"Premier rappel\"", "first_remindr: \"Premier rappel\""),
     "labels.fr.stages.first_remindr: no stage 'first_remindr' in stages"),
    (("DROIT: \"Law Library\"", "LAW: \"Law Library\""), "labels.en.libraries.LAW: no library 'LAW' in libraries"),
])
def test_a_label_for_nothing_is_an_error(edit, says):
    with pytest.raises(InputError) as err:
        parse_policy(TEXT.replace(*edit), "reminders.yaml")
    assert says in str(err.value)


def test_lint_fails_when_a_stage_has_no_template_in_a_language_the_policy_lists(tmp_path):
    templates = tmp_path / "rules" / "templates"
    shutil.copytree(RULES / "templates", templates)
    shutil.move(templates / "en" / "second_reminder.txt.j2", templates / "second_reminder.txt.j2")
    (templates / "fr" / "second_reminder.txt.j2").unlink()     # fr falls back to the shared (English) file too
    problems = Templates(tmp_path / "rules", parse_policy(TEXT)).lint()
    assert sorted((Path(p.source).relative_to(templates).as_posix(), p.where) for p in problems) == [
        ("en/second_reminder.txt.j2", "language en"), ("fr/second_reminder.txt.j2", "language fr")]
    assert all("is not in" in p.message and "the policy lists fr, en, es" in p.message for p in problems)


def test_a_courtesy_email_of_a_library_with_its_own_sender_is_from_it():
    from adapters.render.context import NoticeContext
    from engine.decide import Notice
    from engine.facts import Loan, Patron

    policy = parse_policy(SAMPLE)
    templates = Templates(RULES, policy)
    patron = Patron("P1", barcode="1", first_name="Zoé", last_name="Lefèvre", email="zoe@etu.example")
    loans = [Loan("L1", "P1", "DROIT", dt.date(2026, 11, 26), "B1", "Précis de droit civil")]
    for stage, sender in (("courtesy", "Bibliothèque de droit <droit@univ.example>"),
                          ("first_reminder", "Service du contentieux <contentieux@univ.example>")):
        notice = Notice(f"2026-11-23/{stage}/email/P1/-", dt.date(2026, 11, 23), stage, "email", "P1", None,
                        ("L1",), patron.email, patron.email)
        msg = templates.email(NoticeContext.build(policy, notice, patron, loans))
        assert (msg["From"], msg["Reply-To"]) == (sender, sender.split("<")[1].rstrip(">"))
