"""rappel's command line: typer commands, their options and their output, over service/.

The commands live by theme: cli/day.py (run, explain, import, lint, schema, demo), cli/patrons.py
(patron show/edit/requests-report, sync), cli/notices.py (notices, notices show/resend/cancel/retry),
cli/letters.py (letters), cli/pull.py (pull), cli/retention.py (purge, patron forget),
cli/operations.py (daemon, status, confirm-installation), cli/api_clients.py (api-client),
cli/serve.py (serve, staff). They read the clock and the environment, open what they need through
service.session and print; the use cases themselves are in service/.
"""
from __future__ import annotations

import sys

# each module registers its commands on the app, in the order `rappel --help` lists them
from cli import day  # noqa: F401, I001
from cli import patrons  # noqa: F401
from cli import notices  # noqa: F401
from cli import letters  # noqa: F401
from cli import pull  # noqa: F401
from cli import retention  # noqa: F401
from cli import operations  # noqa: F401
from cli import api_clients  # noqa: F401
from cli import starter  # noqa: F401
from cli import serve  # noqa: F401
from cli.common import app, print_lines, quiet_stdout

__all__ = ["app", "main", "print_lines"]


def main() -> None:
    """The `rappel` command. Output piped to a reader that stops early (`| head -1`) ends quietly:
    a broken pipe left in stdout's buffer at exit is not an error (guarded() handles the one met
    while printing)."""
    try:
        app()
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            quiet_stdout()


if __name__ == "__main__":
    main()
