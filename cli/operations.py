"""Operations: the daemon, its status for people and monitoring, the installation guard."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import DbOpt, RulesOpt, StateOpt, app, guarded


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
    from adapters import isolation
    from service import session
    from service.daemon import Daemon, FileClock, Settings

    clock = FileClock(clock_file) if clock_file else SystemClock()
    channel_for = session.channel_factory(outbox, rules, clock=clock.now)
    _logging()
    with guarded():
        settings = Settings(rules_dir=rules, db_url=db, clock=clock,
                            channel_for=channel_for, state_dir=state_dir, outbox=outbox,
                            lease_seconds=lease_seconds, poll_seconds=poll_seconds, once=once,
                            # durable-rules keeps memory of every event: months of them, in a child process
                            evaluate=isolation.evaluate_in_child if isolate else None)
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
    from service import session
    from service import status as runs

    with guarded():
        with session.store(db, writes=False) as store:
            report = runs.status_report(store, rules, SystemClock().now(), state_dir=state_dir,
                                        max_failures=max_failures)
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
    from service import session

    with guarded():
        with session.store(db) as store:
            done = session.confirm_installation(store, state_dir, join=join)
        before, value = done.before, done.value
        if value is None:
            typer.echo(f"nothing to do: this machine is already installation {before.database_id}")
            return
        if join:
            typer.echo(f"this machine joined installation {value} ({done.id_file})")
        else:
            was = f" (was {before.database_id})" if before.database_id else ""
            typer.echo(f"the database now belongs to this machine's installation {value}{was}; "
                       f"machines holding the old id will refuse to deliver from it")
