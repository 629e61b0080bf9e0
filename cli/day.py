"""The day's commands: run (and its dry run, its difference with another day), preview, explain, import,
lint, schema, demo."""
from __future__ import annotations

import json
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import (DbOpt, Failure, JsonOpt, RulesOpt, StateOpt, app, guarded, now_utc, parse_date, print_day,
                        print_diff)

OutboxOpt = Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel (what the policy's "
                                                          "delivery: section does not send elsewhere)")]


@app.command()
def run(on: Annotated[Optional[str], typer.Option("--on", help="Date to evaluate (default: today, policy time zone)")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Write nothing; show what would go out")] = False,
        confirm: Annotated[bool, typer.Option("--confirm", help="Send even more than flood_guard.max_per_run messages")] = False,
        accept_stale_facts: Annotated[bool, typer.Option("--accept-stale-facts", help="Decide even on loans older "
                                                          "than max_facts_age_hours")] = False,
        as_json: JsonOpt = False,
        all_: Annotated[bool, typer.Option("--all", help="With --json, also the notices decided but not sent; every "
                                                         "object with its status and reason")] = False,
        diff: Annotated[Optional[str], typer.Option("--diff", metavar="D0", help="With --dry-run: what this day sends "
                                                    "that day D0 does not (+), and the reverse (-)")] = None,
        outbox: OutboxOpt = Path("outbox"),
        state_dir: StateOpt = None, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Evaluate one day: decide, record in the ledger, deliver (or only show, with --dry-run).

    The table lists the messages, then the notices decided but not sent and why, then a summary by
    stage and channel. A real run is guarded like the daemon: it refuses a database that belongs to
    another installation (`rappel confirm-installation`), holds the daemon's lease while it runs (so
    it refuses to run beside an active daemon), refuses loans older than max_facts_age_hours, and is
    written to the run history, like the daemon's runs, for `rappel status`."""
    from engine.yamlsource import InputError, Problem
    from service import day, dayview, facts, session
    from service import rules as rules_
    from service.sources import load_sources

    with guarded(), ExitStack() as stack:
        if dry_run:     # the templates' lint runs beside the planning (service/rules.py load_linting)
            policy, templates, linted = rules_.load_linting(rules)
            stack.enter_context(rules_.linted_first(linted))     # its problems before any other error
            loaded = session.Rules(rules, policy, templates)
        else:
            loaded = session.load_rules(rules, templates=True)
        policy = loaded.policy
        sources = load_sources(rules, policy)
        as_of = parse_date(on, policy)
        other = parse_date(diff, policy, option="--diff") if diff is not None else None
        if other is not None and not dry_run:
            raise InputError([Problem("--diff", None, "", "only with --dry-run: compare first, then run")])
        if dry_run:     # a dry run neither creates nor upgrades, nor claims the database
            with day.collector_paused():     # the plan and its lines: many objects that live on (service/day.py)
                with session.installation(loaded, db, writes=False, channel=True, outbox=outbox) as inst:
                    age = facts.age_of_loans(inst.store, policy, sources, now_utc())
                    where = inst.channel.destination
                    if other is not None:
                        compared = day.compare(inst.store, policy, as_of, other, where)
                    else:
                        plan = day.plan_for(inst.store, policy, as_of)
                        leaving = sum(not inst.channel.is_local(n) for n in plan.notices)
                linted()        # nothing shown before the templates are known to be sound
                if age.stale:
                    typer.echo(f"stale facts: {age.why(policy.tz)}: a run would decide nothing without "
                               f"--accept-stale-facts", err=True)
                if other is not None:
                    _print_compared(compared, as_json)
                    return
                sent = dayview.messages(plan, where)
                others = dayview.not_sent(policy, plan)
                print_day(f"{as_of}: {len(plan.notices)} message(s) would go out (dry run)", sent, others,
                          dayview.summary(policy, [*sent, *others]), as_json=as_json, full=all_)
                if leaving > policy.flood_guard.max_per_run:
                    typer.echo(f"flood guard: {leaving} messages would leave, more than flood_guard.max_per_run "
                               f"({policy.flood_guard.max_per_run}): a run would send nothing without --confirm", err=True)
                return
        with session.installation(loaded, db, channel=True, outbox=outbox, guard=True, lease=True,
                                  state_dir=state_dir, clock=now_utc) as inst:
            facts.require_fresh(inst.store, policy, sources, now_utc(), as_of, accept_stale=accept_stale_facts)
            try:
                result = day.run_recorded(inst.store, policy, inst.templates, inst.channel, as_of, clock=now_utc,
                                          holder=inst.lease.holder, confirm=confirm)
            except session.LeaseLost:
                raise Failure(f"{as_of}: the lease was lost during the run (another instance took it over): "
                              f"what was not sent stays pending, for that instance to deliver", 1) from None
            local_only = not inst.channel.routes
            left = day.left_waiting(inst.store)
            sent = dayview.messages(result.plan, inst.channel.destination, result.outcomes)
            others = dayview.not_sent(policy, result.plan, result.outcomes, result.others, inst.channel.destination)
        print_day(f"{as_of}: {len(result.plan.notices)} message(s) decided", sent, others,
                  dayview.summary(policy, [*sent, *others], delivered=True), as_json=as_json, full=all_,
                  delivered=True)
        if result.held:
            raise Failure(f"{as_of}: {result.held}", 1)
        delivered = sum(o.status == "sent" for o in result.outcomes)
        where = f" to {outbox}/" if local_only else ""
        typer.echo(f"{as_of}: delivered {delivered} of {len(result.outcomes)} pending message(s){where}", err=True)
        for o in result.outcomes:
            if o.status != "sent":
                instead = f" -> {', '.join(o.replaced_by)}" if o.replaced_by else ""
                typer.echo(f"  {o.key}: {o.status}: {o.detail}{instead}", err=True)
        failed = sum(o.status == "failed" and not o.replaced_by for o in result.outcomes)
        if failed or left.total:
            if as_json:
                typer.echo(json.dumps({"delivery": _left_json(delivered, len(result.outcomes), failed, left)},
                                      ensure_ascii=False))
            raise Failure(f"{as_of}: " + "; ".join(_left_lines(failed, left, policy.tz)), 1)


def _left_lines(failed: int, left, tz) -> list[str]:
    """What a run leaves undelivered, for people: failed, waiting for a retry (until when), waiting for a fix."""
    out = [f"{failed} message(s) failed (see above; `rappel notices retry` once the cause is fixed)"] if failed else []
    if left.retrying:
        first, last = (w.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for w in (left.next_at, left.last_at))
        out.append(f"{left.retrying} message(s) wait for their retry time (the next attempt after {first}"
                   + (f", the last after {last}" if last != first else "") + "; a run or the daemon sends them then)")
    if left.for_fix:
        out.append(f"{left.for_fix} message(s) wait for the policy or a template to be fixed: "
                   + " | ".join(left.reasons))
    return out


def _left_json(delivered: int, of: int, failed: int, left) -> dict:
    iso = (lambda when: when.isoformat(timespec="seconds") if when else None)
    return {"delivered": delivered, "of": of, "failed": failed, "waiting_retry": left.retrying,
            "next_attempt_at": iso(left.next_at), "last_attempt_at": iso(left.last_at),
            "waiting_fix": left.for_fix, "reasons": list(left.reasons)}


def _print_compared(compared, as_json: bool) -> None:
    day, other = compared.shown.day, compared.other.day
    plus = len({(x.date, x.stage, x.channel, x.patron_id, x.library) for x in compared.lines if x.diff == "+"})
    minus = len({(x.date, x.stage, x.channel, x.patron_id, x.library) for x in compared.lines if x.diff == "-"})
    title = (f"{day} against {other}: {plus} message(s) only on {day} (+), {minus} only on {other} (-); "
             f"{compared.common} loan(s) at the same stage on both")
    print_diff(title, compared.lines, as_json)
    if not as_json:
        for side in (compared.shown, compared.other):
            typer.echo(f"{side.day}: {side.recorded} loan notice(s) as recorded in the ledger, "
                       f"{len(side.rows) - side.recorded} more that a dry run decides now")


@app.command()
def preview(stage: Annotated[str, typer.Option("--stage", help="The stage whose messages to render (its id)")],
            out: Annotated[Path, typer.Option("--out", help="Folder to write the .eml, .html and .pdf files to")],
            patron: Annotated[Optional[str], typer.Option("--patron", help="A patron of the database (id): their "
                                                          "loans at that stage on that date")] = None,
            sample: Annotated[bool, typer.Option("--sample", help="A made-up patron and loans; no database")] = False,
            on: Annotated[Optional[str], typer.Option("--on", help="Date (default: today, policy time zone)")] = None,
            lang: Annotated[Optional[str], typer.Option("--lang", help="Templates' language instead of the "
                                                        "patron's (one of the policy's languages)")] = None,
            rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Render a stage's email (.eml, .html) and letter (.pdf) exactly as a run would send them,
    recording nothing: the way to check a template edit.

    --patron takes the patron's loans as a run on that date selects them (the ledger aside); when the
    stage is due for none that day, the nearest date it is, said on stderr. Exit 1 when the patron
    gets nothing at that stage (why, on stderr); 2 for an unknown stage, patron or language."""
    from engine.requests import is_request_stage
    from engine.yamlsource import InputError, Problem
    from service import preview as previews
    from service import session

    with guarded():
        if (patron is None) == (not sample):
            raise InputError([Problem("--patron", None, "", "give either --patron ID or --sample")])
        loaded = session.load_rules(rules, templates=True)
        as_of = parse_date(on, loaded.policy)
        previews.check_request_preview(loaded.policy, stage, patron)      # before opening the database
        try:
            if sample:
                done = previews.preview(loaded.policy, loaded.templates, stage, as_of, now_utc(), out, language=lang)
            else:
                with session.store(db, writes=False) as store:
                    done = previews.preview(loaded.policy, loaded.templates, stage, as_of, now_utc(), out,
                                            store=store, patron_id=patron, language=lang)
        except previews.NothingToPreview as exc:
            raise Failure(f"{exc}: nothing written (--sample previews the templates with a made-up patron)",
                          1) from None
        if done.note:
            typer.echo(f"note: {done.note}", err=True)
        for notice in done.notices:
            typer.echo(f"{done.on}: {notice.stage} by {notice.channel} for {notice.patron_id}"
                       f"{' (' + notice.library + ')' if notice.library else ''}, "
                       f"{'requests' if is_request_stage(loaded.policy, notice.stage) else 'loans'} {','.join(notice.loan_ids)}"
                       f" -> {notice.recipient}")
        for path in done.files:
            typer.echo(f"  {path}")


@app.command()
def explain(loan: Annotated[Optional[str], typer.Option("--loan", help="Loan id")] = None,
            on: Annotated[Optional[str], typer.Option("--on", help="Date (default: today)")] = None,
            rules: RulesOpt = Path("rules"), db: DbOpt = None,
            request: Annotated[Optional[str], typer.Option(
                "--request", help="Request id: each request stage instead (ready, pickup deadline, expired)")] = None):
    """For each stage: due or not on that date, and why."""
    from service import checks, requests, session

    with guarded():
        if (loan is None) == (request is None):
            raise session.Refused("give one of --loan ID or --request ID", 2)
        loaded = session.load_rules(rules)
        as_of = parse_date(on, loaded.policy)
        with session.store(db, writes=False) as store:
            if request is not None:
                lines = requests.explain(store, loaded.policy, request, as_of)
                if lines is None:
                    raise session.Refused(f"no request {request!r} in {store.url}", 2)
            else:
                lines = checks.explain_loan(store, loaded.policy, loan, as_of)
        for line in lines:
            typer.echo(line)


@app.command("import")
def import_(kind: Annotated[str, typer.Argument(help="patrons, loans or requests")],
            file: Annotated[Path, typer.Argument(help="CSV file with a header row and ISO 8601 dates")],
            snapshot: Annotated[bool, typer.Option(
                "--snapshot", help="The file is the complete list of the open loans (active requests) of the "
                                   "libraries it names (or of --libraries): the open ones it does not list are "
                                   "closed as returned on the export's date. Patrons are never deleted")] = False,
            confirm: Annotated[bool, typer.Option(
                "--confirm", help="Take a snapshot that is empty or closes more than imports.max_closed_share "
                                  "of the open loans")] = False,
            libraries: Annotated[Optional[str], typer.Option(
                "--libraries", help="A snapshot's libraries, comma-separated, or 'all' (default: the libraries "
                                    "the file names)")] = None,
            on: Annotated[Optional[str], typer.Option(
                "--on", help="Date of the export, what its closings are dated (default: today, policy time "
                             "zone)")] = None,
            encoding: Annotated[Optional[str], typer.Option(
                "--encoding", help="The file's encoding (default: UTF-8, with or without BOM); cp1252 for Excel "
                                   "on Windows")] = None,
            delimiter: Annotated[Optional[str], typer.Option(
                "--delimiter", help="Column delimiter: , ; or tab (default: found from the header)")] = None,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and count everything; write nothing")] = False,
            as_json: JsonOpt = False, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Load a CSV export; rows upsert by id; any bad row rejects the whole file.

    The report counts new, changed and unchanged rows, and for --snapshot the loans it closed."""
    from service import imports, session

    with guarded():
        imports.check_kind(kind)
        imports.check_reading(encoding, delimiter)
        loaded = session.load_rules(rules)
        policy = loaded.policy
        facts_date = parse_date(on, policy)
        scope = None
        if libraries is not None:
            scope = list(policy.libraries) if libraries.strip() == "all" else \
                [code.strip() for code in libraries.split(",") if code.strip()]
        with session.store(db, writes=not dry_run) as store:
            report = imports.import_file(store, policy, kind, file, snapshot=snapshot, confirm=confirm,
                                         encoding=encoding, delimiter=delimiter, facts_date=facts_date,
                                         dry_run=dry_run, libraries=scope, now=now_utc())
        if as_json:
            typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        else:
            typer.echo(import_line(file, report))
        if report.refused:
            typer.echo(f"snapshot guard: {report.refused}", err=True)
        if report.erased:
            typer.echo(f"{file}: {len(report.erased)} row(s) skipped, of patrons erased here (rappel patron forget): "
                       f"{', '.join(sorted(set(report.erased))[:10])}; erase them in the library system too", err=True)
        if report.outside:
            what = "open loans" if kind == "loans" else "active requests"
            typer.echo(f"note: {', '.join(report.outside)} {'have' if len(report.outside) > 1 else 'has'} {what} "
                       f"and {'are' if len(report.outside) > 1 else 'is'} not in this snapshot: left as they are "
                       f"(a snapshot covers the libraries it names; --libraries all if the export has every "
                       f"library)", err=True)


def import_line(file: Path, report) -> str:
    """'loans.csv: 3 loans imported (1 new, 1 changed, 1 unchanged); snapshot of SCI: 2 loan(s) closed …'."""
    done = "checked (dry run: nothing written)" if report.dry_run else "imported"
    line = (f"{file}: {report.rows} {report.kind} {done} ({report.inserted} new, {report.changed} changed, "
            f"{report.unchanged} unchanged)")
    if report.snapshot and report.kind != "patrons":
        what = "loan(s)" if report.kind == "loans" else "request(s)"
        closed = "would be closed" if report.dry_run else "closed"
        line += f"; snapshot of {', '.join(report.libraries) or 'no library'}: "
        line += (f"{report.closed} {what} {closed}, absent from the export of {report.facts_date}" if report.closed
                 else "nothing absent")
    if report.reopened:
        line += f"; {report.reopened} loan(s) reopened (closed by an earlier export, listed open again)"
    return line


@app.command()
def lint(rules: RulesOpt = Path("rules"),
         check_delivery: Annotated[bool, typer.Option("--check-delivery", help="Also connect to each configured server "
                                                      "(SMTP greeting and login, CUPS printers) without sending; "
                                                      "exit 1 if one fails")] = False,
         outbox: Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel")] = Path("outbox"),
         db: DbOpt = None):
    """Check the policy, its templates and its delivery settings; exit 2 on any error.

    With a database (--db, $RAPPEL_DB_URL, or ./rappel.db when it exists), also that every library
    with open loans in it is in the policy (else its letters would wait, unsent)."""
    from service import checks, session

    with guarded():
        loaded = session.load_rules(rules, templates=True)
        with _lint_store(db) as store:
            report = checks.lint(loaded, os.environ, outbox, check_delivery=check_delivery, store=store,
                                 today=parse_date(None, loaded.policy))
        for line in report.delivery:
            typer.echo(f"delivery: {line}")
        for check in report.checks:
            typer.echo(f"  {'ok  ' if check.ok else 'FAIL'} {check.target}: {check.detail}")
        typer.echo(report.policy)
        typer.echo(report.accounts)
        typer.echo(report.sources)
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if report.failed:
            raise Failure(f"delivery check failed: {', '.join(report.failed)}", 1)


@contextmanager
def _lint_store(db: str | None):
    """The database lint holds the policy against: the one given or configured, or ./rappel.db when it
    exists; None when there is none (lint checks the rules alone)."""
    from service import session

    if db is None and not os.environ.get("RAPPEL_DB_URL") and not Path("rappel.db").exists():
        yield None
        return
    with session.store(db, writes=False) as store:
        yield store


@app.command()
def schema(accounts: Annotated[bool, typer.Option("--accounts", help="The schema of rules/accounts.yaml instead")] = False,
           sources: Annotated[bool, typer.Option("--sources", help="The schema of rules/sources.yaml instead")] = False):
    """Print the JSON Schema of rules/reminders.yaml, or of rules/accounts.yaml or rules/sources.yaml (for editors)."""
    from service import checks

    with guarded():
        if accounts and sources:
            raise Failure("--accounts or --sources, not both", 2)
        typer.echo(json.dumps(checks.schema(accounts=accounts, sources=sources), indent=2, ensure_ascii=False))


@app.command()
def demo(workdir: Annotated[Path, typer.Option("--workdir", help="Folder for the demo database and outbox")] = Path("demo-run")):
    """Load the bundled sample into a fresh database, run a few days and show what went out."""
    from service import demo as demos

    with guarded():
        demos.run_demo(workdir, echo=typer.echo)
