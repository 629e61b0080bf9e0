"""`rappel explain`: for each stage, due or not on a date, and why — in plain lines."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from engine import decide, reference
from engine.channels import DEFAULT, ChannelSpec
from engine.facts import Candidate, Loan, Patron
from engine.policy import Policy
from engine.timeline import timeline


def explain(policy: Policy, loan: Loan, patron: Patron | None, ledger_rows: list[dict], as_of: dt.date,
            channels: Mapping[str, ChannelSpec] = DEFAULT) -> list[str]:
    later = [r for r in ledger_rows if r["decided_on"] > as_of]
    ledger_rows = [r for r in ledger_rows if r["decided_on"] <= as_of]   # the ledger as it stood that day
    record_type = patron.record_type if patron else ""
    user_group = patron.user_group if patron else ""
    recorded = frozenset(r["stage"] for r in ledger_rows if r["due_date"] == loan.due_date)
    cand = Candidate.of(loan, patron, recorded)
    pairs = [(0, si) for si in range(len(policy.stages))]
    due = {si for _, si in decide.due_stages(policy, [cand], as_of, pairs)}   # durable-rules, cross-checked
    latest = max(due, default=None)

    state = f"returned on {loan.returned_on}" if loan.returned_on else "open"
    kind = "".join(f", {k} {v}" for k, v in (("item type", loan.item_type), ("loan policy", loan.loan_policy)) if v)
    lines = [f"loan {loan.loan_id} ({loan.title or 'untitled'}), library {loan.library}{kind}, due {loan.due_date}, "
             f"{state}; patron {loan.patron_id} ({record_type or 'unknown record type'}"
             f"{', ' + user_group if user_group else ''}{', email ' + patron.email if patron and patron.email else ', no email'})",
             f"evaluated for {as_of} (policy time zone {policy.timezone})"]
    line = timeline(policy)
    for si, stage in enumerate(policy.stages):
        if si in due and si == latest:
            channel, why = decide.route(policy, si, patron, channels, loan.library) if patron else \
                (None, "unknown patron")
            verdict = (f"DUE → {channel}" + (f" ({why})" if why else "")) if channel else f"DUE but not sent: {why}"
        elif si in due:
            verdict = f"due, but superseded by {policy.stages[latest].id} (only the latest stage is sent)"
        else:
            verdict = "not due"
        own = line.stage(si, loan.library)
        unit = "open days" if own.count == "open_days" else "days"
        lines.append(f"- {stage.id} (offset {own.offset_days:+d} {unit}, window {policy.window(own)} days, "
                     f"{own.channel}): {verdict}")
        lines.append(f"    rule: {line.rule(si, loan.library)}")
        for check in reference.checks(policy, si, cand, as_of):
            lines.append(f"    [{'ok' if check.ok else 'no'}] {check.name}: {check.detail}")
    if ledger_rows:
        lines.append("ledger:")
        for r in ledger_rows:
            lines.append(f"  {r['stage']} for due {r['due_date']}: {r['status']} (decided {r['decided_on']}"
                         f"{', ' + r['reason'] if r.get('reason') else ''})")
    if later:
        lines.append(f"({len(later)} ledger row(s) decided after {as_of} not taken into account)")
    return lines
