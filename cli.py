"""rappel command line: the only place that reads the clock and wires engine and adapters together."""
from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Loan reminders for libraries: policy in YAML, decisions you can dry-run and explain.")

RulesOpt = Annotated[Path, typer.Option("--rules", help="Folder with reminders.yaml, accounts.yaml, templates/")]
DbOpt = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: $RAPPEL_DB_URL, else sqlite:///rappel.db)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line, nothing else on stdout")]


class Failure(Exception):
    """An error already explained to the user; exit with this code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@contextmanager
def guarded():
    """Exit 2 for bad input or policy, 1 for anything else; one line a problem on stderr."""
    from adapters.store.database import DatabaseNotReady
    from engine.rules import EngineFault
    from engine.yamlsource import InputError

    try:
        yield
    except InputError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    except Failure as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from None
    except EngineFault as exc:
        typer.echo(f"error: rules engine fault, nothing decided: {exc}", err=True)
        raise typer.Exit(1) from None
    except DatabaseNotReady as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: one line, exit 1
        typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(1) from None


def one_line(exc: BaseException) -> str:
    """An unexpected error on one line. SQLAlchemy's messages span lines (the statement, its
    parameters, "Background on this error at: …"): the first line carries the cause."""
    from sqlalchemy.exc import StatementError

    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    text = " ".join(str(cause).split("\n", 1)[0].split()) or "no message"
    return f"{type(cause).__name__}: {text}"


def _date(text: str | None, policy) -> dt.date:
    if text is None:
        return dt.datetime.now(policy.tz).date()   # today in the institution's time zone
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        from engine.yamlsource import InputError, Problem
        raise InputError([Problem("--on", None, "", f"{text!r} is not a date (YYYY-MM-DD)")]) from None


def _print_notices(notices, as_json: bool, title: str) -> None:
    if as_json:
        for notice in notices:
            typer.echo(json.dumps(notice.as_dict(), ensure_ascii=False))
        return
    typer.echo(title)
    if not notices:
        typer.echo("  (no message)")
        return
    rows = [("stage", "channel", "patron", "library", "loans", "recipient")]
    rows += [(n.stage, n.channel, n.patron_id, n.library or "-", ",".join(n.loan_ids), n.recipient) for n in notices]
    widths = [min(40, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        typer.echo("  " + "  ".join(cell[:40].ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            typer.echo("  " + "  ".join("-" * w for w in widths))


@app.command()
def run(on: Annotated[Optional[str], typer.Option("--on", help="Date to evaluate (default: today, policy time zone)")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Write nothing; show what would go out")] = False,
        confirm: Annotated[bool, typer.Option("--confirm", help="Send even more than flood_guard.max_per_run messages")] = False,
        as_json: JsonOpt = False,
        outbox: Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel (what the policy's "
                                                               "delivery: section does not send elsewhere)")] = Path("outbox"),
        state_dir: StateOpt = None, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Evaluate one day: decide, record in the ledger, deliver (or only show, with --dry-run).

    A real run is guarded like the daemon: it refuses a database that belongs to another
    installation (`rappel confirm-installation`), and holds the daemon's lease while it runs, so it
    refuses to run beside an active daemon."""
    import os

    from adapters.channels import registry as delivery

    from service import day as pipeline
    from service import rules as rules_
    from service.daemon import LeaseLost, leased
    from adapters.store.database import Store

    with guarded():
        policy, templates = rules_.load_checked(rules)
        as_of = _date(on, policy)
        channel = delivery.build(policy, templates, env=os.environ, outbox=outbox, rules_dir=rules)
        try:
            if dry_run:
                store = Store.existing(db)    # a dry run neither creates nor upgrades, nor claims the database
                try:
                    plan = pipeline.plan_for(store, policy, as_of)
                finally:
                    store.close()
                _print_notices(plan.notices, as_json, f"{as_of}: {len(plan.notices)} message(s) would go out (dry run)")
                leaving = sum(not channel.is_local(n) for n in plan.notices)
                if leaving > policy.flood_guard.max_per_run:
                    typer.echo(f"flood guard: {leaving} messages would leave, more than flood_guard.max_per_run "
                               f"({policy.flood_guard.max_per_run}): a run would send nothing without --confirm", err=True)
                return
            store = Store(db)
            try:
                _installation_or_fail(store, state_dir, "nothing decided or sent")
                with _daemon_lease(store) as lease:
                    now = dt.datetime.now(dt.timezone.utc)
                    try:
                        result = pipeline.run_day(store, policy, templates, leased(channel, lease), as_of, now=now,
                                                  confirm=confirm)
                    except LeaseLost:
                        raise Failure(f"{as_of}: the lease was lost during the run (another instance took it over): "
                                      f"what was not sent stays pending, for that instance to deliver", 1) from None
            finally:
                store.close()
        finally:
            channel.close()
        _print_notices(result.plan.notices, as_json, f"{as_of}: {len(result.plan.notices)} message(s) decided")
        if result.held:
            raise Failure(f"{as_of}: {result.held}", 1)
        sent = sum(o.status == "sent" for o in result.outcomes)
        where = f" to {outbox}/" if not channel.routes else ""
        typer.echo(f"{as_of}: delivered {sent} of {len(result.outcomes)} pending message(s){where}", err=True)
        for o in result.outcomes:
            if o.status != "sent":
                instead = f" -> {', '.join(o.replaced_by)}" if o.replaced_by else ""
                typer.echo(f"  {o.key}: {o.status}: {o.detail}{instead}", err=True)
        if any(o.status == "failed" and not o.replaced_by for o in result.outcomes):
            raise Failure("some messages failed; see above", 1)


def _installation_or_fail(store, state_dir: Path | None, nothing: str) -> None:
    """The environment guard, as the daemon checks it (adapters/installation.py): a database without
    an installation id is claimed for this machine; one that belongs to another installation (a
    restored copy of production) refuses, naming `rappel confirm-installation`."""
    from adapters.store.installation import Guard

    guard = Guard(store.engine, state_dir)
    try:
        verdict = guard.check()
    except OSError as exc:
        raise Failure(f"cannot keep this machine's installation id in {guard.id_file}: {exc.strerror or exc} "
                      f"(--state-dir, $RAPPEL_STATE_DIR or $RAPPEL_INSTALLATION_ID); {nothing}", 1) from None
    if not verdict.ok:
        raise Failure(f"delivery refused, {nothing}: {verdict.detail}", 1)


@contextmanager
def _daemon_lease(store):
    """Hold the daemon's lease (adapters/lease.py) for the whole block, renewed by its heartbeat, and
    release it at the end, even on error; Failure at once when another instance holds it."""
    from adapters.store.lease import Lease

    lease = Lease(store.engine)
    if not lease.acquire():
        info = lease.info()
        who = f" ({info.holder}, for {info.expires_in:.0f}s more)" if info else ""
        raise Failure(f"another instance holds the lease on this database{who}: a daemon is active and delivers "
                      f"by itself; nothing decided or sent (to run by hand, stop the daemon first)", 1)
    try:
        lease.start_heartbeat()
        yield lease
    finally:
        lease.release()


@app.command()
def explain(loan: Annotated[str, typer.Option("--loan", help="Loan id")],
            on: Annotated[Optional[str], typer.Option("--on", help="Date (default: today)")] = None,
            rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """For each stage: due or not on that date, and why."""
    from service import day as pipeline
    from service import rules as rules_
    from adapters.store.database import Store
    from engine import explain as explaining

    with guarded():
        policy = rules_.load_policy(rules)
        as_of = _date(on, policy)
        store = Store.existing(db)
        found = store.loan(loan)
        if found is None:
            raise Failure(f"no loan {loan!r} in {store.url}", 2)
        patron = store.patron(found.patron_id)
        for line in explaining.explain(policy, found, patron, store.ledger_for(loan), as_of):
            typer.echo(line)


@app.command("import")
def import_(kind: Annotated[str, typer.Argument(help="patrons, loans or requests")],
            file: Annotated[Path, typer.Argument(help="CSV file: UTF-8, header row, ISO 8601 dates")],
            rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Load a CSV export; rows upsert by id; any bad row rejects the whole file."""
    from service import day as pipeline
    from service import rules as rules_
    from adapters.sources.csvfiles import import_csv
    from adapters.store.database import Store

    with guarded():
        if kind not in ("patrons", "loans", "requests"):
            raise Failure(f"unknown kind {kind!r}: patrons, loans or requests", 2)
        policy = rules_.load_policy(rules)
        report = import_csv(Store(db), policy, kind, file)
        typer.echo(f"{file}: {report.rows} {kind} imported ({report.inserted} new, {report.updated} updated)")


@app.command()
def lint(rules: RulesOpt = Path("rules"),
         check_delivery: Annotated[bool, typer.Option("--check-delivery", help="Also connect to each configured server "
                                                      "(SMTP greeting and login, CUPS printers) without sending; "
                                                      "exit 1 if one fails")] = False,
         outbox: Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel")] = Path("outbox")):
    """Check the policy, its templates and its delivery settings; exit 2 on any error."""
    import os

    from adapters.channels import registry as delivery

    from service import day as pipeline
    from service import rules as rules_
    from engine.yamlsource import InputError

    with guarded():
        policy, templates = rules_.load_checked(rules)
        accounts_ok = _lint_accounts(rules, policy)
        problems = delivery.environment_problems(policy, os.environ, rules)
        if problems:
            raise InputError(problems)
        channel = delivery.build(policy, templates, env=os.environ, outbox=outbox, rules_dir=rules)
        try:
            for line in channel.describe():
                typer.echo(f"delivery: {line}")
            failed = []
            if check_delivery:
                for check in channel.checks():
                    typer.echo(f"  {'ok  ' if check.ok else 'FAIL'} {check.target}: {check.detail}")
                    if not check.ok:
                        failed.append(check.target)
        finally:
            channel.close()
        typer.echo(f"{rules}/reminders.yaml: ok ({len(policy.stages)} stages, {len(policy.libraries)} libraries)")
        typer.echo(accounts_ok)
        if failed:
            raise Failure(f"delivery check failed: {', '.join(failed)}", 1)


@app.command()
def schema(accounts: Annotated[bool, typer.Option("--accounts", help="The schema of rules/accounts.yaml instead")] = False):
    """Print the JSON Schema of rules/reminders.yaml, or of rules/accounts.yaml (for editors)."""
    from engine.accounts import accounts_json_schema
    from engine.policy import policy_json_schema

    typer.echo(json.dumps(accounts_json_schema() if accounts else policy_json_schema(), indent=2, ensure_ascii=False))


@app.command()
def demo(workdir: Annotated[Path, typer.Option("--workdir", help="Folder for the demo database and outbox")] = Path("demo-run")):
    """Load the bundled sample into a fresh database, run a few days and show what went out."""
    from service import demo as demos
    with guarded():
        demos.run_demo(workdir, echo=typer.echo)


# -- patron services (rules/accounts.yaml) -----------------------------------------------------

patron_app = typer.Typer(no_args_is_help=True, help="Patron services: look a patron up, edit, email their requests.")
app.add_typer(patron_app, name="patron")
BarcodeArg = Annotated[str, typer.Argument(help="The patron's barcode")]
OnOpt = Annotated[Optional[str], typer.Option("--on", help="Date (default: today, policy time zone)")]


def _lint_accounts(rules: Path, policy) -> str:
    """rules/accounts.yaml and the requests report templates; InputError on any problem."""
    from service.patrons import lint_report_templates, load_accounts
    from engine.yamlsource import InputError

    accounts = load_accounts(rules, missing_ok=True)
    if accounts is None:
        return f"{rules}/accounts.yaml: absent (needed by rappel patron and rappel sync only)"
    problems = lint_report_templates(policy, rules)
    if problems:
        raise InputError(problems)
    return f"{rules}/accounts.yaml: ok ({len(accounts.roles)} roles; external accounts from {accounts.external.source})"


def _patron_setup(rules: Path, db: str | None, on: str | None, *, writes: bool = True):
    from service import day as pipeline
    from service import rules as rules_
    from service.patrons import load_accounts
    from adapters.store.database import Store

    policy = rules_.load_policy(rules)
    return policy, load_accounts(rules), Store(db) if writes else Store.existing(db), _date(on, policy)


@contextmanager
def _known_patron():
    from service.patrons import UnknownPatron

    try:
        yield
    except UnknownPatron as exc:
        raise Failure(str(exc), 2) from None


@patron_app.command("show")
def patron_show(barcode: BarcodeArg,
                role: Annotated[Optional[str], typer.Option("--as", help="Say what this role may edit")] = None,
                on: OnOpt = None, as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
                rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Identity, account and record type, each field editable or owned by the source, loans, requests."""
    from service import patrons
    with guarded(), _known_patron():
        _, accounts, store, as_of = _patron_setup(rules, db, on, writes=False)
        view = patrons.show(store, accounts, barcode, as_of, role)
        if as_json:
            typer.echo(json.dumps(view.as_dict(), ensure_ascii=False))
            return
        for line in _patron_lines(view, role):
            typer.echo(line)


def _patron_lines(view, role: str | None) -> list[str]:
    p = view.patron
    account = f"external, from {view.source}" if p.account_type == "external" else p.account_type
    out = [f"{p.full_name or '(no name)'}  barcode {p.barcode}  (patron {p.patron_id})",
           f"account: {account}; record type: {p.record_type}; group: {p.user_group or '-'}", "",
           "record" + (f" (as {role})" if role else "")]
    marks = {"identity": "identity, never edited", "owned": f"owned by {view.source}"}
    for f in view.fields:
        if f.ownership == "identity":   # in the heading lines
            continue
        if f.decision is not None:
            mark = "editable" if f.decision.allowed else f"not editable: {f.decision.reason} ({f.decision.where})"
        else:
            mark = marks.get(f.ownership) or ("editable by " + ", ".join(f.editable_by) if f.editable_by
                                              else "no role may edit it")
        if f.ownership == "protected":
            mark += "; protected: " + ("edited here, kept by synchronisations" if f.locally_edited
                                       else "synchronised until edited here")
        out.append(f"  {f.name:<19}{(f.value or '-')[:38]:<40}{mark}")
    out += ["", f"loans ({len(view.loans)} open, as of {view.as_of})"]
    for loan in view.loans:
        late = view.days_overdue(loan)
        out.append(f"  due {loan.due_date}  {(str(late) + ' day(s) overdue') if late else 'not overdue':<20}"
                   f"{loan.library:<8}{loan.item_barcode:<12}{loan.title}")
    out += ["", f"requests ({sum(r['active'] for r in view.requests)} active)"]
    for r in view.requests:
        expires = r["expires_on"].isoformat() if r["expires_on"] else "-"
        state = "active" if r["active"] else f"inactive ({r['status'] or 'expired'})"
        out.append(f"  placed {r['placed_on']}  expires {expires:<10}  {r['library']} -> {r['pickup_library']}  "
                   f"{state:<12}  {r['title']}")
    return out


@patron_app.command("edit")
def patron_edit(barcode: BarcodeArg,
                role: Annotated[str, typer.Option("--as", help="Your role (rules/accounts.yaml, roles)")],
                sets: Annotated[list[str], typer.Option("--set", help="FIELD=VALUE; repeat for several fields")],
                by: Annotated[Optional[str], typer.Option("--by", help="Who edits, for the audit trail "
                                                                      "(default: the login name)")] = None,
                rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Change fields of a patron record: all allowed and valid, or nothing changed. Every change is audited."""
    import getpass

    from service import patrons
    from engine.yamlsource import InputError, Problem

    with guarded(), _known_patron():
        policy, accounts, store, _ = _patron_setup(rules, db, None)
        changes: dict[str, str] = {}
        for item in sets:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise InputError([Problem("--set", None, item, "expected FIELD=VALUE")])
            if name.strip() in changes:
                raise InputError([Problem("--set", None, name.strip(), "field given twice")])
            changes[name.strip()] = value
        actor = by or getpass.getuser()
        try:
            result = patrons.edit(store, accounts, barcode, role, actor, changes, dt.datetime.now(policy.tz))
        except patrons.EditRefused as exc:
            for d in exc.decisions:
                if not d.allowed:
                    typer.echo(f"refused: {d.request.field}: {d.reason}; instead: {d.where}", err=True)
            for name, message in exc.problems.items():
                typer.echo(f"invalid: {name}: {message}", err=True)
            raise Failure(f"nothing changed for patron {exc.patron.patron_id} (barcode {barcode})", 2) from None
        p = result.patron
        typer.echo(f"{p.full_name} (barcode {p.barcode}): {len(result.changed)} field(s) changed by {actor} as {role}")
        for name, old, new in result.changed:
            note = ""
            if accounts.ownership(p.account_type, name) == "protected":
                note = "  (protected: later synchronisations keep this value)"
            typer.echo(f"  {name}: {old!r} -> {new!r}{note}")
        for name in result.unchanged:
            typer.echo(f"  {name}: already {getattr(p, name)!r}")


@patron_app.command("requests-report")
def patron_requests_report(barcode: BarcodeArg, on: OnOpt = None,
                           outbox: Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel (when "
                                                                           "the policy's delivery: sends no email)")] = Path("outbox"),
                           state_dir: StateOpt = None, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Email the patron the list of their active requests, in their language (the policy's email delivery).

    Guarded like the daemon: nothing is sent from a database that belongs to another installation."""
    import os

    from adapters.channels import registry as delivery

    from service import patrons
    with guarded(), _known_patron():
        policy, accounts, store, as_of = _patron_setup(rules, db, on)
        _installation_or_fail(store, state_dir, "nothing sent")
        channel = delivery.build(policy, None, env=os.environ, outbox=outbox, rules_dir=rules)
        try:
            result = patrons.requests_report(store, policy, accounts, rules, channel, barcode, as_of,
                                             dt.datetime.now(policy.tz))
        finally:
            channel.close()
        if result.notice is None:
            typer.echo(f"{result.patron.full_name} (barcode {barcode}) has no active request: nothing sent")
            return
        if not result.delivery.ok:
            raise Failure(f"requests report not sent to {result.patron.email}: {result.delivery.detail}", 1)
        typer.echo(f"sent {len(result.requests)} active request(s) to {result.patron.email} ({result.language}): "
                   f"{result.delivery.reference}")


@app.command("sync")
def sync_(file: Annotated[Path, typer.Argument(help="The source system's export: the patron CSV columns")],
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Write nothing; show every change field by field")] = False,
          rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Synchronise external accounts: create new ones, update what the source owns, keep local edits."""
    from service import patrons
    with guarded():
        policy, accounts, store, _ = _patron_setup(rules, db, None)
        report = patrons.sync(store, policy, accounts, file, dt.datetime.now(policy.tz), dry_run=dry_run)
        typer.echo("\n".join(_sync_lines(report, file)))


def _sync_lines(report, file: Path, shown: int = 20) -> list[str]:
    verb = "would be" if report.dry_run else "were"
    out = [f"{file}: {report.rows} row(s); {len(report.created)} patron(s) {verb} created, {report.updated} updated, "
           f"{report.unchanged} unchanged" + (" (dry run: nothing written)" if report.dry_run else "")]
    limit = None if report.dry_run else shown

    def listing(items, fmt):
        lines = [fmt(i) for i in items[:limit]]
        if limit is not None and len(items) > limit:
            lines.append(f"  … and {len(items) - limit} more")
        return lines

    if report.dry_run:
        out += listing(report.created, lambda pid: f"  + {pid}: new external account")
        out += listing(report.changes, lambda c: f"  ~ {c[0]} {c[1]}: {c[2]!r} -> {c[3]!r}")
    out += listing(report.kept, lambda k: f"  = {k[0]} {k[1]}: local value {k[2]!r} kept (source: {k[3]!r})")
    if report.internal:
        out.append(f"{len(report.internal)} internal account(s) in the file, not touched:")
        out += listing(report.internal, lambda pid: f"  {pid}")
    if report.missing:
        out.append(f"{len(report.missing)} external account(s) missing from the file, kept (not deleted):")
        out += listing(report.missing, lambda pid: f"  {pid}")
    return out


# --- operations: the daemon, its status, the installation guard ------------------------------------

StateOpt = Annotated[Optional[Path], typer.Option(
    "--state-dir", help="Folder of this machine's installation id (default: $RAPPEL_STATE_DIR, else "
                        "$STATE_DIRECTORY, else ~/.local/state/rappel); $RAPPEL_INSTALLATION_ID overrides it")]


class SystemClock:
    """The real time, for `rappel daemon` (a simulation gives the daemon a clock of its own)."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def wait(self, until, stop, limit: float) -> None:
        seconds = limit if until is None else min(limit, max(0.0, (until - self.now()).total_seconds()))
        stop.wait(seconds)


def _logging() -> None:
    import logging
    import os

    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "   # journald stamps lines itself
    logging.basicConfig(level=logging.WARNING, format=f"{stamp}%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rappel").setLevel(logging.INFO)


@app.command()
def daemon(outbox: Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel")] = Path("outbox"),
           once: Annotated[bool, typer.Option("--once", help="Run what is due (missed days too), deliver, exit")] = False,
           lease_seconds: Annotated[float, typer.Option("--lease-seconds", min=1,
                                                        help="How long the lease lasts without renewal: a "
                                                             "standby takes over that long after the active "
                                                             "instance died")] = 60.0,
           poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=0.1, help="How often the policy "
                                                       "file, the lease and the guard are looked at")] = 30.0,
           isolate: Annotated[bool, typer.Option("--isolate-rules/--no-isolate-rules",
                                                 help="Evaluate each day in a child process, so the rules "
                                                      "engine's memory goes back to the system")] = True,
           clock_file: Annotated[Optional[Path], typer.Option("--clock-file", hidden=True,
                                                              help="Read the time from this file (simulations)")] = None,
           state_dir: StateOpt = None, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Run every day at the policy's `schedule.at`, catch up missed days, retry deliveries; stop on SIGTERM."""
    import os

    from adapters.channels import registry as delivery
    from service.daemon import Daemon, FileClock, Settings
    from adapters.isolation import isolate_evaluations

    isolate_evaluations(isolate)   # durable-rules keeps memory of every event: months of them

    def channel_for(policy, templates):
        return delivery.build(policy, templates, env=os.environ, outbox=outbox, rules_dir=rules)

    _logging()
    with guarded():
        settings = Settings(rules_dir=rules, db_url=db, clock=FileClock(clock_file) if clock_file else SystemClock(),
                            channel_for=channel_for, state_dir=state_dir,
                            lease_seconds=lease_seconds, poll_seconds=poll_seconds, once=once)
        runner = Daemon(settings)
        runner.install_signals()
        code = runner.run()
    raise typer.Exit(code)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
           max_failures: Annotated[int, typer.Option("--max-failures", min=0, help="Alert when more deliveries "
                                                     "than this failed in the last day (or are being retried)")] = 0,
           state_dir: StateOpt = None, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Last run, next run, ledger counts, failed deliveries; exit 1 when something needs an operator."""
    from service import status as runs
    from adapters.store.database import Store

    with guarded():
        store = Store.existing(db)
        report = runs.status_report(store, rules, SystemClock().now(), state_dir=state_dir,
                                    max_failures=max_failures)
        store.close()
        if as_json:
            typer.echo(json.dumps(report, ensure_ascii=False, default=str))
        else:
            for line in runs.status_lines(report):
                typer.echo(line)
    if report["alerts"]:
        raise typer.Exit(1)


@app.command("confirm-installation")
def confirm_installation(join: Annotated[bool, typer.Option("--join", help="This machine joins the database's "
                                                            "installation (a second machine, e.g. a standby)")] = False,
                         state_dir: StateOpt = None, db: DbOpt = None):
    """Let this machine deliver from this database (e.g. after moving it); a restored copy refuses until then."""
    from adapters.store.installation import Guard
    from adapters.store.database import Store

    with guarded():
        store = Store(db)
        guard = Guard(store.engine, state_dir)
        before = guard.check(claim=False)
        if before.ok:
            typer.echo(f"nothing to do: this machine is already installation {before.database_id}")
            return
        value = guard.confirm(join=join)
        store.close()
        if join:
            typer.echo(f"this machine joined installation {value} ({guard.id_file})")
        else:
            was = f" (was {before.database_id})" if before.database_id else ""
            typer.echo(f"the database now belongs to this machine's installation {value}{was}; "
                       f"machines holding the old id will refuse to deliver from it")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
