"""Forty days of a small library, run day by day through the whole pipeline, every message checked.

The policy is the shipped one (rules/reminders.yaml) with `restart: {resumed_on: 2026-11-22}`, the
first day of service: the loans are imported with their history and nothing triggered before the
22nd is ever sent. Stages and triggers (due date D):

    courtesy         D - 3    email (never to a patron without email; never on or after D)
    first_reminder   D + 7    email, or a letter per library without an email address
    second_reminder  D + 21   email, or letters likewise
    letter           D + 35   a letter per library

each sent on its trigger day, or caught up within 2 days when runs were missed; older never. A
patron's stages due on one run are one email (and one letter per library), each loan at its stage.
Contacts get nothing, lost and claimed_returned loans get nothing.

Runs: every day from Sunday 2026-11-22 to Thursday 2026-12-31, except two outages:
    2026-12-05 and 2026-12-06 (a weekend): triggers of those days go out on Monday 2026-12-07;
    2026-12-24 to 2026-12-26: triggers of the 25th and 26th go out on 2026-12-27, those of the
    24th would be 3 days late then: never sent.

EXPECTED below was written by hand from these rules (see the timeline of each loan in LOANS),
not produced by the code under test.
"""
from __future__ import annotations

import datetime as dt


try:
    from tests.engine_cases import d, with_restart
    from tests.test_pipeline import World
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import d, with_restart
    from test_pipeline import World

START, END = "2026-11-22", "2026-12-31"
OUTAGE = {"2026-12-05", "2026-12-06", "2026-12-24", "2026-12-25", "2026-12-26"}

PATRONS = [
    # patron  email  record type  group
    ("P01", True,  "public",  "undergraduate"),
    ("P02", True,  "public",  "graduate"),
    ("P03", False, "public",  "reader"),          # no email address: letters instead, no courtesy
    ("P04", True,  "staff",   "staff"),
    ("P05", True,  "public",  "undergraduate"),
    ("P06", True,  "public",  "graduate"),
    ("P07", True,  "contact", "vendor"),          # a vendor's contact: never a loan notice
    ("P08", True,  "public",  "undergraduate"),
    ("P09", False, "public",  "reader"),
    ("P10", True,  "staff",   "staff"),
    ("P11", True,  "public",  "graduate"),
    ("P12", False, "contact", "vendor"),
]

LOANS = [
    # loan  patron library  due           timeline (C courtesy, F first, S second, L letter; R = 11-22)
    ("L01", "P01", "SCI",   "2026-11-24"),  # C 11-21 < R; F 12-01; S 12-15; L 12-29
    ("L02", "P01", "DROIT", "2026-11-24"),  # F 12-01 with L01; returned 12-10: no S, no L
    ("L26", "P01", "SCI",   "2026-12-31"),  # C 12-28
    ("L03", "P02", "SCI",   "2026-11-25"),  # C 11-22 = R; F 12-02; returned 12-03
    ("L04", "P02", "DROIT", "2026-12-09"),  # C 12-06 (outage) -> 12-07; F 12-16; S 12-30
    ("L05", "P03", "SCI",   "2026-11-20"),  # C 11-17 < R; F 11-27 as a letter; returned 12-08 before S
    ("L06", "P03", "DROIT", "2026-12-02"),  # C 11-29 not sent (no email); returned 12-01
    ("L07", "P04", "SCI",   "2026-11-01"),  # 21 days overdue on R: S on R; L 12-06 (outage) -> 12-07
    ("L08", "P04", "SCI",   "2026-10-20"),  # 33 days overdue on R: only L on 11-24
    ("L09", "P05", "DROIT", "2026-10-10"),  # 43 days overdue on R: never anything
    ("L10", "P05", "DROIT", "2026-11-10"),  # 12 days overdue on R: F never; S 12-01; L 12-15
    ("L11", "P06", "SCI",   "2026-11-18"),  # F 11-25; renewed 11-28 to 12-16: C 12-13, F 12-23
    ("L12", "P07", "SCI",   "2026-11-20"),  # contact
    ("L13", "P07", "DROIT", "2026-12-01"),  # contact
    ("L14", "P08", "SCI",   "2026-11-15"),  # F 11-22 = R; S 12-06 (outage) -> 12-07; lost 12-10: no L
    ("L16", "P08", "DROIT", "2026-12-02"),  # C 11-29; F 12-09; S 12-23
    ("L17", "P09", "DROIT", "2026-11-28"),  # C 11-25 not sent; F 12-05 (outage) -> 12-07 letter; returned 12-15
    ("L18", "P10", "SCI",   "2026-12-21"),  # C 12-18; F 12-28
    ("L19", "P10", "DROIT", "2026-12-21"),  # with L18
    ("L20", "P10", "SCI",   "2026-12-17"),  # C 12-14; F 12-24 (outage): 3 days late on 12-27, never
    ("L21", "P11", "SCI",   "2026-12-28"),  # C 12-25 (outage) -> 12-27, still before due
    ("L22", "P11", "DROIT", "2026-12-18"),  # C 12-15; F 12-25 (outage) -> 12-27
    ("L23", "P11", "SCI",   "2026-12-19"),  # C 12-16; F 12-26 (outage) -> 12-27 with L22
    ("L24", "P11", "DROIT", "2026-12-20"),  # returned 12-12, before its C 12-17
    ("L25", "P12", "SCI",   "2026-11-25"),  # contact without email: no letter either
]

CHANGES = {   # re-imports from the library system, before that day's run
    "2026-11-28": [("L11", {"due": "2026-12-16"})],                           # renewed
    "2026-12-01": [("L06", {"returned": "2026-12-01"})],
    "2026-12-03": [("L03", {"returned": "2026-12-03"})],
    "2026-12-08": [("L05", {"returned": "2026-12-08"})],
    "2026-12-10": [("L02", {"returned": "2026-12-10"}), ("L14", {"status": "lost"})],
    "2026-12-12": [("L24", {"returned": "2026-12-12"})],
    "2026-12-15": [("L17", {"returned": "2026-12-15"})],
}


def email(stage, patron, *loans):
    return (stage, "email", patron, None, tuple(loans))


def letter(stage, patron, library, *loans):
    return (stage, "letter", patron, library, tuple(loans))


EXPECTED = {
    "2026-11-22": [email("courtesy", "P02", "L03"),
                   email("first_reminder", "P08", "L14"),
                   email("second_reminder", "P04", "L07")],
    "2026-11-23": [],
    "2026-11-24": [letter("letter", "P04", "SCI", "L08")],
    "2026-11-25": [email("first_reminder", "P06", "L11")],          # L17's courtesy: no email, not sent
    "2026-11-26": [],
    "2026-11-27": [letter("first_reminder", "P03", "SCI", "L05")],
    "2026-11-28": [],
    "2026-11-29": [email("courtesy", "P08", "L16")],                 # L06's courtesy: no email, not sent
    "2026-11-30": [],
    "2026-12-01": [email("first_reminder", "P01", "L01", "L02"),
                   email("second_reminder", "P05", "L10")],
    "2026-12-02": [email("first_reminder", "P02", "L03")],
    "2026-12-03": [],
    "2026-12-04": [],
    # 2026-12-05 and 2026-12-06: no run
    "2026-12-07": [email("courtesy", "P02", "L04"),                  # 1 day late, 2 days before due
                   letter("first_reminder", "P09", "DROIT", "L17"),  # 2 days late
                   email("second_reminder", "P08", "L14"),           # 1 day late
                   letter("letter", "P04", "SCI", "L07")],           # 1 day late
    "2026-12-08": [],
    "2026-12-09": [email("first_reminder", "P08", "L16")],
    "2026-12-10": [],
    "2026-12-11": [],                                                # L05 returned on the 8th
    "2026-12-12": [],
    "2026-12-13": [email("courtesy", "P06", "L11")],                 # the renewed due date
    "2026-12-14": [email("courtesy", "P10", "L20")],
    "2026-12-15": [email("courtesy", "P11", "L22"),
                   email("second_reminder", "P01", "L01"),           # L02 returned on the 10th
                   letter("letter", "P05", "DROIT", "L10")],
    "2026-12-16": [email("courtesy", "P11", "L23"),
                   email("first_reminder", "P02", "L04")],
    "2026-12-17": [],                                                # L24 returned on the 12th
    "2026-12-18": [email("courtesy", "P10", "L18", "L19")],
    "2026-12-19": [],                                                # L17 returned on the 15th
    "2026-12-20": [],                                                # L14 lost on the 10th
    "2026-12-21": [],
    "2026-12-22": [],
    "2026-12-23": [email("first_reminder", "P06", "L11"),
                   email("second_reminder", "P08", "L16")],
    # 2026-12-24 to 2026-12-26: no run
    # one envelope: L21's courtesy (2 days late, the day before due) travels in the first reminder
    # of L22 and L23, each loan at its stage (the ledger below); L20's first reminder: stale
    "2026-12-27": [email("first_reminder", "P11", "L21", "L22", "L23")],
    "2026-12-28": [email("courtesy", "P01", "L26"),
                   email("first_reminder", "P10", "L18", "L19")],
    "2026-12-29": [letter("letter", "P01", "SCI", "L01")],
    "2026-12-30": [email("second_reminder", "P02", "L04")],
    "2026-12-31": [],
}

LEDGER = {   # (loan, due date, stage) -> status, at the end
    ("L01", "2026-11-24", "first_reminder"): "sent", ("L01", "2026-11-24", "second_reminder"): "sent",
    ("L01", "2026-11-24", "letter"): "sent",
    ("L02", "2026-11-24", "first_reminder"): "sent",
    ("L26", "2026-12-31", "courtesy"): "sent",
    ("L03", "2026-11-25", "courtesy"): "sent", ("L03", "2026-11-25", "first_reminder"): "sent",
    ("L04", "2026-12-09", "courtesy"): "sent", ("L04", "2026-12-09", "first_reminder"): "sent",
    ("L04", "2026-12-09", "second_reminder"): "sent",
    ("L05", "2026-11-20", "first_reminder"): "sent",
    ("L06", "2026-12-02", "courtesy"): "cancelled",
    ("L07", "2026-11-01", "second_reminder"): "sent", ("L07", "2026-11-01", "letter"): "sent",
    ("L08", "2026-10-20", "letter"): "sent",
    ("L10", "2026-11-10", "second_reminder"): "sent", ("L10", "2026-11-10", "letter"): "sent",
    ("L11", "2026-11-18", "first_reminder"): "sent",
    ("L11", "2026-12-16", "courtesy"): "sent", ("L11", "2026-12-16", "first_reminder"): "sent",
    ("L14", "2026-11-15", "first_reminder"): "sent", ("L14", "2026-11-15", "second_reminder"): "sent",
    ("L16", "2026-12-02", "courtesy"): "sent", ("L16", "2026-12-02", "first_reminder"): "sent",
    ("L16", "2026-12-02", "second_reminder"): "sent",
    ("L17", "2026-11-28", "courtesy"): "cancelled", ("L17", "2026-11-28", "first_reminder"): "sent",
    ("L18", "2026-12-21", "courtesy"): "sent", ("L18", "2026-12-21", "first_reminder"): "sent",
    ("L19", "2026-12-21", "courtesy"): "sent", ("L19", "2026-12-21", "first_reminder"): "sent",
    ("L20", "2026-12-17", "courtesy"): "sent",
    ("L21", "2026-12-28", "courtesy"): "sent",
    ("L22", "2026-12-18", "courtesy"): "sent", ("L22", "2026-12-18", "first_reminder"): "sent",
    ("L23", "2026-12-19", "courtesy"): "sent", ("L23", "2026-12-19", "first_reminder"): "sent",
}


def test_the_table_covers_every_day_but_the_outages():
    days = [(d(START) + dt.timedelta(days=i)).isoformat() for i in range((d(END) - d(START)).days + 1)]
    assert len(days) == 40
    assert sorted(EXPECTED) == [day for day in days if day not in OUTAGE]
    assert not set(CHANGES) & OUTAGE


def test_forty_days(tmp_path, db_url):
    world = World(tmp_path, db_url, "memory", policy=with_restart(d("2026-11-22")))
    try:
        for patron_id, has_email, record_type, group in PATRONS:
            world.patron(patron_id, email=has_email, record_type=record_type, group=group)
        for loan_id, patron_id, library, due in LOANS:
            world.loan(loan_id, patron_id, due, library)
        world.sync()

        got = {}
        day = d(START)
        while day <= d(END):
            today = day.isoformat()
            day += dt.timedelta(days=1)
            if today in OUTAGE:
                continue
            for loan_id, change in CHANGES.get(today, []):
                world.change(loan_id, **change)
            got[today] = sorted(world.run(today))

        assert got == {day: sorted(messages) for day, messages in EXPECTED.items()}
        assert world.ledger() == LEDGER
        # what the channel received matches, message for message
        assert len(world.channel.emails) == sum(m[1] == "email" for ms in EXPECTED.values() for m in ms)
        assert len(world.channel.letters) == sum(m[1] == "letter" for ms in EXPECTED.values() for m in ms)
    finally:
        world.close()


# --- the same forty days, by library and item type ------------------------------------------------
#
# The shipped policy again, restarted on 2026-11-22, and:
#   libraries.DROIT.stages: [{id: first_reminder, offset_days: 1}]   DROIT reminds a day after the due date
#   second_reminder audience: {item_types: [LIVRE]}                    short loans get no second reminder
#   letter audience: {libraries: [SCI]}                                only SCI sends the final letter
# Same runs and outages as above (no run on 12-05, 12-06, 12-24, 12-25, 12-26).

BY_LIBRARY_LOANS = [
    # loan  patron library  item type     due           timeline (C courtesy, F first, S second, L letter)
    ("M01", "P21", "SCI",   "LIVRE",      "2026-11-24"),  # C 11-21 < R; F 12-01; S 12-15; L 12-29
    ("M02", "P22", "DROIT", "LIVRE",      "2026-11-24"),  # F 11-25 (DROIT: +1); S 12-15; no L at DROIT
    ("M03", "P23", "DROIT", "PRET_COURT", "2026-12-01"),  # C 11-28; F 12-02; a short loan: no S
    ("M04", "P24", "SCI",   "PRET_COURT", "2026-11-20"),  # F 11-27; no S; L 12-25 (outage) -> 12-27
    ("M05", "P25", "DROIT", "LIVRE",      "2026-12-04"),  # C 12-01; F 12-05 (outage) -> 12-07; S 12-25 -> 12-27
    ("M06", "P26", "SCI",   "LIVRE",      "2026-12-20"),  # C 12-17; F 12-27
    ("M07", "P27", "DROIT", "LIVRE",      "2026-11-21"),  # F 11-22 = R (DROIT: +1); S 12-12
]

BY_LIBRARY_EXPECTED = {
    "2026-11-22": [email("first_reminder", "P27", "M07")],
    "2026-11-25": [email("first_reminder", "P22", "M02")],
    "2026-11-27": [email("first_reminder", "P24", "M04")],
    "2026-11-28": [email("courtesy", "P23", "M03")],
    "2026-12-01": [email("courtesy", "P25", "M05"), email("first_reminder", "P21", "M01")],
    "2026-12-02": [email("first_reminder", "P23", "M03")],
    "2026-12-07": [email("first_reminder", "P25", "M05")],          # 2 days late
    "2026-12-12": [email("second_reminder", "P27", "M07")],
    "2026-12-15": [email("second_reminder", "P21", "M01"), email("second_reminder", "P22", "M02")],
    "2026-12-17": [email("courtesy", "P26", "M06")],
    "2026-12-27": [email("first_reminder", "P26", "M06"),
                   email("second_reminder", "P25", "M05"),          # 2 days late
                   letter("letter", "P24", "SCI", "M04")],          # 2 days late
    "2026-12-29": [letter("letter", "P21", "SCI", "M01")],
}


def by_library_policy():
    from tests.engine_cases import policy_variant

    return policy_variant(
        ("# restart: {resumed_on: 2026-11-22}", "restart: {resumed_on: 2026-11-22}"),
        ("  - {id: second_reminder, offset_days: 21, channel: email}",
         "  - {id: second_reminder, offset_days: 21, channel: email, audience: {item_types: [LIVRE]}}"),
        ("  - {id: letter, offset_days: 35, channel: letter}",
         "  - {id: letter, offset_days: 35, channel: letter, audience: {libraries: [SCI]}}"),
        ("    letters: {mailbox: droit-contentieux@univ.example}\n",
         "    letters: {mailbox: droit-contentieux@univ.example}\n    stages: [{id: first_reminder, offset_days: 1}]\n"))


def test_forty_days_by_library_and_item_type(tmp_path, db_url):
    from service.checks import explain_loan

    policy = by_library_policy()
    world = World(tmp_path, db_url, "memory", policy=policy)
    try:
        for _, patron_id, *_ in BY_LIBRARY_LOANS:
            world.patron(patron_id, record_type="public", group="undergraduate")
        for loan_id, patron_id, library, item_type, due in BY_LIBRARY_LOANS:
            world.loan(loan_id, patron_id, due, library, item_type=item_type)
        world.sync()

        def explained(loan_id: str, on: str, stage: str) -> list[str]:
            lines = explain_loan(world.store, policy, loan_id, d(on))
            start = next(i for i, line in enumerate(lines) if line.startswith(f"- {stage} "))
            end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
            return lines[start:end]

        # before the runs: DROIT's own first reminder, said as the rule that applied
        first = explained("M02", "2026-11-25", "first_reminder")
        assert first[0] == "- first_reminder (offset +1 days, window 2 days, email): DUE → email"
        assert first[1] == "    rule: libraries.DROIT.stages (offset_days 1)"
        assert "    [ok] window: triggered on 2026-11-25" in first
        got = {}
        day = d(START)
        while day <= d(END):
            today = day.isoformat()
            day += dt.timedelta(days=1)
            if today not in OUTAGE:
                got[today] = sorted(world.run(today))
        assert {k: v for k, v in got.items() if v} == {k: sorted(v) for k, v in BY_LIBRARY_EXPECTED.items()}

        # SCI keeps the institution's
        assert explained("M01", "2026-12-01", "first_reminder")[1] == "    rule: the institution's timeline"
        # a short loan is not in the second reminder's audience
        second = explained("M04", "2026-12-11", "second_reminder")
        assert second[0].endswith(": not due")
        assert "    [no] audience: item type 'PRET_COURT' is not among this stage's (LIVRE)" in second
        # nor DROIT in the letter's
        assert "    [no] audience: library DROIT is not among this stage's (SCI)" in explained(
            "M02", "2026-12-29", "letter")
        head = explain_loan(world.store, policy, "M03", d("2026-12-02"))[0]
        assert head.startswith("loan M03 (Livre M03), library DROIT, item type PRET_COURT, due 2026-12-01, open")
    finally:
        world.close()
