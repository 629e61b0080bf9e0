"""The database's refusals the command line and the web name, in a module that loads no database
code: `rappel lint` and `rappel --help` catch them without importing SQLAlchemy."""
from __future__ import annotations

__all__ = ["AmbiguousPatron", "DatabaseNotReady", "UnknownPatron"]


class DatabaseNotReady(Exception):
    """A command that changes nothing (dry run, explain, show, status) found no database to read, or
    one whose schema is not this version's: it neither creates nor upgrades it."""


class UnknownPatron(LookupError):
    """No patron has this barcode or patron_id (exit 2 at the command line)."""


class AmbiguousPatron(UnknownPatron):
    """Not one patron: the value is one patron's barcode and another's patron_id."""
