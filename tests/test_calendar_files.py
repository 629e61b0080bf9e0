"""calendar.ical: a library's closures as an iCalendar file, read by the service into closed dates."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from adapters.channels.memory import MemoryChannel
from adapters.sources.ical import IcalError, closed_days
from cli import app
from engine.timeline import timeline
from service.rules import load_policy, load_rules, policy_fingerprint

try:
    from tests.daemon_cases import copy_rules
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import copy_rules

PARIS = ZoneInfo("Europe/Paris")

ICS = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Université//Fermetures//FR\r
BEGIN:VEVENT\r
UID:noel@univ.example\r
SUMMARY:Fermeture de Noël\r
DTSTART;VALUE=DATE:20261221\r
DTEND;VALUE=DATE:20270104\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:inventaire@univ.example\r
SUMMARY:Inventaire (après-midi)\r
DTSTART:20261112T120000Z\r
DTEND:20261112T170000Z\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:travail@univ.example\r
SUMMARY:Fête du travail\r
DTSTART;VALUE=DATE:20260501\r
RRULE:FREQ=YEARLY\r
EXDATE;VALUE=DATE:20280501\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_the_days_an_icalendar_file_covers(tmp_path):
    path = tmp_path / "fermetures.ics"
    path.write_text(ICS, encoding="utf-8")
    days = set(closed_days(path, PARIS))
    assert {dt.date(2026, 12, 21), dt.date(2027, 1, 3)} <= days          # DTEND exclusive: 4 January open
    assert dt.date(2027, 1, 4) not in days and dt.date(2026, 12, 20) not in days
    assert dt.date(2026, 11, 12) in days and dt.date(2026, 11, 13) not in days   # a timed event: its day
    assert {dt.date(2026, 5, 1), dt.date(2027, 5, 1), dt.date(2029, 5, 1)} <= days
    assert dt.date(2028, 5, 1) not in days                               # EXDATE
    assert len(days) == 14 + 1 + 9


def test_a_file_that_is_not_icalendar_is_refused(tmp_path):
    path = tmp_path / "x.ics"
    path.write_text("this is not a calendar\n", encoding="utf-8")
    with pytest.raises(IcalError, match="not an iCalendar file"):
        closed_days(path, PARIS)


def _rules(tmp_path: Path, ics: str | None = ICS) -> Path:
    rules = copy_rules(tmp_path, ("    letters: {printer: bu-sciences}\n",
                                  "    letters: {printer: bu-sciences}\n    calendar: {ical: calendars/sci.ics}\n"))
    if ics is not None:
        (rules / "calendars").mkdir()
        (rules / "calendars" / "sci.ics").write_text(ics, encoding="utf-8")
    return rules


def test_the_policy_reads_the_file_and_the_engine_gets_its_dates(tmp_path):
    policy = load_policy(_rules(tmp_path))
    line = timeline(policy)
    # a letter due to go out on Monday 21 December at SCI goes out on 4 January; DROIT keeps its day
    letter = [s.id for s in policy.stages].index("letter")
    assert line.trigger(letter, "SCI", dt.date(2026, 11, 16)).on == dt.date(2027, 1, 4)
    assert line.trigger(letter, "DROIT", dt.date(2026, 11, 16)).on == dt.date(2026, 12, 21)


def test_the_daemon_copies_the_file_and_sees_an_edit(tmp_path):
    rules = _rules(tmp_path)
    before = policy_fingerprint(rules)
    loaded = load_rules(rules, lambda policy, templates: MemoryChannel())
    try:
        assert (loaded.snapshot / "calendars" / "sci.ics").is_file()
        letter = [s.id for s in loaded.policy.stages].index("letter")
        assert timeline(loaded.policy).trigger(letter, "SCI", dt.date(2026, 11, 16)).on == dt.date(2027, 1, 4)
    finally:
        loaded.discard()
    (rules / "calendars" / "sci.ics").write_text(ICS.replace("20270104", "20270105"), encoding="utf-8")
    assert policy_fingerprint(rules) != before


@pytest.mark.parametrize("ics, message", [
    (None, "cannot read"),
    ("BEGIN:VCALENDAR\r\nnot really\r\n", "not an iCalendar file"),
])
def test_lint_names_the_ical_key_of_a_file_it_cannot_use(tmp_path, ics, message):
    rules = _rules(tmp_path, ics)
    result = CliRunner().invoke(app, ["lint", "--rules", str(rules), "--outbox", str(tmp_path / "outbox")])
    assert result.exit_code == 2, result.output
    text = (rules / "reminders.yaml").read_text(encoding="utf-8")
    line = text.splitlines().index("    calendar: {ical: calendars/sci.ics}") + 1
    assert f"reminders.yaml:{line}: libraries.SCI.calendar.ical: " in result.stderr
    assert message in result.stderr
