"""SMS texts: <stage>.sms.j2 in every language, measured in segments by `rappel lint`.

A stage that may go out by SMS needs its .sms.j2 in each language; lint renders it with the sample
notice and counts its segments (GSM-7: 160 characters in one, 153 each in several; UCS-2, as soon as
one character is outside GSM-7: 70 and 67); more than sms.max_segments (default 2) is an error
naming the file and the language.
"""
from __future__ import annotations

import shutil

import pytest

from adapters.channels.registry import REGISTRY
from adapters.render import Templates
from adapters.render.segments import segments
from engine.policy import parse_policy

from conftest import RULES

FIRST = "  - {id: first_reminder, offset_days: 7, channel: email}"
BY_SMS = "  - {id: first_reminder, offset_days: 7, channel: email, channels: [email, sms]}"


@pytest.mark.parametrize("text, count, encoding", [
    ("a" * 160,          1, "GSM-7"),
    ("a" * 161,          2, "GSM-7"),
    ("a" * 306,          2, "GSM-7"),
    ("a" * 307,          3, "GSM-7"),
    ("€" * 80,           1, "GSM-7"),      # the extension table counts twice
    ("€" * 81,           2, "GSM-7"),
    ("é" * 160,          1, "GSM-7"),      # é, è, à are GSM-7
    ("ê" * 70,           1, "UCS-2"),      # ê is not
    ("ê" + "a" * 70,     2, "UCS-2"),      # one such character and the whole text is UCS-2
    ("œ" * 134,          2, "UCS-2"),
    ("œ" * 135,          3, "UCS-2"),
])
def test_segments(text, count, encoding):
    measured = segments(text)
    assert (measured.count, measured.encoding) == (count, encoding)


@pytest.fixture
def rules(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(RULES / "templates", folder / "templates")
    return folder


def lint(rules, extra: str = ""):
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8").replace(FIRST, BY_SMS) + extra
    assert BY_SMS in text
    policy = parse_policy(text, "reminders.yaml", REGISTRY.specs())
    return [str(p) for p in Templates(rules, policy).lint()]


def test_the_shipped_sms_templates_pass_lint(rules):
    assert lint(rules) == []


def test_an_sms_past_two_segments_is_an_error_with_its_file_and_language(rules):
    fr = rules / "templates" / "fr" / "first_reminder.sms.j2"
    en = rules / "templates" / "en" / "first_reminder.sms.j2"
    fr.write_text("{{ sender.name }} : vos documents sont en retard. Merci de les rapporter au plus tôt à la "
                  "bibliothèque, ou de les renouveler en ligne sur votre compte lecteur.", encoding="utf-8")
    # 164 characters: two GSM-7 segments, but "ô" is outside GSM-7, so UCS-2 and three
    en.write_text("{{ sender.name }}: your items are overdue. " + "Please bring them back as soon as you can. " * 7,
                  encoding="utf-8")
    assert lint(rules) == [
        f"{fr}: stage first_reminder: language fr: the SMS takes 164 UCS-2 characters ('ô' is outside GSM-7): "
        f"3 segments, more than sms.max_segments (2) in reminders.yaml",
        f"{en}: stage first_reminder: language en: the SMS takes 348 GSM-7 characters: 3 segments, more than "
        f"sms.max_segments (2) in reminders.yaml"]


def test_max_segments_is_the_policy_s(rules):
    assert lint(rules, "sms: {max_segments: 1}\n") == []          # the shipped texts take one segment
    es = rules / "templates" / "es" / "first_reminder.sms.j2"
    es.write_text("{{ sender.name }}: " + "documentos vencidos. " * 8, encoding="utf-8")
    [problem] = lint(rules, "sms: {max_segments: 1}\n")
    assert problem.startswith(f"{es}: stage first_reminder: language es: the SMS takes ")
    assert problem.endswith("2 segments, more than sms.max_segments (1) in reminders.yaml")


def test_a_stage_that_may_go_by_sms_needs_its_sms_template_in_every_language(rules):
    (rules / "templates" / "en" / "first_reminder.sms.j2").unlink()
    assert lint(rules) == [f"{rules / 'templates' / 'en' / 'first_reminder.sms.j2'}: language en: template file is "
                           f"missing"]


def test_a_stage_that_never_goes_by_sms_needs_none(rules):
    (rules / "templates" / "en" / "first_reminder.sms.j2").unlink()
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8")
    assert Templates(rules, parse_policy(text, "reminders.yaml", REGISTRY.specs())).lint() == []


def test_a_library_that_sends_a_stage_by_sms_needs_its_sms_template(rules):
    """The letter stage sent by SMS for DROIT alone (libraries.DROIT.stages): lint asks for
    letter.sms.j2 in every language, as for a stage the whole institution sends by SMS."""
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8")
    droit = '    letters: {mailbox: droit-contentieux@univ.example}\n'
    assert text.count(droit) == 1
    text = text.replace(droit, droit + "    stages: [{id: letter, channel: sms}]\n")
    policy = parse_policy(text, "reminders.yaml", REGISTRY.specs())
    problems = [str(p) for p in Templates(rules, policy).lint()]
    assert sorted(p.split("templates/")[1].split(":")[0] for p in problems if "letter.sms.j2" in p) == \
        ["en/letter.sms.j2", "es/letter.sms.j2", "fr/letter.sms.j2"], problems
