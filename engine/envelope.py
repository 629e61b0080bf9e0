"""One envelope a day, and what each loan of a notice received before: pure decisions after the rules.

Whether a stage is due is durable-rules' decision (cross-checked by the reference); what this module
decides comes after it:

- ``envelope``: which due (loan, stage) rows travel together. Letters of different stages for one
  patron and library on one run are one letter, emails of different stages for one patron on one run
  are one email (each loan at its own stage), unless the policy or a stage says ``combine: false``;
- ``head_stage``: the stage a combined notice is filed and rendered under (its most advanced one);
- ``received``: which earlier notices each loan of a notice really received, from the ledger rows
  the caller read (sent, same due date), so that a template never says "despite a first reminder"
  when none was sent (after a restart, a catch-up or a cancelled notice).

Nothing here reads a database or a clock: the caller passes the facts in.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.policy import Policy

__all__ = ["Earlier", "SentRow", "envelope", "head_stage", "received"]


def envelope(policy: Policy, stage_id: str, channel: str, patron_id: str, library: str | None) -> tuple:
    """The group a due (loan, stage) joins: (None, channel, patron, library) when the stage combines
    with the others, else (stage, channel, patron, library): one notice per group."""
    stage = policy.stage(stage_id)
    combine = policy.combine if stage.combine is None else stage.combine
    return (None if combine else stage_id, channel, patron_id, library)


def head_stage(policy: Policy, stage_ids: Iterable[str]) -> str:
    """The most advanced of a notice's stages, in the policy's order (stages no longer in the policy
    come first): the stage it is filed under and whose templates render it."""
    order = {s.id: i for i, s in enumerate(policy.stages)}
    return max(stage_ids, key=lambda s: (order.get(s, -1), s))


class SentRow(tuple):
    """A ledger row of a notice that was sent: (loan_id, due_date, stage, sent on, channel)."""

    __slots__ = ()

    def __new__(cls, loan_id: str, due_date: dt.date, stage: str, on: dt.date, channel: str):
        return super().__new__(cls, (loan_id, due_date, stage, on, channel))


@dataclass(frozen=True)
class Earlier:
    """A notice a loan really received before this one: its stage, the day it went, its channel."""

    stage: str
    on: dt.date
    channel: str


def received(policy: Policy, entries: Iterable[tuple[str, dt.date, str]], sent: Iterable[tuple],
             before: dt.date) -> Mapping[str, tuple[Earlier, ...]]:
    """loan id → the earlier notices it received, oldest first: ``entries``, the notice's rows
    (loan, due date, stage); ``sent``, ledger rows whose notice was sent (``SentRow``s). A row counts
    for the same due date only (a renewal starts the loan's timeline again), for another stage than
    the loan's in this notice, sent before ``before`` (the notice's date) or on it."""
    mine = {loan_id: (due, stage) for loan_id, due, stage in entries}
    out: dict[str, list[Earlier]] = {loan_id: [] for loan_id in mine}
    for loan_id, due, stage, on, channel in sent:
        if loan_id in mine and mine[loan_id][0] == due and mine[loan_id][1] != stage and on <= before:
            out[loan_id].append(Earlier(stage, on, channel))
    order = {s.id: i for i, s in enumerate(policy.stages)}
    return {loan_id: tuple(sorted(rows, key=lambda e: (e.on, order.get(e.stage, -1), e.stage)))
            for loan_id, rows in out.items()}
