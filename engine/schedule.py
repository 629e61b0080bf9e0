"""When the daily run is due: the policy's `schedule.at`, local time in its time zone.

APScheduler's CronTrigger in the policy's time zone: a time that does not exist on the spring
daylight-saving day runs when the clocks have moved on, and a time that occurs twice in autumn
runs once (the run history is per date). Pure: the time ``now`` is always passed in.
"""
from __future__ import annotations

import datetime as dt
from functools import lru_cache

from apscheduler.triggers.cron import CronTrigger

from engine.policy import CATCH_UP_DAYS, Policy

__all__ = ["CATCH_UP_DAYS", "catch_up_days", "moment", "next_moment", "scheduled_day"]

UTC = dt.timezone.utc

@lru_cache(maxsize=16)
def _trigger(at: str, timezone: str) -> CronTrigger:
    from zoneinfo import ZoneInfo
    hour, minute = at.split(":")
    return CronTrigger(hour=int(hour), minute=int(minute), timezone=ZoneInfo(timezone))


def moment(policy: Policy, day: dt.date) -> dt.datetime:
    """When the run for ``day`` is due (UTC)."""
    trigger = _trigger(policy.schedule.at, policy.timezone)
    tz = policy.tz
    fire = trigger.get_next_fire_time(None, dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), tz))
    while fire.astimezone(tz).date() < day:
        fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(minutes=1))
    return fire.astimezone(UTC)


def scheduled_day(policy: Policy, now: dt.datetime) -> dt.date:
    """The latest day whose run is due at ``now``."""
    today = now.astimezone(policy.tz).date()
    return today if moment(policy, today) <= now else today - dt.timedelta(days=1)


def next_moment(policy: Policy, now: dt.datetime) -> dt.datetime:
    """The next scheduled run strictly after ``now`` (UTC)."""
    day = scheduled_day(policy, now) + dt.timedelta(days=1)
    return moment(policy, day)


def catch_up_days(policy: Policy, last_done: dt.date | None, latest: dt.date, today: dt.date,
                  unfinished: dt.date | None = None) -> tuple[list[dt.date], tuple[dt.date, dt.date] | None]:
    """(days to evaluate in order, (first, last) days skipped as too old to matter).

    Every missed day is evaluated, in order, so the ledger says what each day decided; what may
    still go out is the engine's call (its windows, and the re-check before each message against
    today). A notice decided on day D triggered on D at the latest, so days older than the longest
    window can decide nothing that may still be sent: past CATCH_UP_DAYS they are skipped.

    ``last_done`` is the last day completed; ``unfinished`` the first day attempted after it and not
    completed (a run that crashed). With neither, this is a first start: the latest day only.
    """
    if last_done is None and unfinished is None:
        return [latest], None
    first = last_done + dt.timedelta(days=1) if last_done is not None else unfinished
    if unfinished is not None:
        first = min(first, unfinished)
    if first > latest:
        return [], None
    longest = max(policy.window(s) for s in policy.stages)
    horizon = today - dt.timedelta(days=max(CATCH_UP_DAYS, longest))
    skipped = None
    if first < horizon:
        skipped = (first, min(latest, horizon - dt.timedelta(days=1)))
        first = horizon
    days = []
    while first <= latest:
        days.append(first)
        first += dt.timedelta(days=1)
    return days, skipped
