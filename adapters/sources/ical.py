"""iCalendar files (RFC 5545) of a library's closures, read into the closed days they cover.

Every VEVENT is a closure: an all-day event covers DTSTART up to DTEND (exclusive), or one day
without DTEND; a timed event covers every day it touches, in the policy's time zone (an event
ending at midnight does not close the next day). A recurring event (RRULE, e.g. each year's
1 May) is expanded over ten years from its start; EXDATE removes occurrences. Parsed with the
``icalendar`` package; the recurrence is python-dateutil's (a dependency of it).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

__all__ = ["IcalError", "closed_days"]

SPAN = dt.timedelta(days=3650)      # how far a recurring closure is followed
MAX_OCCURRENCES = 5000


class IcalError(ValueError):
    """The file cannot be read as an iCalendar file; the message says why."""


def closed_days(path: Path, tz: ZoneInfo) -> list[dt.date]:
    """The days the events of the iCalendar file at ``path`` cover, sorted."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IcalError(f"cannot read {path}: {exc.strerror}") from None
    import icalendar     # (60 ms to import: loaded for a policy that has such a file, not for every command)
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise IcalError(f"{path} is not an iCalendar file: {exc}") from None
    days: set[dt.date] = set()
    for event in calendar.walk("VEVENT"):
        try:
            days.update(_event_days(event, tz))
        except (ValueError, TypeError, KeyError) as exc:
            summary = str(event.get("SUMMARY", "")) or "an event"
            raise IcalError(f"{path}: {summary!r}: {exc}") from None
    return sorted(days)


def _local(value, tz: ZoneInfo) -> dt.datetime | dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(tz) if value.tzinfo else value.replace(tzinfo=tz)
    return value


def _span(start, end) -> list[dt.date]:
    """The days from start up to end: an all-day end is exclusive; a timed end at midnight too."""
    first = start.date() if isinstance(start, dt.datetime) else start
    if end is None:
        return [first]
    if isinstance(end, dt.datetime):
        last = end.date() if end.time() != dt.time(0) or end.date() == first else end.date() - dt.timedelta(days=1)
    else:
        last = max(first, end - dt.timedelta(days=1))
    if last < first:
        raise ValueError(f"it ends ({last}) before it starts ({first})")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _event_days(event, tz: ZoneInfo) -> set[dt.date]:
    if "DTSTART" not in event:
        raise ValueError("no DTSTART")
    start = _local(event["DTSTART"].dt, tz)
    if "DTEND" in event:
        end = _local(event["DTEND"].dt, tz)
    elif "DURATION" in event:
        end = start + event["DURATION"].dt
    else:
        end = None
    length = (end - start) if end is not None else None
    starts = [start]
    if "RRULE" in event:
        naive = start if isinstance(start, dt.datetime) else dt.datetime.combine(start, dt.time())
        rule = rrulestr(event["RRULE"].to_ical().decode(), dtstart=naive)
        excluded = set()
        for exdate in event.get("EXDATE", []) if isinstance(event.get("EXDATE"), list) else [event.get("EXDATE")]:
            if exdate is not None:
                excluded |= {_day(_local(x.dt, tz)) for x in exdate.dts}
        starts = []
        for i, when in enumerate(rule.between(naive, naive + SPAN, inc=True)):
            if i >= MAX_OCCURRENCES:
                break
            when = when if isinstance(start, dt.datetime) else when.date()
            if _day(when) not in excluded:
                starts.append(when)
    days: set[dt.date] = set()
    for first in starts:
        days.update(_span(first, first + length if length is not None else None))
    return days


def _day(value) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value
