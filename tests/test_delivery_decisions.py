"""The decisions taken at delivery time (engine/delivery.py), as tables, on the shipped policy:

- the re-check of a pending notice before it is sent: which ledger rows must not be sent any more
  (returned, renewed, excluded status, stage removed, window passed, courtesy after the due date);
- the wait before a retry; the flood guard (hold the whole pass?) and its in-pass budget;
- the fallback of an email refused for good: letters made by the same code as the day's letters;
- one notice type: the plan's notices are what Store.pending() gives back (a real SQLite file);
- the rules evaluation is passed in, down from service.day (a real child process).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import sys

import pytest
from sqlalchemy import select

from adapters import isolation
from adapters.store.database import Store
from adapters.store.schema import ledger, loans, notices, patrons
from engine import rules
from engine.decide import Notice, make_notice, notice_key, plan_day
from engine.channels import EMAIL, LETTER
from engine.delivery import Budget, Drop, Fallback, fallback, fallback_letters, hold_pass, recheck, retry_wait, settled
from engine.facts import LEDGER_STATUSES, OutcomeStatus, Patron, Status
from service import day as pipeline

try:
    from tests.engine_cases import cand, d, default_policy, loan, patron, policy_variant
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import cand, d, default_policy, loan, patron, policy_variant

CANCELLED, EXPIRED = Status.CANCELLED, Status.EXPIRED
# the shipped policy, with a catch-up window of five days: a courtesy notice (3 days before the due
# date) can then still be in its window when the due date comes
WIDE = (("max_delay_days: 2 ", "max_delay_days: 5 "),)


def closed(due: str, on: str):
    """A loan a snapshot closed: absent from the export of ``on``."""
    return dataclasses.replace(loan(due, returned=on), closed_reason=f"absent from the export of {on}")


def pending(stage: str, *entries: tuple[str, str], date: str = "2026-11-23") -> Notice:
    """A notice of the outbox for patron P1, with its ledger rows (loan id, due date written out)."""
    rows = tuple((loan_id, d(due)) for loan_id, due in entries)
    return Notice(notice_key(d(date), stage, "email", "P1", None), d(date), stage, "email", "P1", None,
                  tuple(loan_id for loan_id, _ in rows), "p1@etu.univ.example", "p1@etu.univ.example", entries=rows)


# -- the re-check at send time ------------------------------------------------------------------

@pytest.mark.parametrize("stage, due, loan_now, as_of, wide, expected", [
    # stage           row due       the loan now                               sent on      5-day window
    ("first_reminder", "2026-11-16", loan("2026-11-16"),                        "2026-11-23", False, None),
    ("first_reminder", "2026-11-16", loan("2026-11-16"),                        "2026-11-25", False, None),
    ("first_reminder", "2026-11-16", loan("2026-11-16", returned="2026-11-20"), "2026-11-23", False,
     Drop(CANCELLED, "returned on 2026-11-20")),
    ("first_reminder", "2026-11-16", loan("2026-12-14"),                        "2026-11-23", False,
     Drop(CANCELLED, "renewed: now due on 2026-12-14")),
    ("first_reminder", "2026-11-16", loan("2026-12-14", returned="2026-11-20"), "2026-11-23", False,
     Drop(CANCELLED, "returned on 2026-11-20")),                     # returned wins over renewed
    ("first_reminder", "2026-11-16", closed("2026-11-16", "2026-11-22"),        "2026-11-23", False,
     Drop(CANCELLED, "closed on 2026-11-22: absent from the export of 2026-11-22")),   # by a snapshot
    ("first_reminder", "2026-11-16", loan("2026-11-16", status="lost"),         "2026-11-23", False,
     Drop(CANCELLED, "status 'lost' is excluded")),
    ("first_reminder", "2026-11-16", loan("2026-11-16", status="renewed_once"), "2026-11-23", False, None),
    ("first_reminder", "2026-11-16", None,                                      "2026-11-23", False,
     Drop(CANCELLED, "the loan no longer exists")),
    ("third_reminder", "2026-11-16", loan("2026-11-16"),                        "2026-11-23", False,
     Drop(CANCELLED, "stage third_reminder is no longer in the policy")),
    ("first_reminder", "2026-11-16", loan("2026-11-16"),                        "2026-11-26", False,
     Drop(EXPIRED, "not sent within the 2-day window after 2026-11-23")),
    ("first_reminder", "2026-11-16", loan("2026-11-16"),                        "2026-11-26", True, None),
    ("courtesy",       "2026-11-26", loan("2026-11-26"),                        "2026-11-25", True, None),
    ("courtesy",       "2026-11-26", loan("2026-11-26"),                        "2026-11-26", True,
     Drop(EXPIRED, "the due date 2026-11-26 has come")),
    ("courtesy",       "2026-11-26", loan("2026-11-26"),                        "2026-11-26", False,
     Drop(EXPIRED, "not sent within the 2-day window after 2026-11-23")),
])
def test_recheck_drops_the_rows_that_must_not_be_sent(stage, due, loan_now, as_of, wide, expected):
    policy = policy_variant(*WIDE) if wide else default_policy()
    notice = pending(stage, ("L1", due))
    now = {"L1": loan_now} if loan_now else {}
    dropped = recheck(policy, notice, now, d(as_of))
    assert dropped == ({} if expected is None else {("L1", d(due)): expected})


def test_recheck_honours_the_statuses_the_policy_declares_excluded():
    declared = policy_variant(("exclude_statuses: [lost, claimed_returned]",
                               'statuses: {"": on_loan, lost: exclude, perdu: exclude, recalled: on_loan}'))
    notice = pending("first_reminder", ("L1", "2026-11-16"))
    assert recheck(declared, notice, {"L1": loan("2026-11-16", status="perdu")}, d("2026-11-23")) == {
        ("L1", d("2026-11-16")): Drop(CANCELLED, "status 'perdu' is excluded")}
    assert recheck(declared, notice, {"L1": loan("2026-11-16", status="recalled")}, d("2026-11-23")) == {}
    assert recheck(default_policy(), notice, {"L1": loan("2026-11-16", status="perdu")}, d("2026-11-23")) == {}


def test_recheck_keeps_the_other_rows_of_the_notice():
    notice = pending("first_reminder", ("L1", "2026-11-16"), ("L2", "2026-11-16"), ("L3", "2026-11-16"))
    now = {"L1": loan("2026-11-16", loan_id="L1"), "L2": loan("2026-11-16", loan_id="L2", returned="2026-11-21"),
           "L3": loan("2026-11-30", loan_id="L3")}
    assert recheck(default_policy(), notice, now, d("2026-11-23")) == {
        ("L2", d("2026-11-16")): Drop(CANCELLED, "returned on 2026-11-21"),
        ("L3", d("2026-11-16")): Drop(CANCELLED, "renewed: now due on 2026-11-30"),
    }


@pytest.mark.parametrize("drops, expected", [
    ([Drop(CANCELLED, "returned on 2026-11-20")], Drop(CANCELLED, "returned on 2026-11-20")),
    ([Drop(CANCELLED, "returned on 2026-11-20"), Drop(EXPIRED, "the due date 2026-11-26 has come")],
     Drop(EXPIRED, "returned on 2026-11-20; the due date 2026-11-26 has come")),     # reasons in order
    ([Drop(CANCELLED, "the loan no longer exists")] * 2, Drop(CANCELLED, "the loan no longer exists")),
    ([], Drop(CANCELLED, "nothing left to send")),
])
def test_a_notice_with_nothing_left_is_expired_if_a_row_expired_else_cancelled(drops, expected):
    dropped = {(f"L{i}", d("2026-11-16")): drop for i, drop in enumerate(drops)}
    assert settled(dropped) == expected


# -- the retry wait -------------------------------------------------------------------------------

@pytest.mark.parametrize("retry, attempts_before, minutes", [
    # delivery.retry                       attempts before   wait (minutes)
    ("",                                   0,                15),
    ("",                                   2,                60),
    ("",                                   5,                360),
    ("{first_minutes: 10, max_minutes: 45}", 0,              10),
    ("{first_minutes: 10, max_minutes: 45}", 1,              20),
    ("{first_minutes: 10, max_minutes: 45}", 2,              40),
    ("{first_minutes: 10, max_minutes: 45}", 3,              45),
    ("{first_minutes: 10, max_minutes: 45}", 10_000,         45),
    ("{first_minutes: 1, max_minutes: 43200}", 30,           43_200),    # the bound's longest wait: 30 days
])
def test_the_retry_wait_doubles_up_to_the_maximum(retry, attempts_before, minutes):
    policy = policy_variant(append=f"delivery:\n  retry: {retry}\n") if retry else default_policy()
    assert retry_wait(policy, attempts_before) == dt.timedelta(minutes=minutes)


# -- the flood guard ------------------------------------------------------------------------------

@pytest.mark.parametrize("max_per_run, messages, confirm, held", [
    (3, 0, False, False),
    (3, 3, False, False),
    (3, 4, False, True),
    (3, 4, True, False),
    (1000, 1000, False, False),
    (1000, 1001, False, True),
])
def test_a_pass_over_the_limit_is_held_unless_confirmed(max_per_run, messages, confirm, held):
    policy = policy_variant(("max_per_run: 1000 ", f"max_per_run: {max_per_run} "))
    reason = hold_pass(policy, messages, confirm)
    if not held:
        assert reason is None
    else:
        assert reason.startswith(f"flood guard: {messages} messages would go out, more than "
                                 f"flood_guard.max_per_run ({max_per_run}); nothing was sent")
        assert "rappel run --confirm" in reason


@pytest.mark.parametrize("limit, reserved, deliveries, used, room", [
    # a limit of 2, two notices counted at the start: no room for a letter until one is settled
    (2, {"A", "B"}, [],                                        0, False),
    (2, {"A", "B"}, [("A", OutcomeStatus.CANCELLED, True)],    0, True),     # cancelled: frees its place
    (2, {"A", "B"}, [("A", OutcomeStatus.EXPIRED, True)],      0, True),
    (2, {"A", "B"}, [("A", OutcomeStatus.SENT, True)],         1, False),    # sent: it counts
    (2, {"A", "B"}, [("A", OutcomeStatus.FAILED, True)],       1, False),    # refused: it was tried, counts
    (2, {"A", "B"}, [("A", OutcomeStatus.PENDING, True)],      1, False),    # server down: tried, counts
    (2, {"A", "B"}, [("A", OutcomeStatus.SENT, False)],        0, True),     # the local outbox: does not
    (2, {"A", "B"}, [("A", OutcomeStatus.SENT, True), ("B", OutcomeStatus.CANCELLED, True)], 1, True),
    (2, {"A"},      [("A", OutcomeStatus.SENT, True), ("L1", OutcomeStatus.SENT, True)],     2, False),
    (None, {"A", "B"}, [("A", OutcomeStatus.SENT, True), ("B", OutcomeStatus.SENT, True)], 2, True),  # confirmed
])
def test_the_budget_of_a_pass(limit, reserved, deliveries, used, room):
    budget = Budget(limit, set(reserved))
    for key, status, leaves in deliveries:
        budget.delivered(key, status, leaves)
    assert (budget.used, budget.room()) == (used, room)


def test_the_budget_of_a_pass_from_the_policy_and_the_reason_of_held_letters():
    policy = policy_variant(("max_per_run: 1000 ", "max_per_run: 2 "))
    assert Budget.for_pass(policy, ["A", "B"], confirm=True).limit is None
    budget = Budget.for_pass(policy, ["A", "B"], confirm=False)
    assert (budget.limit, budget.reserved) == (2, {"A", "B"})
    assert budget.held_reason() == ""
    budget.delivered("A", OutcomeStatus.SENT, leaves=True)
    budget.delivered("B", OutcomeStatus.FAILED, leaves=True)
    budget.hold("L-SCI")
    budget.hold("L-DROIT")
    assert budget.held_reason().startswith("flood guard: 2 letter(s) replacing refused emails would take this "
                                           "run past flood_guard.max_per_run (2; 2 message(s) went out or were "
                                           "tried)")


# -- the fallback of an email refused for good -------------------------------------------------------

NO_ADDRESS = Patron(patron_id="P1", first_name="Camille", last_name="P1", email="p1@etu.univ.example")
TWO_LIBRARIES = [loan("2026-11-16", loan_id="L2", library="DROIT"), loan("2026-11-16", loan_id="L1"),
                 loan("2026-11-09", loan_id="L3")]


@pytest.mark.parametrize("policy_edit, channel, who, letters, why_not", [
    # fallback.email    notice   patron            letters: (library, loan ids, destination)
    ("letter",          "email", patron(),         [("DROIT", ("L2",), "mailbox:droit-contentieux@univ.example"),
                                                    ("SCI", ("L1", "L3"), "printer:bu-sciences")], ""),
    ("letter",          "email", NO_ADDRESS,       [], "no postal address for a letter instead"),
    ("none",            "email", patron(),         [], ""),
    ("letter",          "letter", patron(),        [], ""),      # a letter refused has no fallback
])
def test_fallback_routing(policy_edit, channel, who, letters, why_not):
    policy = policy_variant(("fallback: {email: letter}", f"fallback: {{email: {policy_edit}}}"))
    refused = dataclasses.replace(pending("first_reminder", ("L1", "2026-11-16")), channel=channel)
    got = fallback(policy, refused, who, TWO_LIBRARIES)
    assert [(n.library, n.loan_ids, n.destination) for n in got.letters] == letters
    assert got.why_not == why_not
    for n in got.letters:
        assert (n.date, n.stage, n.channel, n.patron_id) == (d("2026-11-23"), "first_reminder", "letter", "P1")
        assert n.recipient == "Camille P1, 12 rue des Facs, 33000 Bordeaux"
        assert (n.status, n.attempts) == (Status.PENDING, 0)
        assert n.entries == tuple((loan_id, d("2026-11-09" if loan_id == "L3" else "2026-11-16"))
                                  for loan_id in n.loan_ids)
    if not letters:
        assert got == Fallback(why_not=why_not)


def test_fallback_letters_are_the_letters_the_day_would_have_decided():
    """A patron whose email is refused gets the very letters of a patron without email that day."""
    policy, day = default_policy(), d("2026-11-23")
    cands = [cand("2026-11-16", loan_id="L1"), cand("2026-11-16", loan_id="L2", library="DROIT")]
    without_email = patron(email="")
    plan = plan_day(policy, cands, {"P1": without_email}, day)
    email = make_notice(policy, EMAIL, day, "first_reminder", patron(), None, [c.loan for c in cands])
    assert [n.channel for n in plan.notices] == ["letter", "letter"]
    assert fallback_letters(policy, email, patron(), [c.loan for c in cands]) == plan.notices
    assert fallback_letters(policy, email, patron(), [c.loan for c in cands], {"letter": LETTER}) == plan.notices


# -- one notice type, with its delivery state; statuses as text ------------------------------------

def test_the_plans_notices_are_what_the_outbox_gives_back(tmp_path):
    policy, day = default_policy(), d("2026-11-23")
    with Store(f"sqlite:///{tmp_path / 'rappel.db'}") as store:
        with store.engine.begin() as conn:
            store.upsert(conn, patrons, [
                {"patron_id": "P1", "barcode": "BC-P1", "first_name": "Camille", "last_name": "P1",
                 "email": "p1@etu.univ.example", "preferred_language": "fr", "account_type": "internal",
                 "record_type": "public", "user_group": "", "address_line1": "12 rue des Facs", "address_line2": "",
                 "postal_code": "33000", "city": "Bordeaux", "country": "", "phone": ""}])
            store.upsert(conn, loans, [
                {"loan_id": lid, "patron_id": "P1", "item_barcode": f"B-{lid}", "title": lid, "library": lib,
                 "due_date": d(due), "returned_on": None, "status": ""}
                for lid, lib, due in (("L1", "SCI", "2026-11-16"), ("L2", "DROIT", "2026-11-16"),
                                      ("L3", "SCI", "2026-10-19"))])
        plan = pipeline.plan_for(store, policy, day)
        store.record(plan)
        outbox = store.pending()
        with store.engine.connect() as conn:
            stored = set(conn.execute(select(notices.c.status).union(select(ledger.c.status))).scalars())
    assert [(n.stage, n.channel, n.library, n.loan_ids) for n in plan.notices] == [
        ("first_reminder", "email", None, ("L1", "L2")), ("letter", "letter", "SCI", ("L3",))]
    assert outbox == plan.notices
    assert [n.entries for n in outbox] == [(("L1", d("2026-11-16")), ("L2", d("2026-11-16"))),
                                           (("L3", d("2026-10-19")),)]
    assert [n.as_dict() for n in outbox][0] == {
        "date": "2026-11-23", "stage": "first_reminder", "channel": "email", "patron_id": "P1", "library": None,
        "loan_ids": ["L1", "L2"], "recipient": "p1@etu.univ.example", "destination": "p1@etu.univ.example"}
    assert stored == {"pending"} and all(type(s) is str for s in stored)


def test_the_statuses():
    assert LEDGER_STATUSES == ("pending", "sent", "failed", "superseded", "expired", "cancelled")
    assert [str(s) for s in OutcomeStatus] == [*LEDGER_STATUSES, "held", "waiting"]
    assert Status("sent") == "sent" and OutcomeStatus.HELD == "held" and f"{Status.EXPIRED}" == "expired"


# -- the evaluation is passed in ------------------------------------------------------------------

def test_the_evaluation_passed_to_service_day_is_the_one_used(tmp_path, monkeypatch):
    policy, day = default_policy(), d("2026-11-23")
    with Store(f"sqlite:///{tmp_path / 'rappel.db'}") as store:
        with store.engine.begin() as conn:
            store.upsert(conn, patrons, [{"patron_id": "P1", "barcode": "BC-P1", "first_name": "", "last_name": "",
                                          "email": "p1@etu.univ.example", "preferred_language": "fr",
                                          "account_type": "internal", "record_type": "public", "user_group": "",
                                          "address_line1": "", "address_line2": "", "postal_code": "", "city": "",
                                          "country": "", "phone": ""}])
            store.upsert(conn, loans, [{"loan_id": "L1", "patron_id": "P1", "item_barcode": "B-L1", "title": "",
                                        "library": "SCI", "due_date": d("2026-11-16"), "returned_on": None,
                                        "status": ""}])
        here = pipeline.plan_for(store, policy, day)
        there = pipeline.plan_for(store, policy, day, evaluate=isolation.evaluate_in_child)
        assert there.notices == here.notices and len(here.notices) == 1
        monkeypatch.setattr(sys, "executable", "/bin/false")      # the child process cannot start
        with pytest.raises(rules.EngineFault, match="process failed"):
            pipeline.plan_for(store, policy, day, evaluate=isolation.evaluate_in_child)
        with pytest.raises(rules.EngineFault, match="process failed"):
            pipeline.run_day(store, policy, None, None, day, evaluate=isolation.evaluate_in_child)
        assert store.pending() == []                              # nothing decided, nothing recorded
        assert pipeline.plan_for(store, policy, day).notices == here.notices   # in this process: unaffected
