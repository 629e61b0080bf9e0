"""Boundaries the rest of the suite did not reach: each row here changes its answer under a mutant
of the code that the other tests let through (benchmarks/mutants.py runs them).

- what makes a postal address: a street line (1 or 2) and a postal code or a town; a street alone
  is no address, and the letter stage is cancelled for it;
- `audience: {user_groups: []}`: a stage for nobody, in the rules and in the reference alike
  (an empty list is not "no restriction");
- a library's own rule (libraries.CODE.stages) is that library's alone: another library's loans
  keep the institution's offsets and windows;
- the flood guard's second count, after the re-check: exactly max_per_run messages left is not
  over the limit; one more is.
On the shipped policy: first_reminder due + 7 days, letter due + 35.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from engine import decide, reference, rules

try:
    from tests.delivery_site import RUN, Site
    from tests.engine_cases import cand, d, default_policy, patron, policy_variant
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import RUN, Site
    from engine_cases import cand, d, default_policy, patron, policy_variant


# -- a postal address ------------------------------------------------------------------------------

@pytest.mark.parametrize("line1, line2, postal_code, city, letterable", [
    ("12 rue des Facs", "",       "33000", "Bordeaux", True),
    ("12 rue des Facs", "",       "33000", "",         True),     # a postal code without the town
    ("12 rue des Facs", "",       "",      "Bordeaux", True),     # a town without the postal code
    ("",                "Bât. C", "33000", "",         True),     # the second line is a street line too
    ("12 rue des Facs", "",       "",      "",         False),    # a street, but where?
    ("",                "",       "33000", "Bordeaux", False),    # a town, but no street
    ("",                "",       "",      "",         False),
])
def test_what_makes_a_postal_address(line1, line2, postal_code, city, letterable):
    who = dataclasses.replace(patron("P1"), address_line1=line1, address_line2=line2, postal_code=postal_code,
                              city=city)
    assert who.has_postal_address is letterable
    # the letter stage (due 2026-03-20 + 35 days) goes out as a letter only to an address
    plan = decide.plan_day(default_policy(), [cand("2026-03-20", recorded={"first_reminder", "second_reminder"})],
                           {"P1": who}, d("2026-04-24"))
    [decision] = plan.decisions
    assert (decision.stage, decision.status) == ("letter", "pending" if letterable else "cancelled")
    if letterable:
        [notice] = plan.notices
        assert notice.channel == "letter"
    else:
        assert plan.notices == [] and decision.reason.endswith("no postal address to send a letter to")


# -- an audience of nobody -------------------------------------------------------------------------

FOR_NOBODY = policy_variant(("  - {id: first_reminder, offset_days: 7, channel: email}",
                             "  - {id: first_reminder, offset_days: 7, channel: email, audience: {user_groups: []}}"))


@pytest.mark.parametrize("group, run, due_stages", [
    # user group   run on        stages due (first_reminder for nobody; the others as usual)
    ("",           "2026-03-27", set()),
    ("etudiant",   "2026-03-27", set()),
    ("personnel",  "2026-03-27", set()),
    ("etudiant",   "2026-03-17", {"courtesy"}),
    ("etudiant",   "2026-04-10", {"second_reminder"}),
])
def test_an_empty_list_of_user_groups_is_a_stage_for_nobody(group, run, due_stages):
    assert FOR_NOBODY.stages[1].audience.user_groups == []
    c = cand("2026-03-20", group=group)
    engine = {FOR_NOBODY.stages[si].id for _, si in decide.due_stages(FOR_NOBODY, [c], d(run))}
    plain = {FOR_NOBODY.stages[si].id for _, si in reference.due_pairs(FOR_NOBODY, [c], d(run))}
    assert engine == plain == due_stages
    # and the shipped policy (no user_groups: anyone) sends that first reminder
    assert {s for _, s in decide.due_stages(default_policy(), [c], d("2026-03-27"))} == {1}


# -- a library's own rule --------------------------------------------------------------------------

DROIT_LETTERS = "    letters: {mailbox: droit-contentieux@univ.example}\n"
DROIT_OWN = policy_variant((DROIT_LETTERS, DROIT_LETTERS + "    stages: [{id: first_reminder, offset_days: 1, "
                                                           "max_delay_days: 5}]\n"))


@pytest.mark.parametrize("library, run, due_stages", [
    # library  run on        (due 2026-03-20; DROIT reminds on 03-21 within 5 days, SCI on 03-27 within 2)
    ("DROIT",  "2026-03-21", {"first_reminder"}),
    ("SCI",    "2026-03-21", set()),
    ("DROIT",  "2026-03-26", {"first_reminder"}),        # 5 days late: inside DROIT's own window
    ("DROIT",  "2026-03-27", set()),                     # 6 days late
    ("SCI",    "2026-03-27", {"first_reminder"}),
    ("SCI",    "2026-03-29", {"first_reminder"}),        # 2 days late: the institution's window
    ("SCI",    "2026-03-31", set()),                     # 4 days late: inside DROIT's window, not SCI's
])
def test_a_librarys_own_rule_is_that_librarys_alone(library, run, due_stages):
    c = cand("2026-03-20", library=library)
    engine = {DROIT_OWN.stages[si].id for _, si in decide.due_stages(DROIT_OWN, [c], d(run))}
    plain = {DROIT_OWN.stages[si].id for _, si in reference.due_pairs(DROIT_OWN, [c], d(run))}
    assert engine == plain == due_stages
    # the compiled rules alone, asked about every stage (not only those the pre-filter keeps), agree
    every = [(0, si) for si in range(len(DROIT_OWN.stages))]
    assert {DROIT_OWN.stages[si].id for _, si in rules.evaluate_here(DROIT_OWN, [c], d(run), every)} == due_stages


# -- the flood guard's second count ------------------------------------------------------------------

@pytest.mark.parametrize("patrons, excluded_since, held", [
    # first reminders   loans lost since the decision   held?   (max_per_run: 3)
    (3,                 0,                              False),
    (4,                 0,                              True),
    (4,                 1,                              False),   # 4 decided, 3 left after the re-check: = max
    (5,                 1,                              True),    # 4 left: one over
    (5,                 2,                              False),
])
def test_the_flood_guard_counts_what_is_left_after_the_recheck(tmp_path, smtp_server, patrons, excluded_since,
                                                               held):
    site = Site(tmp_path, f'\ndelivery:\n  email: {{url: "{smtp_server.url}"}}\n'
                          f'flood_guard: {{max_per_run: 3, per_second: null}}\n')
    try:
        for n in range(1, patrons + 1):
            site.patron(f"P{n}", f"p{n}@etu.example")
            site.loan(f"L{n}", f"P{n}", "2026-11-16")
        site.decide_only(RUN)                          # decided and recorded; not sent yet
        for n in range(1, excluded_since + 1):
            site.loan(f"L{n}", f"P{n}", "2026-11-16", status="lost")      # the re-check cancels these
        result = site.run(RUN)
        statuses = sorted(o.status for o in result.outcomes)
        if held:
            assert result.held and f"{patrons - excluded_since} messages would go out" in result.held
            assert smtp_server.messages == []
        else:
            assert result.held is None, result.held
            assert statuses == sorted(["cancelled"] * excluded_since + ["sent"] * (patrons - excluded_since))
            assert len(smtp_server.messages) == patrons - excluded_since
    finally:
        site.close()


def test_the_run_day_is_the_first_reminders_day():
    """The flood-guard rows above decide first reminders on RUN: loans due 2026-11-16 + 7 days."""
    assert RUN == dt.date(2026, 11, 23)
