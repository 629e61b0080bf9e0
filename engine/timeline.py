"""Rules by item type and library: stage audiences, a library's own timeline, trigger dates.

A stage's ``audience`` may name item types and libraries. A library may override stages of the
institution's timeline (``libraries.DROIT.stages: [{id: first_reminder, offset_days: 1}]``), as
Koha does per branch: the stage keeps its id (the ledger, the templates and supersession are the
same), and its offset, counting, window, channel or audience are the library's for that library's
loans. :class:`Timeline` answers, for a loan's library and a stage, which rule applies and on
which day the stage triggers (the calendar's open days counted, a closed day moved off).

Pure: the calendar's dates are given (engine/calendar.py).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from engine.calendar import Calendar, build_calendar
from engine.channels import DEFAULT, NAME_PATTERN, unknown_channel
from engine.facts import RecordType

Policy = Any    # engine.policy.Policy, which imports this module (its stages are engine.policy.Stage)
Stage = Any

__all__ = ["MAX_OFFSET", "Audience", "Count", "StageOverride", "Timeline", "Trigger", "check_timelines",
           "known_channel", "timeline"]

MAX_OFFSET = 3650            # offsets and windows within ten years either way
Count = Literal["days", "open_days"]


def known_channel(name: str | None, info: ValidationInfo) -> str | None:
    """A channel the caller knows (the registry's, passed as context; email and letter by default)."""
    channels = (info.context or {}).get("channels", DEFAULT)
    if name is not None and name not in channels:
        raise ValueError(unknown_channel(name, channels))
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Audience(_Strict):
    record_types: list[RecordType] = Field(
        default=["staff", "public"], description="Record types that receive this stage (contacts never by default)")
    user_groups: list[str] | None = Field(
        default=None, description="User groups that receive this stage; all groups when absent")
    item_types: list[str] | None = Field(
        default=None, description="Item types (the loans' item_type) this stage is for; every item type when absent")
    libraries: list[str] | None = Field(
        default=None, description="Libraries (codes under libraries:) whose loans get this stage; all when absent")


class StageOverride(_Strict):
    """A stage of the institution's timeline as one library runs it: only the keys given change."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="The institution's stage this library changes")
    offset_days: int | None = Field(default=None, ge=-MAX_OFFSET, le=MAX_OFFSET,
                                    description="This library's offset (days, or open days with count)")
    count: Count | None = Field(default=None, description="days or open_days, for this library")
    max_delay_days: int | None = Field(default=None, ge=0, le=MAX_OFFSET, description="This library's catch-up window")
    channel: str | None = Field(default=None, pattern=NAME_PATTERN, description="This library's channel")
    audience: Audience | None = Field(default=None, description="Replaces the keys it gives of the stage's audience")

    _channel_known = field_validator("channel")(known_channel)


@dataclass(frozen=True)
class Trigger:
    """When a stage triggers for one due date: the day counted (``counted``: due + offset, in days
    or open days) and the day it goes out (``on``: the next open day when the channel does not
    send on closed days); None when no open day comes within the calendar's horizon."""

    counted: dt.date | None
    on: dt.date | None


def check_timelines(policy: Policy) -> None:
    """Library overrides and audiences that name what exists; offsets still strictly increasing.
    Raises ValueError("libraries.DROIT.stages[0].id: …") for the first problem."""
    ids = [s.id for s in policy.stages]
    for i, stage in enumerate(policy.stages):
        unknown = [code for code in stage.audience.libraries or () if code not in policy.libraries]
        if unknown:
            raise ValueError(f"stages[{i}].audience.libraries: {', '.join(map(repr, unknown))} is not a library "
                             f"of the policy (known: {', '.join(policy.libraries)})")
    line = Timeline(policy)
    for code, library in policy.libraries.items():
        seen: list[str] = []
        for j, override in enumerate(library.stages):
            where = f"libraries.{code}.stages[{j}]"
            if override.id not in ids:
                raise ValueError(f"{where}.id: unknown stage {override.id!r} (the policy's stages: {', '.join(ids)})")
            if override.id in seen:
                raise ValueError(f"{where}.id: stage {override.id} is already overridden for {code}")
            seen.append(override.id)
        stages = [line.stage(i, code) for i in range(len(ids))]
        for i, (before, after) in enumerate(zip(stages, stages[1:]), start=1):
            if after.offset_days <= before.offset_days:
                j = seen.index(after.id) if after.id in seen else seen.index(before.id)
                raise ValueError(f"libraries.{code}.stages[{j}].offset_days: {code}'s offsets must be strictly "
                                 f"increasing; {after.id} ({after.offset_days}) comes after {before.id} "
                                 f"({before.offset_days})")
    calendar = policy.calendar
    unknown = [name for name in (calendar.send_on_closed_days if calendar else ())
               if name not in {s.channel for s in policy.stages} | {"email", "letter"}]
    if unknown:
        raise ValueError(f"calendar.send_on_closed_days: {', '.join(map(repr, unknown))}: no stage goes out on it")


class Timeline:
    """The policy's stages as each library runs them, and their trigger dates on its calendar."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.calendar: Calendar = build_calendar(policy.calendar, {c: lib.calendar for c, lib in
                                                                   policy.libraries.items()})
        self._stages: dict[tuple[int, str], Stage] = {}
        self._triggers: dict[tuple[int, str, dt.date], Trigger] = {}

    def override(self, index: int, library: str) -> StageOverride | None:
        lib = self.policy.libraries.get(library)
        stage_id = self.policy.stages[index].id
        return next((o for o in lib.stages if o.id == stage_id), None) if lib else None

    def stage(self, index: int, library: str) -> Stage:
        """Stage ``index`` as it applies to the loans of ``library``."""
        key = (index, library)
        found = self._stages.get(key)
        if found is None:
            found = self.policy.stages[index]
            override = self.override(index, library)
            if override is not None:
                update = {k: getattr(override, k) for k in override.model_fields_set
                          if k not in ("id", "audience") and getattr(override, k) is not None}
                if override.audience is not None:
                    update["audience"] = found.audience.model_copy(
                        update={k: getattr(override.audience, k) for k in override.audience.model_fields_set})
                found = found.model_copy(update=update)
            self._stages[key] = found
        return found

    def variants(self, index: int) -> list[tuple[str | None, Stage]]:
        """(library, stage) for each library that overrides stage ``index``, then (None, the
        institution's stage) for every other library."""
        out: list[tuple[str | None, Stage]] = [(code, self.stage(index, code)) for code in self.policy.libraries
                                               if self.override(index, code) is not None]
        return out + [(None, self.policy.stages[index])]

    def rule(self, index: int, library: str) -> str:
        """Which rule a loan of ``library`` follows for stage ``index``, in words (for explain)."""
        override = self.override(index, library)
        if override is None:
            return "the institution's timeline"
        keys = ", ".join(f"{k} {getattr(override, k)}" for k in sorted(override.model_fields_set) if k != "id")
        return f"libraries.{library}.stages ({keys})"

    def sends_on_closed_days(self, channel: str) -> bool:
        given = self.policy.calendar.send_on_closed_days if self.policy.calendar else {}
        return given.get(channel, channel != "letter")

    def trigger(self, index: int, library: str, due: dt.date) -> Trigger:
        key = (index, library, due)
        found = self._triggers.get(key)
        if found is None:
            stage = self.stage(index, library)
            cal = self.calendar
            if stage.count == "open_days":
                counted = cal.add_open_days(library, due, stage.offset_days)
            else:
                counted = due + dt.timedelta(days=stage.offset_days)
            on = counted
            if counted is not None and not self.sends_on_closed_days(stage.channel):
                on = cal.next_open(library, counted)
            found = self._triggers[key] = Trigger(counted, on)
        return found

    def waits_for_open_day(self, index: int, library: str) -> bool:
        """Whether this stage goes out only on the library's open days (its channel does not send
        on closed days and the library has a calendar)."""
        return not self.sends_on_closed_days(self.stage(index, library).channel) and not self.calendar.empty


class _Cache(dict):
    """What timeline() keeps on a policy object; pickled empty (a child process builds its own)."""

    def __reduce__(self):
        return (dict, ())


_LAST: tuple = (None, None)   # the last (policy, timeline) built or found: the hot path reads no pydantic attribute


def timeline(policy: Policy) -> Timeline:
    """The policy's Timeline, built once per policy object (kept on it; a copy builds its own)."""
    global _LAST
    last = _LAST                  # one tuple, read once: another thread may replace it, never half of it
    if last[0] is policy:
        return last[1]
    cache = policy._derived
    if cache.get("owner") != id(policy):
        cache = _Cache(owner=id(policy))
        policy._derived = cache
    found = cache.get("timeline")
    if found is None:
        found = cache["timeline"] = Timeline(policy)
    _LAST = (policy, found)
    return found
