"""Decisions at delivery time, after the ledger: small values that service/dispatch.py acts on.

- ``recheck``: which ledger rows of a pending notice must not be sent any more (loan returned,
  renewed, excluded, stage gone from the policy, window passed, courtesy after the due date), and
  ``settled``: what becomes of a notice none of whose rows is left;
- ``retry_wait``: how long to wait before the next attempt after a transient failure;
- the flood guard: ``hold_pass`` (does the whole pass send nothing?) and ``Budget`` (the room left
  in the pass for the letters that replace refused emails);
- ``fallback``: what an email refused for good becomes (letters, one per library, made by the same
  code as the day's letters: engine.decide.make_notice);
- ``requeue``: whether a failed notice a member of staff retries goes back in the queue.

Nothing here reads a database, a clock or a channel: the caller passes the facts in.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from engine.channels import DEFAULT, LETTER, ChannelSpec
from engine.decide import Entry, Notice, make_notice
from engine.preferences import has_contact, route_order
from engine.envelope import head_stage
from engine.facts import Loan, OutcomeStatus, Patron, Status
from engine.policy import Policy
from engine.timeline import timeline

__all__ = ["Budget", "Drop", "Fallback", "Requeue", "fallback", "fallback_letters", "hold_pass", "narrow", "recheck", "requeue",
           "retry_wait", "settled"]


class Drop(NamedTuple):
    """A ledger row not to send any more: its new status (cancelled or expired) and why."""

    status: Status
    reason: str


def recheck(policy: Policy, notice: Notice, loans: Mapping[str, Loan], as_of: dt.date, *,
            window: bool = True) -> dict[Entry, Drop]:
    """(loan, due) → Drop for the notice's ledger rows that must not be sent on ``as_of``; ``loans``:
    the loans as they are now, by id (a loan missing from it no longer exists). ``window=False``: a
    notice a member of staff put back in the queue past its window (`rappel notices retry --force`)
    is not expired for being late; everything else is checked as usual."""
    known = {s.id: s for s in policy.stages}
    dropped: dict[Entry, Drop] = {}
    for loan_id, due in notice.entries:
        loan = loans.get(loan_id)
        stage = known.get(notice.stage_of(loan_id))     # each loan at its own stage in a combined notice
        if stage is None:
            dropped[(loan_id, due)] = Drop(Status.CANCELLED, f"stage {notice.stage_of(loan_id)} is no longer "
                                                             "in the policy")
        elif loan is None:
            dropped[(loan_id, due)] = Drop(Status.CANCELLED, "the loan no longer exists")
        elif loan.returned_on is not None:
            why = f"closed on {loan.returned_on}: {loan.closed_reason}" if loan.closed_reason else \
                f"returned on {loan.returned_on}"
            dropped[(loan_id, due)] = Drop(Status.CANCELLED, why)
        elif loan.due_date != due:
            dropped[(loan_id, due)] = Drop(Status.CANCELLED, f"renewed: now due on {loan.due_date}")
        elif loan.status in policy.excluded_statuses:
            dropped[(loan_id, due)] = Drop(Status.CANCELLED, f"status {loan.status!r} is excluded")
        elif window and _late(policy, stage, loan, as_of):
            own = _own(policy, stage, loan)
            dropped[(loan_id, due)] = Drop(Status.EXPIRED, f"not sent within the {policy.window(own)}-day "
                                                           f"window after {_trigger(policy, stage, loan)}")
        elif _own(policy, stage, loan).offset_days < 0 and as_of >= due:
            dropped[(loan_id, due)] = Drop(Status.EXPIRED, f"the due date {due} has come")
    return dropped


def _own(policy: Policy, stage, loan: Loan):
    """The stage as the loan's library runs it (its own timeline, when it has one)."""
    return timeline(policy).stage(policy.stages.index(stage), loan.library)


def _trigger(policy: Policy, stage, loan: Loan) -> dt.date | None:
    return timeline(policy).trigger(policy.stages.index(stage), loan.library, loan.due_date).on


def _late(policy: Policy, stage, loan: Loan, as_of: dt.date) -> bool:
    """Past the catch-up window after the day the stage went out for this loan (its calendar counted)."""
    on = _trigger(policy, stage, loan)
    return on is None or (as_of - on).days > policy.window(_own(policy, stage, loan))


def narrow(policy: Policy, notice: Notice, dropped: Mapping[Entry, Drop]) -> Notice | None:
    """What is left to send of a notice after the re-check: its rows not dropped, filed under the most
    advanced stage left (a combined letter whose second-reminder loan was returned goes out as the
    first reminder of the loans left); None when nothing is left."""
    entries = tuple(e for e in notice.entries if e not in dropped)
    if not entries:
        return None
    loan_ids = tuple(sorted({loan_id for loan_id, _ in entries}))
    head = head_stage(policy, [notice.stage_of(loan_id) for loan_id in loan_ids])
    return replace(notice, stage=head, loan_ids=loan_ids, entries=entries,
                   loan_stages=tuple((i, notice.stage_of(i)) for i in loan_ids if notice.stage_of(i) != head))


def settled(dropped: Mapping[Entry, Drop]) -> Drop:
    """The outcome of a notice none of whose rows is left to send: expired when one of them expired,
    else cancelled; the reasons, each once."""
    status = Status.EXPIRED if any(d.status == Status.EXPIRED for d in dropped.values()) else Status.CANCELLED
    return Drop(status, "; ".join(sorted({d.reason for d in dropped.values()})) or "nothing left to send")


def retry_wait(policy: Policy, attempts_before: int) -> dt.timedelta:
    """The wait before the next attempt: first_minutes, doubling each time, at most max_minutes."""
    retry = policy.delivery.retry
    minutes = min(retry.first_minutes * 2 ** min(attempts_before, 20), retry.max_minutes)
    return dt.timedelta(minutes=minutes)


# -- the flood guard -----------------------------------------------------------------------------

def hold_pass(policy: Policy, messages: int, confirm: bool) -> str | None:
    """Why a pass in which ``messages`` messages would leave the machine must send nothing, or None:
    more than flood_guard.max_per_run, and the run is not confirmed."""
    limit = policy.flood_guard.max_per_run
    if confirm or messages <= limit:
        return None
    return (f"flood guard: {messages} messages would go out, more than flood_guard.max_per_run ({limit}); "
            f"nothing was sent. Check what is pending (rappel run --dry-run, rappel explain), then send "
            f"them with rappel run --confirm, or let them expire")


@dataclass
class Budget:
    """The messages that leave the machine in one pass, against flood_guard.max_per_run.

    The notices pending at the start were counted by the hold decision (they are ``reserved`` until
    delivered: a notice found cancelled or expired then frees its place); each one that leaves is
    ``used``. A fallback letter created during the pass leaves only while used + reserved stays
    within the limit (``room``); otherwise it is ``held``: pending, not sent, for ``rappel run --confirm``.
    """

    limit: int | None                    # None: the run is confirmed
    reserved: set[str]                   # keys of counted pending notices not delivered yet
    used: int = 0
    held: list[str] = field(default_factory=list)

    @classmethod
    def for_pass(cls, policy: Policy, leaving: Iterable[str], confirm: bool) -> Budget:
        """The budget of a pass: ``leaving``, the keys of the pending notices that would leave."""
        return cls(None if confirm else policy.flood_guard.max_per_run, set(leaving))

    def room(self) -> bool:
        return self.limit is None or self.used + len(self.reserved) < self.limit

    def delivered(self, key: str, status: OutcomeStatus | str, leaves: bool) -> None:
        """A notice's outcome in the pass: it counts when it leaves and was for a server (sent, tried)."""
        self.reserved.discard(key)
        if leaves and status not in (OutcomeStatus.CANCELLED, OutcomeStatus.EXPIRED):
            self.used += 1

    def hold(self, key: str) -> None:
        self.held.append(key)

    def held_reason(self) -> str:
        """The reason given on every held letter, once the pass knows how many there are ('' if none)."""
        if not self.held:
            return ""
        return (f"flood guard: {len(self.held)} letter(s) replacing refused emails would take this run past "
                f"flood_guard.max_per_run ({self.limit}; {self.used} message(s) went out or were tried); "
                f"they were not sent and stay pending. Check them (rappel status, rappel explain), then "
                f"send them with rappel run --confirm")


# -- the fallback of a notice refused for good ---------------------------------------------------

@dataclass(frozen=True)
class Fallback:
    """What replaces a notice refused for good: letters (pending, not yet sent), or none and why not."""

    letters: tuple[Notice, ...] = ()
    why_not: str = ""                    # no letters although the policy asks for them: why


def fallback(policy: Policy, notice: Notice, patron: Patron, loans: list[Loan],
             channels: Mapping[str, ChannelSpec] = DEFAULT) -> Fallback:
    """The policy's fallback for ``notice`` refused for good, for its ``loans`` still to send: the next
    of the stage's channels in the patron's order they can be reached on (engine.preferences), else
    an email becomes one letter per library (``fallback.email: letter``) when the patron has a postal
    address."""
    stage = next((s for s in policy.stages if s.id == notice.stage), None)   # None: a stage since removed
    order = route_order(policy, stage, patron) if stage is not None else ()
    for name in order[order.index(notice.channel) + 1:] if notice.channel in order else ():
        spec = channels.get(name)
        if spec is not None and has_contact(patron, spec.contact):
            return Fallback(tuple(fallback_letters(policy, notice, patron, loans, channels, spec)))
    if notice.channel != "email" or policy.fallback.email != "letter":
        return Fallback()
    if not patron.has_postal_address:
        return Fallback(why_not="no postal address for a letter instead")
    return Fallback(tuple(fallback_letters(policy, notice, patron, loans, channels)))


def fallback_letters(policy: Policy, notice: Notice, patron: Patron, loans: list[Loan],
                     channels: Mapping[str, ChannelSpec] = DEFAULT, spec: ChannelSpec | None = None) -> list[Notice]:
    """The notices that replace one refused for good, on ``spec`` (default: letters): one per
    library for a channel that goes one per library, like any letter; else one."""
    spec = spec or channels.get(LETTER.name, LETTER)
    by_library: dict[str | None, list[Loan]] = {}
    for loan in loans:
        by_library.setdefault(loan.library if spec.per_library else None, []).append(loan)
    return [_letter(policy, spec, notice, patron, library, group)
            for library, group in sorted(by_library.items(), key=lambda item: item[0] or "")]


def _letter(policy: Policy, spec: ChannelSpec, notice: Notice, patron: Patron, library: str | None,
            loans: list[Loan]) -> Notice:
    """One notice replacing a refused one: its loans keep their stages, filed under the most advanced of them."""
    stages = {loan.loan_id: notice.stage_of(loan.loan_id) for loan in loans}
    return make_notice(policy, spec, notice.date, head_stage(policy, stages.values()), patron, library, loans,
                       stages)


# -- a failed notice put back in the queue by a member of staff ------------------------------------

@dataclass(frozen=True)
class Requeue:
    """Whether a failed notice goes back in the queue (``rappel notices retry``), and why not."""

    ok: bool
    reason: str = ""


def requeue(policy: Policy, notice: Notice, loans: Mapping[str, Loan], as_of: dt.date, *,
            force: bool = False) -> Requeue:
    """A failed notice back in the queue when a row of it would still be sent on ``as_of``: its loan
    open, same due date, inside its stage's window (``force``: even past it). ``notice.entries``: its
    failed ledger rows (none when they moved to the letters that replaced it)."""
    if not notice.entries:
        return Requeue(False, "no ledger row of it is left to send (they moved to the notices that replaced it)")
    dropped = recheck(policy, notice, loans, as_of, window=not force)
    if len(dropped) < len(notice.entries):
        return Requeue(True)
    reason = settled(dropped).reason
    if any(d.status == Status.EXPIRED for d in dropped.values()) and not force:
        reason += " (--force sends it anyway)"
    return Requeue(False, reason)
