"""`rappel api-client`: the JSON API's clients and their tokens (service/api_clients.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import DbOpt, JsonOpt, RulesOpt, app, guarded, now_utc

clients_app = typer.Typer(help="Clients of the JSON API (the library system pushing facts, a discovery layer "
                               "reading): each a name, a role of accounts.yaml and a token shown once.")
app.add_typer(clients_app, name="api-client")

NameArg = Annotated[str, typer.Argument(help="The client's name (koha, discovery…)")]


def _token_lines(name: str, token: str) -> None:
    typer.echo(token)
    typer.echo(f"the token of {name}, shown this once (only its hash is kept): give it to the client as "
               f"'Authorization: Bearer <token>'", err=True)


@clients_app.command("add")
def client_add(name: NameArg, role: Annotated[str, typer.Option("--role", help="A role of accounts.yaml: what the "
                                                                "client may do (its may: list)")],
               rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """A new client; prints its token once (on stdout, alone: `… > token-file`)."""
    from service import api_clients, session

    with guarded():
        accounts = session.load_rules(rules, accounts=True).accounts
        with session.store(db) as store:
            token = api_clients.add(store, accounts, name, role, now_utc())
        _token_lines(name, token)


@clients_app.command("list")
def client_list(as_json: JsonOpt = False, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Every client: name, role, created, last used, disabled (never a token)."""
    from service import api_clients, session

    with guarded():
        policy = session.load_rules(rules).policy
        with session.store(db, writes=False) as store:
            found = api_clients.listing(store)

        def local(value):
            return value.astimezone(policy.tz).isoformat(timespec="seconds") if value else None

        for c in found:
            if as_json:
                typer.echo(json.dumps({"name": c["name"], "role": c["role"], "created_at": local(c["created_at"]),
                                       "last_used_at": local(c["last_used_at"]), "disabled": c["disabled"]}))
            else:
                typer.echo(f"{c['name']:<20} {c['role']:<20} {'disabled' if c['disabled'] else 'enabled':<8}  "
                           f"created {local(c['created_at'])}  last used {local(c['last_used_at']) or 'never'}")
        if not found and not as_json:
            typer.echo("no API client (rappel api-client add NAME --role ROLE)")


@clients_app.command("disable")
def client_disable(name: NameArg, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Refuse the client's token from now on (rotate gives it a new one and enables it again)."""
    from service import api_clients, session

    with guarded():
        session.load_rules(rules)
        with session.store(db) as store:
            api_clients.disable(store, name)
        typer.echo(f"{name}: disabled; its token is refused")


@clients_app.command("rotate")
def client_rotate(name: NameArg, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """A new token for the client (printed once); the old one is refused from now on."""
    from service import api_clients, session

    with guarded():
        session.load_rules(rules)
        with session.store(db) as store:
            token = api_clients.rotate(store, name)
        _token_lines(name, token)
