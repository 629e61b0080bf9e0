"""The one module that imports durable-rules: stage rules compiled from the policy, evaluated.

durable-rules' C core has known faults, so it is used behind guardrails (see the design):
- a fresh host and ruleset per evaluation, freed afterwards, with no background dispatch threads;
- loans are *posted as events* (never asserted as facts, which are deduplicated by a 32-bit
  content hash), each with a unique id, in small batches; no ``sid`` per patron; the (loan, stage)
  pairs whose events would be equal but for their id share one (evaluate_here);
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
from engine import requests as req
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
    if policy.is_optional(stage.id):        # a patron may opt out of it
        conds.append({"oo": 0})
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
    """The event of stage ``si`` for a candidate: its id ``seq`` and number ``ci`` (PER_EVENT), and
    every attribute the stage rules may read. evaluate_here shares one posted event among the pairs
    whose attributes are all equal: an attribute added here is part of that comparison by itself."""
    loan = cand.loan
    line = timeline(policy)
    on = line.trigger(si, loan.library, loan.due_date).on
    recorded = [i for i, s in enumerate(policy.stages) if s.id in cand.recorded] if cand.recorded else ()
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
        "oo": 1 if cand.opted_out_of(policy.stages[si].id) else 0,
    }


PER_EVENT = ("id", "c")   # what tells one posted event from another; the stage rules read none of them


def _read_fields(condition) -> set[str]:
    """The event attributes a compiled condition reads."""
    out: set[str] = set()
    for key, value in condition.items():
        if key in ("$and", "$or"):
            for part in value:
                out |= _read_fields(part)
        elif key.startswith("$"):
            out |= set(value)
        else:
            out.add(key)
    return out


class _Recorder:
    """What the rules' actions saw: each event's id, the (candidate, stage) pairs found due, and any
    exception an action raised (durable-rules would swallow it)."""

    def __init__(self):
        self.due: list[tuple[int, int]] = []
        self.seen: list[int] = []
        self.errors: list[BaseException] = []

    def action(self, record_due: bool):
        def action(c):  # one parameter: a two-parameter action would be taken as asynchronous
            try:
                self.seen.append(c.m["id"])
                if record_due:
                    self.due.append((c.m["c"], c.m["s"]))
            except BaseException as exc:
                self.errors.append(exc)
                raise
        return action

    def check_each_once(self, posted: int, what: str) -> None:
        """EngineFault unless every posted event was handled by exactly one action."""
        if len(self.seen) != posted or len(set(self.seen)) != posted:
            raise EngineFault(f"durable-rules handled {len(set(self.seen))} distinct of {posted} {what} "
                              f"({len(self.seen)} actions): refusing to decide on a partial evaluation")


def evaluate_here(policy: Policy, candidates: list[Candidate], as_of: dt.date,
                  pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Ask durable-rules about every (candidate index, stage index) pair, in this process; return
    the pairs whose stage is due.

    One event is posted per distinct event content: pairs whose events carry the same attributes
    (everything ``_event`` gives the engine but its id and number) share the one posted, and its
    decision is theirs. The engine sees nothing else of a pair, so it could not decide them apart;
    a rule that read an event's id or number would make that untrue, and is refused. The caller
    still checks every pair against the reference (engine.decide.due_stages).

    This is engine.decide's default evaluation. Long-running processes (the daemon) pass
    adapters.isolation's ``evaluate_in_child`` instead: durable-rules' C core keeps some memory of
    every ruleset and event even after the ruleset is deleted (measured here: about 0.3 KB an event,
    more on some machines; jruizgit/rules#137), and a fault there could take the whole process
    down. The engine itself starts no process.
    """
    record = _Recorder()
    due, errors, recorder = record.due, record.errors, record.action

    line = timeline(policy)
    rules: dict = {
        f"stage_{i}_{code or ''}": {"pri": 1, "all": [{"m": _stage_condition(policy, i, code)}], "run": recorder(True)}
        for i in range(len(policy.stages)) for code, _ in line.variants(i)
    }
    rules["not_due"] = {"pri": 9, "all": [{"m": {"$gte": {"s": 0}}}], "run": recorder(False)}
    read = set().union(*(_read_fields(r["all"][0]["m"]) for r in rules.values()))
    if read & set(PER_EVENT):
        raise EngineFault(f"a stage rule reads {sorted(read & set(PER_EVENT))}: events could not be shared")

    events: list[dict] = []                  # one per distinct content, numbered in order
    shared: list[list[tuple[int, int]]] = []  # the pairs each posted event stands for
    number: dict[tuple, int] = {}
    for ci, si in pairs:
        event = _event(len(events), len(events), si, candidates[ci], policy, as_of)
        content = tuple(item for item in event.items() if item[0] not in PER_EVENT)
        n = number.get(content)
        if n is None:
            n = number[content] = len(events)
            events.append(event)
            shared.append([])
        shared[n].append((ci, si))
    _post_all(RULESET, rules, events, errors, "events")
    record.check_each_once(len(events), "events")
    out: set[tuple[int, int]] = set()
    for n, si in due:
        if not 0 <= n < len(shared) or any(s != si for _, s in shared[n]):
            raise EngineFault(f"durable-rules decided event {n} for stage {si}, not the stage it was asked about")
        out.update(shared[n])
    return out


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


# -- request notices (engine/requests.py) ----------------------------------------------------------

REQUESTS_RULESET = "requests"


def _request_condition(policy: Policy, index: int) -> dict:
    """Request stage ``index``'s conditions, as engine/requests.py states them."""
    stage = policy.request_stages[index]
    conds: list[dict] = [
        {"s": index},
        {"$or": [{"st": status} for status in req.statuses_for(policy, stage)]},
        {"$gte": {"lt": 0}},                          # trigger date known and on or before as_of
        {"$lte": {"lt": req.window(policy, stage)}},  # ... within the catch-up window
        {"$lt": {"lr": index}},                       # neither this stage nor a later one in the ledger
    ]
    if policy.resumed_on is not None:
        conds.append({"$gte": {"tr": policy.resumed_on.toordinal()}})
    if policy.is_optional(stage.id):                     # a patron may opt out of it
        conds.append({"oo": 0})
    if stage.when in ("ready", "expires"):              # only while it can still be picked up
        conds.append({"$lte": {"bx": 0}})
    return {"$and": conds}


def _request_event(seq: int, ci: int, si: int, cand, policy: Policy, as_of: dt.date) -> dict:
    r = cand.request
    stage = policy.request_stages[si]
    on = req.trigger(stage, r)
    recorded = [i for i, s in enumerate(policy.request_stages) if s.id in cand.recorded]
    return {"id": seq, "c": ci, "s": si, "st": r.status, "oo": 1 if cand.opted_out_of(stage.id) else 0,
            "lt": (as_of - on).days if on is not None else NEVER,
            "tr": on.toordinal() if on is not None else 0,
            "lr": max(recorded, default=-1),
            "bx": (as_of - r.expires_on).days if r.expires_on is not None else NEVER}


def evaluate_requests_here(policy: Policy, candidates: list, as_of: dt.date,
                           pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Post one event per (request candidate, request stage) pair; return the pairs whose stage is due.
    The same guardrails as ``evaluate_here``: every event consumed exactly once, faults raised."""
    if not pairs:
        return set()
    record = _Recorder()
    due, errors, recorder = record.due, record.errors, record.action

    rules: dict = {f"request_stage_{i}": {"pri": 1, "all": [{"m": _request_condition(policy, i)}], "run": recorder(True)}
                   for i in range(len(policy.request_stages))}
    rules["not_due"] = {"pri": 9, "all": [{"m": {"$gte": {"s": 0}}}], "run": recorder(False)}
    events = [_request_event(seq, ci, si, candidates[ci], policy, as_of) for seq, (ci, si) in enumerate(pairs)]
    _post_all(REQUESTS_RULESET, rules, events, errors, "request events")
    record.check_each_once(len(events), "request events")
    return set(due)


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
