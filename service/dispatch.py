"""Delivery: ``dispatch`` takes the pending notices whose next attempt has come, in a pass:
  1. the flood guard: more messages than ``flood_guard.max_per_run`` would leave (the outbox does
     not count) and the run is not confirmed: nothing is sent, every notice stays pending and the
     run says why (``rappel run --confirm`` sends them). The letters that replace refused emails
     (step 3) count too: the limit is on every message that leaves the machine in the pass, so a
     fallback letter that would go past it is not sent, stays pending, and is "held" like the rest;
  2. each notice is re-checked before sending (loan still open, same due date, not past its
     window): else cancelled or expired, not sent. Facts are read a batch of notices at a time
     (BATCH), the next batch while this one is sent, so a re-check is at most two batches old;
  3. a transient failure (server down, 4xx, a server refusing rappel itself: relay, login,
     policy) keeps it pending, with the reason, the server's reply and the time of its next
     attempt (the wait doubles from delivery.retry.first_minutes up to max_minutes); a permanent
     one (the server says this recipient's address is bad) follows the policy's fallback: an
     email becomes one letter per library, sent in the same pass (within the flood guard's
     limit), the email marked failed with its reason and replaced_by the letters.
Every outcome is committed notice by notice: a crash repeats at most the message in flight.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage

from adapters.channels.base import Channel, Delivery
from adapters.channels.registry import REGISTRY
from adapters.render import NoticeContext, Templates, serialize
from adapters.store.database import PendingNotice, Store
from engine.contact import is_email_address
from engine.decide import Notice, notice_key
from engine.facts import Loan, Patron
from engine.policy import Policy
from engine.reference import trigger_date

__all__ = ["BATCH", "Outcome", "dispatch", "fallback_letters", "recheck", "retry_wait"]

BATCH = 25          # notices read and rendered at a time, the next batch while this one is sent


@dataclass
class Outcome:
    key: str
    status: str          # sent | pending (retry later) | failed | cancelled | expired | held (flood guard)
    detail: str
    replaced_by: tuple[str, ...] = ()    # the fallback notices of a notice that failed for good


def dispatch(store: Store, policy: Policy, templates: Templates, channel: Channel, as_of: dt.date, *,
             now: dt.datetime | None = None, confirm: bool = False) -> list[Outcome]:
    """Deliver the pending notices whose time has come (see the module's doc).

    ``now`` is when this pass runs, for the retry times (the command line passes the clock);
    by default the start of ``as_of`` in the policy's time zone.

    Notices are read (loans, patron, recap), re-checked and rendered a batch at a time, the next
    batch in a helper thread while this one is sent: sending stays one message at a time, each
    outcome committed before the next message goes, and a re-check is never older than a batch.
    """
    now = now or dt.datetime.combine(as_of, dt.time(0), tzinfo=policy.tz)
    waiting = store.retry_times()
    due = [p for p in store.pending() if p.key not in waiting or waiting[p.key] <= now]
    held = flood_guard(store, policy, channel, due, as_of, confirm)
    if held:
        return [Outcome(p.key, "held", held) for p in due]
    outcomes: list[Outcome] = []
    batches = [due[i:i + BATCH] for i in range(0, len(due), BATCH)]
    if not batches:
        return outcomes
    budget = Budget(None if confirm else policy.flood_guard.max_per_run,
                    {p.key for p in due if not _is_local(channel, p)})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rappel-render") as ahead:
        coming = ahead.submit(prepare, store, policy, templates, as_of, batches[0])
        for number in range(len(batches)):
            ready = coming.result()
            if number + 1 < len(batches):
                coming = ahead.submit(prepare, store, policy, templates, as_of, batches[number + 1])
            for item in ready:
                outcome, replacements = _deliver(store, policy, channel, now, item)
                budget.delivered(outcome, leaves=not _is_local(channel, item.pending))
                outcomes.append(outcome)
                queue = deque(replacements)        # fallback letters go out in the same pass…
                while queue:
                    replacement = queue.popleft()
                    leaves = not _is_local(channel, replacement)
                    if leaves and not budget.room():   # …within the flood guard's limit: else they wait
                        outcomes.append(budget.hold(replacement))
                        continue
                    [letter] = prepare(store, policy, templates, as_of, [replacement])
                    outcome, more = _deliver(store, policy, channel, now, letter)
                    budget.delivered(outcome, leaves=leaves)
                    outcomes.append(outcome)
                    queue.extend(more)
    budget.explain()
    return outcomes


@dataclass
class Budget:
    """The messages that leave the machine in one pass, against flood_guard.max_per_run.

    The notices pending at the start were counted by ``flood_guard`` (they are ``reserved`` until
    delivered: a notice found cancelled or expired then frees its place); each one that leaves is
    ``used``. A fallback letter created during the pass leaves only while used + reserved stays
    within the limit; otherwise it is held: pending, not sent, for ``rappel run --confirm``.
    """

    limit: int | None                    # None: the run is confirmed
    reserved: set[str]                   # counted pending notices not delivered yet
    used: int = 0
    held: list[Outcome] = field(default_factory=list)

    def room(self) -> bool:
        return self.limit is None or self.used + len(self.reserved) < self.limit

    def delivered(self, outcome: Outcome, leaves: bool) -> None:
        self.reserved.discard(outcome.key)
        if leaves and outcome.status not in ("cancelled", "expired"):    # it was for a server: it counts
            self.used += 1

    def hold(self, pending: PendingNotice) -> Outcome:
        outcome = Outcome(pending.key, "held", "")
        self.held.append(outcome)
        return outcome

    def explain(self) -> None:
        """The reason on every held letter, once the pass knows how many there are."""
        if not self.held:
            return
        reason = (f"flood guard: {len(self.held)} letter(s) replacing refused emails would take this run past "
                  f"flood_guard.max_per_run ({self.limit}; {self.used} message(s) went out or were tried); "
                  f"they were not sent and stay pending. Check them (rappel status, rappel explain), then "
                  f"send them with rappel run --confirm")
        for outcome in self.held:
            outcome.detail = reason


def flood_guard(store: Store, policy: Policy, channel: Channel, due: list[PendingNotice], as_of: dt.date,
                confirm: bool) -> str | None:
    """Why this pass must send nothing, or None. Counts what would leave (not the local outbox) and
    still passes the re-check (a notice that would expire is not a message)."""
    limit = policy.flood_guard.max_per_run
    leaving = [p for p in due if not _is_local(channel, p)]
    if confirm or len(leaving) <= limit:
        return None
    loans = store.loans_by_id({loan_id for p in leaving for loan_id, _ in p.entries})
    count = sum(1 for p in leaving if len(recheck(policy, p, loans, as_of)) < len(p.entries))
    if count <= limit:
        return None
    return (f"flood guard: {count} messages would go out, more than flood_guard.max_per_run ({limit}); "
            f"nothing was sent. Check what is pending (rappel run --dry-run, rappel explain), then send "
            f"them with rappel run --confirm, or let them expire")


def _is_local(channel: Channel, notice) -> bool:
    return channel.is_local(notice)


def recheck(policy: Policy, pending: PendingNotice, loans: dict, as_of: dt.date) -> dict:
    """(loan, due) → (status, reason) for ledger rows that must not be sent any more."""
    stage = next((s for s in policy.stages if s.id == pending.stage), None)
    dropped = {}
    for loan_id, due in pending.entries:
        loan = loans.get(loan_id)
        if stage is None:
            dropped[(loan_id, due)] = ("cancelled", f"stage {pending.stage} is no longer in the policy")
        elif loan is None:
            dropped[(loan_id, due)] = ("cancelled", "the loan no longer exists")
        elif loan.returned_on is not None:
            dropped[(loan_id, due)] = ("cancelled", f"returned on {loan.returned_on}")
        elif loan.due_date != due:
            dropped[(loan_id, due)] = ("cancelled", f"renewed: now due on {loan.due_date}")
        elif loan.status in policy.exclude_statuses:
            dropped[(loan_id, due)] = ("cancelled", f"status {loan.status!r} is excluded")
        elif (as_of - trigger_date(stage, due)).days > policy.window(stage):
            dropped[(loan_id, due)] = ("expired", f"not sent within the {policy.window(stage)}-day window "
                                                  f"after {trigger_date(stage, due)}")
        elif stage.offset_days < 0 and as_of >= due:
            dropped[(loan_id, due)] = ("expired", f"the due date {due} has come")
    return dropped


@dataclass
class Ready:
    """A pending notice re-checked and rendered: what is left of it and the message to send."""

    pending: PendingNotice
    dropped: dict                        # (loan, due) → (status, reason): rows not to send any more
    remaining: list[Loan]
    notice: Notice | None = None
    patron: Patron | None = None
    message: EmailMessage | bytes | None = None     # the email, or the letter's PDF
    error: str = ""                      # rendering failed


def prepare(store: Store, policy: Policy, templates: Templates, as_of: dt.date,
            batch: list[PendingNotice]) -> list[Ready]:
    """Read a batch of notices' facts at once (loans, patrons, recaps), re-check and render each."""
    loans = store.loans_by_id({loan_id for p in batch for loan_id, _ in p.entries})
    people = store.patrons_by_id({p.patron_id for p in batch})
    recaps = store.overdue_loans({p.patron_id for p in batch}, as_of)
    out = []
    for pending in batch:
        dropped = recheck(policy, pending, loans, as_of)
        remaining = [loans[loan_id] for loan_id, due in pending.entries if (loan_id, due) not in dropped]
        item = Ready(pending, dropped, remaining)
        out.append(item)
        if not remaining:
            continue
        item.patron = patron = people.get(pending.patron_id)
        item.notice = notice = Notice(pending.key, pending.run_date, pending.stage, pending.channel,
                                      pending.patron_id, pending.library,
                                      tuple(sorted(loan.loan_id for loan in remaining)), pending.recipient,
                                      pending.destination)
        spec = REGISTRY.spec(notice.channel)
        if spec is None:
            item.error = f"channel {notice.channel!r} is not registered (adapters/channels/registry.py)"
            continue
        if patron is None or _no_usable_email(notice, patron):
            continue       # settled by _deliver: never rendered, never handed to a server
        overdue = [loan for loan in recaps.get(pending.patron_id, []) if loan.status not in policy.exclude_statuses]
        ctx = NoticeContext(policy=policy, notice=notice, patron=patron, triggered=remaining, overdue=overdue,
                            as_of=as_of)
        try:
            if spec.renders == "email":
                item.message = templates.email(ctx)
                serialize(item.message)      # its bytes too, here rather than while sending
            else:
                item.message = templates.letter_pdf(ctx)
        except Exception as exc:  # noqa: BLE001 - a template fault: the notice fails visibly, nothing is lost
            item.error = f"{type(exc).__name__}: {exc}"
    return out


def _deliver(store: Store, policy: Policy, channel: Channel, now: dt.datetime,
             item: Ready) -> tuple[Outcome, list[PendingNotice]]:
    """Send one prepared notice and commit its outcome (before anything else is sent)."""
    pending, dropped, notice, patron = item.pending, item.dropped, item.notice, item.patron
    if not item.remaining:
        status = "expired" if any(s == "expired" for s, _ in dropped.values()) else "cancelled"
        reason = "; ".join(sorted({r for _, r in dropped.values()})) or "nothing left to send"
        store.settle_delivery(pending.key, status, error=reason, entry_status=dropped)
        return Outcome(pending.key, status, reason), []
    if patron is None:
        reason = f"patron {pending.patron_id} no longer exists"
        store.settle_delivery(pending.key, "cancelled", error=reason, entry_status=dropped)
        return Outcome(pending.key, "cancelled", reason), []
    if not item.error and _no_usable_email(notice, patron):
        # the address was edited since the decision: what is not exactly one address never reaches a server
        delivery = Delivery.failed(f"the patron's email {patron.email!r} is not one address", permanent=True)
        return _fall_back(store, policy, notice, patron, item.remaining, dropped, delivery)
    try:
        if item.error:
            raise RuntimeError(item.error)
        if REGISTRY.spec(notice.channel).renders == "email":
            delivery = channel.send_email(notice, item.message)
        else:
            delivery = channel.send_letter(notice, item.message, _letter_name(notice))
    except Exception as exc:  # a rendering or channel fault: keep the notice visible, never lose it
        error = item.error or f"{type(exc).__name__}: {exc}"
        store.settle_delivery(pending.key, "failed", error=error, entry_status=dropped)
        return Outcome(pending.key, "failed", error), []
    reply = delivery.reply or None
    if delivery.ok:
        store.settle_delivery(pending.key, "sent", reference=delivery.reference, reply=reply, entry_status=dropped)
        return Outcome(pending.key, "sent", delivery.reference), []
    if not delivery.permanent:
        again = now + retry_wait(policy, pending.attempts)
        store.settle_delivery(pending.key, "pending", error=delivery.detail, reply=reply, next_attempt_at=again)
        return Outcome(pending.key, "pending", f"{delivery.detail} (next attempt after {again:%Y-%m-%d %H:%M %Z})"), []
    return _fall_back(store, policy, notice, patron, item.remaining, dropped, delivery)


def _no_usable_email(notice: Notice, patron: Patron) -> bool:
    """A notice for a channel that needs an email address, and the patron's is not one valid address
    now (the same test as the decision's, engine.contact)."""
    spec = REGISTRY.spec(notice.channel)
    return spec is not None and spec.contact == "email" and not is_email_address(patron.email)


def retry_wait(policy: Policy, attempts_before: int) -> dt.timedelta:
    """The wait before the next attempt: first_minutes, doubling each time, at most max_minutes."""
    retry = policy.delivery.retry
    minutes = min(retry.first_minutes * 2 ** min(attempts_before, 20), retry.max_minutes)
    return dt.timedelta(minutes=minutes)


def _fall_back(store: Store, policy: Policy, notice: Notice, patron: Patron, remaining: list[Loan], dropped: dict,
               delivery: Delivery) -> tuple[Outcome, list[PendingNotice]]:
    """A notice refused for good: the policy's fallback (an email becomes letters), else failed."""
    reply = delivery.reply or None
    detail = delivery.detail
    if notice.channel == "email" and policy.fallback.email == "letter":
        if patron.has_postal_address:
            letters = fallback_letters(policy, notice, patron, remaining)
            reason = f"email refused ({delivery.reply or delivery.detail}): sent as a letter instead"
            moves = {(loan.loan_id, loan.due_date): (letter.key, reason)
                     for letter in letters for loan in remaining if loan.loan_id in letter.loan_ids}
            store.reroute(notice.key, error=detail, reply=reply, replacements=letters, moves=moves,
                          entry_status=dropped)
            queued = [PendingNotice(n.key, n.date, n.stage, n.channel, n.patron_id, n.library, n.recipient,
                                    n.destination, 0, tuple(sorted((loan.loan_id, loan.due_date) for loan in remaining
                                                                   if loan.loan_id in n.loan_ids)))
                      for n in letters]
            return Outcome(notice.key, "failed", f"{detail}; fallback: {len(letters)} letter(s)",
                           tuple(n.key for n in letters)), queued
        detail += "; no postal address for a letter instead"
    store.settle_delivery(notice.key, "failed", error=detail, reply=reply, entry_status=dropped)
    return Outcome(notice.key, "failed", detail), []


def fallback_letters(policy: Policy, notice: Notice, patron: Patron, loans: list[Loan]) -> list[Notice]:
    """The letters that replace an email refused for good: one per library, like any letter."""
    by_library: dict[str, list[str]] = {}
    for loan in loans:
        by_library.setdefault(loan.library, []).append(loan.loan_id)
    letters = []
    for library, loan_ids in sorted(by_library.items()):
        lib = policy.libraries.get(library)
        letters.append(Notice(notice_key(notice.date, notice.stage, "letter", patron.patron_id, library, loan_ids),
                              notice.date, notice.stage, "letter", patron.patron_id, library, tuple(sorted(loan_ids)),
                              ", ".join(patron.postal_lines) or patron.patron_id,
                              lib.letters.destination if lib else "unconfigured"))
    return letters


def _letter_name(notice: Notice) -> str:
    name = f"{notice.date.isoformat()}_{notice.stage}_{notice.patron_id}_{notice.library}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".pdf"
