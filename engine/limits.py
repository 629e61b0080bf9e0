"""Plausible bounds on every date and number rappel reads: the policy files' and the imported records'.

A due date of 9999-12-31 or an offset of three million days is a typing mistake, and past Python's
calendar it becomes an OverflowError days later (in `rappel explain`, in a run, in a patron's
email). Everything here refuses such values where they are read: the YAML files (file:line:key,
through engine.yamlsource) and each record of an import (its row, adapters/sources/records.py).

Pure: no clock, no file.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DATES", "DEFAULT_NUMBER", "EARLIEST", "LATEST", "NUMBERS", "ImportDates", "TemplateLimits",
           "date_problem", "value_problems"]

EARLIEST = dt.date(1970, 1, 1)      # the dates an import accepts by default (imports.dates in reminders.yaml)
LATEST = dt.date(2200, 12, 31)
DATES = (EARLIEST, LATEST)          # any date written in a policy file (restart, closed days…)
DATE_KEYS = {"earliest": (dt.date(1900, 1, 1), dt.date(2200, 12, 31)),     # imports.dates itself
             "latest": (dt.date(1970, 1, 1), dt.date(9000, 12, 31))}

TEN_YEARS = 3650
NUMBERS: dict[str, tuple[float, float]] = {       # by key, wherever it is in a policy file
    "offset_days": (-TEN_YEARS, TEN_YEARS),
    "max_delay_days": (0, TEN_YEARS),
    "messages_days": (1, 36500), "ledger_days": (1, 36500), "audit_days": (1, 36500),
    "returned_days": (0, 366),
    "timeout_seconds": (0, 86400),
    "messages_per_connection": (1, 100_000),
    "first_minutes": (1, 43200), "max_minutes": (1, 43200), "retry_minutes": (1, 1440),
    "max_per_run": (1, 10_000_000),
    "per_second": (0, 100_000),
    "max_facts_age_hours": (0, 87600),
    "max_closed_share": (0, 1),
    "max_part_bytes": (1024, 100_000_000),
    "max_render_seconds": (0, 600),
}
DEFAULT_NUMBER = (-1_000_000, 1_000_000)          # any other number (a channel's settings…)


def _shown(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def value_problems(data: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """(path, message) for each number or date of parsed YAML ``data`` outside its bounds."""
    stack = [(path, data)]
    while stack:
        where, value = stack.pop()
        key = next((part for part in reversed(where) if isinstance(part, str)), "")
        if isinstance(value, dict):
            stack.extend((where + (str(k),), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((where + (i,), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, str) and key in NUMBERS:        # "1e12": YAML's text, a number to pydantic
            try:
                number = float(value.strip().replace("_", ""))
            except ValueError:
                continue
            stack.append((where, int(number) if number.is_integer() else number))
        elif isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                yield where, f"{value} is not a finite number"
                continue
            low, high = NUMBERS.get(key, DEFAULT_NUMBER)
            if not low <= value <= high:
                yield where, f"{_shown(value)} is out of range: between {_shown(low)} and {_shown(high)}"
        elif isinstance(value, dt.date):
            day = value.date() if isinstance(value, dt.datetime) else value
            problem = date_problem(day, *DATE_KEYS.get(key, DATES))
            if problem:
                yield where, problem


def date_problem(day: dt.date, earliest: dt.date = EARLIEST, latest: dt.date = LATEST) -> str | None:
    """Why ``day`` is refused, or None."""
    if earliest <= day <= latest:
        return None
    return f"{day.isoformat()} is out of range: between {earliest.isoformat()} and {latest.isoformat()}"


class ImportDates(BaseModel):
    """The dates an import accepts (due dates, returns, requests); any other is a bad value at its row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    earliest: dt.date = Field(default=EARLIEST, description="The earliest date an imported record may hold")
    latest: dt.date = Field(default=LATEST, description="The latest date an imported record may hold")

    @model_validator(mode="after")
    def _ordered(self):
        if self.latest <= self.earliest:
            raise ValueError(f"latest ({self.latest}) must come after earliest ({self.earliest})")
        return self


class TemplateLimits(BaseModel):
    """What one rendering of a template part (a subject, a text, an HTML body) may take, at lint and at send."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_part_bytes: int = Field(default=1_000_000, ge=1024, description="The longest a rendered part may be "
                                                                         "(UTF-8 bytes)")
    max_render_seconds: float = Field(default=2, gt=0, description="The longest a part may take to render")
