"""A throwaway copy of a SQLite database, for dry runs that must see their own earlier steps (a
dry-run pull checks the loans against the patrons the same pull brings in)."""
from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url

from adapters.store.database import Store, database_url

__all__ = ["scratch_copy"]


@contextmanager
def scratch_copy(url: str | None) -> Iterator[Store | None]:
    """A copy of the SQLite database at ``url`` (a fresh, empty one when there is no file yet), beside
    it, deleted at the end; None for any other database (it is not copied)."""
    url = database_url(url)
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        yield None
        return
    source = Path(path)
    with tempfile.TemporaryDirectory(prefix=".rappel-dry-run-", dir=source.parent if source.parent.exists()
                                     else None) as folder:
        target = Path(folder) / "copy.db"
        if source.exists():
            original, copy = sqlite3.connect(f"file:{source}?mode=ro", uri=True), sqlite3.connect(target)
            try:
                original.backup(copy)
            finally:
                original.close()
                copy.close()
        store = Store(f"sqlite:///{target}")
        try:
            yield store
        finally:
            store.close()
