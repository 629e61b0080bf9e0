"""The policy as a time line: each stage a point on an axis of days relative to the due date, with
its channel, the other channels it may go out on, and its catch-up window; the restart day, when the
policy has one. Pure: the Policy in, plain values out (adapters/render/timeline.py draws it).

Per library: a letter goes where the library's ``letters:`` says (its printer or mailbox), and the
stages are those the library runs (``libraries.CODE.stages:``, engine/timeline.py), in days or open
days as its stages count them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engine import timeline as timelines
from engine.policy import Policy

__all__ = ["Alternative", "Point", "Timeline", "timeline"]


@dataclass(frozen=True)
class Alternative:
    """Another channel a stage may go out on, and when."""

    channel: str
    when: str                # no_email | refused


@dataclass(frozen=True)
class Point:
    stage: str
    day: int                 # days after the due date (negative: before it)
    last_day: int            # the last day it is still sent, caught up (day + window)
    window: int              # catch-up window, in days
    channel: str
    alternatives: tuple[Alternative, ...] = ()
    destination: str = ""    # a letter stage, for one library: printer:NAME or mailbox:ADDRESS

    @property
    def channels(self) -> tuple[str, ...]:
        return (self.channel, *(a.channel for a in self.alternatives if a.channel != self.channel))


@dataclass(frozen=True)
class Timeline:
    points: tuple[Point, ...]
    restart: dt.date | None        # nothing triggered before this date is ever sent
    library: str | None = None

    @property
    def first_day(self) -> int:
        return min(0, *(p.day for p in self.points))

    @property
    def last_day(self) -> int:
        return max(0, *(p.last_day for p in self.points))


def _alternatives(policy: Policy, channel: str, day: int) -> tuple[Alternative, ...]:
    if channel != "email":
        return ()
    out = []
    by_letter = policy.no_email.courtesy_by_letter if day < 0 else policy.no_email.letters_after_due
    if by_letter:
        out.append(Alternative("letter", "no_email"))
    if policy.fallback.email == "letter":
        out.append(Alternative("letter", "refused"))
    return tuple(out)


def timeline(policy: Policy, library: str | None = None) -> Timeline:
    """The stages of ``policy`` as points, in order; ``library``: with where its letters go."""
    if library is not None and library not in policy.libraries:
        raise KeyError(library)
    route = policy.libraries[library].letters.destination if library is not None else ""
    points = []
    for index, base in enumerate(policy.stages):
        stage = timelines.timeline(policy).stage(index, library) if library is not None else base
        window = policy.window(stage)
        alternatives = _alternatives(policy, stage.channel, stage.offset_days)
        letters = stage.channel == "letter" or any(a.channel == "letter" for a in alternatives)
        points.append(Point(stage=stage.id, day=stage.offset_days, last_day=stage.offset_days + window, window=window,
                            channel=stage.channel, alternatives=alternatives,
                            destination=route if letters else ""))
    return Timeline(tuple(points), policy.resumed_on, library)
