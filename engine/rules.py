"""The one module that imports durable-rules: stage rules compiled from the policy, evaluated.

durable-rules' C core has known faults, so it is used behind guardrails (see the design):
- a fresh host and ruleset per evaluation, freed afterwards, with no background dispatch threads;
- loans are *posted as events* (never asserted as facts, which are deduplicated by a 32-bit
  content hash), each with a unique id, in small batches; no ``sid`` per patron;
- every event must be consumed by exactly one rule: the stage rule when due, else a low-priority
  ``not_due`` rule. Any event unaccounted for, seen twice, or any exception in an action (which
  durable-rules would swallow into its returned state) raises :class:`EngineFault`;
- actions only record decisions;
- the caller pre-filters candidates (SQL on the due date), and cross-checks the result against
  the plain-Python reference (engine/reference.py).
"""
from __future__ import annotations

import datetime as dt

import durable_rules_engine
from durable.engine import Host

from engine.facts import IDENTITY_FIELDS, Candidate
from engine.policy import Policy

RULESET = "reminders"
BATCH = 500


class EngineFault(RuntimeError):
    """The rules engine misbehaved; nothing decided in this evaluation may be used."""


class _SyncHost(Host):
    """A host that does no background dispatching: every post is handled synchronously."""

    def _run(self):  # durable's Host starts timer threads here, one set per host, forever
        pass


def _stage_condition(policy: Policy, index: int) -> dict:
    stage = policy.stages[index]
    offset, window = stage.offset_days, policy.window(stage)
    conds: list[dict] = [
        {"s": index},
        {"open": 1},
        {"$gte": {"el": offset}},            # trigger date on or before as_of
        {"$lte": {"el": offset + window}},   # ... and within the catch-up window
        {"$lt": {"lr": index}},              # neither this stage nor a later one in the ledger
    ]
    if policy.resumed_on is not None:       # trigger on or after the restart day
        conds.append({"$gte": {"due": policy.resumed_on.toordinal() - offset}})
    if offset < 0:                          # a stage before the due date only before it
        conds.append({"$lt": {"el": 0}})
    conds.extend({"$neq": {"st": status}} for status in sorted(policy.excluded_statuses))
    conds.append(_one_of("rt", stage.audience.record_types))
    if stage.audience.user_groups is not None:
        conds.append(_one_of("ug", stage.audience.user_groups))
    return {"$and": conds}


def _one_of(field: str, values: list[str]) -> dict:
    if not values:
        return {"s": -1}  # nobody: a condition no event meets
    return {"$or": [{field: v} for v in values]}


def _event(seq: int, ci: int, si: int, cand: Candidate, policy: Policy, as_of: dt.date) -> dict:
    loan = cand.loan
    recorded = [i for i, s in enumerate(policy.stages) if s.id in cand.recorded]
    return {
        "id": seq, "c": ci, "s": si,
        "el": (as_of - loan.due_date).days,
        "due": loan.due_date.toordinal(),
        "open": 1 if loan.returned_on is None else 0,
        "st": loan.status,
        "rt": cand.record_type,
        "ug": cand.user_group,
        "lr": max(recorded, default=-1),
    }


def evaluate_here(policy: Policy, candidates: list[Candidate], as_of: dt.date,
                  pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Post one event per (candidate index, stage index) pair, in this process; return the pairs
    whose stage is due.

    This is engine.decide's default evaluation. Long-running processes (the daemon) pass
    adapters.isolation's ``evaluate_in_child`` instead: durable-rules' C core keeps some memory of
    every ruleset and event even after the ruleset is deleted (measured here: about 0.3 KB an event,
    more on some machines; jruizgit/rules#137), and a fault there could take the whole process
    down. The engine itself starts no process.
    """
    due: list[tuple[int, int]] = []
    seen: list[int] = []
    errors: list[BaseException] = []

    def recorder(record_due: bool):
        def action(c):  # one parameter: a two-parameter action would be taken as asynchronous
            try:
                seen.append(c.m["id"])
                if record_due:
                    due.append((c.m["c"], c.m["s"]))
            except BaseException as exc:  # durable-rules would swallow it
                errors.append(exc)
                raise
        return action

    rules: dict = {
        f"stage_{i}": {"pri": 1, "all": [{"m": _stage_condition(policy, i)}], "run": recorder(True)}
        for i in range(len(policy.stages))
    }
    rules["not_due"] = {"pri": 9, "all": [{"m": {"$gte": {"s": 0}}}], "run": recorder(False)}

    events = [_event(seq, ci, si, candidates[ci], policy, as_of) for seq, (ci, si) in enumerate(pairs)]
    _post_all(RULESET, rules, events, errors, "events")

    if len(seen) != len(events) or len(set(seen)) != len(events):
        raise EngineFault(f"durable-rules handled {len(set(seen))} distinct of {len(events)} events "
                          f"({len(seen)} actions): refusing to decide on a partial evaluation")
    return set(due)


def _post_all(name: str, rules: dict, events: list[dict], errors: list[BaseException], what: str) -> None:
    """Post the events, in batches, to a fresh host holding one ruleset, freed afterwards. Any refusal
    by durable-rules, or any exception raised in an action (which it would swallow), is an EngineFault."""
    host = _SyncHost({name: rules})
    ruleset = host.get_ruleset(name)
    try:
        for start in range(0, len(events), BATCH):
            chunk = events[start:start + BATCH]
            try:
                host.post_batch(name, chunk) if len(chunk) > 1 else host.post(name, chunk[0])
            except Exception as exc:
                raise EngineFault(f"durable-rules refused {what} {start}..{start + len(chunk) - 1}: "
                                  f"{type(exc).__name__}") from exc
            if errors:
                raise EngineFault(f"an action raised inside durable-rules: {errors[0]!r}") from errors[0]
    finally:
        durable_rules_engine.delete_ruleset(ruleset._handle)


# -- the edit decision (rules/accounts.yaml) ------------------------------------------------------

EDITS_RULESET = "accounts"


def _none_of(field: str, values) -> dict:
    if not values:
        # every event. Not {"$gte": {"id": 0}}: a condition on "id" makes durable-rules spin forever
        return {"$gte": {"n": 0}}
    return {"$and": [{"$neq": {field: v}} for v in values]}


def _edit_rules(accounts, record) -> dict:
    """One rule per verdict (per role for the role's verdicts); conditions are mutually exclusive."""
    owned = accounts.external.owned_fields
    not_identity = _none_of("f", IDENTITY_FIELDS)
    not_owned = {"$or": [{"$neq": {"at": "external"}}, _none_of("f", owned)]}
    rules: dict = {
        "identity": {"pri": 1, "all": [{"m": _one_of("f", IDENTITY_FIELDS)}], "run": record("identity")},
        "owned": {"pri": 1, "all": [{"m": {"$and": [not_identity, {"at": "external"}, _one_of("f", owned)]}}],
                  "run": record("owned")},
    }
    for i, (name, role) in enumerate(accounts.roles.items()):
        mine = [not_identity, not_owned, {"role": name}]
        rules[f"record_type_{i}"] = {"pri": 1, "run": record("record_type"),
                                     "all": [{"m": {"$and": mine + [_none_of("rt", role.record_types)]}}]}
        rules[f"allowed_{i}"] = {"pri": 1, "run": record("allowed"), "all": [{"m": {"$and": mine + [
            _one_of("rt", role.record_types), _one_of("f", role.may_edit)]}}]}
    # deny by default: an unknown role, or a field the role may not edit
    rules["not_permitted"] = {"pri": 9, "all": [{"m": {"$gte": {"n": 0}}}], "run": record("not_permitted")}
    return rules


def evaluate_edits(accounts, requests: list) -> list[str]:
    """Post one event per edit request (engine.accounts' AccountsPolicy and EditRequests: that module
    calls this one, so it is not imported here); return each request's verdict (engine.accounts.VERDICTS)."""
    verdicts: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def record(name: str):
        def action(c):  # one parameter: a two-parameter action would be taken as asynchronous
            try:
                verdicts.setdefault(c.m["id"], []).append(name)
            except BaseException as exc:  # durable-rules would swallow it
                errors.append(exc)
                raise
        return action

    events = [{"id": seq, "n": seq, "at": r.account_type, "rt": r.record_type, "role": r.role, "f": r.field}
              for seq, r in enumerate(requests)]
    if not events:
        return []
    _post_all(EDITS_RULESET, _edit_rules(accounts, record), events, errors, "edit requests")

    if sorted(verdicts) != list(range(len(events))) or any(len(v) != 1 for v in verdicts.values()):
        raise EngineFault(f"durable-rules decided {len(verdicts)} of {len(events)} edit requests "
                          f"({sum(map(len, verdicts.values()))} actions): refusing to answer")
    return [verdicts[i][0] for i in range(len(events))]
