"""`rappel pull`: patrons, loans and requests straight from the library system's database."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import DbOpt, Failure, JsonOpt, RulesOpt, app, guarded, now_utc


@app.command()
def pull(source: Annotated[Optional[str], typer.Argument(help="A source of rules/sources.yaml (default: every one)")] = None,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and check everything; write nothing")] = False,
         confirm: Annotated[bool, typer.Option("--confirm", help="Close more absent loans than the snapshot "
                                                                 "guard allows")] = False,
         as_json: JsonOpt = False, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """Import from the library system's database (read-only), as a snapshot: any bad row, nothing of that kind."""
    from service import pull as pulls
    from service import session
    from service.sources import load_sources

    with guarded():
        loaded = session.load_rules(rules)
        sources = load_sources(rules, loaded.policy)
        if sources is None:
            raise Failure(f"no {rules}/sources.yaml: nothing to pull from (see the README, \"Pulling from Koha "
                          f"or Evergreen\")", 2)
        if dry_run:     # nothing written to the database: a SQLite one is checked in a throwaway copy
            with pulls.dry_run_store(db) as (store, scratch):
                pulled = pulls.pull(store, loaded.policy, sources, source, env=os.environ, now=now_utc(),
                                    dry_run=True, confirm=confirm, scratch=scratch)
        else:
            with session.store(db) as store:
                pulled = pulls.pull(store, loaded.policy, sources, source, env=os.environ, now=now_utc(),
                                    confirm=confirm)
        for item in pulled:
            typer.echo(json.dumps(item.as_dict(), ensure_ascii=False) if as_json else item.line())
