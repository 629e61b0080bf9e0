"""What the pull tests share: rules with a sources.yaml, the command line, a pull on a given day,
a dry run's notices, and every fact a store holds.

    from tests.pull_cases import rules_for, cli, pulled_on, dry_run, facts
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from adapters.store.database import Store
from adapters.store.schema import LOAN_FIELDS, loans, patrons, requests
from cli import app
from service import session
from service.pull import pull
from service.sources import load_sources

try:
    from tests.daemon_cases import copy_rules
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import copy_rules


def rules_for(tmp_path: Path, name: str, preset: str, url: str, extra: str = "") -> Path:
    """The shipped rules, with a sources.yaml naming one source (``extra``: more of its settings)."""
    rules = copy_rules(tmp_path)
    (rules / "sources.yaml").write_text(f"sources:\n  {name}:\n    preset: {preset}\n    url: \"{url}\"\n{extra}",
                                        encoding="utf-8")
    return rules


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def pulled_on(today: str, rules: Path, db: str, env=None, **options) -> list[str]:
    """A pull as `rappel pull` does it, at 01:00 UTC on ``today`` (the command line reads the clock)."""
    loaded = session.load_rules(rules)
    with Store(db) as store:
        done = pull(store, loaded.policy, load_sources(rules, loaded.policy), None, env=env or os.environ,
                    now=dt.datetime.fromisoformat(f"{today}T01:00:00+00:00"), **options)
    return [p.line() for p in done]


def dry_run(rules: Path, db: str, day: str) -> list[dict]:
    """The notices `rappel run --on DAY --dry-run --json` shows, by stage, channel and patron."""
    result = cli("run", "--on", day, "--dry-run", "--json", "--rules", str(rules), "--db", db)
    assert result.exit_code == 0, result.output
    return sorted((json.loads(line) for line in result.stdout.splitlines()),
                  key=lambda n: (n["stage"], n["channel"], n["patron_id"]))


def facts(db: str) -> dict[str, list[tuple]]:
    """Every patron, loan (its CSV columns) and request stored."""
    with Store(db) as store, store.engine.connect() as conn:
        return {"patrons": sorted(tuple(r) for r in conn.execute(select(patrons))),
                "loans": sorted(tuple(r) for r in conn.execute(select(*(loans.c[n] for n in LOAN_FIELDS)))),
                "requests": sorted(tuple(r) for r in conn.execute(select(requests)))}


def import_csv_files(tmp_path: Path, rules: Path, db: str, on: str | None = None, **texts: str) -> None:
    """`rappel import KIND FILE` of each CSV text, in the order given; ``on``: the export's date (the
    day a request found ready is recorded ready: a pull's is the day it runs)."""
    for kind, text in texts.items():
        path = tmp_path / f"{kind}.csv"
        path.write_text(text, encoding="utf-8")
        result = cli("import", kind, str(path), "--rules", str(rules), "--db", db, *(["--on", on] if on else []))
        assert result.exit_code == 0, result.output
