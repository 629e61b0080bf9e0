"""Request notices: "your hold is ready", "pickup deadline", "your request expired".

The policy's ``request_stages:`` (rules/reminders.yaml), each ``when:`` one moment of a request
(the key is not ``on:``, which YAML reads as true):

- ``ready``: the day the request became the policy's ready status (``requests.ready_status``,
  ``ready_on``: set by the import when the status changes to it), + ``offset_days``;
- ``expires``: ``offset_days`` days before ``expires_on`` (the last day to pick it up);
- ``expired``: ``offset_days`` days after ``expires_on`` (1: the day after the last pickup day).

A request stage S with trigger date T is **due** for request R on a run for date D when all hold
(``checks``, condition by condition; engine/rules.py evaluates the same in durable-rules):

1. status: R's status is the ready status (``expired``: or one of ``requests.expired_statuses``),
   so a request picked up (fulfilled), cancelled or closed gets nothing more;
2. window: T is known (ready_on, expires_on given) and ``T <= D <= T + max_delay_days``;
3. restart: ``T >= restart.resumed_on`` when the policy has one;
4. ledger: neither S nor a later request stage is in the ledger for R (once per request: the
   ledger row is (request, stage, placed_on));
5. opt-out: the patron did not opt out of S, when the policy lets patrons opt out of it
   (``preferences: {optional: [...]}``, as for a loan stage);
6. deadline: a ``ready`` or ``expires`` notice only while it can still be picked up
   (``D <= expires_on``, or no expiry).

Several stages due for R on one run: only the latest goes, the others are superseded. The notices
group a patron's requests per stage and channel per day. Nothing here reads a clock or a database.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from engine.channels import DEFAULT, NAME_PATTERN, unknown_channel
from engine.facts import OPT_OUT_ALL
from engine.policy_base import _Routed, _Strict

__all__ = ["Check", "Request", "RequestCandidate", "RequestSettings", "RequestStage", "anchor", "checks",
           "check_request_stages", "is_due", "trigger"]

Moment = Literal["ready", "expires", "expired"]
ORDER = {"ready": 0, "expires": 1, "expired": 2}
MAX_REQUEST_OFFSET = 366
DIRECT = ("email", "text", "json")     # what a request notice may be rendered as


class RequestStage(_Routed):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Stage name (distinct from the loan stages'), "
                                                               "used in the ledger and template names")
    when: Moment = Field(description="ready: the day the request became ready (+ offset_days); expires: "
                                   "offset_days before expires_on; expired: offset_days after expires_on")
    offset_days: int = Field(default=0, ge=0, le=MAX_REQUEST_OFFSET,
                             description="Days after ready_on (ready), before expires_on (expires), after "
                                         "expires_on (expired, at least 1)")
    channel: str = Field(default="email", pattern=NAME_PATTERN,
                         description="The channel it goes out on: one that reaches the patron themselves "
                                     "(email, sms, webhook), not a letter")
    channels: list[str] | None = Field(default=None, description="The channels a patron may have it on, their "
                                       "preference (a patron's channels) choosing among them, the first they can "
                                       "be reached by going out and a refused one falling back to the next; "
                                       "default: its channel only")
    max_delay_days: int | None = Field(default=None, ge=0,
                                       description="Catch-up window; the policy's default when absent")
    template: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$",
                                 description="Template name in rules/templates/ (default: the stage id)")

    @field_validator("channel")
    @classmethod
    def _direct_channel(cls, name: str, info: ValidationInfo) -> str:
        return _direct(name, info)

    @field_validator("channels")
    @classmethod
    def _direct_channels(cls, names: list[str] | None, info: ValidationInfo) -> list[str] | None:
        for name in names or ():
            _direct(name, info)
        return names


def _direct(name: str, info: ValidationInfo) -> str:
    """A request notice goes to the patron themselves, one per patron: an email, an SMS, a document
    for another system; not a letter (set out per library, through its printer or mailbox)."""
    channels = (info.context or {}).get("channels", DEFAULT)
    spec = channels.get(name)
    if spec is None:
        raise ValueError(unknown_channel(name, channels))
    if spec.renders not in DIRECT or spec.per_library or spec.via_library:
        fit = [n for n, s in channels.items() if s.renders in DIRECT and not s.per_library and not s.via_library]
        raise ValueError(f"a request notice goes to the patron themselves ({', '.join(fit)}): {name!r} is a "
                         f"{spec.renders} set out per library")
    return name


class RequestSettings(_Strict):
    """How the library system's request statuses read for the request notices."""

    ready_status: str = Field(default="on_hold_shelf", description="The status of a request waiting on the "
                                                                   "hold shelf for its patron")
    expired_statuses: list[str] = Field(default=["expired"], description="Statuses of a request whose pickup "
                                        "deadline passed (it also counts as expired while still ready)")


def check_request_stages(policy) -> None:
    """Request stage ids unique and distinct from the loan stages' (the ledger keeps them apart by
    stage), in the order of their triggers: ready, then expires (offsets decreasing), then expired."""
    stages = policy.request_stages
    loan_ids = {s.id for s in policy.stages}
    seen: list[str] = []
    for i, stage in enumerate(stages):
        if stage.id in loan_ids:
            raise ValueError(f"request_stages[{i}].id: {stage.id} is also a loan stage: request stage ids "
                             f"must differ from the stages'")
        if stage.id in seen:
            raise ValueError(f"request_stages[{i}].id: stage ids must be unique; {stage.id} is also "
                             f"request stage {seen.index(stage.id) + 1}")
        seen.append(stage.id)
        if stage.when == "expired" and stage.offset_days < 1:
            raise ValueError(f"request_stages[{i}].offset_days: an expired notice goes at least 1 day after "
                             f"expires_on (the last day to pick it up)")
    for i, (before, after) in enumerate(zip(stages, stages[1:]), start=1):
        if (ORDER[after.when], _rank(after)) <= (ORDER[before.when], _rank(before)):
            raise ValueError(f"request_stages[{i}]: request stages go in the order they trigger (ready, then "
                             f"expires with decreasing offset_days, then expired); {after.id} ({after.when}, "
                             f"{after.offset_days}) comes after {before.id} ({before.when}, {before.offset_days})")


def _rank(stage: RequestStage) -> int:
    return -stage.offset_days if stage.when == "expires" else stage.offset_days


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    patron_id: str
    library: str
    pickup_library: str
    placed_on: dt.date
    status: str = ""
    expires_on: dt.date | None = None
    ready_on: dt.date | None = None       # the day its status became the ready status
    title: str = ""


@dataclass(frozen=True, slots=True)
class RequestCandidate:
    """A request the day's run asks about, with the request stages already in its ledger."""

    request: Request
    recorded: frozenset[str] = field(default_factory=frozenset)
    opt_out: frozenset[str] = field(default_factory=frozenset)   # the patron's opt-outs (Patron.opted_out)

    def opted_out_of(self, stage_id: str) -> bool:
        """Whether the patron opted out of this stage (it counts only where the stage is optional)."""
        return stage_id in self.opt_out or OPT_OUT_ALL in self.opt_out


@dataclass(frozen=True)
class Check:
    name: str     # status, window, restart, ledger, opt_out, deadline
    ok: bool
    detail: str


def anchor(stage: RequestStage, request: Request) -> dt.date | None:
    """The date the stage counts from: ready_on (ready) or expires_on (expires, expired)."""
    return request.ready_on if stage.when == "ready" else request.expires_on


def trigger(stage: RequestStage, request: Request) -> dt.date | None:
    """The day the stage goes out for the request, or None when its date is not known."""
    day = anchor(stage, request)
    if day is None:
        return None
    sign = -1 if stage.when == "expires" else 1
    return day + dt.timedelta(days=sign * stage.offset_days)


def statuses_for(policy, stage: RequestStage) -> tuple[str, ...]:
    """The request statuses the stage is sent for."""
    ready = policy.requests.ready_status
    if stage.when == "expired":
        return (ready, *[s for s in policy.requests.expired_statuses if s != ready])
    return (ready,)


def window(policy, stage: RequestStage) -> int:
    return policy.max_delay_days if stage.max_delay_days is None else stage.max_delay_days


def checks(policy, index: int, cand: RequestCandidate, as_of: dt.date) -> list[Check]:
    """Every condition of 'request stage ``index`` is due for this request on as_of', with its reason."""
    stage = policy.request_stages[index]
    req = cand.request
    out: list[Check] = []
    wanted = statuses_for(policy, stage)
    if req.status in wanted:
        out.append(Check("status", True, f"status {req.status!r}"))
    else:
        out.append(Check("status", False, f"status {req.status!r}, not {' or '.join(map(repr, wanted))}"))

    t = trigger(stage, req)
    if t is None:
        what = "ready_on (the day it became ready)" if stage.when == "ready" else "expires_on"
        out.append(Check("window", False, f"no {what} to count from"))
    else:
        late, win = (as_of - t).days, window(policy, stage)
        if late < 0:
            out.append(Check("window", False, f"triggers on {t}, {-late} day(s) after {as_of}"))
        elif late > win:
            out.append(Check("window", False, f"triggered on {t}, {late} days before {as_of}: past the "
                                              f"{win}-day catch-up window (stale)"))
        else:
            out.append(Check("window", True, f"triggered on {t}" + (f", caught up {late} day(s) late" if late else "")))
        resumed = policy.resumed_on
        if resumed is not None:
            ok = t >= resumed
            out.append(Check("restart", ok, f"trigger {t} is {'on or after' if ok else 'before'} the restart on "
                                            f"{resumed}" + ("" if ok else ": never sent")))

    later = [s.id for s in policy.request_stages[index + 1:] if s.id in cand.recorded]
    if stage.id in cand.recorded:
        out.append(Check("ledger", False, f"{stage.id} already in the ledger for request {req.request_id}"))
    elif later:
        out.append(Check("ledger", False, f"a later stage ({', '.join(later)}) is already in the ledger"))
    else:
        out.append(Check("ledger", True, "not in the ledger yet"))

    if policy.is_optional(stage.id):
        if cand.opted_out_of(stage.id):
            out.append(Check("opt_out", False, f"the patron opted out of {stage.id} (an optional stage)"))
        else:
            out.append(Check("opt_out", True, f"{stage.id} is optional; the patron did not opt out"))

    if stage.when in ("ready", "expires"):
        if req.expires_on is not None and as_of > req.expires_on:
            out.append(Check("deadline", False, f"the pickup deadline {req.expires_on} has passed"))
        else:
            out.append(Check("deadline", True, f"can be picked up until {req.expires_on}" if req.expires_on
                             else "no pickup deadline"))
    return out


def is_due(policy, index: int, cand: RequestCandidate, as_of: dt.date) -> bool:
    return all(c.ok for c in checks(policy, index, cand, as_of))


def statuses_of_interest(policy) -> tuple[str, ...]:
    """The request statuses any request stage is sent for (the daily query's filter)."""
    out: dict[str, None] = {}
    for stage in policy.request_stages:
        out.update(dict.fromkeys(statuses_for(policy, stage)))
    return tuple(out)


def lookback_days(policy) -> int:
    """How far back a trigger can lie and still be in a window: the daily query's date range."""
    return max((window(policy, s) + s.offset_days + 1 for s in policy.request_stages), default=0)


def stage_by_id(policy, stage_id: str) -> RequestStage | None:
    return next((s for s in policy.request_stages if s.id == stage_id), None)


def is_request_stage(policy, stage_id: str) -> bool:
    return stage_by_id(policy, stage_id) is not None


def stage_index(policy) -> Mapping[str, int]:
    return {s.id: i for i, s in enumerate(policy.request_stages)}
