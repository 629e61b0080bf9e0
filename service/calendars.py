"""The policy's iCalendar files (``calendar.ical``, ``libraries.CODE.calendar.ical``), read and
handed to the engine as closed dates: the engine never reads a file."""
from __future__ import annotations

from pathlib import Path

from adapters.sources.ical import IcalError, closed_days
from engine.policy import Policy
from engine.yamlsource import InputError, YamlDocument

__all__ = ["ical_files", "with_ical_dates"]


def _specs(policy: Policy):
    """(YAML path of the calendar, its spec) of the institution and each library that has one."""
    if policy.calendar is not None:
        yield ("calendar",), policy.calendar
    for code, library in policy.libraries.items():
        if library.calendar is not None:
            yield ("libraries", code, "calendar"), library.calendar


def ical_files(policy: Policy, rules_dir: Path) -> list[Path]:
    """The iCalendar files the policy names, where they are (relative to the rules folder)."""
    return [Path(rules_dir) / spec.ical for _, spec in _specs(policy) if spec.ical]


def with_ical_dates(policy: Policy, rules_dir: Path, doc: YamlDocument) -> Policy:
    """The policy with each calendar's iCalendar file read into its closed dates; InputError at
    the `ical:` key's line when a file cannot be read or parsed."""
    if not any(spec.ical for _, spec in _specs(policy)):
        return policy
    problems, update, libraries = [], {}, dict(policy.libraries)
    for where, spec in _specs(policy):
        if not spec.ical:
            continue
        try:
            days = closed_days(Path(rules_dir) / spec.ical, policy.tz)
        except IcalError as exc:
            problems.append(doc.problem((*where, "ical"), str(exc)))
            continue
        read = spec.model_copy(update={"closed": [*spec.closed, *days]})
        if where == ("calendar",):
            update["calendar"] = read
        else:
            libraries[where[1]] = libraries[where[1]].model_copy(update={"calendar": read})
    if problems:
        raise InputError(problems)
    read_policy = policy.model_copy(update={**update, "libraries": libraries})
    read_policy._derived = {}        # its own calendar, not the copy's
    return read_policy
