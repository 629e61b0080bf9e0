"""What every command shares: the typer app, the common options, dates, errors and exit codes.

Exit codes: 0 success, 2 bad input or policy (file and line, or CSV row, on stderr, one line a
problem), 1 anything else. ``--json`` prints one JSON object per line and nothing else. A reader
that stops reading (``rappel … | head -1``) ends the command quietly, exit 0.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import select
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Loan reminders for libraries: policy in YAML, decisions you can dry-run and explain.")

RulesOpt = Annotated[Path, typer.Option("--rules", help="Folder with reminders.yaml, accounts.yaml, templates/")]
DbOpt = Annotated[Optional[str], typer.Option("--db", help="Database URL (default: $RAPPEL_DB_URL, else sqlite:///rappel.db)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line, nothing else on stdout")]
OnOpt = Annotated[Optional[str], typer.Option("--on", help="Date (default: today, policy time zone)")]
StateOpt = Annotated[Optional[Path], typer.Option(
    "--state-dir", help="Folder of this machine's installation id (default: $RAPPEL_STATE_DIR, else "
                        "$STATE_DIRECTORY, else ~/.local/state/rappel); $RAPPEL_INSTALLATION_ID overrides it")]


class Failure(Exception):
    """An error already explained to the user; exit with this code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@contextmanager
def guarded():
    """Exit 2 for bad input or policy, 1 for anything else; one line a problem on stderr."""
    from adapters.store.errors import DatabaseNotReady, UnknownPatron
    from engine.rules import EngineFault
    from engine.yamlsource import InputError
    from service.session import Refused

    try:
        yield
    except InputError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    except (Failure, Refused) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from None
    except UnknownPatron as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except EngineFault as exc:
        typer.echo(f"error: rules engine fault, nothing decided: {exc}", err=True)
        raise typer.Exit(1) from None
    except DatabaseNotReady as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except typer.Exit:
        raise
    except BrokenPipeError:
        if not stdout_closed():
            typer.echo("error: BrokenPipeError: a pipe closed while rappel was writing to it", err=True)
            raise typer.Exit(1) from None
        quiet_stdout()              # `rappel … | head -1`: the reader has what it wanted
        raise typer.Exit(0) from None
    except Exception as exc:  # noqa: BLE001 - last resort: one line, exit 1
        typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(1) from None


def stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader went away (poll says POLLERR on its writing end), rather
    than a broken pipe met elsewhere (that one is an error like any other)."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):   # not a file: not what broke
        return False
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def quiet_stdout() -> None:
    """stdout's reader went away: point stdout at the null device, so that nothing more is tried
    there, not even the flush at exit (the recipe of Python's signal module documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):   # not a file (a test runner's buffer)
        pass


def one_line(exc: BaseException) -> str:
    """An unexpected error on one line. SQLAlchemy's messages span lines (the statement, its
    parameters, "Background on this error at: …"): the first line carries the cause."""
    from adapters.store.database import StatementError

    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    text = " ".join(str(cause).split("\n", 1)[0].split()) or "no message"
    return f"{type(cause).__name__}: {text}"


def parse_date(text: str | None, policy, option: str = "--on") -> dt.date:
    """``--on``: a date, or today in the institution's time zone (the command line reads the clock)."""
    if text is None:
        return dt.datetime.now(policy.tz).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        from engine.yamlsource import InputError, Problem
        raise InputError([Problem(option, None, "", f"{text!r} is not a date (YYYY-MM-DD)")]) from None


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], indent: str = "  ") -> None:
    """Columns as wide as their longest cell: nothing is cut (a whole address, a whole destination)."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    typer.echo(indent + "  ".join(cell.ljust(w) for cell, w in zip(header, widths)).rstrip())
    typer.echo(indent + "  ".join("-" * w for w in widths))
    for row in rows:
        typer.echo(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def print_lines(lines, as_json: bool, full: bool = False) -> None:
    """--json: one object per line (service.dayview.Line.as_dict), written a thousand lines at a time."""
    encode = json.JSONEncoder(ensure_ascii=False).encode
    chunk: list[str] = []
    for line in lines:
        chunk.append(encode(line.as_dict(full)))
        if len(chunk) == 1000:
            typer.echo("\n".join(chunk))
            chunk.clear()
    if chunk:
        typer.echo("\n".join(chunk))


def print_day(title: str, messages, others, summary: str, *, as_json: bool, full: bool = False,
              delivered: bool = False) -> None:
    """A day's table: its messages (with their delivery's status after a real run), then the notices
    decided but not sent and why, then a summary by stage and channel. ``--json``: one object per
    message; with ``full`` (--all), each with its status and reason, and the others after them."""
    if as_json:
        print_lines(messages, True, full)
        if full:
            print_lines(others, True, True)
        return
    typer.echo(title)
    if messages:
        header = ("stage", "channel", "patron", "library", "loans", "recipient", "destination")
        rows = [(m.stage, m.channel, m.patron_id, m.library or "-", ",".join(m.loan_ids), m.recipient or "-",
                 m.destination or "-") for m in messages]
        if delivered:
            header, rows = header + ("status",), [row + (m.status,) for row, m in zip(rows, messages)]
        print_table(header, rows)
    else:
        typer.echo("  (no message)")
    if others:
        typer.echo(f"not sent: {len(others)} notice(s) decided and not sent")
        print_table(("decided", "stage", "channel", "patron", "library", "loans", "status", "reason"),
                    [(o.date.isoformat(), o.stage, o.channel, o.patron_id, o.library or "-",
                      ",".join(o.loan_ids) or "-", o.status, o.reason or "-") for o in others])
    typer.echo(summary)


def print_diff(title: str, lines, as_json: bool) -> None:
    """`rappel run --diff`: + what goes out on the day shown only, - on the day compared with only."""
    if as_json:
        print_lines(lines, True)
        return
    typer.echo(title)
    if not lines:
        typer.echo("  (no difference)")
        return
    print_table(("diff", "date", "stage", "channel", "patron", "library", "loans", "recipient", "destination",
                 "status", "reason"),
                [(x.diff, x.date.isoformat(), x.stage, x.channel, x.patron_id, x.library or "-", ",".join(x.loan_ids),
                  x.recipient or "-", x.destination or "-", x.status, x.reason or "-") for x in lines])
