"""Restart without retroactive processing: the design's worked example, day by day.

Policy: the shipped rules/reminders.yaml with `restart: {resumed_on: 2026-11-22}` (day R).
Every loan below is simulated with one run per day from R to R+60, the ledger fed back after
each run, and we check exactly which stages went out, on which date. The design's table:

| loan overdue on day R by | 1st reminder (day 7) | 2nd reminder (day 21) | letter (day 35) |
|---|---|---|---|
| 0–7 days     | sent on its day | sent            | sent            |
| 8–20 days    | never           | sent on day 21  | sent            |
| 21 days      | never           | sent on day R   | sent            |
| 22–34 days   | never           | never           | sent on day 35  |
| over 35 days | never           | never           | never           |

35 days exactly: the letter's trigger is R itself, which is not before R, so it goes out on R.
Negative "overdue" (not yet due on R) is our extension: the courtesy (due - 3) goes out only if
its trigger is on or after R.
"""
from __future__ import annotations

import datetime as dt

import pytest

try:
    from tests.engine_cases import d, loan, patron, simulate, with_restart, default_policy
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import d, loan, patron, simulate, with_restart, default_policy

R = d("2026-11-22")
LAST_RUN = d("2027-01-21")  # R + 60

# Written out by hand from the design's table (not computed): the date each stage goes out, or None.
#  overdue  due date      courtesy      first_reminder second_reminder letter
RESTART_TABLE = [
    # --- not yet due on R (our extension): courtesy only if due - 3 >= R
    (-5, "2026-11-27", "2026-11-24", "2026-12-04", "2026-12-18", "2027-01-01"),
    (-4, "2026-11-26", "2026-11-23", "2026-12-03", "2026-12-17", "2026-12-31"),
    (-3, "2026-11-25", "2026-11-22", "2026-12-02", "2026-12-16", "2026-12-30"),
    (-2, "2026-11-24", None,         "2026-12-01", "2026-12-15", "2026-12-29"),
    (-1, "2026-11-23", None,         "2026-11-30", "2026-12-14", "2026-12-28"),
    # --- 0–7 days: 1st reminder sent on its day (due + 7), 2nd reminder and letter sent
    (0,  "2026-11-22", None,         "2026-11-29", "2026-12-13", "2026-12-27"),
    (1,  "2026-11-21", None,         "2026-11-28", "2026-12-12", "2026-12-26"),
    (2,  "2026-11-20", None,         "2026-11-27", "2026-12-11", "2026-12-25"),
    (3,  "2026-11-19", None,         "2026-11-26", "2026-12-10", "2026-12-24"),
    (4,  "2026-11-18", None,         "2026-11-25", "2026-12-09", "2026-12-23"),
    (5,  "2026-11-17", None,         "2026-11-24", "2026-12-08", "2026-12-22"),
    (6,  "2026-11-16", None,         "2026-11-23", "2026-12-07", "2026-12-21"),
    (7,  "2026-11-15", None,         "2026-11-22", "2026-12-06", "2026-12-20"),
    # --- 8–20 days: never the 1st reminder; 2nd reminder on day 21; letter
    (8,  "2026-11-14", None,         None,         "2026-12-05", "2026-12-19"),
    (9,  "2026-11-13", None,         None,         "2026-12-04", "2026-12-18"),
    (10, "2026-11-12", None,         None,         "2026-12-03", "2026-12-17"),
    (11, "2026-11-11", None,         None,         "2026-12-02", "2026-12-16"),
    (12, "2026-11-10", None,         None,         "2026-12-01", "2026-12-15"),
    (13, "2026-11-09", None,         None,         "2026-11-30", "2026-12-14"),
    (14, "2026-11-08", None,         None,         "2026-11-29", "2026-12-13"),
    (15, "2026-11-07", None,         None,         "2026-11-28", "2026-12-12"),
    (16, "2026-11-06", None,         None,         "2026-11-27", "2026-12-11"),
    (17, "2026-11-05", None,         None,         "2026-11-26", "2026-12-10"),
    (18, "2026-11-04", None,         None,         "2026-11-25", "2026-12-09"),
    (19, "2026-11-03", None,         None,         "2026-11-24", "2026-12-08"),
    (20, "2026-11-02", None,         None,         "2026-11-23", "2026-12-07"),
    # --- exactly 21 days: never the 1st; 2nd reminder on day R; letter
    (21, "2026-11-01", None,         None,         "2026-11-22", "2026-12-06"),
    # --- 22–34 days: only the letter, on day 35
    (22, "2026-10-31", None,         None,         None,         "2026-12-05"),
    (23, "2026-10-30", None,         None,         None,         "2026-12-04"),
    (24, "2026-10-29", None,         None,         None,         "2026-12-03"),
    (25, "2026-10-28", None,         None,         None,         "2026-12-02"),
    (26, "2026-10-27", None,         None,         None,         "2026-12-01"),
    (27, "2026-10-26", None,         None,         None,         "2026-11-30"),
    (28, "2026-10-25", None,         None,         None,         "2026-11-29"),
    (29, "2026-10-24", None,         None,         None,         "2026-11-28"),
    (30, "2026-10-23", None,         None,         None,         "2026-11-27"),
    (31, "2026-10-22", None,         None,         None,         "2026-11-26"),
    (32, "2026-10-21", None,         None,         None,         "2026-11-25"),
    (33, "2026-10-20", None,         None,         None,         "2026-11-24"),
    (34, "2026-10-19", None,         None,         None,         "2026-11-23"),
    # --- exactly 35 days: the letter's trigger is R itself
    (35, "2026-10-18", None,         None,         None,         "2026-11-22"),
    # --- over 35 days: nothing, ever
    (36, "2026-10-17", None,         None,         None,         None),
    (37, "2026-10-16", None,         None,         None,         None),
    (38, "2026-10-15", None,         None,         None,         None),
    (39, "2026-10-14", None,         None,         None,         None),
    (40, "2026-10-13", None,         None,         None,         None),
]
STAGES = ("courtesy", "first_reminder", "second_reminder", "letter")


def _loan_id(overdue: int) -> str:
    return f"L{overdue:+03d}"


@pytest.fixture(scope="module")
def restart_run():
    policy = with_restart(R)
    assert policy.resumed_on == R
    loans = [loan(due, loan_id=_loan_id(k), patron_id=f"P{_loan_id(k)}", library="SCI")
             for k, due, *_ in RESTART_TABLE]
    patrons = {ln.patron_id: patron(ln.patron_id) for ln in loans}
    return simulate(policy, loans, patrons, R, LAST_RUN)


def test_table_covers_every_day_once_and_matches_the_design_rows():
    overdue = [k for k, *_ in RESTART_TABLE]
    assert overdue == list(range(-5, 41))
    for k, due, courtesy, first, second, letter in RESTART_TABLE:
        assert d(due) == R - dt.timedelta(days=k)
        # the design's rows, as ranges: which columns say "never"
        assert (courtesy is not None) == (k <= -3), k
        assert (first is not None) == (k <= 7), k
        assert (second is not None) == (k <= 21), k
        assert (letter is not None) == (k <= 35), k
    assert [row[4] for row in RESTART_TABLE if row[0] == 21] == ["2026-11-22"]    # day R
    assert [row[5] for row in RESTART_TABLE if row[0] == 35] == ["2026-11-22"]    # day R


@pytest.mark.parametrize("overdue, due, courtesy, first, second, letter", RESTART_TABLE,
                         ids=[f"overdue {row[0]} days (due {row[1]})" for row in RESTART_TABLE])
def test_restart_table(restart_run, overdue, due, courtesy, first, second, letter):
    lid = _loan_id(overdue)
    expected = {stage: d(when) for stage, when in zip(STAGES, (courtesy, first, second, letter)) if when}
    assert restart_run.sent(lid) == expected
    # daily runs: nothing caught up late, superseded or cancelled
    assert restart_run.other(lid) == []
    # and each went out as one notice on that date, on the stage's channel
    notices = sorted((n.stage, n.date, n.channel) for n in restart_run.notices if lid in n.loan_ids)
    assert notices == sorted((stage, when, "letter" if stage == "letter" else "email")
                             for stage, when in expected.items())


def test_nothing_before_restart_even_inside_the_catch_up_window():
    """Without the restart section the same first day would catch up stale-ish reminders."""
    loans = [loan("2026-11-14", loan_id="L8", patron_id="P8"),     # first reminder triggered R-1
             loan("2026-11-13", loan_id="L9", patron_id="P9"),     # first reminder triggered R-2
             loan("2026-11-12", loan_id="L10", patron_id="P10")]   # first reminder triggered R-3: stale
    patrons = {ln.patron_id: patron(ln.patron_id) for ln in loans}
    without = simulate(default_policy(), loans, patrons, R, R)
    assert sorted((lid, stage, status) for _, lid, stage, status in without.decisions) == [
        ("L8", "first_reminder", "pending"), ("L9", "first_reminder", "pending")]
    restarted = simulate(with_restart(R), loans, patrons, R, R)
    assert restarted.decisions == []


def test_restart_day_after_an_outage_catches_up_only_from_R():
    """Runs resume two days after R: triggers on R and R+1 are caught up, R-1 never."""
    loans = [loan("2026-11-15", loan_id="A", patron_id="PA"),    # first reminder on R
             loan("2026-11-16", loan_id="B", patron_id="PB"),    # first reminder on R+1
             loan("2026-11-14", loan_id="C", patron_id="PC")]    # first reminder on R-1
    patrons = {ln.patron_id: patron(ln.patron_id) for ln in loans}
    sim = simulate(with_restart(R), loans, patrons, d("2026-11-24"), d("2026-11-24"))
    assert sorted((day, lid, stage, status) for day, lid, stage, status in sim.decisions) == [
        (d("2026-11-24"), "A", "first_reminder", "pending"),
        (d("2026-11-24"), "B", "first_reminder", "pending"),
    ]
