"""`rappel letters`: the letters handed over on a day, per library, as one PDF to print (service/letters.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import DbOpt, JsonOpt, OnOpt, RulesOpt, app, guarded, parse_date


@app.command("letters")
def letters(on: OnOpt = None,
            library: Annotated[Optional[str], typer.Option("--library", help="One library's letters (its code in "
                                                           "the policy's libraries:)")] = None,
            out: Annotated[Optional[Path], typer.Option("--out", help="Write the letters, merged, to this PDF "
                                                        "file")] = None,
            as_json: JsonOpt = False, rules: RulesOpt = Path("rules"), db: DbOpt = None):
    """The letters handed over on a day (default today), as one PDF to print (--out) or a list.

    The PDF is the very letters kept in the database, one after another, by library then notice."""
    from adapters.channels.outbox import write_atomic
    from engine.yamlsource import InputError, Problem
    from service import letters as service
    from service import session

    with guarded():
        policy = session.load_rules(rules).policy
        day = parse_date(on, policy)
        if library is not None and library not in policy.libraries:
            raise InputError([Problem("--library", None, "", f"{library!r} is not one of the policy's libraries "
                                                             f"({', '.join(policy.libraries)})")])
        with session.store(db, writes=False) as store:
            found = service.letters_to_print(store, on=day, library=library, tz=policy.tz, pages=True)
            merged = service.merged_letters_pdf(store, [r.key for r in found]) if out is not None and found else None
        if merged is not None:
            write_atomic(out, merged)
        if as_json:
            for ref in found:
                typer.echo(json.dumps(ref.as_dict(), ensure_ascii=False))
            return
        where = f" of {library}" if library else ""
        typer.echo(f"{len(found)} letter(s){where} handed over on {day}, {sum(r.pages or 0 for r in found)} page(s)")
        for ref in found:
            typer.echo(f"  {ref.library or '-':<8} {ref.stage:<16} {ref.status:<8} {ref.pages or 0:>2} p.  "
                       f"{ref.destination}  {ref.key}")
        if merged is not None:
            typer.echo(f"written: {out} ({len(merged)} bytes)")
        elif out is not None:
            typer.echo(f"nothing written to {out}: no letter that day", err=True)
