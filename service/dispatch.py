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
  4. a notice the library has to fix something for waits, pending, with the reason (``waiting``;
     `rappel status` raises an alert, `rappel notices` and the day's page show the reason): its
     library is not in the policy (no letter is printed for a library rappel does not know), its
     channel is not registered, or its template fails to render (an undefined variable in a
     branch). Nothing is handed over and no attempt is counted; the next pass tries again, so it
     goes out once the policy or the template is fixed, within its window (then it expires).
Every outcome is committed notice by notice: a crash repeats at most the message in flight. Before a
message is handed over its attempt is committed as ``sending`` (the outcome replaces it), in one
transaction with the outcome of the message before it (adapters/store/notices.py Later: one commit a
message, an outcome never left uncommitted while the pass waits for a batch): a database
that refuses that commit (locked past Store.patience by another process's write) stops the pass
before the message, never after it; a pass that dies after the hand-over leaves the mark, and the
next pass records that attempt ``unknown`` before re-checking the notice and sending it again. With
it, in the same transaction, the attempt (when, channel, destination, the server's reply or the
print job) and the message handed over: the email's bytes, serialised once and sent as they are
kept, or the letter's PDF (adapters/store/sent.py). A notice cancelled by a member of staff while
the pass runs is not sent: its status is read again just before its message is handed over, in the
transaction of its ``sending`` mark (with the lease's renewal, for the daemon and `rappel run`).
From WORKERS_FROM due notices the batch read ahead is read, re-checked and rendered in WORKERS forked
processes, a part each (service/render_ahead.py); the sending stays in this process, one message at a time.

The decisions (re-check, retry wait, flood guard, fallback) are engine.delivery's; this module
reads the facts they need, acts on them (store writes, channel sends) and reports the outcomes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import getaddresses

from adapters.channels.base import Channel, Delivery
from adapters.channels.registry import REGISTRY
from adapters.render import NoticeContext, Templates, wire_bytes
from adapters.store import notices as queue
from adapters.store.database import Store, locked
from adapters.store.history import sent_rows
from adapters.store.sent import EMAIL_TYPE, FAILED, PDF_TYPE, RETRYING, SENDING, SENT, Attempt, Handover, pack
from engine.contact import is_email_address
from engine.decide import Entry, Notice
from engine.envelope import received
from engine.delivery import Budget, Drop, fallback, hold_pass, narrow, recheck, retry_wait, settled
from engine.facts import Loan, OutcomeStatus, Patron, Status
from engine.policy import Policy
from engine.request_notices import fallback_request
from service.fence import LeaseLost, Stopping
from service.render_ahead import renderers
from service.requests import is_request_notice, prepare_request_notices

__all__ = ["BATCH", "Outcome", "dispatch", "flood_guard", "letter_name", "prepare", "unknown_library"]

BATCH = 25          # notices read and rendered at a time, the next batch while this one is sent
HANDED = {          # what is kept of an SMS and of a webhook's document: (bytes, media type, file name)
    "text": lambda notice, text: (text.encode("utf-8"), "text/plain; charset=utf-8", _file_name(notice, ".sms.txt")),
    "json": lambda notice, body: (json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json",
                                  _file_name(notice, ".json")),
}


@dataclass
class Outcome:
    key: str
    status: OutcomeStatus    # sent | pending (retry later) | failed | cancelled | expired | held (flood guard)
    #                          | waiting (for the library to fix its policy or a template)
    detail: str
    replaced_by: tuple[str, ...] = ()    # the fallback notices of a notice that failed for good


def dispatch(store: Store, policy: Policy, templates: Templates, channel: Channel, as_of: dt.date, *,
             now: dt.datetime | None = None, confirm: bool = False) -> list[Outcome]:
    """Deliver the pending notices whose time has come (see the module's doc). ``now`` is when this
    pass runs, for the retry times (the command line passes the clock); by default the start of
    ``as_of`` in the policy's time zone."""
    now = now or dt.datetime.combine(as_of, dt.time(0), tzinfo=policy.tz)
    for key, mark in sorted(queue.in_doubt(store).items()):
        _in_doubt(store, policy, key, mark)
    outcomes: list[Outcome] = []
    waiting = store.retry_times()
    due = [p for p in store.pending() if p.key not in waiting or waiting[p.key] <= now]
    held = flood_guard(store, policy, channel, due, as_of, confirm)
    if held:
        return outcomes + [Outcome(p.key, OutcomeStatus.HELD, held) for p in due]
    batches = [due[i:i + BATCH] for i in range(0, len(due), BATCH)]
    if not batches:
        return outcomes
    budget = Budget.for_pass(policy, (p.key for p in due if not channel.is_local(p)), confirm)
    held_letters: list[Outcome] = []
    later = queue.Later(store)
    with renderers(prepare, store, policy, templates, len(due)) as render, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="rappel-render") as ahead, later:
        coming = ahead.submit(render, as_of, batches[0], now)
        for number in range(len(batches)):
            if not coming.done():
                later.flush()          # the last outcome is not left waiting while the next batch renders
            ready = coming.result()
            if number + 1 < len(batches):
                coming = ahead.submit(render, as_of, batches[number + 1], now)
            for item in ready:
                outcome, replacements = _deliver(store, policy, channel, now, item, later)
                budget.delivered(outcome.key, outcome.status, leaves=outcome.status != OutcomeStatus.WAITING
                                 and not channel.is_local(item.pending))
                outcomes.append(outcome)
                todo = deque(replacements)         # fallback letters go out in the same pass…
                while todo:
                    replacement = todo.popleft()
                    leaves = not channel.is_local(replacement)
                    if leaves and not budget.room():   # …within the flood guard's limit: else they wait
                        budget.hold(replacement.key)
                        held_letters.append(Outcome(replacement.key, OutcomeStatus.HELD, ""))
                        outcomes.append(held_letters[-1])
                        continue
                    later.flush()
                    [letter] = prepare(store, policy, templates, as_of, [replacement], now)
                    outcome, more = _deliver(store, policy, channel, now, letter, later)
                    budget.delivered(outcome.key, outcome.status, leaves=leaves and outcome.status != OutcomeStatus.WAITING)
                    outcomes.append(outcome)
                    todo.extend(more)
    reason = budget.held_reason()       # known once the pass knows how many letters it held
    for outcome in held_letters:
        outcome.detail = reason
    return outcomes


def _in_doubt(store: Store, policy: Policy, key: str, mark: dict) -> None:
    """A notice handed over by a pass that stopped before recording what became of it: its attempt is
    recorded as ``unknown`` (it may have gone out), and it goes through this pass's re-check like any
    pending notice (still open, inside its window, not cancelled): at most that one message repeated."""
    at = mark["at"].replace(tzinfo=dt.timezone.utc) if mark["at"].tzinfo is None else mark["at"]
    queue.settle_in_doubt(store, key, f"in doubt: handed to {mark['destination'] or mark['channel']} at "
                                      f"{at.astimezone(policy.tz):%Y-%m-%d %H:%M:%S %Z} by a run that stopped "
                                      f"before recording the outcome; it may have gone out; sent again if still due")


def flood_guard(store: Store, policy: Policy, channel: Channel, due: list[Notice], as_of: dt.date,
                confirm: bool) -> str | None:
    """Why this pass must send nothing, or None (engine.delivery.hold_pass). Counts what would leave
    (not the local outbox) and still passes the re-check (a notice that would expire is not a message);
    the loans are read only when the notices alone are past the limit."""
    leaving = [p for p in due if not channel.is_local(p)]
    if hold_pass(policy, len(leaving), confirm) is None:
        return None
    loans = store.loans_by_id({loan_id for p in leaving for loan_id, _ in p.entries})
    count = sum(1 for p in leaving if is_request_notice(policy, p)       # a request notice counts as it is
                or len(recheck(policy, p, loans, as_of)) < len(p.entries))
    return hold_pass(policy, count, confirm)


@dataclass
class Ready:
    """A pending notice re-checked and rendered: what is left of it and the message to send."""

    pending: Notice                      # as the outbox holds it
    dropped: dict[Entry, Drop]           # its rows not to send any more
    remaining: list[Loan]
    notice: Notice | None = None
    patron: Patron | None = None
    message: EmailMessage | bytes | str | dict | None = None   # the email, the letter's PDF, an SMS, a document
    waits: str = ""                      # why it waits for the library to fix something (not sent)
    packed: bytes | None = None          # the email's or the PDF's bytes as the database keeps them (sent.pack)
    to: str | None = None                # the address an email's To names (_to), read while rendering


def prepare(store: Store, policy: Policy, templates: Templates, as_of: dt.date,
            batch: list[Notice], now: dt.datetime | None = None) -> list[Ready]:
    """Read a batch of notices' facts at once (loans, patrons, recaps), re-check and render each;
    the messages are dated ``now``, the time of the pass."""
    forced = queue.forced(store, [p.key for p in batch])     # put back past their window by staff (--force)
    asks = [p for p in batch if is_request_notice(policy, p)]      # request notices: service/requests.py
    done = prepare_request_notices(store, policy, templates, as_of, asks, now, forced) if asks else {}
    batch_loans = [p for p in batch if p.key not in done]
    loans = store.loans_by_id({loan_id for p in batch_loans for loan_id, _ in p.entries})
    people = store.patrons_by_id({p.patron_id for p in batch_loans})
    recaps = store.overdue_loans({p.patron_id for p in batch_loans}, as_of)
    sent = sent_rows(store, loans)                           # what each loan really received before
    out = []
    for pending in batch:
        if pending.key in done:
            d = done[pending.key]
            out.append(Ready(pending, d.dropped, d.remaining, d.notice, d.patron, d.message, d.waits))
            continue
        dropped = recheck(policy, pending, loans, as_of, window=pending.key not in forced)
        remaining = [loans[loan_id] for loan_id, due in pending.entries if (loan_id, due) not in dropped]
        item = Ready(pending, dropped, remaining)
        out.append(item)
        if not remaining:
            continue
        item.patron = patron = people.get(pending.patron_id)
        item.notice = notice = narrow(policy, pending, dropped)
        spec = REGISTRY.spec(notice.channel)
        if spec is None:
            item.waits = (f"channel {notice.channel!r} is not registered (adapters/channels/registry.py): "
                          f"it waits until the policy names a channel rappel has")
            continue
        if spec.via_library:      # a letter goes where its library says now (the policy may have been fixed)
            library = policy.libraries.get(notice.library)
            if library is None:
                item.waits = unknown_library(policy, notice.library)
                continue
            if notice.destination != library.letters.destination:
                item.notice = notice = replace(notice, destination=library.letters.destination)
        if spec.contact == "phone" and patron is not None and patron.phone != notice.destination:
            item.notice = notice = replace(notice, recipient=patron.phone, destination=patron.phone)   # edited since
        if patron is None or _no_usable_email(notice, patron):
            continue       # settled by _deliver: never rendered, never handed to a server
        ctx = NoticeContext.for_delivery(policy, notice, patron, remaining, recaps.get(pending.patron_id, []),
                                         as_of, now, history=received(
            policy, [(loan.loan_id, loan.due_date, notice.stage_of(loan.loan_id)) for loan in remaining], sent,
            notice.date))
        try:
            item.message = templates.message(ctx, spec.renders)
        except Exception as exc:  # noqa: BLE001 - a template fault is the library's: the notice waits for the fix
            item.waits = (f"the {notice.stage} template ({notice.channel}) fails to render: {type(exc).__name__}: "
                          f"{exc}; it waits until the template is fixed (rappel lint, rappel preview)")
            continue
        if spec.renders == "email":          # compressed (and its To read) here, ahead, not between two messages
            item.packed = pack(wire_bytes(item.message))
            item.to = _to(item.message)
        elif spec.renders not in HANDED:
            item.packed = pack(item.message)
    return out


def unknown_library(policy: Policy, code: str | None) -> str:
    """Why a letter of a library the policy does not have waits."""
    known = ", ".join(sorted(policy.libraries)) or "none"
    return (f"library {code!r} is not in the policy (libraries: in reminders.yaml; it has {known}): its letter "
            f"waits until the library is added")


def _deliver(store: Store, policy: Policy, channel: Channel, now: dt.datetime,
             item: Ready, later: queue.Later) -> tuple[Outcome, list[Notice]]:
    """Send one prepared notice; its outcome committed before anything else is sent: with the next
    message's ``sending`` mark when it is sent or to be retried (``later``), else at once."""
    pending, dropped, notice, patron = item.pending, item.dropped, item.notice, item.patron
    sends = bool(item.remaining) and patron is not None and not item.waits and not _no_usable_email(notice, patron)
    if not sends:
        later.flush()
    # cancelled by a member of staff since the pass began: not sent (what is sent is asked in the
    # transaction of its ``sending`` mark, just before it is handed over)
    if not sends and not queue.still_pending(store, pending.key):
        return _cancelled(pending), []
    if not item.remaining:
        status, reason = settled(dropped)
        store.settle_delivery(pending.key, status, error=reason, entry_status=dropped)
        return Outcome(pending.key, OutcomeStatus(status), reason), []
    if patron is None:
        reason = f"patron {pending.patron_id} no longer exists"
        store.settle_delivery(pending.key, Status.CANCELLED, error=reason, entry_status=dropped)
        return Outcome(pending.key, OutcomeStatus.CANCELLED, reason), []
    if item.waits:      # the library's to fix: kept pending with the reason, nothing handed over
        queue.hold(store, pending.key, reason=item.waits, entry_status=dropped)
        return Outcome(pending.key, OutcomeStatus.WAITING, item.waits), []
    if _no_usable_email(notice, patron):
        # the address was edited since the decision: what is not exactly one address never reaches a server
        delivery = Delivery.failed(f"the patron's email {patron.email!r} is not one address", permanent=True)
        return _fall_back(store, policy, notice, patron, item.remaining, dropped, delivery)
    handed: tuple[bytes, str, str, str] | None = None     # what the channel is given, its name, where it goes
    renders = REGISTRY.spec(notice.channel).renders
    marked = False
    try:
        if renders == "email":
            handed = (wire_bytes(item.message), EMAIL_TYPE, _file_name(notice, ".eml"),   # the bytes it sends,
                      (item.to if item.to is not None else _to(item.message)) or notice.destination)  # to its To
        elif renders in HANDED:
            handed = (*HANDED[renders](notice, item.message), notice.destination)
        else:
            handed = (item.message, PDF_TYPE, letter_name(notice), notice.destination)
        # committed before the hand-over (a database that refuses it stops the pass here, nothing sent);
        # a pass that dies after the hand-over leaves it, and the next one does not resend blindly
        # the channel's guard (the lease renewed, no stop asked: service/fence.py) in the same transaction
        guard = getattr(channel, "before_handover", None)
        before = later.take()       # the last message's outcome, committed with this mark
        try:
            marked_ok = queue.mark_sending(store, pending.key, Attempt(at=now, channel=notice.channel,
                                                                       destination=handed[3], outcome=SENDING),
                                           (lambda conn: guard(conn, notice)) if guard is not None else None, before)
        except Exception:
            later.write = before     # rolled back with the mark: still to be written
            raise
        if not marked_ok:
            return _cancelled(pending), []
        marked = True
        try:
            delivery = (channel.send_email(notice, item.message) if renders == "email"
                        else channel.send_text(notice, item.message) if renders == "text"
                        else channel.send_json(notice, item.message) if renders == "json"
                        else channel.send_letter(notice, item.message, letter_name(notice)))
        except (Stopping, LeaseLost):       # raised by the fence before anything was handed over
            queue.unmark_sending(store, pending.key)
            raise
    except Exception as exc:  # a rendering or channel fault: keep the notice visible, never lose it
        if handed is not None and locked(exc):
            raise                           # the database refused the mark: stop before handing anything over
        if not marked and not queue.still_pending(store, pending.key):
            return _cancelled(pending), []
        error = f"{type(exc).__name__}: {exc}"
        kept = _kept(notice, now, handed, Delivery.failed(error), item.packed) if handed else None
        store.settle_delivery(pending.key, Status.FAILED, error=error, entry_status=dropped, kept=kept)
        return Outcome(pending.key, OutcomeStatus.FAILED, error), []
    reply = delivery.reply or None
    kept = _kept(notice, now, handed, delivery, item.packed)
    if delivery.ok:
        later.write = store.settling(pending.key, Status.SENT, reference=delivery.reference, reply=reply,
                                     entry_status=dropped, kept=kept,
                                     destination=delivery.destination or (
                                         notice.destination if notice.destination != pending.destination else None))
        return Outcome(pending.key, OutcomeStatus.SENT, delivery.reference), []
    if not delivery.permanent:
        again = now + retry_wait(policy, pending.attempts)
        later.write = store.settling(pending.key, Status.PENDING, error=delivery.detail, reply=reply,
                                     next_attempt_at=again, kept=kept)
        shown = again.astimezone(policy.tz)
        return Outcome(pending.key, OutcomeStatus.PENDING,
                       f"{delivery.detail} (next attempt after {shown:%Y-%m-%d %H:%M %Z})"), []
    return _fall_back(store, policy, notice, patron, item.remaining, dropped, delivery, kept)


def _cancelled(pending: Notice) -> Outcome:
    return Outcome(pending.key, OutcomeStatus.CANCELLED, "cancelled while this pass ran: not sent")


def _kept(notice: Notice, now: dt.datetime, handed: tuple[bytes, str, str, str], delivery: Delivery,
          packed: bytes | None = None) -> Handover:
    """The attempt and the message handed over, to be recorded with the outcome (``packed``: its
    bytes compressed ahead, for an email or a PDF)."""
    outcome = SENT if delivery.ok else FAILED if delivery.permanent else RETRYING
    data, media_type, filename, destination = handed
    attempt = Attempt(at=now, channel=notice.channel, destination=delivery.destination or destination,
                      outcome=outcome, reply=delivery.reply or delivery.detail, reference=delivery.reference)
    return Handover(attempt, data, media_type, filename, packed if media_type in (EMAIL_TYPE, PDF_TYPE) else None)


def _to(message: EmailMessage) -> str:
    """The address an email is sent to (its To, as written: the patron's address when it was rendered)."""
    to = next((value for name, value in message.raw_items() if name.lower() == "to"), "")
    return ", ".join(address for _, address in getaddresses([str(to)]) if address)


def _no_usable_email(notice: Notice, patron: Patron) -> bool:
    """A notice for a channel that needs an email address, and the patron's is not one valid address
    now (the same test as the decision's, engine.contact)."""
    spec = REGISTRY.spec(notice.channel)
    return spec is not None and spec.contact == "email" and not is_email_address(patron.email)


def _fall_back(store: Store, policy: Policy, notice: Notice, patron: Patron, remaining: list[Loan],
               dropped: dict[Entry, Drop], delivery: Delivery,
               kept: Handover | None = None) -> tuple[Outcome, list[Notice]]:
    """A notice refused for good: the policy's fallback (engine.delivery.fallback: an email becomes
    letters, recorded pending and returned to be sent in this pass), else failed."""
    reply = delivery.reply or None
    detail = delivery.detail
    instead = (fallback_request(policy, notice, patron, remaining, REGISTRY.specs())
               if is_request_notice(policy, notice) else fallback(policy, notice, patron, remaining, REGISTRY.specs()))
    if instead.letters:
        channel = instead.letters[0].channel
        what = "a letter" if channel == "letter" else channel
        reason = f"{notice.channel} refused ({delivery.reply or delivery.detail}): sent as {what} instead"
        moves = {entry: (letter.key, reason) for letter in instead.letters for entry in letter.entries}
        store.reroute(notice.key, error=detail, reply=reply, replacements=list(instead.letters), moves=moves,
                      entry_status=dropped, kept=kept)
        made = f"{len(instead.letters)} letter(s)" if channel == "letter" else f"{len(instead.letters)} by {channel}"
        return Outcome(notice.key, OutcomeStatus.FAILED, f"{detail}; fallback: {made}",
                       tuple(n.key for n in instead.letters)), list(instead.letters)
    if instead.why_not:
        detail += f"; {instead.why_not}"
    store.settle_delivery(notice.key, Status.FAILED, error=detail, reply=reply, entry_status=dropped, kept=kept)
    return Outcome(notice.key, OutcomeStatus.FAILED, detail), []


def letter_name(notice: Notice) -> str:
    """The file name of a letter's PDF where it is attached (a library's mailbox) or kept."""
    return _file_name(notice, ".pdf", library=True)


def _file_name(notice: Notice, suffix: str, library: bool = False) -> str:
    """The file name of a notice's message: its date, stage, patron (and library, for a letter)."""
    name = f"{notice.date.isoformat()}_{notice.stage}_{notice.patron_id}" + (f"_{notice.library}" if library else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) + suffix
