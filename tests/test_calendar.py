"""The library calendar: open-day counting and closed-day shifting, as tables of
(loan, calendar, date) → notice with the dates written out by hand (not computed).

November 2026 starts on a Sunday: its Mondays are the 2nd, 9th, 16th, 23rd and 30th.
"""
from __future__ import annotations

import datetime as dt

import pytest

from engine import decide
from engine.facts import Candidate
from engine.policy import parse_policy
from engine.timeline import timeline
from engine.yamlsource import InputError

try:
    from tests.engine_cases import d, loan, patron, reminders_text, simulate
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import d, loan, patron, reminders_text, simulate


def policy_with(stages: str, calendar: str, restart: str = "", extra: str = ""):
    """The shipped policy with these stages, this calendar (and restart) instead of its own."""
    text = reminders_text()
    start = text.index("stages:\n")
    end = text.index("libraries:\n")
    text = text[:start] + stages + text[end:] + calendar + restart + extra
    return parse_policy(text, "calendar.yaml")


WEEKENDS = """
calendar:
  closed_weekdays: [saturday, sunday]
  closed: [2026-11-11, {from: 2026-12-21, to: 2027-01-02}]
"""
STAGES = """stages:
  - {id: courtesy, offset_days: -3, count: open_days, channel: email}
  - {id: first_reminder, offset_days: 7, count: open_days, channel: email}
  - {id: second_reminder, offset_days: 21, channel: email}
  - {id: letter, offset_days: 35, channel: letter}
"""

# due date     courtesy (-3 open)  first_reminder (+7 open)  second_reminder (+21, email)  letter (+35, moved)
TRIGGERS = [
    ("2026-11-02", "2026-10-28",   "2026-11-12",             "2026-11-23",                 "2026-12-07"),
    ("2026-11-06", "2026-11-03",   "2026-11-18",             "2026-11-27",                 "2026-12-11"),
    ("2026-11-07", "2026-11-04",   "2026-11-18",             "2026-11-28",                 "2026-12-14"),
    ("2026-11-16", "2026-11-10",   "2026-11-25",             "2026-12-07",                 "2027-01-04"),
    ("2026-11-19", "2026-11-16",   "2026-11-30",             "2026-12-10",                 "2027-01-04"),
    ("2026-12-15", "2026-12-10",   "2027-01-07",             "2027-01-05",                 "2027-01-19"),
]


@pytest.mark.parametrize("due, courtesy, first, second, letter", TRIGGERS, ids=[row[0] for row in TRIGGERS])
def test_trigger_dates_on_a_calendar(due, courtesy, first, second, letter):
    """Open days counted for count: open_days (11 November and the winter closure skipped, and
    weekends); a letter that falls on a closed day goes out on the next open day; an email keeps
    its day (Saturday 28 November, during the winter closure on 5 January)."""
    line = timeline(policy_with(STAGES, WEEKENDS))
    got = [line.trigger(i, "SCI", d(due)).on for i in range(4)]
    assert got == [d(courtesy), d(first), d(second), d(letter)]


def test_emails_wait_too_when_the_policy_says_so():
    policy = policy_with(STAGES, WEEKENDS + "  send_on_closed_days: {email: false}\n")
    line = timeline(policy)
    assert line.trigger(2, "SCI", d("2026-11-07")).on == d("2026-11-30")       # Saturday 28th → Monday
    assert line.trigger(2, "SCI", d("2026-12-15")).on == d("2027-01-05")       # already an open day
    assert line.trigger(2, "SCI", d("2026-11-02")).counted == d("2026-11-23")


def test_a_library_calendar_adds_to_the_institutions():
    text = reminders_text().replace('    letters: {printer: bu-sciences}\n',
                                    '    letters: {printer: bu-sciences}\n    calendar: {closed: [2026-12-07]}\n')
    policy = parse_policy(text[:text.index("stages:\n")] + STAGES + text[text.index("libraries:\n"):] + WEEKENDS,
                          "calendar.yaml")
    line = timeline(policy)
    assert line.trigger(3, "SCI", d("2026-11-02")).on == d("2026-12-08")       # SCI is closed on the 7th
    assert line.trigger(3, "DROIT", d("2026-11-02")).on == d("2026-12-07")     # DROIT is not


# --- day by day: what goes out, and when ---------------------------------------------------------

#  loan   due           run days            → notice sent (stage, date), in order
RUNS = [
    # a letter triggering on Saturday 12 December goes out on Monday 14
    ("L1", "2026-11-07", ("2026-12-11", "2026-12-15"), [("letter", "2026-12-14")]),
    # the first reminder counts 7 open days: past 11 November and two weekends
    ("L2", "2026-11-02", ("2026-11-08", "2026-11-13"), [("first_reminder", "2026-11-12")]),
    # an email on a closed day goes out that day (second reminder, Saturday 28 November)
    ("L3", "2026-11-07", ("2026-11-27", "2026-11-30"), [("second_reminder", "2026-11-28")]),
    # a letter whose day falls in the winter closure goes out on the first day back
    ("L4", "2026-11-19", ("2026-12-20", "2027-01-05"), [("letter", "2027-01-04")]),
]


@pytest.mark.parametrize("loan_id, due, days, sent", RUNS, ids=[row[0] for row in RUNS])
def test_daily_runs_on_a_calendar(loan_id, due, days, sent):
    policy = policy_with(STAGES, WEEKENDS)
    ln = loan(due, loan_id=loan_id)
    sim = simulate(policy, [ln], {"P1": patron("P1")}, d(days[0]), d(days[1]))
    assert sorted((n.stage, n.date) for n in sim.notices) == [(s, d(when)) for s, when in sent]
    assert sim.other(loan_id) == []


def _plan(policy, due, on, recorded=()):
    cand = Candidate(loan(due), "public", "", frozenset(recorded))
    return decide.plan_day(policy, [cand], {"P1": patron("P1")}, d(on))


@pytest.mark.parametrize("window, run_on, sent", [
    # the letter triggers on Friday 13 November (due 9 October); Friday's run was missed
    (2, "2026-11-14", False),     # Saturday: closed, letters wait for an open day
    (2, "2026-11-15", False),     # Sunday: closed
    (2, "2026-11-16", False),     # Monday: 3 days after the trigger, past a 2-day window (stale)
    (3, "2026-11-16", True),      # a 3-day window: caught up on Monday
])
def test_catch_up_window_counts_calendar_days_and_letters_wait_for_an_open_day(window, run_on, sent):
    stages = STAGES.replace("{id: letter, offset_days: 35, channel: letter}",
                            f"{{id: letter, offset_days: 35, channel: letter, max_delay_days: {window}}}")
    plan = _plan(policy_with(stages, WEEKENDS), "2026-10-09", run_on)
    assert [(n.stage, n.date) for n in plan.notices] == ([("letter", d(run_on))] if sent else [])


def test_supersession_keeps_its_meaning():
    """A catch-up run with two stages due for one loan sends only the latest."""
    stages = STAGES.replace("channel: email}\n  - {id: second", "channel: email, max_delay_days: 30}\n  - {id: second")
    plan = _plan(policy_with(stages, WEEKENDS), "2026-11-07", "2026-11-28")
    assert [(n.stage, n.date) for n in plan.notices] == [("second_reminder", d("2026-11-28"))]
    assert [(x.stage, x.status) for x in plan.decisions if x.stage == "first_reminder"] == [
        ("first_reminder", "superseded")]


# --- the restart table on a calendar with a closure across the restart day ----------------------

R = d("2026-11-22")             # a Sunday, in the closure 20–24 November
CLOSURE = "\ncalendar:\n  closed: [{from: 2026-11-20, to: 2026-11-24}]\n"
RESTART = "restart: {resumed_on: 2026-11-22}\n"
RESTART_STAGES = """stages:
  - {id: courtesy, offset_days: -3, channel: email}
  - {id: first_reminder, offset_days: 7, count: open_days, channel: email}
  - {id: second_reminder, offset_days: 21, channel: email}
  - {id: letter, offset_days: 35, channel: letter}
"""
# Written out by hand. The first reminder counts 7 open days (20–24 November skipped); emails go
# out on closed days; a letter whose day is closed goes out on 25 November. "Trigger date" is the
# day a notice goes out: one counted before R but moved to an open day on or after R is sent.
#  overdue  due date     courtesy      first_reminder second_reminder letter
CLOSED_RESTART_TABLE = [
    (-3, "2026-11-25", "2026-11-22", "2026-12-02", "2026-12-16", "2026-12-30"),
    (0,  "2026-11-22", None,         "2026-12-01", "2026-12-13", "2026-12-27"),
    (3,  "2026-11-19", None,         "2026-12-01", "2026-12-10", "2026-12-24"),
    (4,  "2026-11-18", None,         "2026-11-30", "2026-12-09", "2026-12-23"),
    (7,  "2026-11-15", None,         "2026-11-27", "2026-12-06", "2026-12-20"),
    (9,  "2026-11-13", None,         "2026-11-25", "2026-12-04", "2026-12-18"),   # 0–7 days would stop at 7
    (10, "2026-11-12", None,         None,         "2026-12-03", "2026-12-17"),   # 7 open days: 19 November
    (20, "2026-11-02", None,         None,         "2026-11-23", "2026-12-07"),   # an email on a closed day
    (21, "2026-11-01", None,         None,         "2026-11-22", "2026-12-06"),   # day R itself
    (22, "2026-10-31", None,         None,         None,         "2026-12-05"),
    (32, "2026-10-21", None,         None,         None,         "2026-11-25"),
    (33, "2026-10-20", None,         None,         None,         "2026-11-25"),   # 24 November: closed
    (35, "2026-10-18", None,         None,         None,         "2026-11-25"),   # day R: closed
    (36, "2026-10-17", None,         None,         None,         "2026-11-25"),   # before R, moved after it
    (37, "2026-10-16", None,         None,         None,         "2026-11-25"),   # 20 November: first closed day
    (38, "2026-10-15", None,         None,         None,         None),           # 19 November: open, before R
]
STAGE_IDS = ("courtesy", "first_reminder", "second_reminder", "letter")


@pytest.fixture(scope="module")
def closed_restart_run():
    policy = policy_with(RESTART_STAGES, CLOSURE, RESTART)
    loans = [loan(due, loan_id=f"L{k:+03d}", patron_id=f"P{k:+03d}") for k, due, *_ in CLOSED_RESTART_TABLE]
    return simulate(policy, loans, {ln.patron_id: patron(ln.patron_id) for ln in loans}, R, d("2027-01-21"))


@pytest.mark.parametrize("overdue, due, courtesy, first, second, letter", CLOSED_RESTART_TABLE,
                         ids=[f"overdue {row[0]} days (due {row[1]})" for row in CLOSED_RESTART_TABLE])
def test_restart_table_on_a_calendar(closed_restart_run, overdue, due, courtesy, first, second, letter):
    assert d(due) == R - dt.timedelta(days=overdue)
    lid = f"L{overdue:+03d}"
    expected = {s: d(when) for s, when in zip(STAGE_IDS, (courtesy, first, second, letter)) if when}
    assert closed_restart_run.sent(lid) == expected
    assert closed_restart_run.other(lid) == []


# --- lint: file:line:key ---------------------------------------------------------------------------

@pytest.mark.parametrize("calendar, where, message", [
    ("calendar: {closed: [{from: 2026-12-24, to: 2026-12-20}]}", "calendar.closed[0]", "ends (2026-12-20) before"),
    ("calendar: {closed_weekdays: [monday, tuesday, wednesday, thursday, friday, saturday, sunday]}",
     "calendar", "every day of the week is closed"),
    ("calendar: {closed_weekdays: [sundays]}", "calendar.closed_weekdays[0]", "monday"),
    ("calendar: {send_on_closed_days: {pigeon: true}}", "calendar.send_on_closed_days", "no stage goes out on it"),
])
def test_calendar_lint(calendar, where, message):
    with pytest.raises(InputError) as info:
        parse_policy(reminders_text() + calendar + "\n", "reminders.yaml")
    text = str(info.value)
    assert f": {where}" in text and message in text, text
    line = reminders_text().count("\n") + 1
    assert f"reminders.yaml:{line}:" in text, text


# --- rules by library: lint ------------------------------------------------------------------------

DROIT_LETTERS = "    letters: {mailbox: droit-contentieux@univ.example}\n"


@pytest.mark.parametrize("override, where, message", [
    ("[{id: first_remnder, offset_days: 1}]", "libraries.DROIT.stages[0].id", "unknown stage 'first_remnder'"),
    ("[{id: first_reminder, channel: pigeon}]", "libraries.DROIT.stages[0].channel", "unknown channel 'pigeon'"),
    ("[{id: first_reminder, offset_days: 30}]", "libraries.DROIT.stages[0].offset_days",
     "second_reminder (21) comes after first_reminder (30)"),
    ("[{id: first_reminder, offset_days: 1}, {id: first_reminder, offset_days: 2}]",
     "libraries.DROIT.stages[1].id", "already overridden"),
    ("[{id: first_reminder, offset_days: 9999}]", "libraries.DROIT.stages[0].offset_days", "3650"),
    ("[{id: first_reminder, count: weeks}]", "libraries.DROIT.stages[0].count", "'days' or 'open_days'"),
])
def test_library_override_lint(override, where, message):
    text = reminders_text().replace(DROIT_LETTERS, DROIT_LETTERS + f"    stages: {override}\n")
    with pytest.raises(InputError) as info:
        parse_policy(text, "reminders.yaml")
    line = text.splitlines().index(f"    stages: {override}") + 1
    assert f"reminders.yaml:{line}: {where}: " in str(info.value) and message in str(info.value), str(info.value)


def test_an_audience_naming_an_unknown_library_is_an_error_and_item_types_need_no_declaration():
    text = reminders_text().replace("  - {id: letter, offset_days: 35, channel: letter}",
                                    "  - {id: letter, offset_days: 35, channel: letter, audience: {libraries: [SCIENCES]}}")
    with pytest.raises(InputError, match=r"reminders.yaml:\d+: stages\[3\].audience.libraries: 'SCIENCES' is not a "
                                         r"library of the policy \(known: SCI, DROIT\)"):
        parse_policy(text, "reminders.yaml")
    fine = reminders_text().replace("  - {id: letter, offset_days: 35, channel: letter}",
                                    "  - {id: letter, offset_days: 35, channel: letter, audience: {item_types: [DVD]}}")
    assert parse_policy(fine, "reminders.yaml").stages[3].audience.item_types == ["DVD"]


def test_the_schema_has_the_new_keys():
    from engine.policy import policy_json_schema

    schema = policy_json_schema()
    defs = schema["$defs"]
    assert {"closed_weekdays", "closed", "ical", "send_on_closed_days"} <= set(defs["CalendarSpec"]["properties"])
    assert {"calendar", "stages"} <= set(defs["Library"]["properties"])
    assert "count" in defs["Stage"]["properties"]
    assert {"item_types", "libraries"} <= set(defs["Audience"]["properties"])
    assert defs["StageOverride"]["properties"]["offset_days"]["anyOf"][0]["maximum"] == 3650
    assert "calendar" in schema["properties"]
