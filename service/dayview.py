"""The day in full, for people and for --json: the messages, the notices decided but not sent and
why, a summary by stage and channel; and the difference between two days (`rappel run --diff`).

Plain values (``Line``), built from a plan (engine.decide), a delivery pass's outcomes
(service.dispatch) and, for --diff, the ledger; the command line prints them.

- **Messages**: the notices the day decided, each with where it goes (``destination``: the
  channel's answer, e.g. ``outbox:outbox/`` for a letter whose printer is not configured) and, after
  a real run, what its delivery did.
- **Not sent**: the decisions that made no message (a later stage due the same day: superseded;
  no usable contact: cancelled), one line per patron, stage, library and reason; after a real run
  also the notices its delivery pass did not send (cancelled, expired, failed, to retry), earlier
  days' included.
- **The difference** between a day D and a day D0: for each side, what the ledger recorded as
  decided that day (it ran) together with what a dry run of that day decides now on the current
  facts (it did not run, or facts came in since), compared ledger row by ledger row (loan, stage,
  due date, channel, library). ``+`` goes out on D and not on D0, ``-`` the reverse, with why D
  does not send it when the loan says (returned, renewed, an excluded status).
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from engine import reference
from engine.decide import Notice, Plan
from engine.facts import Candidate, Loan, Status
from engine.policy import Policy

__all__ = ["Line", "Side", "diff", "messages", "not_sent", "side", "summary"]

Destination = Callable[[Notice], str]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a day's table: a message, a notice decided but not sent, or a difference."""

    date: dt.date
    stage: str
    channel: str
    patron_id: str
    library: str | None
    loan_ids: tuple[str, ...]
    recipient: str
    destination: str
    status: str               # pending (decided, to send) | sent | failed | held | waiting | cancelled | superseded | expired
    reason: str = ""
    diff: str = ""            # + only on the day shown, - only on the day compared with
    loan_stages: tuple[tuple[str, str], ...] = ()   # loans of a combined notice at another stage than ``stage``

    def as_dict(self, full: bool = False) -> dict:
        """The JSON object of the line: a message's fields (the --json contract), and with ``full``
        its status and reason (--json --all), with ``diff`` for a difference."""
        out = {"date": self.date.isoformat(), "stage": self.stage, "channel": self.channel,
               "patron_id": self.patron_id, "library": self.library, "loan_ids": list(self.loan_ids),
               "recipient": self.recipient, "destination": self.destination}
        if self.loan_stages:      # one envelope for several stages: each loan's
            out["loan_stages"] = {i: dict(self.loan_stages).get(i, self.stage) for i in self.loan_ids}
        if full or self.diff:
            out.update(status=self.status, reason=self.reason)
        if self.diff:
            out["diff"] = self.diff
        return out


def _line(notice: Notice, destination: Destination, status: str, reason: str = "", sign: str = "",
          loan_ids: Iterable[str] | None = None) -> Line:
    return Line(notice.date, notice.stage, notice.channel, notice.patron_id, notice.library,
                tuple(sorted(notice.loan_ids if loan_ids is None else loan_ids)), notice.recipient,
                destination(notice), status, reason, sign, notice.loan_stages)


def messages(plan: Plan, destination: Destination, outcomes: Iterable | None = None) -> list[Line]:
    """The day's messages in the plan's order; after a real run, each with its delivery's status."""
    done = {o.key: o for o in outcomes or ()}
    reasons = {d.notice_key: d.reason for d in plan.decisions if d.notice_key}
    out = []
    for notice in plan.notices:
        outcome = done.get(notice.key)
        status = str(outcome.status) if outcome else Status.PENDING.value
        reason = outcome.detail if outcome and outcome.status != "sent" else reasons.get(notice.key, "")
        out.append(_line(notice, destination, status, reason))
    return out


def not_sent(policy: Policy, plan: Plan, outcomes: Iterable = (), notices: Mapping[str, Notice] | None = None,
             destination: Destination = lambda n: n.destination) -> list[Line]:
    """What the day decided and does not send: the plan's decisions without a message (superseded,
    cancelled), one line per stage, patron, library, status and reason; then the notices of other
    days a delivery pass did not send (``notices``: those notices, by key). Held notices are not
    listed one by one: the flood guard's message says how many."""
    groups: dict[tuple, list[str]] = {}
    for d in plan.decisions:
        if d.status != Status.PENDING:
            groups.setdefault((d.stage, d.patron_id, d.library, str(d.status), d.reason), []).append(d.loan_id)
    order = {s.id: i for i, s in enumerate(policy.stages)}
    channels = {s.id: s.channel for s in (*policy.stages, *policy.request_stages)}    # requests' too
    out = [Line(plan.as_of, stage, channels.get(stage, ""), patron_id, library, tuple(sorted(loans)), "", "",
                status, reason)
           for (stage, patron_id, library, status, reason), loans in sorted(
               groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][1], kv[0][2] or "", kv[0][3]))]
    today = {n.key for n in plan.notices}
    for o in outcomes:
        notice = (notices or {}).get(o.key)
        if o.key in today or o.status in ("sent", "held") or notice is None:
            continue
        instead = f" -> {', '.join(o.replaced_by)}" if o.replaced_by else ""
        out.append(_line(notice, destination, str(o.status), f"{o.detail}{instead}"))
    return out


_WORDS = {"pending": "to send", "held": "held by the flood guard",
          "waiting": "waiting for a fix of the policy or a template"}
_STATUSES = ("sent", "pending", "held", "waiting", "failed", "cancelled", "superseded", "expired")   # the summary's order


def summary(policy: Policy, lines: Iterable[Line], *, delivered: bool = False) -> str:
    """One line: how many notices by stage and channel, by what became of them."""
    counts = Counter((line.stage, line.channel, line.status) for line in lines)
    if not counts:
        return "summary: nothing decided"
    order = {s.id: i for i, s in enumerate(policy.stages)}
    words = {**_WORDS, "pending": "to retry" if delivered else "to send"}
    parts: dict[tuple[str, str], list[str]] = {}
    for (stage, channel, status), n in sorted(counts.items(), key=lambda kv: (
            order.get(kv[0][0], len(order)), kv[0][1], _STATUSES.index(kv[0][2]) if kv[0][2] in _STATUSES else 99)):
        parts.setdefault((stage, channel), []).append(f"{n} {words.get(status, status)}")
    return "summary: " + "; ".join(f"{stage} ({channel}): {', '.join(p)}" for (stage, channel), p in parts.items())


# --- the difference between two days -------------------------------------------------------------

@dataclass(frozen=True)
class _Row:
    """One ledger row going out on a side: (loan, stage, due date) and the notice that carries it."""

    loan_id: str
    stage: str
    due_date: dt.date
    status: str
    notice: Notice
    destination: str          # where it went (recorded), or where it would go (the channel's answer)

    @property
    def match(self) -> tuple:
        return (self.loan_id, self.stage, self.due_date, self.notice.channel, self.notice.library)


@dataclass(frozen=True)
class Side:
    """What one day sends: its recorded decisions, and what a dry run of it decides now."""

    day: dt.date
    rows: tuple[_Row, ...]
    recorded: int             # how many rows came from the ledger (the day was run)


def side(day: dt.date, recorded: Iterable, plan: Plan, destination: Destination = lambda n: n.destination) -> Side:
    """``recorded``: the ledger rows decided on ``day`` (adapters.store.days.decided_on), with the
    destination they were recorded with; ``plan``: a dry run of ``day`` on the current facts, with
    where the channel would put each. A row in both counts once, as recorded."""
    rows = {r.match: r for r in (_Row(x.loan_id, x.stage, x.due_date, str(x.status), x.notice, x.notice.destination)
                                 for x in recorded)}
    count = len(rows)
    for notice in plan.notices:
        where = destination(notice)
        for loan_id, due in notice.entries:
            row = _Row(loan_id, notice.stage, due, Status.PENDING.value, notice, where)
            rows.setdefault(row.match, row)
    return Side(day, tuple(rows.values()), count)


def diff(policy: Policy, shown: Side, other: Side, loans: Mapping[str, Loan]) -> tuple[list[Line], int]:
    """(the lines, + then -, and how many ledger rows both days send). ``loans``: the loans of the
    rows only ``other`` sends, as they are now, to say why ``shown`` does not send them."""
    mine = {r.match for r in shown.rows}
    theirs = {r.match for r in other.rows}
    order = {s.id: i for i, s in enumerate(policy.stages)}
    lines = []
    for sign, rows, against in (("+", shown.rows, theirs), ("-", other.rows, mine)):
        groups: dict[tuple, list[str]] = {}
        notices: dict[tuple, Notice] = {}
        for r in rows:
            if r.match in against:
                continue
            why = "" if sign == "+" else _why_not(policy, loans.get(r.loan_id), r, shown.day, other.day)
            group = (r.notice.key, r.status, why, r.destination)
            groups.setdefault(group, []).append(r.loan_id)
            notices[group] = r.notice
        made = [_line(notices[g], lambda n, where=g[3]: where, g[1], g[2], sign, loans_)
                for g, loans_ in groups.items()]
        lines += sorted(made, key=lambda x: (order.get(x.stage, len(order)), x.patron_id, x.channel,
                                             x.library or "", x.loan_ids))
    return lines, len(mine & theirs)


def _why_not(policy: Policy, loan: Loan | None, row: _Row, day: dt.date, other: dt.date) -> str:
    """Why the day shown does not send a row the other day sends: what the loan says now (returned,
    renewed, an excluded status), else the stage's window or the restart on that day (the
    reference's reasons, as `rappel explain` gives them), else the ledger."""
    if loan is None:
        return "the loan is no longer in the database"
    if loan.due_date != row.due_date and loan.returned_on is None:
        return f"renewed: due {loan.due_date}"
    index = next((i for i, s in enumerate(policy.stages) if s.id == row.stage), None)
    if index is None:
        return f"stage {row.stage} is no longer in the policy"
    for check in reference.checks(policy, index, Candidate(replace(loan, due_date=row.due_date), "", ""), day):
        if not check.ok and check.name in ("status", "window", "open_day", "restart", "before_due"):
            return check.detail
    return f"already decided on {other}" if row.status != Status.PENDING else f"not decided on {day}"
