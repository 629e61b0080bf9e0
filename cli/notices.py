"""`rappel notices`: what rappel sent, when, through which channel, what the server answered; and
resend, cancel, retry, each audited (service/notices.py)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import DbOpt, Failure, JsonOpt, RulesOpt, StateOpt, app, guarded, now_utc

notices_app = typer.Typer(help="What rappel sent (newest first, filtered), one notice in full, and what the desk "
                               "does about it: resend, cancel, retry.")
app.add_typer(notices_app, name="notices")

KeyArg = Annotated[str, typer.Argument(help="The notice's key (as `rappel notices` lists it; its beginning is "
                                            "enough when only one key starts so)")]
ByOpt = Annotated[str, typer.Option("--by", help="Who acts, for the audit trail")]
WhyOpt = Annotated[str, typer.Option("--why", help="Why, for the audit trail")]
OutboxOpt = Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel (what the policy's "
                                                          "delivery: section does not send elsewhere)")]


def _date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        from engine.yamlsource import InputError, Problem
        raise InputError([Problem(option, None, "", f"{text!r} is not a date (YYYY-MM-DD)")]) from None


def _local(value, tz) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    return str(value) if value is not None else "-"


@notices_app.callback(invoke_without_command=True)
def notices_list(ctx: typer.Context,
                 patron: Annotated[Optional[str], typer.Option("--patron", help="A patron's barcode or patron_id")] = None,
                 barcode: Annotated[Optional[str], typer.Option("--barcode", help="A document's barcode: the notices "
                                                                "about its loans")] = None,
                 loan: Annotated[Optional[str], typer.Option("--loan", help="A loan id")] = None,
                 stage: Annotated[Optional[str], typer.Option("--stage", help="A stage id (courtesy, …)")] = None,
                 status: Annotated[Optional[str], typer.Option("--status", help="pending, sent, failed, superseded, "
                                                               "expired or cancelled")] = None,
                 since: Annotated[Optional[str], typer.Option("--since", help="Notices of this date or later")] = None,
                 until: Annotated[Optional[str], typer.Option("--until", help="Notices of this date or earlier")] = None,
                 limit: Annotated[int, typer.Option("--limit", help="At most this many (newest first)")] = 100,
                 as_json: JsonOpt = False, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """List the notices, newest first: date, stage, channel, status, where they went, the last attempt."""
    if ctx.invoked_subcommand is not None:
        return
    from service import notices, session

    with guarded():
        policy = session.load_rules(rules).policy
        with session.store(db, writes=False) as store:
            found = notices.listing(store, patron=patron, item=barcode, loan=loan, stage=stage, status=status,
                                    since=_date(since, "--since"), until=_date(until, "--until"), limit=limit)
        if as_json:
            for view in found.notices:
                typer.echo(json.dumps(view.as_dict(policy.tz), ensure_ascii=False))
            if found.more:
                typer.echo(f"more than {limit} notices match: --limit shows more", err=True)
            return
        for line in _listing_lines(found, policy.tz, limit):
            typer.echo(line)


def _listing_lines(found, tz, limit: int) -> list[str]:
    who = ""
    if found.patron is not None:
        p = found.patron
        who = f" for {p.full_name or '(no name)'} (patron {p.patron_id}, barcode {p.barcode})"
    out = [f"{len(found.notices)}{'+' if found.more else ''} notice(s){who}, newest first"]
    out += notice_lines(found.notices, tz)
    if found.more:
        out.append(f"  … more than {limit}: narrow it (--since, --stage…) or --limit")
    return out


def notice_lines(views, tz, indent: str = "  ") -> list[str]:
    """Two lines a notice: what, where, how it ended and its last attempt; then its key. (patron show too.)"""
    out = []
    for v in views:
        r = v.row
        last = v.last_attempt
        tried = (f"{_local(last['at'], tz)} {last['kind']} {last['outcome']}: {(last['reply'] or '-')[:50]}"
                 if last else "no attempt")
        out.append(f"{indent}{r['run_date']}  {r['stage']:<16} {r['channel']:<7} {r['status']:<10} "
                   f"{r['destination'][:34]:<34}  {tried}")
        links = [f"replaced by {', '.join(v.replaced_by)}"] if v.replaced_by else []
        links += [f"replaces {v.replaces}"] if v.replaces else []
        out.append(f"{indent}    {v.key}" + (f"  ({'; '.join(links)})" if links else ""))
    if not views:
        out.append(f"{indent}(none)")
    return out


@notices_app.command("show")
def notices_show(key: KeyArg,
                 save: Annotated[Optional[Path], typer.Option("--save", help="Write the message kept (.eml or .pdf) "
                                                              "into this folder: the very bytes handed over")] = None,
                 as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
                 rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """One notice: its ledger rows, every attempt and reply, what replaced it, the staff's actions, the message."""
    from service import notices, session

    with guarded():
        policy = session.load_rules(rules).policy
        with session.store(db, writes=False) as store:
            detail = notices.show(store, key)
        saved = notices.save(detail, save) if save is not None else None
        if as_json:
            out = detail.notice.as_dict(policy.tz)
            out["replacements"] = [v.as_dict(policy.tz) for v in detail.replacements]
            if out["message"] is not None:
                out["message"].update(detail.readable() or {})
                out["message"]["saved_to"] = str(saved) if saved else None
            typer.echo(json.dumps(out, ensure_ascii=False))
            return
        for line in _detail_lines(detail, policy.tz):
            typer.echo(line)
        if saved is not None:
            typer.echo(f"saved: {saved} ({len(detail.data)} bytes)")


def _detail_lines(detail, tz) -> list[str]:
    v, r, p = detail.notice, detail.notice.row, detail.patron
    who = f"{p.full_name} (patron {p.patron_id}, barcode {p.barcode})" if p else f"patron {r['patron_id']}"
    out = [f"notice {v.key}",
           f"  {r['stage']} by {r['channel']} to {r['destination']}, for {who}; decided {r['run_date']}",
           f"  status: {r['status']}" + (f" — {r['last_error']}" if r["last_error"] and r["status"] != "sent" else ""),
           f"  attempts made by runs: {r['attempts']}" + (f"; next after {_local(r['next_attempt_at'], tz)}"
                                                          if r["next_attempt_at"] else "")]
    stages = list(dict.fromkeys(e["stage"] for e in v.ledger))
    if len(stages) > 1:
        out.append(f"  one envelope for {len(stages)} stages: {', '.join(stages)} (each loan's below)")
    if v.replaces:
        out.append(f"  replaces: {v.replaces}")
    for new in detail.replacements:
        out.append(f"  replaced by: {new.key} ({new.row['channel']} to {new.row['destination']}, {new.row['status']})")
    out += ["", "ledger (loan, due date, stage: status, reason)"]
    rows = v.ledger + [e for new in detail.replacements for e in new.ledger]
    for e in rows:
        moved = "" if e["notice_key"] == v.key else f"  [now on {e['notice_key']}]"
        out.append(f"  {e['loan_id']}  due {e['due_date']}  {e['stage']}: {e['status']}  {e['reason'] or ''}{moved}")
    if not rows:
        out.append("  (none)")
    out += ["", "attempts (when, kind, channel, to, outcome, reply, reference)"]
    for a in v.attempts:
        by = f" by {a['actor']}" if a["actor"] else ""
        out.append(f"  {_local(a['at'], tz)}  {a['kind']}{by}  {a['channel']}  {a['destination']}  {a['outcome']}")
        out.append(f"      reply: {a['reply'] or '-'}" + (f"   reference: {a['reference']}" if a["reference"] else ""))
    if not v.attempts:
        out.append("  (none: nothing was handed to a channel)")
    if v.actions:
        out += ["", "staff actions"]
        out += [f"  {_local(a['at'], tz)}  {a['action']} by {a['actor']}: {a['why']}"
                + (f" ({a['detail']})" if a["detail"] else "") for a in v.actions]
    out.append("")
    if v.message is None:
        out.append("message: none kept")
        return out
    m = v.message
    out.append(f"message: {m['media_type']}, {m['filename']}, {m['size']} bytes, kept {_local(m['stored_at'], tz)} "
               f"(--save DIR writes it)")
    readable = detail.readable()
    if readable is not None:
        main = {"from", "reply-to", "to", "subject", "date", "message-id"}
        out += [f"  {name}: {value}" for name, value in readable["headers"] if name.lower() in main]
        out += [""] + [f"  {line}" for line in readable["text"].splitlines()]
    return out


@notices_app.command("resend")
def notices_resend(key: KeyArg, by: ByOpt, why: WhyOpt,
                   to: Annotated[Optional[str], typer.Option("--to", help="Another recipient: an email address (the "
                                                             "envelope and the To header), or for a letter "
                                                             "printer:NAME or mailbox:ADDRESS")] = None,
                   outbox: OutboxOpt = Path("outbox"), state_dir: StateOpt = None,
                   rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Send a sent or failed notice's message again, as a new recorded attempt. Audited.

    An email goes with a new Date and Message-ID, the rest byte for byte. Guarded like any delivery
    (another installation's database refuses); it does not wait for the daemon's lease (see README)."""
    from service import notices, session

    with guarded():
        loaded = session.load_rules(rules, templates=True)
        with session.installation(loaded, db, channel=True, outbox=outbox, guard=True, state_dir=state_dir,
                                  nothing="nothing sent") as inst:
            result = notices.resend(inst.store, inst.policy, inst.channel, key, actor=by, why=why, at=now_utc(),
                                    to=to)
        a = result.attempt
        line = f"{result.notice.key}: resent to {a.destination}: {a.outcome}" + (f" ({a.reply})" if a.reply else "")
        if not result.delivery.ok:
            raise Failure(line + "; recorded and audited", 1)
        typer.echo(line)
        typer.echo(f"recorded as an attempt by {by} ({a.reference or 'no reference'}); audited: {why}")


@notices_app.command("cancel")
def notices_cancel(key: KeyArg, by: ByOpt, why: WhyOpt, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Cancel a pending or held notice: no run and no daemon sends it. Audited."""
    from service import notices, session

    with guarded():
        session.load_rules(rules)
        with session.store(db) as store:
            view = notices.cancel(store, key, actor=by, why=why, at=now_utc())
        typer.echo(f"{view.key}: cancelled by {by} ({len(view.ledger)} ledger row(s)); it will not be sent")


@notices_app.command("retry")
def notices_retry(keys: Annotated[Optional[list[str]], typer.Argument(help="Failed notices' keys (or --failed)")] = None,
                  failed: Annotated[bool, typer.Option("--failed", help="Every failed notice")] = False,
                  since: Annotated[Optional[str], typer.Option("--since", help="With --failed: notices of this "
                                                               "date or later")] = None,
                  force: Annotated[bool, typer.Option("--force", help="Even past their stage's window")] = False,
                  by: ByOpt = ..., why: WhyOpt = ...,
                  on: Annotated[Optional[str], typer.Option("--on", help="The date windows are judged on "
                                                            "(default: today, policy time zone)")] = None,
                  rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Put failed notices back in the queue, while their window lasts (or --force). Audited.

    The next run or the daemon's next pass sends them."""
    from cli.common import parse_date
    from engine.yamlsource import InputError, Problem
    from service import notices, session

    with guarded():
        if bool(keys) == failed:
            raise InputError([Problem("retry", None, "", "give the notices' keys, or --failed for every failed one")])
        if since is not None and not failed:
            raise InputError([Problem("--since", None, "", "goes with --failed")])
        policy = session.load_rules(rules).policy
        as_of = parse_date(on, policy)
        with session.store(db) as store:
            report = notices.retry(store, policy, keys=keys or None, since=_date(since, "--since"), force=force,
                                   actor=by, why=why, at=now_utc(), as_of=as_of)
        typer.echo(f"{len(report.requeued)} notice(s) back in the queue, for the next run or the daemon's next pass")
        for key in report.requeued:
            typer.echo(f"  {key}")
        for key, reason in report.skipped:
            typer.echo(f"  not retried: {key}: {reason}", err=True)
        if keys and report.skipped:
            raise Failure(f"{len(report.skipped)} of the notices given were not put back; see above", 2)
