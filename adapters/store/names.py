"""The words of patrons' names, folded for the desk's search (table ``patron_name_words``).

A word is folded the same way when it is written and when it is searched: Unicode compatibility
decomposition, accents dropped, case folded (``"Dupré"``, ``"DUPRE"`` → ``"dupre"``; ``"Straße"`` →
``"strasse"``). A search word then matches every name word it begins, by a range of the primary key.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sqlalchemy import delete, select

from adapters.store.schema import patron_name_words, patrons

__all__ = ["backfill", "fold", "name_words", "query_words", "rewrite_patrons", "rewrite_words"]

_SPLIT = re.compile(r"[\s\-'’.,;/()]+")
_WIDTH = 64   # the column's width


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def name_words(first_name: str, last_name: str) -> set[str]:
    """The folded words of a name; a compound name also gives its parts joined (``"Le Goff"`` →
    ``le``, ``goff``, ``legoff``) so that a clerk may type it either way."""
    words: set[str] = set()
    for part in (first_name or "", last_name or ""):
        pieces = [w for w in _SPLIT.split(fold(part)) if w]
        words.update(pieces)
        if len(pieces) > 1:
            words.add("".join(pieces))
    return {w[:_WIDTH] for w in words}


def query_words(text: str) -> list[str]:
    """The folded words a clerk typed, longest first (the rarest, as a rule)."""
    return sorted({w[:_WIDTH] for w in _SPLIT.split(fold(text)) if w}, key=len, reverse=True)


def rewrite_words(conn, rows: Iterable[tuple[str, str, str]]) -> None:
    """Replace the words of each (patron_id, first_name, last_name)."""
    rows = list(rows)
    if not rows:
        return
    ids = [pid for pid, _, _ in rows]
    if conn.dialect.name == "postgresql":     # one statement, the ids as one array (an import: 200,000)
        conn.exec_driver_sql(f"DELETE FROM {patron_name_words.name} WHERE patron_id = ANY(%s)", (ids,))
    else:
        for start in range(0, len(ids), 500):
            conn.execute(delete(patron_name_words).where(patron_name_words.c.patron_id.in_(ids[start:start + 500])))
    _insert(conn, [(w, pid) for pid, first, last in rows for w in name_words(first, last)])


def _insert(conn, values: list[tuple[str, str]]) -> None:
    """(word, patron_id) rows, straight to the driver: COPY on PostgreSQL, executemany else (an import
    of 200,000 patrons writes some 600,000 words)."""
    if not values:
        return
    table = patron_name_words.name
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} (word, patron_id) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    for start in range(0, len(values), 50_000):
        conn.exec_driver_sql(f"INSERT INTO {table} (word, patron_id) VALUES ({mark}, {mark})",
                             values[start:start + 50_000])


def rewrite_patrons(conn, rows: Iterable[dict]) -> None:
    """Replace the words of each patron row written (a dict of the patrons table's columns)."""
    rewrite_words(conn, [(r["patron_id"], r.get("first_name", ""), r.get("last_name", "")) for r in rows])


def backfill(conn, batch: int = 5000) -> None:
    """Words for every patron of the table (the migration that adds the table)."""
    conn.execute(delete(patron_name_words))
    result = conn.execute(select(patrons.c.patron_id, patrons.c.first_name, patrons.c.last_name))
    while chunk := result.fetchmany(batch):
        _insert(conn, [(w, r[0]) for r in chunk for w in name_words(r[1], r[2])])
