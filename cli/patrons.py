"""Patron services at the command line: show, edit, requests-report, and the synchronisation of
external accounts (rules/accounts.yaml decides who may edit what)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import DbOpt, Failure, OnOpt, RulesOpt, StateOpt, app, guarded, parse_date

patron_app = typer.Typer(no_args_is_help=True, help="Patron services: look a patron up, edit, email their requests.")
app.add_typer(patron_app, name="patron")
BarcodeArg = Annotated[str, typer.Argument(help="The patron's barcode or patron_id")]


@patron_app.command("show")
def patron_show(barcode: BarcodeArg,
                role: Annotated[Optional[str], typer.Option("--as", help="Say what this role may edit")] = None,
                on: OnOpt = None, as_json: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
                rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Identity, account and record type, each field editable or owned by the source, loans, requests, and
    the notices rappel sent (newest first). The patron: a barcode, or a patron_id."""
    from service import patrons, session

    with guarded():
        loaded = session.load_rules(rules, accounts=True)
        as_of = parse_date(on, loaded.policy)
        with session.store(db, writes=False) as store:
            view = patrons.show(store, loaded.accounts, barcode, as_of, role)
        if as_json:
            typer.echo(json.dumps(view.as_dict(loaded.policy.tz), ensure_ascii=False))
            return
        for line in _patron_lines(view, role, loaded.policy.tz):
            typer.echo(line)


def _patron_lines(view, role: str | None, tz, shown: int = 20) -> list[str]:
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
    from cli.notices import notice_lines

    out += ["", f"notices ({len(view.notices)}, newest first; rappel notices show KEY for one in full)"]
    out += notice_lines(view.notices[:shown], tz)
    if len(view.notices) > shown:
        out.append(f"  … and {len(view.notices) - shown} older: rappel notices --patron {p.patron_id}")
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

    from engine.yamlsource import InputError, Problem
    from service import patrons, session

    with guarded():
        loaded = session.load_rules(rules, accounts=True)
        policy, accounts = loaded.policy, loaded.accounts
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
            with session.store(db) as store:
                result = patrons.edit(store, accounts, barcode, role, actor, changes, dt.datetime.now(policy.tz),
                                      policy=policy)
        except patrons.EditRefused as exc:
            for d in exc.decisions:
                if not d.allowed:
                    typer.echo(f"refused: {d.request.field}: {d.reason}; instead: {d.where}", err=True)
            for name, message in exc.problems.items():
                typer.echo(f"invalid: {name}: {message}", err=True)
            raise Failure(f"nothing changed for patron {exc.patron.patron_id} (barcode {exc.patron.barcode})", 2) \
                from None
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
    from service import patrons, session

    with guarded():
        loaded = session.load_rules(rules, accounts=True)
        policy = loaded.policy
        as_of = parse_date(on, policy)
        with session.installation(loaded, db, channel=True, outbox=outbox, guard=True, state_dir=state_dir,
                                  nothing="nothing sent") as inst:
            result = patrons.requests_report(inst.store, policy, inst.accounts, rules, inst.channel, barcode, as_of,
                                             dt.datetime.now(policy.tz))
        if result.notice is None:
            typer.echo(f"{result.patron.full_name} (barcode {result.patron.barcode}) has no active request: "
                       f"nothing sent")
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
    from service import session, sync

    with guarded():
        loaded = session.load_rules(rules, accounts=True)
        policy = loaded.policy
        with session.store(db) as store:
            report = sync.sync(store, policy, loaded.accounts, file, dt.datetime.now(policy.tz), dry_run=dry_run)
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
    if report.erased:
        out.append(f"{len(report.erased)} patron(s) in the file erased here (rappel patron forget), skipped:")
        out += listing(report.erased, lambda pid: f"  {pid}")
    if report.missing:
        out.append(f"{len(report.missing)} external account(s) missing from the file, kept (not deleted):")
        out += listing(report.missing, lambda pid: f"  {pid}")
    return out
