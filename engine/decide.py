"""From candidates to a plan: which stages are due, which supersede others, and the notices.

``plan_day`` is the whole decision for one date. It runs the durable-rules evaluation, refuses to
go on if it disagrees with the plain-Python reference, then applies supersession, the no-email
routing and the grouping of the design (engine.envelope: one email per patron, one letter per patron
and library, each loan at its own stage; one per stage too under ``combine: false``).

The evaluation is a function passed in (``evaluate``): by default ``engine.rules.evaluate_here``,
in this process; a long-running caller passes one that runs it elsewhere (adapters/isolation.py).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from engine import reference, rules
from engine.channels import DEFAULT, LETTER, ChannelSpec
from engine.contact import is_email_address
from engine.envelope import envelope, head_stage
from engine.facts import Candidate, Loan, Patron, Status
from engine.policy import Policy, Stage
from engine.preferences import has_contact, lacking, route_order
from engine.timeline import timeline


@dataclass(frozen=True, slots=True)
class Decision:
    """One ledger row to write: (loan, stage, due date) and what became of it."""

    loan_id: str
    stage: str
    due_date: dt.date
    status: Status           # pending | superseded | cancelled
    notice_key: str | None
    reason: str
    patron_id: str = ""      # whose loan (for people: the run's table of what is not sent)
    library: str | None = None   # the loan's library, for a channel that goes one per library
    kind: str = "loan"           # what loan_id names: a loan, or a request (engine/request_notices.py)


Entry = tuple[str, dt.date]    # a ledger row of a notice: (loan_id, due_date)

Evaluate = Callable[[Policy, list[Candidate], dt.date, list[tuple[int, int]]], set[tuple[int, int]]]
"""An evaluation of the stage rules: the (candidate, stage) pairs due among those given."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to deliver: an email to a patron, or a letter for one library, with its
    delivery state: its ledger rows, the attempts made, its status. The plan's notices are
    pending with no attempt; ``Store.pending()`` returns them as they stand in the outbox."""

    key: str
    date: dt.date
    stage: str
    channel: str             # email | letter | a channel added in adapters/channels/
    patron_id: str
    library: str | None      # the letter's library; None for an email
    loan_ids: tuple[str, ...]
    recipient: str           # email address, or the postal address on one line
    destination: str         # email: the address; letter: printer:NAME or mailbox:ADDRESS
    entries: tuple[Entry, ...] = ()   # its ledger rows still pending, by loan id
    attempts: int = 0        # delivery attempts made so far
    status: Status = Status.PENDING
    loan_stages: tuple[tuple[str, str], ...] = ()   # (loan, stage) of a loan at another stage than ``stage``

    def stage_of(self, loan_id: str) -> str:
        """The stage a loan of this notice is at: its own in a combined notice, else the notice's."""
        return dict(self.loan_stages).get(loan_id, self.stage)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages of its loans, each once (one for a notice that combines nothing)."""
        return tuple(dict.fromkeys([self.stage_of(loan_id) for loan_id in self.loan_ids] or [self.stage]))

    def as_dict(self) -> dict:
        out = {"date": self.date.isoformat(), "stage": self.stage, "channel": self.channel,
               "patron_id": self.patron_id, "library": self.library, "loan_ids": list(self.loan_ids),
               "recipient": self.recipient, "destination": self.destination}
        if len(self.stages) > 1:
            out["loan_stages"] = {loan_id: self.stage_of(loan_id) for loan_id in self.loan_ids}
        return out


@dataclass
class Plan:
    as_of: dt.date
    notices: list[Notice] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    candidates: int = 0
    events: int = 0


def notice_key(as_of: dt.date, stage: str, channel: str, patron_id: str, library: str | None,
               loan_ids: tuple[str, ...] | list[str] = ()) -> str:
    """The notice's id: readable, and distinct for a second run the same day that brings new loans."""
    key = f"{as_of.isoformat()}/{stage}/{channel}/{patron_id}/{library or '-'}"
    if loan_ids:
        key += "/" + hashlib.sha256(",".join(sorted(loan_ids)).encode()).hexdigest()[:10]
    return key


def evaluation_pairs(policy: Policy, candidates: list[Candidate], as_of: dt.date) -> list[tuple[int, int]]:
    """The (candidate, stage) pairs worth asking the engine about: due date in the stage's range
    (which depends on the loan's library and due date only: found once for each of those)."""
    stages: dict[tuple[str, dt.date], list[int]] = {}
    out = []
    for ci, cand in enumerate(candidates):
        loan = cand.loan
        found = stages.get((loan.library, loan.due_date))
        if found is None:
            found = stages[loan.library, loan.due_date] = [
                si for si in range(len(policy.stages)) if reference.stage_window_contains(policy, si, loan, as_of)]
        out.extend((ci, si) for si in found)
    return out


def due_stages(policy: Policy, candidates: list[Candidate], as_of: dt.date,
               pairs: list[tuple[int, int]] | None = None, evaluate: Evaluate | None = None) -> set[tuple[int, int]]:
    """Due (candidate, stage) pairs from durable-rules, cross-checked against the reference.
    ``evaluate``: the evaluation to use (None: engine.rules.evaluate_here, in this process; so is
    an evaluation of no pair, which needs no other process)."""
    if pairs is None:
        pairs = evaluation_pairs(policy, candidates, as_of)
    run = evaluate if evaluate is not None and pairs else rules.evaluate_here
    got = run(policy, candidates, as_of, list(pairs))
    expected = {(ci, si) for ci, si in pairs if reference.is_due(policy, si, candidates[ci], as_of)}
    if got != expected:
        diff = sorted(got ^ expected)[:5]
        shown = ", ".join(f"{candidates[c].loan.loan_id}/{policy.stages[s].id}" for c, s in diff)
        raise rules.EngineFault(f"durable-rules and the reference disagree on {len(got ^ expected)} "
                                f"decision(s), e.g. {shown}: nothing decided")
    return got


def plan_day(policy: Policy, candidates: list[Candidate], patrons: dict[str, Patron], as_of: dt.date,
             channels: Mapping[str, ChannelSpec] = DEFAULT, evaluate: Evaluate | None = None) -> Plan:
    """The day's decisions and notices; ``channels``: how to route to each channel kind (the registry's);
    ``evaluate``: the rules evaluation (see ``due_stages``)."""
    pairs = evaluation_pairs(policy, candidates, as_of)
    due = due_stages(policy, candidates, as_of, pairs, evaluate)
    plan = Plan(as_of=as_of, candidates=len(candidates), events=len(pairs))

    latest: dict[int, int] = {}
    for ci, si in due:
        latest[ci] = max(latest.get(ci, -1), si)

    groups: dict[tuple, list[str]] = defaultdict(list)   # (stage, channel, patron, library) → loan ids
    notes: dict[tuple, str] = {}                         # why a group goes out on another channel
    line = timeline(policy)
    per_library = {name: spec.per_library for name, spec in channels.items()}
    superseded = {s.id: f"superseded by {s.id} on the same run" for s in policy.stages}
    decisions = plan.decisions
    for ci, si in sorted(due):
        loan = candidates[ci].loan
        stage = line.stage(si, loan.library)
        if si != latest[ci]:
            own = loan.library if _per_library(per_library, stage.channel) else None
            decisions.append(Decision(loan.loan_id, stage.id, loan.due_date, Status.SUPERSEDED, None,
                                      superseded[policy.stages[latest[ci]].id], loan.patron_id, own))
            continue
        patron = patrons[loan.patron_id]
        channel, why = route_stage(policy, stage, patron, channels)
        if channel is None:
            own = loan.library if _per_library(per_library, stage.channel) else None
            decisions.append(Decision(loan.loan_id, stage.id, loan.due_date, Status.CANCELLED, None, why,
                                      loan.patron_id, own))
            continue
        library = loan.library if _per_library(per_library, channel) else None
        group = envelope(policy, stage.id, channel, patron.patron_id, library)
        groups[group].append((loan.loan_id, stage.id))
        if why:
            notes[(group, loan.loan_id)] = why

    order = {s.id: i for i, s in enumerate(policy.stages)}
    by_id = {c.loan.loan_id: c.loan for c in candidates}
    made = []
    for group, rows in groups.items():
        head, channel, patron_id, library = group
        stages = dict(rows)
        first = rows[0][1]
        top = first if head is not None or all(s == first for _, s in rows) else head_stage(policy, stages.values())
        notice = make_notice(policy, _spec(channels, channel), as_of, top, patrons[patron_id], library,
                             [by_id[loan_id] for loan_id in stages], stages)
        made.append(((order[top], patron_id, channel, library or "", notice.key), notice, group, stages))
    made.sort(key=lambda m: m[0])     # (the keys differ: the notice's key is the last)
    due_on = {name: f"due on {as_of}, {name}" for name in channels}     # one string a channel, not a loan
    for _, notice, group, stages in made:
        plan.notices.append(notice)
        reason = due_on.get(notice.channel) or f"due on {as_of}, {notice.channel}"
        for loan_id, due_date in notice.entries:
            note = notes.get((group, loan_id)) if notes else None
            decisions.append(Decision(loan_id, stages[loan_id], due_date, Status.PENDING, notice.key,
                                      f"{reason} ({note})" if note else reason, notice.patron_id, notice.library))
    return plan


def _per_library(per_library: Mapping[str, bool], name: str) -> bool:
    """Whether a channel goes one per library (as _spec, which says which channel is unknown)."""
    found = per_library.get(name)
    if found is None:
        raise ValueError(f"channel {name!r} is not among the channels given to the engine ({', '.join(per_library)})")
    return found


def make_notice(policy: Policy, spec: ChannelSpec, as_of: dt.date, stage_id: str, patron: Patron,
                library: str | None, loans: Iterable[Loan], stages: Mapping[str, str] | None = None) -> Notice:
    """The notice of one group: a stage's message on one channel for one patron (and one library, for
    a channel that goes one per library), for these loans; pending, with their ledger rows. The
    day's plan and the letters replacing a refused email (engine.delivery) are both made here.
    ``stages``: loan id → its stage, for a notice that combines stages (``stage_id``: its head stage,
    engine.envelope.head_stage); the others are at ``stage_id``."""
    loans = list(loans)
    if len(loans) > 1:
        loans.sort(key=lambda loan: loan.loan_id)
    entries = tuple([(loan.loan_id, loan.due_date) for loan in loans])
    loan_ids = tuple([entry[0] for entry in entries])
    others = tuple([(i, stages[i]) for i in loan_ids if stages.get(i, stage_id) != stage_id]) if stages else ()
    recipient, destination = address(policy, spec, patron, library)
    return Notice(notice_key(as_of, stage_id, spec.name, patron.patron_id, library, loan_ids), as_of, stage_id,
                  spec.name, patron.patron_id, library, loan_ids, recipient, destination,
                  entries=entries, loan_stages=others)


def address(policy: Policy, spec: ChannelSpec, patron: Patron, library: str | None) -> tuple[str, str]:
    """(recipient, destination) of a notice: the patron's contact the channel needs (the email
    address, the phone number, or the postal address on one line; the patron's id for a channel
    to another system), and where it goes (that contact, or the library's
    letters setting: printer:NAME, mailbox:ADDRESS)."""
    if spec.contact == "email":
        recipient = patron.email
    elif spec.contact == "phone":
        recipient = patron.phone
    elif spec.contact == "none":
        recipient = patron.patron_id
    else:
        recipient = ", ".join(patron.postal_lines) or patron.patron_id
    if not spec.via_library:
        return recipient, recipient
    lib = policy.libraries.get(library)
    return recipient, lib.letters.destination if lib else "unconfigured"


def _spec(channels: Mapping[str, ChannelSpec], name: str) -> ChannelSpec:
    spec = channels.get(name)
    if spec is None:
        raise ValueError(f"channel {name!r} is not among the channels given to the engine ({', '.join(channels)})")
    return spec


def route(policy: Policy, stage_index: int, patron: Patron,
          channels: Mapping[str, ChannelSpec] = DEFAULT, library: str | None = None) -> tuple[str | None, str]:
    """The channel a due stage goes out on for this patron, and why when it is not the stage's own;
    or None and why not.

    A channel that needs an email address takes exactly one valid address (engine.contact, the one
    test): a patron without one gets what the policy says for a patron without email (``no_email``:
    a letter, or nothing), and the reason names the address that was not usable. ``library``: the
    loan's, whose own timeline may send the stage on another channel. A stage with several
    ``channels:`` goes on the first the patron can be reached on, in their order of preference
    (engine.preferences.route_order)."""
    stage = timeline(policy).stage(stage_index, library) if library is not None else policy.stages[stage_index]
    return route_stage(policy, stage, patron, channels)


def route_stage(policy: Policy, stage: Stage, patron: Patron,
                channels: Mapping[str, ChannelSpec] = DEFAULT) -> tuple[str | None, str]:
    """``route`` for the stage as the loan's library runs it (Timeline.stage)."""
    order = route_order(policy, stage, patron)
    if len(order) > 1:
        return _route_by_preference(policy, stage, order, patron, channels)
    spec = _spec(channels, stage.channel)
    if spec.contact == "email":
        if is_email_address(patron.email):
            return spec.name, ""
        lacking = f"email {patron.email!r} is not one valid address" if patron.email else "no email address"
        if stage.offset_days < 0 and not policy.no_email.courtesy_by_letter:
            return None, f"{lacking}; a letter before the due date would arrive too late"
        if stage.offset_days >= 0 and not policy.no_email.letters_after_due:
            return None, f"{lacking} and the policy sends no letter instead"
        if not patron.has_postal_address:
            return None, f"{lacking}, and no postal address to send a letter to"
        letter = channels.get(LETTER.name, LETTER)
        return letter.name, (f"{lacking}; letter instead" if patron.email else "")
    if spec.contact == "postal" and not patron.has_postal_address:
        what = "a letter" if spec.name == LETTER.name else f"a {spec.name}"
        return None, f"no postal address to send {what} to"
    if not has_contact(patron, spec.contact):
        return None, lacking(patron, spec)
    return spec.name, ""


def _route_by_preference(policy: Policy, stage, order: tuple[str, ...], patron: Patron,
                         channels: Mapping[str, ChannelSpec]) -> tuple[str | None, str]:
    """The first of ``order`` the patron can be reached on, and why not an earlier one; when none,
    a letter as the policy's no_email says for a patron without email, else None and why."""
    missing = []
    for name in order:
        spec = _spec(channels, name)
        if has_contact(patron, spec.contact):
            return name, (f"{'; '.join(missing)}: {name} instead" if missing else "")
        missing.append(lacking(patron, spec))
    why = "; ".join(missing)
    letter = channels.get(LETTER.name, LETTER)
    by_email = any(_spec(channels, name).contact == "email" for name in order)
    if not by_email or letter.name in order:
        return None, f"no usable channel: {why}"
    if stage.offset_days < 0 and not policy.no_email.courtesy_by_letter:
        return None, f"no usable channel: {why}; a letter before the due date would arrive too late"
    if stage.offset_days >= 0 and not policy.no_email.letters_after_due:
        return None, f"no usable channel: {why}, and the policy sends no letter instead"
    if not patron.has_postal_address:
        return None, f"no usable channel: {why}, and no postal address to send a letter to"
    return letter.name, f"{why}: letter instead"
