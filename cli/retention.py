"""Retention and erasure at the command line: `rappel purge` and `rappel patron forget`."""
from __future__ import annotations

import datetime as dt
import getpass
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import DbOpt, Failure, JsonOpt, OnOpt, RulesOpt, app, guarded, now_utc, parse_date
from cli.patrons import patron_app

OutboxOpt = Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel: its files are "
                                                          "deleted with the messages")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; change nothing")]

LABELS = {"messages": "messages", "outbox_files": "outbox files", "notices": "notices", "ledger": "ledger rows",
          "attempts": "attempts", "runs": "runs", "loans": "returned loans", "requests": "requests",
          "patron_audit": "patron edits", "staff_actions": "staff actions"}


@app.command()
def purge(dry_run: DryRunOpt = False, as_json: JsonOpt = False, on: OnOpt = None,
          by: Annotated[Optional[str], typer.Option("--by", help="Who purges, for the record "
                                                               "(default: the login name)")] = None,
          outbox: OutboxOpt = Path("outbox"), rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Delete what the policy's `retention:` says is past its time, and say how much per table.

    The daemon runs it once a day after the day's run. Days are local: a record of day D kept N
    days is deleted by the purge of day D + N."""
    from service import retention, session

    with guarded():
        loaded = session.load_rules(rules)
        policy = loaded.policy
        today = dt.datetime.now(policy.tz).date()
        as_of = parse_date(on, policy)
        if as_of > today:
            from engine.yamlsource import InputError, Problem
            raise InputError([Problem("--on", None, "", f"{as_of} is after today ({today}): a purge never deletes "
                                                        f"anything before its time")])
        with session.store(db, writes=not dry_run) as store:
            if dry_run:
                report = retention.purge(store, policy, as_of, outbox=outbox, dry_run=True)
            else:
                report = retention.run_purge(store, policy, as_of, now_utc(), actor=by or getpass.getuser(),
                                             outbox=outbox)
        if as_json:
            typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        else:
            for line in purge_lines(report):
                typer.echo(line)
        if report.problems:
            raise Failure(f"{len(report.problems)} outbox file(s) could not be deleted: {report.problems[0]}", 1)


def purge_lines(report) -> list[str]:
    if not report.cuts:
        return ["no retention: section in the policy: nothing is ever deleted (see the README, "
                "\"Retention and erasure\")"]
    kept = ", ".join(f"{name} {cut.days} days (through {cut.last_day})" for name, cut in report.cuts.items())
    verb = "would be deleted (dry run: nothing deleted)" if report.dry_run else "deleted"
    out = [f"purge of {report.on}: records of these days and earlier go: {kept}"]
    for name, n in report.deleted.items():
        out.append(f"  {LABELS.get(name, name):<16}{n:>9}")
    out.append(f"{report.total} {verb}")
    out += [f"  not deleted: {p}" for p in report.problems]
    return out


@patron_app.command("forget")
def patron_forget(who: Annotated[str, typer.Argument(help="The patron's barcode or id")],
                  by: Annotated[str, typer.Option("--by", help="Who erases, for the record")],
                  why: Annotated[str, typer.Option("--why", help="Why: the request and its date (recorded "
                                                                 "without the patron's values)")],
                  dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be erased; change "
                                                                          "nothing")] = False,
                  as_json: JsonOpt = False, outbox: OutboxOpt = Path("outbox"),
                  rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Erase a patron with no open loan: personal fields blanked, their messages deleted, the rest kept
    without their values. Refused (exit 1) while a loan is open."""
    from service import retention, session

    with guarded():
        loaded = session.load_rules(rules)
        try:
            with session.store(db, writes=not dry_run) as store:
                report = retention.forget(store, loaded.policy, who, by=by, why=why, at=now_utc(), outbox=outbox,
                                          dry_run=dry_run)
        except retention.UnknownPatron as exc:
            raise Failure(str(exc), 2) from None
        if as_json:
            typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        else:
            for line in forget_lines(report, loaded.policy):
                typer.echo(line)
        if report.problems:
            raise Failure(f"patron {report.patron_id} erased from the database, but {len(report.problems)} outbox "
                          f"file(s) could not be deleted: {report.problems[0]}", 1)


def forget_lines(report, policy) -> list[str]:
    before = report.erased_before
    if before is not None:
        day = before["at"].astimezone(policy.tz).date()
        return [f"patron {report.patron_id} was already erased on {day} by {before['actor']}: nothing to do"]
    head = (f"patron {report.patron_id} would be erased (dry run: nothing changed)" if report.dry_run
            else f"patron {report.patron_id} erased")
    changed = report.changed
    rows = ", ".join(f"{name} {n}" for name, n in changed.items() if name not in ("messages", "requests", "cancelled"))
    out = [head, f"  personal data removed from: {rows}"]
    gone = [f"{changed[name]} {name}" for name in ("messages", "requests") if changed.get(name)]
    if gone or report.files:
        out.append("  deleted: " + ", ".join(gone + ([f"{report.files} outbox file(s)"] if report.files else [])))
    if changed.get("cancelled"):
        out.append(f"  {changed['cancelled']} pending notice(s) cancelled")
    out.append(f"  kept: patron id {report.patron_id}, the dates and statuses of their loans, notices and ledger "
               f"rows; later imports skip this patron")
    return out
