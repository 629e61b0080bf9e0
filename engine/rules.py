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
from engine.timeline import timeline

RULESET = "reminders"
BATCH = 500


class EngineFault(RuntimeError):
    """The rules engine misbehaved; nothing decided in this evaluation may be used."""


class _SyncHost(Host):
    """A host that does no background dispatching: every post is handled synchronously."""

    def _run(self):  # durable's Host starts timer threads here, one set per host, forever
        pass


NEVER = -10 ** 6       # "days late" of a stage that finds no open day to go out on: never in a window


def _stage_condition(policy: Policy, index: int, library: str | None) -> dict:
    """Stage ``index`` as the institution runs it (``library`` None: for every library that does
    not override it) or as ``library`` does."""
    line = timeline(policy)
    stage = line.stage(index, library) if library is not None else policy.stages[index]
    window = policy.window(stage)
    conds: list[dict] = [
        {"s": index},
        {"open": 1},
        {"$gte": {"lt": 0}},                 # trigger date on or before as_of
        {"$lte": {"lt": window}},            # ... and within the catch-up window
        {"$lt": {"lr": index}},              # neither this stage nor a later one in the ledger
    ]
    if library is not None:                 # this library's own rule
        conds.append({"lib": library})
    else:                                   # the institution's, for the libraries that keep it
        conds.extend({"$neq": {"lib": code}} for code, _ in line.variants(index) if code is not None)
    if policy.resumed_on is not None:       # trigger on or after the restart day
        conds.append({"$gte": {"tr": policy.resumed_on.toordinal()}})
    if stage.offset_days < 0:               # a stage before the due date only before it
        conds.append({"$lt": {"el": 0}})
    if not line.calendar.empty and not line.sends_on_closed_days(stage.channel):
        conds.append({"od": 1})             # letters go out on the library's open days only
    conds.extend({"$neq": {"st": status}} for status in sorted(policy.excluded_statuses))
    aud = stage.audience
    conds.append(_one_of("rt", aud.record_types))
    for field, values in (("ug", aud.user_groups), ("it", aud.item_types), ("lib", aud.libraries)):
        if values is not None:
            conds.append(_one_of(field, values))
    return {"$and": conds}


def _one_of(field: str, values: list[str]) -> dict:
    if not values:
        return {"s": -1}  # nobody: a condition no event meets
    return {"$or": [{field: v} for v in values]}


def _event(seq: int, ci: int, si: int, cand: Candidate, policy: Policy, as_of: dt.date) -> dict:
    loan = cand.loan
    line = timeline(policy)
    on = line.trigger(si, loan.library, loan.due_date).on
    recorded = [i for i, s in enumerate(policy.stages) if s.id in cand.recorded]
    return {
        "id": seq, "c": ci, "s": si,
        "el": (as_of - loan.due_date).days,
        "lt": (as_of - on).days if on is not None else NEVER,
        "tr": on.toordinal() if on is not None else 0,
        "od": 1 if line.calendar.is_open(loan.library, as_of) else 0,
        "open": 1 if loan.returned_on is None else 0,
        "st": loan.status,
        "rt": cand.record_type,
        "ug": cand.user_group,
        "it": loan.item_type,
        "lib": loan.library,
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

    line = timeline(policy)
    rules: dict = {
        f"stage_{i}_{code or ''}": {"pri": 1, "all": [{"m": _stage_condition(policy, i, code)}], "run": recorder(True)}
        for i in range(len(policy.stages)) for code, _ in line.variants(i)
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
