"""`rappel init [DIR] [--force]`: a starter rules folder from the defaults shipped in the package."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import app, guarded


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Folder to write the rules into")] = Path("rules"),
         force: Annotated[bool, typer.Option("--force", help="Overwrite starter files that already exist")] = False):
    """Write a starter rules folder: reminders.yaml, accounts.yaml and templates/ (fr, en, es).

    It passes `rappel lint` as it is; edit it for your libraries. Existing files are not
    overwritten (exit 2, each named) unless --force."""
    from service.starter import init_rules

    with guarded():
        written = init_rules(directory, force=force)
        typer.echo(f"{directory}: {len(written)} files written (reminders.yaml, accounts.yaml, templates/ fr, en, es)")
        hint = "" if directory == Path("rules") else f" --rules {directory}"
        typer.echo(f"next: edit {directory}/reminders.yaml (libraries, sender), then `rappel lint{hint}`")
