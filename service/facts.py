"""Never decide on stale facts: how old the loans are, and what the daemon does before a day's
evaluation (pull from the sources when ``schedule.pull_before``, then check the loans' age).

A real `rappel run` refuses (exit 1, one line) when the loans were imported or pulled longer ago
than the limit (``service.sources.facts_age_limit``), unless ``--accept-stale-facts``; a dry run
says so and shows what would go out all the same. `rappel status` raises an alert.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping

from adapters.store.database import Store
from adapters.store.freshness import last_imports
from adapters.store.runs import Counts, RunLog
from engine.freshness import FactsAge, facts_age
from engine.policy import Policy
from engine.yamlsource import InputError
from service.session import Refused
from service.sources import LoadedSources, facts_age_limit

__all__ = ["StaleFacts", "age_of_loans", "before_deciding", "require_fresh"]

log = logging.getLogger("rappel.facts")


class StaleFacts(Refused):
    """The loans are older than the policy allows: nothing decided."""


def age_of_loans(store: Store, policy: Policy, sources: LoadedSources | None, now: dt.datetime) -> FactsAge:
    last = last_imports(store.engine).get("loans")
    if last is None:
        return facts_age(None, facts_age_limit(policy, sources), now)
    return facts_age(last["finished_at"], facts_age_limit(policy, sources), now, source=last["source"],
                     mode=last["mode"])


def require_fresh(store: Store, policy: Policy, sources: LoadedSources | None, now: dt.datetime, as_of: dt.date,
                  *, accept_stale: bool = False) -> FactsAge:
    """The loans' age; StaleFacts (exit 1) when they are too old for a run to decide on them."""
    age = age_of_loans(store, policy, sources, now)
    if age.stale and not accept_stale:
        raise StaleFacts(f"{as_of}: nothing decided: {age.why(policy.tz)} (or run with --accept-stale-facts)")
    return age


def before_deciding(store: Store, policy: Policy, sources: LoadedSources | None, clock: Callable[[], dt.datetime],
                    history: RunLog, env: Mapping[str, str]) -> str | None:
    """The daemon, before a day's evaluation: pull from every source when ``schedule.pull_before``
    (recorded in the run history as a ``pull`` run), then check the loans' age. Why the day must
    not be decided now, or None. ``clock``: the daemon's time (UTC)."""
    now = clock()
    if policy.schedule.pull_before and sources is not None:
        from service.pull import pull    # the pull reads the library system: only when asked for

        today = now.astimezone(policy.tz).date()
        counts = Counts()
        try:
            pulled = pull(store, policy, sources, None, env=env, now=now)
        except Exception as exc:  # noqa: BLE001 - recorded; nothing decided on stale facts, tried again later
            reason = _one_line(exc)
            counts.errors.append(reason)
            history.add("pull", today, now, clock(), "failed", counts)
            return f"the pull before deciding failed, nothing decided on stale facts: {reason}"
        counts.decided = sum(p.report.rows for p in pulled)
        history.add("pull", today, now, clock(), "ok", counts)
        now = clock()
        log.info("pulled before deciding: %s", "; ".join(p.line() for p in pulled))
    age = age_of_loans(store, policy, sources, now)
    return f"nothing decided: {age.why(policy.tz)}" if age.stale else None


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        first = str(exc.problems[0]) if exc.problems else "bad input"
        more = f" (and {len(exc.problems) - 1} more problem(s))" if len(exc.problems) > 1 else ""
        return first + more
    text = " ".join(str(exc).split("\n", 1)[0].split())
    return text if isinstance(exc, Refused) else f"{type(exc).__name__}: {text}"
