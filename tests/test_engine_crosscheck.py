"""durable-rules (engine/rules.py) against the plain-Python reference (engine/reference.py).

The property: for random policies, candidates and run dates, evaluating *every*
(candidate, stage) pair in durable-rules gives exactly reference.due_pairs. Then the guardrails:
whatever goes wrong inside durable-rules surfaces as rules.EngineFault, never as a silently
smaller (or larger) set of decisions.
"""
from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter

import durable.engine
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import isolation
from engine import decide, reference, rules
from engine.calendar import WEEKDAYS
from engine.facts import Candidate, Loan
from engine.policy import Policy
from engine.timeline import timeline

try:
    from tests.engine_cases import cand, d, default_policy
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import cand, d, default_policy

STATUSES = ["", "lost", "claimed_returned", "long_overdue", "perdu réclamé", "in_transit"]
GROUPS = ["", "etudiant", "doctorant", "personnel", "lecteur extérieur"]
RECORD_TYPES = ["staff", "public", "contact"]
BASE = dt.date(2026, 6, 15)
MAX_EXAMPLES = 3000


# Each stage is drawn as one integer and each loan as two, decoded digit by digit (mixed radix):
# hypothesis spends ~0.1 ms per draw, so drawing every field separately would cost more than the
# engine itself. Each integer stays below 2**24 (hypothesis draws wider ones mostly small, which
# would leave the high digits at 0). Digit 0 is the plainest choice, so shrinking still works.
def _digits(n: int, *radices: int) -> list[int]:
    out = []
    for radix in radices:
        n, digit = divmod(n, radix)
        out.append(digit)
    return out


def _subset(mask: int, values: list) -> list:
    return [v for i, v in enumerate(values) if mask >> i & 1]


STAGE_RADICES = (2, 9, 32, 128, 2, 8, 4)     # channel, window, record types, user groups, count, item types, libraries
LOAN_RADICES = ((4, 5, 10, 86),          # aimed at a trigger?, which stage, how late, or as_of - due
                (2, 4, 11, 10, 3, 5, 128, 4))  # library, item type, returned, status, record type, user group,
#                                                recorded (<64: none), patron
CALENDAR_RADICES = (4, 128, 41, 10, 3, 3)    # none?, closed weekdays, closure start - BASE, its length,
#                                              SCI's own closed day (none, BASE, BASE+1), email on closed days
OVERRIDE_RADICES = (6, 11, 3, 3, 4)          # DROIT's stage (0: none), offset change, count, channel, window
ITEM_TYPES = ["", "LIVRE", "PRET_COURT"]
LIBRARIES = ["SCI", "DROIT"]
_POLICY = st.tuples(
    st.integers(1, 5),                                                         # how many stages
    st.tuples(*[st.integers(-10, 60)] * 5),                                    # offsets (sorted, unique)
    st.tuples(*[st.integers(0, math.prod(STAGE_RADICES) - 1)] * 5),            # stage settings
    st.integers(0, 5),                                                         # default window
    st.integers(0, 2 ** (len(STATUSES) - 1) - 1),                              # excluded statuses
    st.integers(0, 9),                                                         # 0: excludes "" too
    st.none() | st.integers(-75, 15),                                          # restart day - BASE
    st.integers(0, math.prod(CALENDAR_RADICES) - 1),                           # the calendar
    st.integers(0, math.prod(OVERRIDE_RADICES) - 1),                           # DROIT's own timeline
    st.integers(0, 31),                                                        # optional stages (a mask)
)
_AS_OF = st.integers(-10, 10)                                                  # as_of - BASE
_HOW_MANY = st.integers(1, 12)
_LOAN = st.tuples(*(st.integers(0, math.prod(radices) - 1) for radices in LOAN_RADICES),
                  st.integers(0, 11))   # the patron opted out of: 0-9 nothing, 10 the loan's aimed stage, 11 all


@st.composite
def _scenario(draw):
    # the number of loans is drawn first (st.lists would mostly give empty lists here)
    return draw(_POLICY), draw(_AS_OF), [draw(_LOAN) for _ in range(draw(_HOW_MANY))]


_SCENARIO = _scenario()


def build_policy(raw) -> Policy:
    how_many, offsets, stage_codes, window, excluded, exclude_blank, restart, calendar_code, override_code, opt = raw
    stages = []
    for i, offset in enumerate(sorted(set(offsets))[:how_many]):
        channel, stage_window, record_types, groups, count, item_types, libraries = _digits(
            stage_codes[i], *STAGE_RADICES)
        stage = {"id": f"s{i}_{offset + 10}", "offset_days": offset, "channel": ["email", "letter"][channel]}
        if count:
            stage["count"] = "open_days"
        if stage_window <= 5:                           # 6, 7, 8: the policy's default window
            stage["max_delay_days"] = stage_window
        audience = {}
        if record_types >= 24:                          # else the default (staff, public)
            audience["record_types"] = _subset(record_types - 24, RECORD_TYPES)
        if groups >= 96:                                # else every group
            audience["user_groups"] = _subset(groups - 96, GROUPS)
        if item_types:                                  # 0: every item type
            audience["item_types"] = _subset(item_types - 1, ITEM_TYPES)
        if libraries >= 2:                              # else every library
            audience["libraries"] = [LIBRARIES[libraries - 2]]
        if audience:
            stage["audience"] = audience
        stages.append(stage)
    data = {
        "timezone": "Europe/Paris",
        "sender": {"from": "Service <a@univ.example>", "reply_to": "a@univ.example"},
        "max_delay_days": window,
        "exclude_statuses": _subset(excluded, STATUSES[1:]) + ([""] if exclude_blank == 0 else []),
        "stages": stages,
        "preferences": {"optional": _subset(opt, [stage["id"] for stage in stages])},
        "libraries": {"SCI": {"name": "Sciences", "letters": {"printer": "p"}},
                      "DROIT": {"name": "Droit", "letters": {"printer": "q"}}},
    }
    if restart is not None:
        data["restart"] = {"resumed_on": BASE + dt.timedelta(days=restart)}
    _calendar(data, calendar_code)
    _override(data, override_code)
    return Policy.model_validate(data)


def _calendar(data: dict, code: int) -> None:
    none, weekdays, start, length, own, email = _digits(code, *CALENDAR_RADICES)
    if none == 0:                                       # a quarter of the policies: no calendar
        return
    closed_weekdays = _subset(weekdays if weekdays != 127 else 0, list(WEEKDAYS))
    first = BASE + dt.timedelta(days=start - 20)
    calendar: dict = {"closed_weekdays": closed_weekdays,
                      "closed": [{"from": first, "to": first + dt.timedelta(days=length)}, BASE + dt.timedelta(days=3)]}
    if email:
        calendar["send_on_closed_days"] = {"email": email == 1}
    data["calendar"] = calendar
    if own:
        data["libraries"]["SCI"]["calendar"] = {"closed": [BASE + dt.timedelta(days=own - 1)]}


def _override(data: dict, code: int) -> None:
    which, change, count, channel, window = _digits(code, *OVERRIDE_RADICES)
    stages = data["stages"]
    if not which or which > len(stages):
        return
    i = which - 1
    offset = stages[i]["offset_days"] + change - 5
    low = stages[i - 1]["offset_days"] if i else -10 ** 6
    high = stages[i + 1]["offset_days"] if i + 1 < len(stages) else 10 ** 6
    override: dict = {"id": stages[i]["id"]}
    if low < offset < high:
        override["offset_days"] = offset
    if count:
        override["count"] = ["days", "open_days"][count - 1]
    if channel:
        override["channel"] = ["email", "letter"][channel - 1]
    if window:
        override["max_delay_days"] = window - 1
    data["libraries"]["DROIT"]["stages"] = [override]


RETURNED = [None] * 7 + [-3, 0, 9, 40]                  # days after the due date, or still open


def build_candidates(policy: Policy, as_of: dt.date, codes: list[tuple[int, int]]) -> list[Candidate]:
    n = len(policy.stages)
    out = []
    for i, code in enumerate(codes):
        aimed, stage, late, elapsed = _digits(code[0], *LOAN_RADICES[0])
        library, item_type, returned, status, record_type, group, recorded, who = _digits(code[1], *LOAN_RADICES[1])
        if aimed < 3:   # due date aimed at a stage's trigger: -2..7 days late on as_of
            elapsed = policy.stages[stage % n].offset_days + late - 2
        else:           # anywhere: as_of - due in -15..70
            elapsed -= 15
        due = as_of - dt.timedelta(days=elapsed)
        ids = [s.id for s in policy.stages] + ["retired_stage"] * (6 - n)
        out.append(Candidate(
            loan=Loan(loan_id=f"L{i}", patron_id=f"P{who}", library=LIBRARIES[library], due_date=due,
                      item_type=ITEM_TYPES[item_type % 3],
                      returned_on=None if RETURNED[returned] is None else due + dt.timedelta(days=RETURNED[returned]),
                      status="" if status < 5 else STATUSES[status - 4]),
            record_type=RECORD_TYPES[record_type],
            user_group=GROUPS[group],
            recorded=frozenset(_subset(recorded - 64, ids) if recorded >= 64 else ()),
            opt_out=frozenset({10: [ids[stage % n]], 11: ["all"]}.get(code[2], ())),
        ))
    return out


def test_rules_equal_reference_on_all_pairs():
    stats: Counter = Counter()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_SCENARIO)
    def check(raw):
        raw_policy, day, raw_loans = raw
        policy = build_policy(raw_policy)
        as_of = BASE + dt.timedelta(days=day)
        cands = build_candidates(policy, as_of, raw_loans)
        all_pairs = [(ci, si) for ci in range(len(cands)) for si in range(len(policy.stages))]
        expected = reference.due_pairs(policy, cands, as_of)
        got = rules.evaluate_here(policy, cands, as_of, all_pairs)
        assert got == expected, (f"durable-rules {sorted(got)} != reference {sorted(expected)}\n"
                                 f"policy={policy.model_dump(exclude_defaults=True)}\nas_of={as_of}\n"
                                 f"candidates={cands}")

        # the pre-filter never leaves out a due pair: evaluation_pairs and due_ranges cover it
        pairs = decide.evaluation_pairs(policy, cands, as_of)
        assert expected <= set(pairs)
        ranges = reference.due_ranges(policy, as_of)
        for ci, _ in expected:
            assert any(lo <= cands[ci].loan.due_date <= hi for lo, hi in ranges)
        # ... nor does the ledger's: a loan whose ledger holds the last stage it could be due for
        # (or a later one) is not read, and none of those has a stage due
        last, ids = reference.last_stage_by_due_date(policy, as_of), [s.id for s in policy.stages]
        settled = {ci for ci, c in enumerate(cands)
                   if c.loan.due_date in last and c.recorded & set(ids[last[c.loan.due_date]:])}
        assert not settled & {ci for ci, _ in expected}
        stats["candidates the ledger settles"] += len(settled)

        # which condition alone keeps a triggered stage from being due: each must be exercised
        for ci, cand_ in enumerate(cands):
            for si in range(len(policy.stages)):
                failed = [c.name for c in reference.checks(policy, si, cand_, as_of) if not c.ok]
                if len(failed) == 1:
                    stats["only " + failed[0]] += 1
        # calendars, item types and library overrides are exercised, not only drawn
        line = timeline(policy)
        for ci, si in expected:
            ln = cands[ci].loan
            trig = line.trigger(si, ln.library, ln.due_date)
            stats["due on DROIT's own rule"] += line.override(si, ln.library) is not None
            stats["due after a move off a closed day"] += trig.on != trig.counted
            stats["due counted in open days"] += line.stage(si, ln.library).count == "open_days"
            stats["due for an item-type audience"] += line.stage(si, ln.library).audience.item_types is not None
        stats["examples"] += 1
        stats["pairs"] += len(all_pairs)
        stats["due"] += len(expected)
        stats["examples with a due pair"] += bool(expected)

    start, cpu = time.perf_counter(), time.process_time()
    check()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"\ncross-check: {stats['examples']} examples ({stats['examples with a due pair']} with a due pair), "
          f"{stats['pairs']} pairs, {stats['due']} due, {elapsed:.1f}s ({cpu:.1f}s CPU); "
          + ", ".join(f"{k}: {v}" for k, v in sorted(stats.items()) if k.startswith(("only ", "due ", "candidates "))))
    # not vacuous: a fair share of the examples have something due
    assert stats["examples"] == MAX_EXAMPLES
    assert stats["examples with a due pair"] > MAX_EXAMPLES // 10
    for kind in ("on DROIT's own rule", "after a move off a closed day", "counted in open days",
                 "for an item-type audience"):
        assert stats["due " + kind] >= 20, (kind, stats)
    # each check alone decides some pairs (how many varies with hypothesis' draw: 9 to 45 for the ledger)
    for check_name in ("status", "window", "open_day", "restart", "ledger", "before_due", "opt_out", "audience"):
        assert stats["only " + check_name] >= 5, (check_name, stats)
    assert stats["candidates the ledger settles"] >= 20, stats     # the ledger's pre-filter is exercised


# --------------------------------------------------------------------------------------------
# guardrails


def _busy_day():
    """Twelve loans of the shipped policy on 2026-03-27: three first reminders due, one courtesy."""
    cands = [cand(d("2026-03-27") - dt.timedelta(days=k), loan_id=f"L{k}") for k in range(12)]
    cands.append(cand("2026-03-30", loan_id="C"))
    return default_policy(), cands, d("2026-03-27")


def test_busy_day_baseline():
    policy, cands, as_of = _busy_day()
    got = decide.due_stages(policy, cands, as_of)
    assert {(cands[ci].loan.loan_id, policy.stages[si].id) for ci, si in got} == {
        ("L7", "first_reminder"), ("L8", "first_reminder"), ("L9", "first_reminder"), ("C", "courtesy")}


@pytest.mark.parametrize("tamper", ["drop", "add", "swap"])
def test_due_stages_refuses_when_engine_disagrees_with_reference(monkeypatch, tamper):
    policy, cands, as_of = _busy_day()
    real = rules.evaluate_here

    def wrong(policy, candidates, as_of, pairs):
        got = set(real(policy, candidates, as_of, pairs))
        if tamper == "drop":
            got.discard(min(got))
        elif tamper == "add":
            got.add((0, 1))                    # L0 is due today: its first reminder is a week away
        else:
            ci, si = min(got)
            got = (got - {(ci, si)}) | {(ci, (si + 1) % 4)}
        return got

    with pytest.raises(rules.EngineFault, match="disagree"):
        decide.due_stages(policy, cands, as_of, evaluate=wrong)
    with pytest.raises(rules.EngineFault):
        decide.plan_day(policy, cands, {}, as_of, evaluate=wrong)


@pytest.mark.parametrize("method", ["post_batch", "post"])
def test_refused_post_is_an_engine_fault(monkeypatch, method):
    policy, cands, as_of = _busy_day()
    pairs = [(ci, si) for ci in range(len(cands)) for si in range(4)]
    if method == "post":
        pairs = pairs[:1]                      # a single event goes through host.post

    def refuse(self, *args, **kwargs):
        raise OSError("connection to the rules engine lost")

    monkeypatch.setattr(rules._SyncHost, method, refuse)
    with pytest.raises(rules.EngineFault, match="refused events") as info:
        rules.evaluate_here(policy, cands, as_of, pairs)
    assert isinstance(info.value.__cause__, OSError)


def test_already_observed_event_is_an_engine_fault_not_a_lost_notice(monkeypatch):
    """durable-rules refuses a message whose id it has seen: that must stop the run, not drop a loan."""
    policy, cands, as_of = _busy_day()
    real_event = rules._event

    def colliding(seq, *args):
        event = real_event(seq, *args)
        event["id"] = seq // 2                 # every second event collides with the one before it
        return event

    monkeypatch.setattr(rules, "_event", colliding)
    pairs = decide.evaluation_pairs(policy, cands, as_of)
    assert len(pairs) >= 2
    with pytest.raises(rules.EngineFault, match="refused events") as info:
        rules.evaluate_here(policy, cands, as_of, pairs)
    assert type(info.value.__cause__).__name__ == "MessageObservedException"


def test_event_no_rule_handles_is_an_engine_fault(monkeypatch):
    policy, cands, as_of = _busy_day()
    real_event = rules._event

    def unmatched(seq, ci, si, *args):
        event = real_event(seq, ci, si, *args)
        if seq == 3:
            event["s"] = -1                    # neither a stage rule nor not_due matches it
        return event

    monkeypatch.setattr(rules, "_event", unmatched)
    pairs = decide.evaluation_pairs(policy, cands, as_of)
    with pytest.raises(rules.EngineFault):
        rules.evaluate_here(policy, cands, as_of, pairs)


def test_events_handled_under_one_id_are_counted_as_missing(monkeypatch):
    """Events durable-rules numbers itself (no id): the actions cannot be told apart -> refused."""
    policy, cands, as_of = _busy_day()
    real_event = rules._event

    def anonymous(*args):
        event = real_event(*args)
        del event["id"]
        return event

    monkeypatch.setattr(rules, "_event", anonymous)
    pairs = decide.evaluation_pairs(policy, cands, as_of)
    assert len(pairs) >= 2
    with pytest.raises(rules.EngineFault, match="distinct of"):
        rules.evaluate_here(policy, cands, as_of, pairs)


def test_exception_in_an_action_is_surfaced(monkeypatch):
    """durable-rules swallows an action's exception into its state; evaluate must raise it."""
    policy, cands, as_of = _busy_day()
    real_getitem = durable.engine.Content.__getitem__

    def failing(self, key):
        if key == "c":                         # only read by the action of a due stage
            raise LookupError("boom in action")
        return real_getitem(self, key)

    monkeypatch.setattr(durable.engine.Content, "__getitem__", failing)
    pairs = decide.evaluation_pairs(policy, cands, as_of)
    with pytest.raises(rules.EngineFault, match="an action raised") as info:
        rules.evaluate_here(policy, cands, as_of, pairs)
    assert isinstance(info.value.__cause__, LookupError)


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 500])
def test_batching_does_not_change_the_result(monkeypatch, batch):
    policy, cands, as_of = _busy_day()
    pairs = [(ci, si) for ci in range(len(cands)) for si in range(4)]   # 52 events
    expected = reference.due_pairs(policy, cands, as_of)
    monkeypatch.setattr(rules, "BATCH", batch)
    assert rules.evaluate_here(policy, cands, as_of, pairs) == expected


def test_many_evaluations_in_one_process():
    """A fresh host per evaluation: the ruleset name is never registered twice."""
    policy, cands, as_of = _busy_day()
    pairs = decide.evaluation_pairs(policy, cands, as_of)
    results = {frozenset(rules.evaluate_here(policy, cands, as_of, pairs)) for _ in range(200)}
    assert len(results) == 1


def test_empty_evaluation():
    policy, _, as_of = _busy_day()
    assert rules.evaluate_here(policy, [], as_of, []) == set()
    assert decide.plan_day(policy, [], {}, as_of).notices == []


# --- isolation: the daemon evaluates in a child process (durable-rules keeps memory per event)


def test_isolated_evaluation_decides_the_same_as_in_process():
    from engine.policy import parse_policy as _parse
    from tests.conftest import RULES

    policy = _parse((RULES / "reminders.yaml").read_text(encoding="utf-8"), "reminders.yaml")
    day = dt.date(2026, 11, 23)
    cands = [Candidate(Loan(f"L{i}", "P1", "SCI", day - dt.timedelta(days=i - 5)), "public", "")
             for i in range(45)]
    pairs = [(c, s) for c in range(len(cands)) for s in range(len(policy.stages))]
    here = rules.evaluate_here(policy, cands, day, pairs)
    there = isolation.evaluate_in_child(policy, cands, day, pairs)
    assert there == here and len(here) > 4


def test_a_dead_engine_process_is_an_engine_fault(monkeypatch):
    import sys as _sys

    from engine.policy import parse_policy as _parse
    from tests.conftest import RULES

    policy = _parse((RULES / "reminders.yaml").read_text(encoding="utf-8"), "reminders.yaml")
    day = dt.date(2026, 11, 23)
    cands = [Candidate(Loan("L1", "P1", "SCI", day), "public", "")]
    monkeypatch.setattr(_sys, "executable", "/bin/false")
    with pytest.raises(rules.EngineFault, match="process failed"):
        isolation.evaluate_in_child(policy, cands, day, [(0, 0)])


# --------------------------------------------------------------------------------------------
# request stages (engine/requests.py): the same property for the request notices

REQUEST_STATUSES = ["on_hold_shelf", "waiting", "expired", "lapsed", "fulfilled", "cancelled", "active", ""]
REQUEST_RADICES = (12, 9, 16, 16, 10)  # status (0-3: the ready status, 4: an expired one, else REQUEST_STATUSES),
#                                       ready_on (0: none, else as_of - 7..+0), expires_on (0: none, else
#                                       as_of - 7..+7), recorded stages (a mask of 4), the patron's opt-out
#                                       (0-3: that stage, 4: all, 5: a loan stage, 6-9: none)
REQUEST_EXAMPLES = 2500
_REQUEST_POLICY = st.tuples(
    st.integers(0, 3),                       # 0: no ready stage, else its offset + 1
    st.sets(st.integers(0, 6), max_size=2),  # the expires stages' offsets
    st.integers(0, 3),                       # 0: no expired stage, else its offset
    st.integers(0, 4),                       # default window
    st.tuples(*[st.integers(0, 5)] * 4),     # each stage's window (5: the default)
    st.none() | st.integers(-20, 8),         # restart day - as_of
    st.integers(0, 7),                       # ready status (bit 0: waiting), expired statuses (bits 1, 2)
    st.integers(0, 15),                      # the stages patrons may opt out of (a mask of 4)
)
_REQUESTS = st.lists(st.integers(0, math.prod(REQUEST_RADICES) - 1), min_size=1, max_size=10)


def build_request_policy(raw, as_of: dt.date) -> Policy:
    ready, expires, expired, window, windows, restart, statuses, optional = raw
    stages = []
    if ready:
        stages.append({"id": "ready", "when": "ready", "offset_days": ready - 1})
    for offset in sorted(expires, reverse=True):
        stages.append({"id": f"deadline_{offset}", "when": "expires", "offset_days": offset})
    if expired:
        stages.append({"id": "gone", "when": "expired", "offset_days": expired})
    for stage, own in zip(stages, windows):
        if own < 5:
            stage["max_delay_days"] = own
    data = default_policy().model_dump(by_alias=True, exclude_defaults=True)
    data.update(max_delay_days=window, request_stages=stages,
                requests={"ready_status": "waiting" if statuses & 1 else "on_hold_shelf",
                          "expired_statuses": [s for bit, s in ((2, "expired"), (4, "lapsed")) if statuses & bit]})
    data.pop("restart", None)
    if restart is not None:
        data["restart"] = {"resumed_on": as_of + dt.timedelta(days=restart)}
    chosen = [s["id"] for i, s in enumerate(stages) if optional >> i & 1]
    data["preferences"] = {**data.get("preferences", {}),
                           "optional": [*data.get("preferences", {}).get("optional", []), *chosen]}
    return Policy.model_validate(data)


def build_request_candidates(policy: Policy, as_of: dt.date, codes: list[int]) -> list:
    from engine.requests import Request, RequestCandidate
    ids = [s.id for s in policy.request_stages] + ["retired"] * (4 - len(policy.request_stages))
    out = []
    for i, code in enumerate(codes):
        status, ready, expires, recorded, opt_out = _digits(code, *REQUEST_RADICES)
        text = (policy.requests.ready_status if status < 4 else (policy.requests.expired_statuses or ["expired"])[0]
                if status == 4 else REQUEST_STATUSES[status - 4])
        out.append(RequestCandidate(Request(
            f"R{i}", "P1", "SCI", "SCI", as_of - dt.timedelta(days=30), text,
            expires_on=None if expires == 0 else as_of + dt.timedelta(days=expires - 8),
            ready_on=None if ready == 0 else as_of + dt.timedelta(days=ready - 8)),
            frozenset(_subset(recorded, ids)),
            frozenset([ids[opt_out]] if opt_out < 4 else {4: ["all"], 5: ["courtesy"]}.get(opt_out, []))))
    return out


def test_request_rules_equal_reference_on_all_pairs():
    from engine import requests as req
    stats: Counter = Counter()
    as_of = BASE

    @settings(max_examples=REQUEST_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_REQUEST_POLICY, _REQUESTS)
    def check(raw_policy, raw_requests):
        policy = build_request_policy(raw_policy, as_of)
        cands = build_request_candidates(policy, as_of, raw_requests)
        pairs = [(ci, si) for ci in range(len(cands)) for si in range(len(policy.request_stages))]
        expected = {(ci, si) for ci, si in pairs if req.is_due(policy, si, cands[ci], as_of)}
        got = rules.evaluate_requests_here(policy, cands, as_of, pairs)
        assert got == expected, (f"durable-rules {sorted(got)} != reference {sorted(expected)}\n"
                                 f"policy={policy.request_stages} {policy.requests} {policy.restart}\n"
                                 f"candidates={cands}")
        for ci, si in expected:     # the daily query's filters never leave a due request out
            r = cands[ci].request
            assert r.status in req.statuses_of_interest(policy)
            since = as_of - dt.timedelta(days=req.lookback_days(policy))
            assert (r.ready_on is not None and r.ready_on >= since) or (r.expires_on is not None
                                                                         and r.expires_on >= since)
        for ci, si in pairs:
            failed = [c.name for c in req.checks(policy, si, cands[ci], as_of) if not c.ok]
            if len(failed) == 1:
                stats["only " + failed[0]] += 1
        for ci, si in expected:
            stats["due " + policy.request_stages[si].when] += 1
        stats["examples"] += 1
        stats["pairs"] += len(pairs)
        stats["due"] += len(expected)

    start = time.perf_counter()
    check()
    print(f"\nrequest cross-check: {stats['examples']} examples, {stats['pairs']} pairs, {stats['due']} due, "
          f"{time.perf_counter() - start:.1f}s; " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.items())
                                                             if k.startswith(("only ", "due "))))
    assert stats["examples"] == REQUEST_EXAMPLES
    for when in ("ready", "expires", "expired"):
        assert stats["due " + when] >= 50, (when, stats)
    for name in ("status", "window", "restart", "ledger", "opt_out", "deadline"):
        assert stats["only " + name] >= 20, (name, stats)


def test_request_evaluation_refuses_a_disagreement(monkeypatch):
    from engine import request_notices
    from engine.requests import Request, RequestCandidate
    policy = default_policy()
    cand_ = RequestCandidate(Request("R1", "P1", "SCI", "SCI", d("2026-11-20"), "on_hold_shelf",
                                     d("2026-12-09"), d("2026-12-02")))
    assert request_notices.due_requests(policy, [cand_], d("2026-12-02")) == {(0, 0)}
    monkeypatch.setattr(rules, "evaluate_requests_here", lambda *a: set())
    with pytest.raises(rules.EngineFault, match="disagree on 1 request decision"):
        request_notices.due_requests(policy, [cand_], d("2026-12-02"))


def test_a_request_event_no_rule_handles_is_an_engine_fault(monkeypatch):
    from engine.requests import Request, RequestCandidate
    policy = default_policy()
    cand_ = RequestCandidate(Request("R1", "P1", "SCI", "SCI", d("2026-11-20"), "on_hold_shelf"))
    real = rules._post_all

    def lose_one(name, rules_, events, errors, what):
        real(name, rules_, events[1:], errors, what)
    monkeypatch.setattr(rules, "_post_all", lose_one)
    with pytest.raises(rules.EngineFault, match="request events"):
        rules.evaluate_requests_here(policy, [cand_], d("2026-12-02"), [(0, 0), (0, 1)])
