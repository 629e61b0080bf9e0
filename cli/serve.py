"""`rappel serve` (the staff interface, behind the library's reverse proxy) and `rappel staff`
(who may sign in to it)."""
from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import DbOpt, JsonOpt, RulesOpt, StateOpt, app, guarded, now_utc

staff_app = typer.Typer(no_args_is_help=True, help="Staff accounts of the staff interface (`rappel serve`).")
app.add_typer(staff_app, name="staff")
NameArg = Annotated[str, typer.Argument(help="The staff member's name (the single sign-on's user name)")]
StdinOpt = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input "
                                                                 "(one line) instead of asking twice")]


@app.command()
def serve(host: Annotated[str, typer.Option("--host", help="Address to listen on (keep it local: the reverse "
                                                           "proxy serves TLS)")] = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8080,
          trusted_proxy: Annotated[Optional[list[str]], typer.Option(
              "--trusted-proxy", help="An address or network (repeat) whose --sso-header is believed; "
                                      "default: $RAPPEL_TRUSTED_PROXIES, comma-separated")] = None,
          sso_header: Annotated[Optional[str], typer.Option(
              "--sso-header", help="The request header the proxy's single sign-on sets to the user name "
                                   "(REMOTE_USER); default: $RAPPEL_SSO_HEADER")] = None,
          insecure_cookies: Annotated[bool, typer.Option(
              "--insecure-cookies", help="Session cookies without Secure (plain HTTP, development only)")] = False,
          outbox: Annotated[Path, typer.Option("--outbox", help="Folder of the local outbox channel")] = Path("outbox"),
          workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes (one per core "
                                                                                "is a good start)")] = 1,
          state_dir: StateOpt = None, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Serve the staff interface (desk, the day, the JSON API under /api/) with uvicorn."""
    import os

    import uvicorn

    from adapters.web.app import create_app
    from adapters.web.context import WebContext, networks
    from engine.yamlsource import InputError, Problem
    from service import session

    with guarded():
        session.load_rules(rules, templates=True, accounts=True)      # a broken policy: exit 2 before serving
        proxies = trusted_proxy or [v for v in os.environ.get("RAPPEL_TRUSTED_PROXIES", "").split(",") if v.strip()]
        try:
            nets = networks(proxies)
        except ValueError as exc:
            raise InputError([Problem("--trusted-proxy", None, "", str(exc))]) from None
        header = sso_header or os.environ.get("RAPPEL_SSO_HEADER") or None
        if header and not nets:
            raise InputError([Problem("--sso-header", None, "", "goes with --trusted-proxy: a header is believed "
                                                                "only from the reverse proxy's addresses")])
        context = WebContext(rules, db, outbox, state_dir, sso_header=header, trusted_proxies=nets,
                             secure_cookies=not insecure_cookies)
        context.store()                                                # opened (and upgraded) now
        context.rules()
        typer.echo(f"rappel serve: http://{host}:{port}/ (rules {rules}, database {context.store().url})", err=True)
        # proxy_headers off: the client address is the proxy's, which is what --trusted-proxy is about;
        # idle connections kept longer than a reverse proxy keeps its own (nginx: 60 s)
        options = dict(host=host, port=port, proxy_headers=False, server_header=False, log_level="info",
                       timeout_keep_alive=65)
        if workers == 1:
            uvicorn.run(create_app(context), **options)
            return
        # several processes: each builds its own application from the same settings (sessions, login
        # failures and everything else they share are in the database)
        from adapters.web.app import SETTINGS, settings_of

        os.environ[SETTINGS] = settings_of(context)
        context.close()
        uvicorn.run("adapters.web.app:from_environment", factory=True, workers=workers, **options)


def _password(stdin: bool) -> str:
    from cli.common import Failure

    if stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise Failure("the two passwords differ: nothing changed", 2)
    return first


def _actor() -> str:
    return getpass.getuser()


@staff_app.command("add")
def staff_add(name: NameArg,
              role: Annotated[str, typer.Option("--role", help="A role of rules/accounts.yaml")],
              sso_only: Annotated[bool, typer.Option("--sso-only", help="No password: signs in only through the "
                                                                        "reverse proxy's single sign-on")] = False,
              password_stdin: StdinOpt = False, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Add a staff account (the password asked twice, or --password-stdin; none with --sso-only)."""
    from service import session, staff

    with guarded():
        accounts = session.load_rules(rules, accounts=True).accounts
        staff.check_role(accounts, role)          # exit 2, naming the known roles
        password = None if sso_only else _password(password_stdin)
        with session.store(db) as store:
            member = staff.add(store, accounts, name, role, password, at=now_utc(), actor=_actor())
        typer.echo(f"staff {member['name']} added as {member['role']}"
                   + (" (single sign-on only)" if sso_only else ""))


@staff_app.command("passwd")
def staff_passwd(name: NameArg, password_stdin: StdinOpt = False, db: DbOpt = None):
    """A new password (asked twice, or --password-stdin); the account's browsers are signed out."""
    from service import session, staff

    with guarded():
        with session.store(db) as store:
            staff.passwd(store, name, _password(password_stdin), at=now_utc(), actor=_actor())
        typer.echo(f"staff {name}: password changed; signed out everywhere")


@staff_app.command("disable")
def staff_disable(name: NameArg, db: DbOpt = None):
    """The account signs in no more (password or single sign-on); its browsers are signed out."""
    from service import session, staff

    with guarded():
        with session.store(db) as store:
            staff.disable(store, name, at=now_utc(), actor=_actor())
        typer.echo(f"staff {name}: disabled; signed out everywhere")


@staff_app.command("list")
def staff_list(as_json: JsonOpt = False, db: DbOpt = None):
    """The staff accounts: name, role, how they sign in, disabled or not, last sign-in."""
    from service import session, staff

    with guarded():
        with session.store(db) as store:
            found = staff.listing(store)
        for m in found:
            if as_json:
                typer.echo(json.dumps({**m, "created_at": m["created_at"].isoformat(),
                                       "last_login_at": m["last_login_at"].isoformat() if m["last_login_at"]
                                       else None}, ensure_ascii=False))
            else:
                typer.echo(f"{m['name']:<20} {m['role']:<18} {m['sign_in']:<9} "
                           f"{'disabled' if m['disabled'] else 'active':<9} last sign-in "
                           f"{m['last_login_at'].isoformat(timespec='minutes') if m['last_login_at'] else 'never'}")
