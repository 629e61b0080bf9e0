"""The library calendar: the days a library is closed, and the open-day arithmetic on them.

``calendar:`` in the policy (the institution's) and under each library (added to the
institution's) gives weekly closing days, closed dates and ranges, and optionally an iCalendar
file. The file is read by the service (service/calendars.py), which hands its dates over as
closed dates: the engine only ever sees a :class:`Calendar` value, built from the policy.

Pure: nothing here reads a file or the clock.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

__all__ = ["HORIZON_DAYS", "WEEKDAYS", "Calendar", "CalendarSpec", "ClosedDays", "ClosedRange", "build_calendar"]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
HORIZON_DAYS = 3650        # the longest closure rappel looks across for an open day (ten years)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ClosedRange(_Strict):
    from_: dt.date = Field(alias="from", description="First closed day")
    to: dt.date = Field(description="Last closed day (included)")

    @model_validator(mode="after")
    def _ordered(self):
        if self.to < self.from_:
            raise ValueError(f"the range ends ({self.to}) before it starts ({self.from_})")
        if (self.to - self.from_).days >= HORIZON_DAYS:
            raise ValueError(f"a closure of {(self.to - self.from_).days + 1} days: at most {HORIZON_DAYS}")
        return self

    def days(self) -> Iterable[dt.date]:
        for i in range((self.to - self.from_).days + 1):
            yield self.from_ + dt.timedelta(days=i)


def _closed_kind(value) -> str:
    return "function-range" if isinstance(value, (dict, ClosedRange)) else "function-date"   # not in loc


class ClosedDays(_Strict):
    """When one library (or the whole institution) is closed."""

    closed_weekdays: list[Weekday] = Field(default=[], description="Weekly closing days, e.g. [saturday, sunday]")
    closed: list[Annotated[Annotated[dt.date, Tag("function-date")] | Annotated[ClosedRange, Tag("function-range")],
                           Discriminator(_closed_kind)]] = Field(
        default=[], description="Closed dates (2026-12-25) and ranges ({from: 2026-07-25, to: 2026-08-23})")
    ical: str | None = Field(default=None, pattern=r"^[^\n]+\.(ics|ical|ifb)$",
                             description="An iCalendar file (relative to the rules folder): every day one of "
                                         "its events covers is closed")

    @model_validator(mode="after")
    def _some_day_open(self):
        if len(set(self.closed_weekdays)) == len(WEEKDAYS):
            raise ValueError("closed_weekdays: every day of the week is closed; leave at least one open")
        return self

    def dates(self) -> Iterable[dt.date]:
        for item in self.closed:
            if isinstance(item, ClosedRange):
                yield from item.days()
            else:
                yield item


class CalendarSpec(ClosedDays):
    """The institution's calendar, and which channels go out on closed days."""

    send_on_closed_days: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], bool] = Field(
        default={}, description="Per channel: whether a notice that triggers on a closed day goes out that day "
                                "(true) or on the library's next open day (false). Default: true for emails "
                                "(and channels that reach the patron directly), false for letters")


@dataclass(frozen=True)
class Calendar:
    """Closed weekdays (0 = Monday) and closed dates, per library; "" is the institution's (the
    calendar of a library the policy does not list)."""

    weekdays: Mapping[str, frozenset[int]] = field(default_factory=dict)
    dates: Mapping[str, frozenset[dt.date]] = field(default_factory=dict)

    def _key(self, library: str) -> str:
        return library if library in self.weekdays else ""

    def is_open(self, library: str, day: dt.date) -> bool:
        key = self._key(library)
        return day.weekday() not in self.weekdays.get(key, ()) and day not in self.dates.get(key, ())

    def next_open(self, library: str, day: dt.date) -> dt.date | None:
        """``day`` if the library is open then, else its next open day; None past the horizon."""
        for i in range(HORIZON_DAYS + 1):
            candidate = day + dt.timedelta(days=i)
            if self.is_open(library, candidate):
                return candidate
        return None

    def add_open_days(self, library: str, start: dt.date, n: int) -> dt.date | None:
        """The n-th open day after ``start`` (before it when n < 0; ``start`` itself when n == 0),
        ``start`` not counted; None when the horizon passes first."""
        step = dt.timedelta(days=1 if n > 0 else -1)
        day, left = start, abs(n)
        for _ in range(HORIZON_DAYS + abs(n)):
            if not left:
                return day
            day += step
            if self.is_open(library, day):
                left -= 1
        return day if not left else None

    def closed_between(self, library: str, first: dt.date, last: dt.date) -> int:
        """How many closed days lie in first..last (inclusive)."""
        return sum(not self.is_open(library, first + dt.timedelta(days=i)) for i in range((last - first).days + 1))

    @property
    def empty(self) -> bool:
        return not any(self.weekdays.values()) and not any(self.dates.values())


def build_calendar(institution: ClosedDays | None, libraries: Mapping[str, ClosedDays | None]) -> Calendar:
    """The Calendar of a policy: each library closed when the institution is, and on its own days."""
    base_days = frozenset(WEEKDAYS.index(w) for w in institution.closed_weekdays) if institution else frozenset()
    base_dates = frozenset(institution.dates()) if institution else frozenset()
    weekdays, dates = {"": base_days}, {"": base_dates}
    for code, own in libraries.items():
        weekdays[code] = base_days | frozenset(WEEKDAYS.index(w) for w in (own.closed_weekdays if own else ()))
        dates[code] = base_dates | frozenset(own.dates() if own else ())
    return Calendar(weekdays, dates)
