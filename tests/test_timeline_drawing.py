"""The policy's time line (engine/axis.py) and its drawing (adapters/render/timeline.py).

The shipped policy: courtesy 3 days before the due date, first reminder on day 7, second on day 21
(all by email), a letter on day 35, each caught up within 2 days; an email stage after the due date
goes as a letter to a patron without an email address, and an email refused for good as a letter.
"""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from adapters.render.timeline import LABELS, timeline_svg
from engine.policy import parse_policy
from engine.axis import Alternative, timeline

RULES = Path(__file__).resolve().parent.parent / "rules"
SHIPPED = (RULES / "reminders.yaml").read_text(encoding="utf-8")
NO_EMAIL, REFUSED = Alternative("letter", "no_email"), Alternative("letter", "refused")


def policy(**changes):
    text = SHIPPED
    for old, new in changes.items():
        text = text.replace(old, new)
    return parse_policy(text)


# (stage, day, last day, window, channel, alternatives)
SHIPPED_POINTS = [
    ("courtesy", -3, -1, 2, "email", (REFUSED,)),
    ("first_reminder", 7, 9, 2, "email", (NO_EMAIL, REFUSED)),
    ("second_reminder", 21, 23, 2, "email", (NO_EMAIL, REFUSED)),
    ("letter", 35, 37, 2, "letter", ()),
]


def rows(line):
    return [(p.stage, p.day, p.last_day, p.window, p.channel, p.alternatives) for p in line.points]


def test_the_shipped_policy_as_points():
    line = timeline(policy())
    assert rows(line) == SHIPPED_POINTS
    assert (line.restart, line.first_day, line.last_day) == (None, -3, 37)
    assert [p.destination for p in line.points] == ["", "", "", ""]


@pytest.mark.parametrize("changes, stage, expected", [
    # a stage's own window
    ({"{id: letter, offset_days: 35, channel: letter}": "{id: letter, offset_days: 35, channel: letter, "
                                                        "max_delay_days: 10}"},
     "letter", (35, 45, 10, "letter", ())),
    # the policy's default window
    ({"max_delay_days: 2 ": "max_delay_days: 5 "}, "first_reminder", (7, 12, 5, "email", (NO_EMAIL, REFUSED))),
    # courtesy by letter for patrons without email
    ({"courtesy_by_letter: false": "courtesy_by_letter: true"}, "courtesy", (-3, -1, 2, "email", (NO_EMAIL, REFUSED))),
    # no letter instead of an email after the due date
    ({"letters_after_due: true": "letters_after_due: false"}, "first_reminder", (7, 9, 2, "email", (REFUSED,))),
    # a refused email becomes nothing
    ({"fallback: {email: letter}": "fallback: {email: none}"}, "second_reminder", (21, 23, 2, "email", (NO_EMAIL,))),
])
def test_points_follow_the_policy(changes, stage, expected):
    [point] = [p for p in timeline(policy(**changes)).points if p.stage == stage]
    assert (point.day, point.last_day, point.window, point.channel, point.alternatives) == expected


def test_the_restart_day():
    line = timeline(policy(**{"# restart: {resumed_on: 2026-11-22}": "restart: {resumed_on: 2026-11-22}"}))
    assert line.restart == dt.date(2026, 11, 22)


@pytest.mark.parametrize("library, destinations", [
    ("SCI", ["printer:bu-sciences"] * 4),
    ("DROIT", ["mailbox:droit-contentieux@univ.example"] * 4),
])
def test_per_library_letters_go_where_the_library_says(library, destinations):
    line = timeline(policy(), library)
    assert [p.destination for p in line.points] == destinations and rows(line) == SHIPPED_POINTS
    # without an email fallback nor letters for patrons without email, an email stage sends no letter
    bare = timeline(policy(**{"fallback: {email: letter}": "fallback: {email: none}"}), library)
    assert [p.destination for p in bare.points] == ["", destinations[1], destinations[2], destinations[3]]


def test_an_unknown_library_is_refused():
    with pytest.raises(KeyError):
        timeline(policy(), "NOPE")


@pytest.mark.parametrize("lang", ["fr", "en", "es"])
def test_the_svg_parses_and_names_each_stage(lang):
    svg = timeline_svg(policy(**{"# restart: {resumed_on: 2026-11-22}": "restart: {resumed_on: 2026-11-22}"}),
                       lang=lang, library="SCI")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    stages = [g.get("data-stage") for g in root.iter(f"{ns}g")]
    assert stages == ["courtesy", "first_reminder", "second_reminder", "letter"]
    texts = " ".join(t.text for t in root.iter(f"{ns}text"))
    for stage in stages:
        assert stage in texts
    words = LABELS[lang]
    assert words["due"] in texts and words["no_email"] in texts and "printer:bu-sciences" in texts
    assert {"fr": "22 novembre 2026", "en": "November 22, 2026", "es": "22 de noviembre de 2026"}[lang] in texts
    assert not list(root.iter(f"{ns}script")) and "<script" not in svg


def test_the_svg_escapes_what_the_policy_says():
    hostile = policy(**{"letters: {printer: bu-sciences}": 'letters: {printer: "<script>x</script>&"}'})
    svg = timeline_svg(hostile, lang="en", library="SCI")
    assert "<script" not in svg and "&lt;script&gt;x&lt;/script&gt;&amp;" in svg
    ET.fromstring(svg)


def test_a_librarys_own_stages_are_on_its_time_line():
    from engine.axis import timeline as axis
    from engine.policy import parse_policy
    from tests.engine_cases import reminders_text

    letters = "    letters: {mailbox: droit-contentieux@univ.example}\n"
    policy = parse_policy(reminders_text().replace(
        letters, letters + "    stages: [{id: first_reminder, offset_days: 1}]\n"), "reminders.yaml")
    assert [p.day for p in axis(policy, "DROIT").points] == [-3, 1, 21, 35]
    assert [p.day for p in axis(policy, "SCI").points] == [-3, 7, 21, 35]
    assert [p.day for p in axis(policy).points] == [-3, 7, 21, 35]
