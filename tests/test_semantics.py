"""The exact semantics of the design, as a table: one loan, one run date -> what the engine decides.

Unless a row says otherwise: the shipped policy (rules/reminders.yaml: courtesy -3, first_reminder
+7, second_reminder +21, letter +35, catch-up window 2 days, lost and claimed_returned excluded),
a loan of library SCI due on Friday 2026-03-20, not returned, no status, a public patron with an
email address, and an empty ledger. For that loan the triggers are:

    courtesy        2026-03-17      first_reminder  2026-03-27
    second_reminder 2026-04-10      letter          2026-04-24

Expected outcomes per stage: "email" / "letter" (a pending notice on that channel), "superseded"
(due, but a later stage is due on the same run), "cancelled" (due, but not deliverable).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from functools import lru_cache

import pytest

from engine import decide
from engine.facts import Patron
from engine.policy import Policy

try:
    from tests.engine_cases import cand, d, default_policy, patron, policy_variant
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import cand, d, default_policy, patron, policy_variant

DUE = "2026-03-20"


def _stage_line(stage_id: str) -> str:
    return {
        "courtesy": "  - {id: courtesy, offset_days: -3, channel: email",
        "first_reminder": "  - {id: first_reminder, offset_days: 7, channel: email",
        "second_reminder": "  - {id: second_reminder, offset_days: 21, channel: email",
        "letter": "  - {id: letter, offset_days: 35, channel: letter",
    }[stage_id]


def _stage_with(stage_id: str, extra: str) -> tuple[str, str]:
    line = _stage_line(stage_id)
    return (line + "}", line + ", " + extra + "}")


VARIANTS = {
    "default": (),
    "courtesy catch-up 5": (_stage_with("courtesy", "max_delay_days: 5"),),
    "first catch-up 0": (_stage_with("first_reminder", "max_delay_days: 0"),),
    "first catch-up 4": (_stage_with("first_reminder", "max_delay_days: 4"),),
    "catch-up 14": (("max_delay_days: 2 ", "max_delay_days: 14 "),),
    "first for students": (_stage_with("first_reminder", "audience: {user_groups: [etudiant, doctorant]}"),),
    "letters to contacts too": (_stage_with("letter", "audience: {record_types: [staff, public, contact]}"),),
    "courtesy by letter": (("courtesy_by_letter: false", "courtesy_by_letter: true"),),
    "no letter instead of email": (("letters_after_due: true", "letters_after_due: false"),),
    "restarted 2026-03-28": (("# restart: {resumed_on: 2026-11-22}", "restart: {resumed_on: 2026-03-28}"),),
    "nothing excluded": (("exclude_statuses: [lost, claimed_returned]", "exclude_statuses: []"),),
    "statuses declared": (("exclude_statuses: [lost, claimed_returned]",
                           'statuses: {"": on_loan, recalled: on_loan, lost: exclude, perdu: exclude}'),),
}


@lru_cache(maxsize=None)
def policy_named(name: str) -> Policy:
    return default_policy() if name == "default" else policy_variant(*VARIANTS[name])


def row(label: str, *, run: str, expect: dict[str, str], policy: str = "default", due: str = DUE,
        returned: str | None = None, status: str = "", record_type: str = "public", group: str = "",
        ledger: tuple[str, ...] = (), email: bool = True, address: bool = True):
    return pytest.param(policy, due, run, returned, status, record_type, group, ledger, email, address, expect,
                        id=f"{label} [{policy}]")


TABLE = [
    # --- courtesy: 3 days before the due date, caught up within the window, never on/after due
    row("4 days before due: nothing yet", run="2026-03-16", expect={}),
    row("courtesy on its day", run="2026-03-17", expect={"courtesy": "email"}),
    row("courtesy caught up 1 day late", run="2026-03-18", expect={"courtesy": "email"}),
    row("courtesy caught up 2 days late (the day before due)", run="2026-03-19", expect={"courtesy": "email"}),
    row("on the due date: nothing", run="2026-03-20", expect={}),
    row("courtesy 2 days late, window 5", policy="courtesy catch-up 5", run="2026-03-19",
        expect={"courtesy": "email"}),
    row("courtesy never on the due date, even inside its window", policy="courtesy catch-up 5",
        run="2026-03-20", expect={}),
    row("courtesy never after the due date, even inside its window", policy="courtesy catch-up 5",
        run="2026-03-21", expect={}),
    row("courtesy never after the due date, 14-day window", policy="catch-up 14", run="2026-03-22", expect={}),
    # --- first reminder: day 7, caught up on days 8 and 9, stale from day 10
    row("6 days overdue: nothing", run="2026-03-26", expect={}),
    row("first reminder on day 7", run="2026-03-27", expect={"first_reminder": "email"}),
    row("first reminder caught up on day 8", run="2026-03-28", expect={"first_reminder": "email"}),
    row("first reminder caught up on day 9", run="2026-03-29", expect={"first_reminder": "email"}),
    row("3 days after its trigger the first reminder is stale", run="2026-03-30", expect={}),
    row("window 0: on its day", policy="first catch-up 0", run="2026-03-27", expect={"first_reminder": "email"}),
    row("window 0: not one day late", policy="first catch-up 0", run="2026-03-28", expect={}),
    row("window 4: 4 days late", policy="first catch-up 4", run="2026-03-31", expect={"first_reminder": "email"}),
    row("window 4: stale 5 days late", policy="first catch-up 4", run="2026-04-01", expect={}),
    row("per-stage window does not change the others", policy="first catch-up 4", run="2026-04-13", expect={}),
    # --- second reminder and letter
    row("second reminder on day 21", run="2026-04-10", expect={"second_reminder": "email"}),
    row("second reminder caught up on day 23", run="2026-04-12", expect={"second_reminder": "email"}),
    row("second reminder stale on day 24", run="2026-04-13", expect={}),
    row("letter on day 35", run="2026-04-24", expect={"letter": "letter"}),
    row("letter caught up on day 37", run="2026-04-26", expect={"letter": "letter"}),
    row("letter stale on day 38", run="2026-04-27", expect={}),
    row("long overdue: nothing more", run="2026-06-01", expect={}),
    # --- restart: nothing whose trigger is before resumed_on
    row("restart: first reminder triggered the day before: never", policy="restarted 2026-03-28",
        run="2026-03-28", expect={}),
    row("restart: second reminder on its day", policy="restarted 2026-03-28", run="2026-04-10",
        expect={"second_reminder": "email"}),
    row("restart: loan due after the restart is unaffected", policy="restarted 2026-03-28", due="2026-04-03",
        run="2026-03-31", expect={"courtesy": "email"}),
    # --- supersession: an outage inside a long catch-up window
    row("outage: first and second due together, only second sent", policy="catch-up 14", run="2026-04-10",
        expect={"first_reminder": "superseded", "second_reminder": "email"}),
    row("outage: second and letter due together, only the letter", policy="catch-up 14", run="2026-04-24",
        expect={"second_reminder": "superseded", "letter": "letter"}),
    row("outage: first 14 days late, alone", policy="catch-up 14", run="2026-04-09",
        expect={"first_reminder": "email"}),
    row("outage: first stale at 15 days, second due", policy="catch-up 14", run="2026-04-11",
        expect={"second_reminder": "email"}),
    # --- the ledger: (loan, stage, due date)
    row("second run on the same day sends nothing new", run="2026-03-27",
        ledger=("first_reminder@2026-03-20",), expect={}),
    row("caught-up day after it went out: nothing", run="2026-03-28",
        ledger=("first_reminder@2026-03-20",), expect={}),
    row("an earlier stage in the ledger does not block", run="2026-03-27",
        ledger=("courtesy@2026-03-20",), expect={"first_reminder": "email"}),
    row("a later stage in the ledger blocks an earlier one", run="2026-03-27",
        ledger=("second_reminder@2026-03-20",), expect={}),
    row("the letter in the ledger blocks the second reminder", run="2026-04-10",
        ledger=("letter@2026-03-20",), expect={}),
    row("a superseded stage in the ledger blocks itself only", policy="catch-up 14", run="2026-04-11",
        ledger=("first_reminder@2026-03-20",), expect={"second_reminder": "email"}),
    # --- renewals: the due date is part of the ledger key
    row("renewed to 04-17: courtesy again despite the old one", due="2026-04-17", run="2026-04-14",
        ledger=("courtesy@2026-03-20", "first_reminder@2026-03-20"), expect={"courtesy": "email"}),
    row("renewed to 04-17: first reminder again on 04-24", due="2026-04-17", run="2026-04-24",
        ledger=("courtesy@2026-03-20", "first_reminder@2026-03-20", "courtesy@2026-04-17"),
        expect={"first_reminder": "email"}),
    row("renewed to 04-17: the old due date's triggers are gone", due="2026-04-17", run="2026-03-27", expect={}),
    row("renewed: its own entry still blocks a second run", due="2026-04-17", run="2026-04-24",
        ledger=("first_reminder@2026-04-17",), expect={}),
    row("renewed: old due date's second reminder does not block", due="2026-04-17", run="2026-04-24",
        ledger=("second_reminder@2026-03-20", "letter@2026-03-20"), expect={"first_reminder": "email"}),
    # --- returns and excluded statuses
    row("returned before the courtesy", returned="2026-03-16", run="2026-03-17", expect={}),
    row("returned late: no first reminder", returned="2026-03-25", run="2026-03-27", expect={}),
    row("returned on the trigger day", returned="2026-04-24", run="2026-04-24", expect={}),
    row("status lost: nothing", status="lost", run="2026-03-27", expect={}),
    row("status claimed_returned: nothing", status="claimed_returned", run="2026-04-10", expect={}),
    row("status claimed_returned: no courtesy either", status="claimed_returned", run="2026-03-17", expect={}),
    row("status not excluded by the policy", status="long_overdue", run="2026-03-27",
        expect={"first_reminder": "email"}),
    row("status lost, policy excludes nothing", policy="nothing excluded", status="lost", run="2026-03-27",
        expect={"first_reminder": "email"}),
    row("statuses: a status declared exclude", policy="statuses declared", status="perdu", run="2026-03-27",
        expect={}),
    row("statuses: a status declared on_loan", policy="statuses declared", status="recalled", run="2026-03-27",
        expect={"first_reminder": "email"}),
    row("statuses: no status, declared on_loan", policy="statuses declared", run="2026-03-17",
        expect={"courtesy": "email"}),
    row("statuses: claimed_returned no longer excluded (not declared)", policy="statuses declared",
        status="claimed_returned", run="2026-03-27", expect={"first_reminder": "email"}),
    # --- audience
    row("contacts never get loan notices: courtesy", record_type="contact", run="2026-03-17", expect={}),
    row("contacts never get loan notices: first", record_type="contact", run="2026-03-27", expect={}),
    row("contacts never get loan notices: letter", record_type="contact", run="2026-04-24", expect={}),
    row("staff do", record_type="staff", run="2026-03-27", expect={"first_reminder": "email"}),
    row("letter audience widened to contacts", policy="letters to contacts too", record_type="contact",
        run="2026-04-24", expect={"letter": "letter"}),
    row("widened letter audience, other stages still not", policy="letters to contacts too",
        record_type="contact", run="2026-04-10", expect={}),
    row("user group in the stage's audience", policy="first for students", group="etudiant",
        run="2026-03-27", expect={"first_reminder": "email"}),
    row("other user group: not this stage", policy="first for students", group="personnel",
        run="2026-03-27", expect={}),
    row("no user group: not this stage", policy="first for students", group="", run="2026-03-27", expect={}),
    row("user group matches but contact record", policy="first for students", group="doctorant",
        record_type="contact", run="2026-03-27", expect={}),
    row("user groups only restrict their own stage", policy="first for students", group="personnel",
        run="2026-04-10", expect={"second_reminder": "email"}),
    # --- patrons without an email address
    row("no email: courtesy cancelled", email=False, run="2026-03-17", expect={"courtesy": "cancelled"}),
    row("no email: first reminder as a letter", email=False, run="2026-03-27", expect={"first_reminder": "letter"}),
    row("no email: second reminder as a letter", email=False, run="2026-04-12",
        expect={"second_reminder": "letter"}),
    row("no email: the letter stays a letter", email=False, run="2026-04-24", expect={"letter": "letter"}),
    row("no email, courtesy by letter", policy="courtesy by letter", email=False, run="2026-03-18",
        expect={"courtesy": "letter"}),
    row("no email, policy sends no letter instead", policy="no letter instead of email", email=False,
        run="2026-03-27", expect={"first_reminder": "cancelled"}),
    row("no email, no letter instead, letter stage still a letter", policy="no letter instead of email",
        email=False, run="2026-04-24", expect={"letter": "letter"}),
    row("no email, outage: superseded before routing", policy="catch-up 14", email=False, run="2026-04-10",
        expect={"first_reminder": "superseded", "second_reminder": "letter"}),
    # --- patrons without a postal address: no letter to print with nowhere to send it
    row("no address: the letter stage is cancelled", address=False, run="2026-04-24",
        expect={"letter": "cancelled"}),
    row("no address but an email: emails as usual", address=False, run="2026-03-27",
        expect={"first_reminder": "email"}),
    row("no email and no address: first reminder cancelled", email=False, address=False, run="2026-03-27",
        expect={"first_reminder": "cancelled"}),
]


def _recorded(ledger: tuple[str, ...], due: str) -> set[str]:
    out = set()
    for entry in ledger:
        stage, _, entry_due = entry.partition("@")
        if entry_due == due:
            out.add(stage)
    return out


@pytest.mark.parametrize("policy_name, due, run, returned, status, record_type, group, ledger, email, address, expect",
                         TABLE)
def test_semantics_table(policy_name, due, run, returned, status, record_type, group, ledger, email, address,
                         expect):
    policy = policy_named(policy_name)
    c = cand(due, returned=returned, status=status, record_type=record_type, group=group,
             recorded=_recorded(ledger, due))
    who = patron("P1", email=None if email else "", record_type=record_type, group=group)
    if not address:
        who = dataclasses.replace(who, address_line1="", address_line2="", postal_code="", city="", country="")
    as_of = d(run)

    due_ids = {policy.stages[si].id for _, si in decide.due_stages(policy, [c], as_of)}
    assert due_ids == set(expect), "stages due"

    plan = decide.plan_day(policy, [c], {"P1": who}, as_of)
    got = {}
    for dec in plan.decisions:
        assert dec.loan_id == "L1" and dec.due_date == d(due)
        assert dec.stage not in got, f"two decisions for {dec.stage}"
        if dec.status == "pending":
            notice = next(n for n in plan.notices if n.key == dec.notice_key)
            got[dec.stage] = notice.channel
        else:
            got[dec.stage] = dec.status
    assert got == expect
    assert len(plan.notices) == sum(1 for v in expect.values() if v in ("email", "letter"))
    for n in plan.notices:
        assert n.date == as_of and n.loan_ids == ("L1",)


def test_table_rows_are_distinct():
    ids = [p.id for p in TABLE]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------------------------
# reasons, routing and grouping


def test_superseded_and_cancelled_reasons():
    outage = policy_named("catch-up 14")
    plan = decide.plan_day(outage, [cand(DUE)], {"P1": patron("P1")}, d("2026-04-10"))
    [superseded] = [x for x in plan.decisions if x.status == "superseded"]
    assert superseded.stage == "first_reminder"
    assert superseded.notice_key is None
    assert superseded.reason == "superseded by second_reminder on the same run"

    plan = decide.plan_day(default_policy(), [cand(DUE)], {"P1": patron("P1", email="")}, d("2026-03-17"))
    assert plan.notices == []
    [cancelled] = plan.decisions
    assert (cancelled.stage, cancelled.status, cancelled.notice_key) == ("courtesy", "cancelled", None)
    assert "no email address" in cancelled.reason and "too late" in cancelled.reason

    plan = decide.plan_day(policy_named("no letter instead of email"), [cand(DUE)],
                           {"P1": patron("P1", email="")}, d("2026-03-27"))
    [cancelled] = plan.decisions
    assert cancelled.status == "cancelled"
    assert "no email address" in cancelled.reason and "no letter" in cancelled.reason

    nowhere = dataclasses.replace(patron("P1", email=""), address_line1="", postal_code="", city="")
    for run, stage in (("2026-03-27", "first_reminder"), ("2026-04-24", "letter")):
        [cancelled] = decide.plan_day(default_policy(), [cand(DUE)], {"P1": nowhere}, d(run)).decisions
        assert (cancelled.stage, cancelled.status) == (stage, "cancelled")
        assert cancelled.reason.endswith("no postal address to send a letter to")


def _loans_of_p1_and_p2():
    # first reminders due on 2026-03-27 (triggers 03-27, 03-26 and 03-25, all inside the window)
    return [
        cand("2026-03-20", loan_id="C3", patron_id="P1", library="SCI"),
        cand("2026-03-19", loan_id="A2", patron_id="P1", library="DROIT"),
        cand("2026-03-18", loan_id="B1", patron_id="P1", library="SCI"),
        cand("2026-03-20", loan_id="D4", patron_id="P2", library="DROIT"),
        cand("2026-03-06", loan_id="E5", patron_id="P1", library="SCI"),   # second reminder 03-27
        cand("2026-03-21", loan_id="F6", patron_id="P1", library="SCI"),   # nothing (courtesy stale)
    ]


def test_one_email_per_patron_per_stage_across_libraries_without_combining():
    cands = _loans_of_p1_and_p2()
    patrons = {"P1": patron("P1"), "P2": patron("P2")}
    plan = decide.plan_day(policy_variant(("combine: true ", "combine: false")), cands, patrons, d("2026-03-27"))

    assert [n.as_dict() for n in plan.notices] == [
        {"date": "2026-03-27", "stage": "first_reminder", "channel": "email", "patron_id": "P1",
         "library": None, "loan_ids": ["A2", "B1", "C3"], "recipient": "p1@etu.univ.example",
         "destination": "p1@etu.univ.example"},
        {"date": "2026-03-27", "stage": "first_reminder", "channel": "email", "patron_id": "P2",
         "library": None, "loan_ids": ["D4"], "recipient": "p2@etu.univ.example",
         "destination": "p2@etu.univ.example"},
        {"date": "2026-03-27", "stage": "second_reminder", "channel": "email", "patron_id": "P1",
         "library": None, "loan_ids": ["E5"], "recipient": "p1@etu.univ.example",
         "destination": "p1@etu.univ.example"},
    ]
    keys = {n.key for n in plan.notices}
    assert len(keys) == 3
    pending = {(x.loan_id, x.stage): x for x in plan.decisions}
    assert set(pending) == {("A2", "first_reminder"), ("B1", "first_reminder"), ("C3", "first_reminder"),
                            ("D4", "first_reminder"), ("E5", "second_reminder")}
    assert all(x.status == "pending" for x in plan.decisions)
    assert pending["A2", "first_reminder"].notice_key == pending["C3", "first_reminder"].notice_key \
        == decide.notice_key(d("2026-03-27"), "first_reminder", "email", "P1", None, ("A2", "B1", "C3"))
    assert pending["A2", "first_reminder"].notice_key.startswith("2026-03-27/first_reminder/email/P1/-/")
    assert pending["A2", "first_reminder"].due_date == d("2026-03-19")


def test_notice_as_dict_keys():
    plan = decide.plan_day(default_policy(), [cand(DUE)], {"P1": patron("P1")}, d("2026-03-27"))
    [notice] = plan.notices
    data = notice.as_dict()
    assert set(data) == {"date", "stage", "channel", "patron_id", "library", "loan_ids", "recipient",
                         "destination"}
    assert data["library"] is None
    assert data["date"] == "2026-03-27" and isinstance(data["loan_ids"], list)


def test_letters_one_per_patron_per_library():
    cands = [
        cand("2026-03-20", loan_id="S2", patron_id="P1", library="SCI"),
        cand("2026-03-20", loan_id="D1", patron_id="P1", library="DROIT"),
        cand("2026-03-19", loan_id="S1", patron_id="P1", library="SCI"),
        cand("2026-03-20", loan_id="X9", patron_id="P2", library="SCI"),
    ]
    patrons = {"P1": patron("P1"), "P2": patron("P2")}
    plan = decide.plan_day(default_policy(), cands, patrons, d("2026-04-24"))
    got = [(n.stage, n.channel, n.patron_id, n.library, n.loan_ids, n.destination) for n in plan.notices]
    assert got == [
        ("letter", "letter", "P1", "DROIT", ("D1",), "mailbox:droit-contentieux@univ.example"),
        ("letter", "letter", "P1", "SCI", ("S1", "S2"), "printer:bu-sciences"),
        ("letter", "letter", "P2", "SCI", ("X9",), "printer:bu-sciences"),
    ]
    assert plan.notices[0].recipient == "Camille P1, 12 rue des Facs, 33000 Bordeaux"
    assert plan.notices[0].as_dict()["library"] == "DROIT"


def test_no_email_patron_gets_letters_per_library():
    cands = [
        cand("2026-03-20", loan_id="S1", patron_id="P1", library="SCI"),
        cand("2026-03-20", loan_id="D1", patron_id="P1", library="DROIT"),
        cand("2026-03-20", loan_id="D2", patron_id="P1", library="DROIT"),
    ]
    plan = decide.plan_day(default_policy(), cands, {"P1": patron("P1", email="")}, d("2026-03-27"))
    got = [(n.stage, n.channel, n.library, n.loan_ids, n.destination) for n in plan.notices]
    assert got == [
        ("first_reminder", "letter", "DROIT", ("D1", "D2"), "mailbox:droit-contentieux@univ.example"),
        ("first_reminder", "letter", "SCI", ("S1",), "printer:bu-sciences"),
    ]
    assert {x.notice_key for x in plan.decisions} == {n.key for n in plan.notices}


def test_second_run_same_day_sends_nothing_new():
    policy = default_policy()
    cands = _loans_of_p1_and_p2()
    patrons = {"P1": patron("P1"), "P2": patron("P2")}
    first = decide.plan_day(policy, cands, patrons, d("2026-03-27"))
    assert len(first.notices) == 2       # P1's two stages in one email, P2's
    recorded: dict[str, set[str]] = {}
    for x in first.decisions:
        recorded.setdefault(x.loan_id, set()).add(x.stage)
    again = [cand(c.loan.due_date, loan_id=c.loan.loan_id, patron_id=c.loan.patron_id, library=c.loan.library,
                  recorded=recorded.get(c.loan.loan_id, ())) for c in cands]
    plan = decide.plan_day(policy, again, patrons, d("2026-03-27"))
    assert plan.notices == [] and plan.decisions == []
    # the next day only F6 (due 03-21) reaches its own first reminder; the others are in the ledger
    plan = decide.plan_day(policy, again, patrons, d("2026-03-28"))
    assert [(n.stage, n.patron_id, n.loan_ids) for n in plan.notices] == [("first_reminder", "P1", ("F6",))]


def test_contact_patron_with_loans_gets_nothing_in_a_group():
    cands = [cand(DUE, loan_id="A", patron_id="V1", record_type="contact"),
             cand(DUE, loan_id="B", patron_id="P1")]
    patrons = {"V1": patron("V1", record_type="contact"), "P1": patron("P1")}
    plan = decide.plan_day(default_policy(), cands, patrons, d("2026-03-27"))
    assert [(n.patron_id, n.loan_ids) for n in plan.notices] == [("P1", ("B",))]


def test_plan_counts_candidates_and_events():
    cands = _loans_of_p1_and_p2()
    plan = decide.plan_day(default_policy(), cands, {"P1": patron("P1"), "P2": patron("P2")}, d("2026-03-27"))
    assert plan.candidates == 6
    # pairs whose due date is in the stage's pre-filter range: 5 (A2 B1 C3 D4 first, E5 second)
    assert plan.events == 5
    assert isinstance(plan.as_of, dt.date)


def test_patron_type_is_plain_value():
    # Patron is a frozen value object: the engine never mutates its inputs
    p = patron("P1")
    with pytest.raises(AttributeError):
        p.email = "x@y.example"  # type: ignore[misc]
    assert isinstance(p, Patron)
