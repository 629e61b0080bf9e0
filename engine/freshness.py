"""How old the facts may be: a run whose loans were imported or pulled longer ago than the policy's
``max_facts_age_hours`` refuses to decide. Better a late notice than a wrong one: a loan returned
since the last import would get a reminder. Pure: the time is passed in."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = ["FactsAge", "facts_age"]


@dataclass(frozen=True)
class FactsAge:
    last: dt.datetime | None        # when the loans were last imported or pulled (aware)
    limit_hours: float | None       # the policy's max_facts_age_hours (None: no limit)
    at: dt.datetime                 # the time the age is measured at
    source: str = ""                # where they came from (a file, a source's name)
    mode: str = ""                  # import | snapshot | pull

    @property
    def hours(self) -> float | None:
        return None if self.last is None else (self.at - self.last).total_seconds() / 3600

    @property
    def stale(self) -> bool:
        if self.limit_hours is None:
            return False
        return self.last is None or self.hours > self.limit_hours

    def why(self, tz: ZoneInfo) -> str:
        """Why a run refuses to decide (for a stale one), on one line."""
        if self.last is None:
            return (f"no loans were ever imported or pulled, and max_facts_age_hours is "
                    f"{self.limit_hours:g}: `rappel pull` or `rappel import loans FILE` first")
        local = self.last.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        origin = f" ({self.mode} from {self.source})" if self.source else ""
        return (f"the loans are {self.hours:.0f} hours old (last imported at {local} {tz.key}{origin}), more than "
                f"max_facts_age_hours ({self.limit_hours:g}): pull or import them again")


def facts_age(last: dt.datetime | None, limit_hours: float | None, at: dt.datetime, *, source: str = "",
              mode: str = "") -> FactsAge:
    return FactsAge(last, limit_hours, at, source, mode)
