"""At the desk: what rappel sent a patron, and what a member of staff does about it.

- ``listing``: the notices, newest first, filtered by patron (patron_id or barcode), document
  (its barcode), loan, stage, status and date; each with its ledger rows, attempts, replies, what
  replaced it and the staff's actions (`rappel notices`, `rappel patron show`);
- ``show``: one notice and the message kept of it (``save`` writes it: the .eml or the .pdf);
- ``resend``: the kept message sent again, through the same channel or to another address, as a
  new recorded attempt; the notice's own status and ledger rows stay as the run left them;
- ``cancel``: a pending or held notice is never sent (delivery reads its status again right before
  handing a message over);
- ``retry``: failed notices back in the queue while their window lasts (``force``: even past it),
  for the next run or the daemon's next pass.

Every staff action is audited in the same transaction as its effect: who, when, why.

The lease: resend, cancel and retry do not take the daemon's lease, so that the desk can act while
the daemon runs. The lease keeps two instances from delivering the same *pending* notices; none of
these commands delivers a pending notice: a resend sends only a sent or failed notice (which no run
and no daemon will send again), cancel and retry only change a status, which delivery reads. A
resend is refused, like any delivery, on a database that belongs to another installation (the guard).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from email.utils import format_datetime
from pathlib import Path

from adapters.channels.base import Channel, Delivery
from adapters.channels.outbox import write_atomic
from adapters.channels.registry import REGISTRY
from adapters.render.email import message_id, prepared
from adapters.render.stored import display_name, readdressed
from adapters.render.stored import readable as readable_email
from adapters.store import notices as ledger
from adapters.store import patrons as records
from adapters.store.database import Store
from adapters.store.patrons import AmbiguousPatron, UnknownPatron
from adapters.store.sent import EMAIL_TYPE, FAILED, SENT, Attempt, resend_key
from engine.contact import is_email_address
from engine.decide import Notice
from engine.delivery import requeue
from engine.facts import LEDGER_STATUSES, Patron, Status
from engine.policy import Policy
from engine.yamlsource import InputError, Problem
from service import requests

__all__ = ["AmbiguousPatron", "Detail", "Listing", "NoticeView", "ResendResult", "RetryReport", "UnknownNotice",
           "UnknownPatron", "cancel", "find_patron", "history", "listing", "resend", "resolve", "retry", "save", "show"]

RESENDABLE = (Status.SENT, Status.FAILED)


def _refuse(where: str, message: str) -> InputError:
    return InputError([Problem(where, None, "", message)])


class UnknownNotice(InputError):
    """No notice has this key (``ambiguous``: the beginning of several): bad input at the command
    line (exit 2), 404 (409 when ambiguous) from the JSON API and the pages."""

    def __init__(self, where: str, message: str, *, ambiguous: bool = False):
        super().__init__([Problem(where, None, "", message)])
        self.ambiguous = ambiguous


@dataclass(frozen=True)
class NoticeView:
    """One notice as recorded: its row, ledger rows, attempts, staff actions, what is kept of its message."""

    row: dict
    ledger: list[dict]
    attempts: list[dict]
    actions: list[dict]
    message: dict | None              # media_type, filename, size, stored_at (not the bytes)
    replaces: str | None = None       # the notice it replaced (an email refused, become this letter)

    @property
    def key(self) -> str:
        return self.row["key"]

    @property
    def replaced_by(self) -> list[str]:
        return (self.row["replaced_by"] or "").split()

    @property
    def loan_ids(self) -> list[str]:
        return sorted({r["loan_id"] for r in self.ledger})

    @property
    def last_attempt(self) -> dict | None:
        return self.attempts[-1] if self.attempts else None

    def as_dict(self, tz: dt.tzinfo = dt.timezone.utc) -> dict:
        r = self.row

        def when(value):
            return value.astimezone(tz).isoformat() if isinstance(value, dt.datetime) else \
                value.isoformat() if isinstance(value, dt.date) else value

        return {
            "key": r["key"], "date": when(r["run_date"]), "stage": r["stage"], "channel": r["channel"],
            "patron_id": r["patron_id"], "library": r["library"], "recipient": r["recipient"],
            "destination": r["destination"], "status": r["status"], "attempts_made": r["attempts"],
            "reference": r["reference"], "reply": r["reply"], "last_error": r["last_error"],
            "next_attempt_at": when(r["next_attempt_at"]), "replaced_by": self.replaced_by,
            "replaces": self.replaces, "loan_ids": self.loan_ids,
            "recorded_at": when(r["created_at"]), "updated_at": when(r["updated_at"]),
            "ledger": [{"loan_id": e["loan_id"], "due_date": when(e["due_date"]), "stage": e["stage"],
                        "status": e["status"], "decided_on": when(e["decided_on"]), "reason": e["reason"]}
                       for e in self.ledger],
            "attempts": [{"at": when(a["at"]), "kind": a["kind"], "channel": a["channel"],
                          "destination": a["destination"], "outcome": a["outcome"], "reply": a["reply"],
                          "reference": a["reference"], "actor": a["actor"]} for a in self.attempts],
            "staff_actions": [{"at": when(a["at"]), "actor": a["actor"], "action": a["action"], "why": a["why"],
                               "detail": a["detail"]} for a in self.actions],
            "message": None if self.message is None else {
                "media_type": self.message["media_type"], "filename": self.message["filename"],
                "size": self.message["size"], "stored_at": when(self.message["stored_at"])},
        }


def _views(store: Store, rows: list[dict]) -> list[NoticeView]:
    found = ledger.details(store, [r["key"] for r in rows])
    replaced = ledger.replacing(store, {r["patron_id"] for r in rows})
    return [NoticeView(r, **found[r["key"]], replaces=replaced.get(r["key"])) for r in rows]


# --- list -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listing:
    notices: list[NoticeView]
    more: bool                         # more notices match than the limit shows
    patron: Patron | None = None       # the patron asked about, when known


def find_patron(store: Store, ident: str) -> tuple[str, Patron | None]:
    """A patron by barcode or patron_id: (patron_id, the record). A patron_id that only notices carry
    (the record is gone) is accepted; anything else is UnknownPatron, saying what was tried."""
    try:
        with records.reading(store) as db:
            patron = db.find(ident)
        return patron.patron_id, patron
    except AmbiguousPatron:
        raise
    except UnknownPatron:
        if ledger.patron_known(store, ident):
            return ident, None
        raise


def _about_loans(store: Store, loan_ids: list[str]) -> tuple[str, ...]:
    """The notices about these loans: those holding their ledger rows, and the ones those replaced."""
    keys, owners = ledger.keys_of_loans(store, loan_ids)
    replaced = ledger.replacing(store, owners)
    while True:
        more = {replaced[k] for k in keys if k in replaced} - keys
        if not more:
            return tuple(sorted(keys))
        keys |= more


def listing(store: Store, *, patron: str | None = None, item: str | None = None, loan: str | None = None,
            stage: str | None = None, status: str | None = None, since: dt.date | None = None,
            until: dt.date | None = None, limit: int | None = 100) -> Listing:
    """The notices that match every filter given, newest first (see the module's doc)."""
    if status is not None and status not in LEDGER_STATUSES:
        raise _refuse("--status", f"{status!r} is not a status ({', '.join(LEDGER_STATUSES)})")
    if since and until and since > until:
        raise _refuse("--since", f"{since} is after --until {until}")
    if limit is not None and limit < 1:
        raise _refuse("--limit", "at least 1")
    patron_id, record = find_patron(store, patron) if patron is not None else (None, None)
    keys: tuple[str, ...] | None = None
    if loan is not None:
        if store.loan(loan) is None and not ledger.keys_of_loans(store, [loan])[0]:
            raise _refuse("--loan", f"no loan {loan!r}")
        keys = _about_loans(store, [loan])
    if item is not None:
        loan_ids = ledger.loans_of_item(store, item)
        if not loan_ids:
            with records.reading(store) as db:
                owner = db.barcode_owner(item)
            hint = f"; it is patron {owner}'s barcode: --patron {item}" if owner is not None else ""
            raise _refuse("--barcode", f"no loan of a document with barcode {item!r}{hint}")
        about = _about_loans(store, loan_ids)
        keys = about if keys is None else tuple(sorted(set(keys) & set(about)))
    rows = ledger.find(store, ledger.Query(patron_id=patron_id, keys=keys, stage=stage, status=status, since=since,
                                           until=until, limit=None if limit is None else limit + 1))
    more = limit is not None and len(rows) > limit
    return Listing(_views(store, rows[:limit] if limit is not None else rows), more, record)


def history(store: Store, patron_id: str) -> list[NoticeView]:
    """Every notice of a patron, newest first (`rappel patron show`)."""
    return _views(store, ledger.find(store, ledger.Query(patron_id=patron_id)))


# --- show and save ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Detail:
    notice: NoticeView
    replacements: list[NoticeView]     # the notices that replaced it, as they are now
    patron: Patron | None
    data: bytes | None                 # the message kept, as it was handed over

    def readable(self) -> dict | None:
        """The email's headers and text (None for a letter's PDF, or when nothing is kept)."""
        if self.data is None or self.notice.message["media_type"] != EMAIL_TYPE:
            return None
        return readable_email(self.data)


def resolve(store: Store, text: str) -> str:
    """A notice's key from the key, or from its beginning when only one notice has it."""
    keys = ledger.keys_like(store, text)
    if not keys:
        raise UnknownNotice(text, "no such notice (rappel notices lists them, with their keys)")
    if len(keys) > 1:
        shown = ", ".join(keys[:5]) + (", …" if len(keys) > 5 else "")
        raise UnknownNotice(text, f"the beginning of {len(keys)} notices' keys ({shown}): give more of it",
                            ambiguous=True)
    return keys[0]


def show(store: Store, key: str) -> Detail:
    key = resolve(store, key)
    [view] = _views(store, ledger.find(store, ledger.Query(keys=(key,))))
    replacements = _views(store, ledger.find(store, ledger.Query(keys=tuple(view.replaced_by)))) \
        if view.replaced_by else []
    kept = ledger.message(store, key)
    patron = store.patron(view.row["patron_id"])
    return Detail(view, replacements, patron, kept["data"] if kept else None)


def save(detail: Detail, folder: Path) -> Path:
    """Write the kept message into ``folder`` (its .eml or .pdf, under the name it had): the very bytes."""
    if detail.data is None:
        raise _refuse(detail.notice.key, "no message is kept for this notice (nothing was handed to a channel)")
    path = Path(folder) / Path(detail.notice.message["filename"] or "message").name
    write_atomic(path, detail.data)
    return path


# --- cancel -------------------------------------------------------------------------------------------

def cancel(store: Store, key: str, *, actor: str, why: str, at: dt.datetime) -> NoticeView:
    """Cancel a pending or held notice: it is never sent; audited (see the module's doc)."""
    key = resolve(store, key)
    _who(actor, why)
    status = ledger.cancel(store, key, actor=actor, why=why, at=at)
    if status is not None:
        raise _refuse(key, f"it is {status}: only a pending or held notice can be cancelled; nothing changed")
    [view] = _views(store, ledger.find(store, ledger.Query(keys=(key,))))
    return view


def _who(actor: str, why: str) -> None:
    if not actor.strip():
        raise _refuse("--by", "say who acts (a name), for the audit trail")
    if not why.strip():
        raise _refuse("--why", "say why, for the audit trail")


# --- retry --------------------------------------------------------------------------------------------

@dataclass
class RetryReport:
    requeued: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)     # (key, why not)


def retry(store: Store, policy: Policy, *, keys: list[str] | None = None, since: dt.date | None = None,
          force: bool = False, actor: str, why: str, at: dt.datetime, as_of: dt.date) -> RetryReport:
    """Failed notices (these keys, or every failed one, ``since`` their date) back in the queue while a
    row of each is still to be sent on ``as_of`` (engine.delivery.requeue); audited one by one."""
    _who(actor, why)
    report = RetryReport()
    asked = [resolve(store, k) for k in keys] if keys else None
    failed = ledger.failed(store, asked, since)
    if asked is not None:
        found = {n.key for n in failed}
        for key in asked:
            if key not in found:
                [view] = _views(store, ledger.find(store, ledger.Query(keys=(key,))))
                report.skipped.append((key, f"it is {view.row['status']}: only a failed notice goes back in the "
                                            f"queue"))
    loans = store.loans_by_id({loan_id for n in failed for loan_id, _ in n.entries})
    for notice in failed:
        decision = (requests.requeue(store, policy, notice, as_of, force=force) if requests.is_request_notice(
            policy, notice) else requeue(policy, notice, loans, as_of, force=force))
        if not decision.ok:
            report.skipped.append((notice.key, decision.reason))
        elif ledger.requeue(store, notice.key, actor=actor, why=why, at=at, force=force):
            report.requeued.append(notice.key)
        else:
            report.skipped.append((notice.key, "no longer failed (changed meanwhile)"))
    return report


# --- resend -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResendResult:
    notice: NoticeView
    attempt: Attempt
    delivery: Delivery


def resend(store: Store, policy: Policy, channel: Channel, key: str, *, actor: str, why: str, at: dt.datetime,
           to: str | None = None) -> ResendResult:
    """The notice's kept message sent again (see the module's doc): an email with a new Date and
    Message-ID (and ``to``: another recipient, envelope and To), a letter's PDF to its printer or
    mailbox (``to``: ``printer:NAME`` or ``mailbox:ADDRESS``). Recorded and audited, sent or not."""
    _who(actor, why)
    detail = show(store, key)
    view, row = detail.notice, detail.notice.row
    if row["status"] not in RESENDABLE:
        hint = {Status.PENDING: "it is waiting to be delivered by the next run or the daemon"}.get(row["status"], "")
        raise _refuse(view.key, f"it is {row['status']}" + (f" ({hint})" if hint else "")
                      + ": only a sent or failed notice is resent; nothing sent")
    if detail.data is None:
        raise _refuse(view.key, "no message is kept for this notice: nothing to send again")
    spec = REGISTRY.spec(row["channel"])
    if spec is None:
        raise _refuse(view.key, f"channel {row['channel']!r} is not registered (adapters/channels/registry.py)")
    number = ledger.resends(store, view.key) + 1
    base = Notice(key=resend_key(view.key, number), date=row["run_date"], stage=row["stage"], channel=row["channel"],
                  patron_id=row["patron_id"], library=row["library"], loan_ids=tuple(view.loan_ids),
                  recipient=row["recipient"], destination=_routed(policy, spec, row))
    if spec.renders == "email":
        notice, delivery = _resend_email(policy, channel, base, detail.data, at, to)
        destination = notice.destination
    elif spec.renders in ("text", "json"):      # an SMS (to another number with --to), a webhook's document
        notice = replace(base, recipient=to, destination=to) if to and spec.renders == "text" else base
        text = detail.data.decode("utf-8")
        delivery = _send(lambda: channel.send_text(notice, text) if spec.renders == "text"
                         else channel.send_json(notice, json.loads(text)))
        destination = notice.destination
    else:
        notice = replace(base, destination=_letter_destination(to)) if to else base
        delivery = _send(lambda: channel.send_letter(notice, detail.data, view.message["filename"]))
        destination = notice.destination
    destination = delivery.destination or destination          # where it went: the outbox, when it is there
    attempt = Attempt(at=at, channel=row["channel"], destination=destination, outcome=SENT if delivery.ok else FAILED,
                      reply=delivery.reply or delivery.detail, reference=delivery.reference, kind="resend",
                      actor=actor)
    # the detail names no address (the attempt has it, and `patron forget` blanks it there)
    ledger.record_resend(store, view.key, patron_id=row["patron_id"], attempt=attempt, why=why,
                         detail=attempt.outcome + (" (to another address: --to)" if to else ""))
    return ResendResult(show(store, view.key).notice, attempt, delivery)


def _resend_email(policy: Policy, channel: Channel, base: Notice, data: bytes, at: dt.datetime,
                  to: str | None) -> tuple[Notice, Delivery]:
    if to is not None and not is_email_address(to):
        raise _refuse("--to", f"{to!r} is not one email address")
    readdress = (display_name(data), to) if to else None
    try:
        again = readdressed(data, date=format_datetime(at.astimezone(policy.tz)),
                            message_id=message_id(base.key, policy.sender.from_), to=readdress)
    except ValueError as exc:
        raise _refuse(base.key, str(exc)) from None
    notice = replace(base, recipient=to, destination=to) if to else base
    return notice, _send(lambda: channel.send_email(notice, prepared(again)))


def _routed(policy: Policy, spec, row) -> str:
    """Where a resend goes: the notice's destination, unless it was delivered to the outbox (nothing
    configured for it then): then where the policy routes it now (the library's printer or mailbox,
    the patron's address), as a run would."""
    destination = row["destination"]
    if not destination.startswith("outbox:"):
        return destination
    if not spec.via_library:
        return row["recipient"]
    library = policy.libraries.get(row["library"])
    return library.letters.destination if library else "unconfigured"


def _letter_destination(to: str) -> str:
    kind, _, where = to.partition(":")
    if kind == "printer" and where and not any(c.isspace() or c in "/#" for c in where):
        return to
    if kind == "mailbox" and is_email_address(where):
        return to
    raise _refuse("--to", f"{to!r}: a letter goes to printer:NAME (a CUPS queue) or mailbox:ADDRESS")


def _send(send) -> Delivery:
    try:
        return send()
    except Exception as exc:  # noqa: BLE001 - a channel fault: recorded as the attempt's outcome
        return Delivery.failed(f"{type(exc).__name__}: {exc}")
