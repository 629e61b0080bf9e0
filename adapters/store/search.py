"""Patrons found by what the desk types: a barcode or patron_id, else the beginnings of words of their
name, whatever the case and the accents ("dupr" finds Dupré; "jean dup" finds Jean Dupont).

One search for the staff interface, the JSON API and the command line. Name words come from the
table ``patron_name_words`` (adapters/store/names.py), read by ranges of its primary key: the cost
follows the number of matches, not the size of the patrons table."""
from __future__ import annotations

from sqlalchemy import and_, or_, select

from adapters.store.database import Store
from adapters.store.names import query_words
from adapters.store.schema import patron_name_words, patrons
from engine.facts import Patron

__all__ = ["search_patrons"]

_MAX_WORDS = 5
_CEILING = "\U0010ffff"   # sorts after every character a folded word may hold


def _starting(word: str):
    """The patron_ids of patrons with a name word beginning with ``word`` (a key range)."""
    w = patron_name_words.c.word
    return (select(patron_name_words.c.patron_id)
            .where(and_(w >= word, w < word + _CEILING)))


def search_patrons(store: Store, text: str, limit: int = 20) -> tuple[list[Patron], bool]:
    """The patron whose barcode or patron_id is ``text``; else those with, for every word typed, a
    name word beginning with it, by last then first name. (at most ``limit``, whether there are more)."""
    text = text.strip()
    if not text:
        return [], False
    with store.engine.connect() as conn:
        exact = conn.execute(select(patrons).where(or_(patrons.c.barcode == text, patrons.c.patron_id == text))
                             .order_by(patrons.c.patron_id)).mappings().all()
        if exact:
            return [Patron(**r) for r in exact][:limit], len(exact) > limit
        typed = query_words(text)[:_MAX_WORDS]
        if not typed:
            return [], False
        query = select(patrons).where(*(patrons.c.patron_id.in_(_starting(w)) for w in typed))
        rows = conn.execute(query.order_by(patrons.c.last_name, patrons.c.first_name, patrons.c.patron_id)
                            .limit(limit + 1)).mappings().all()
    return [Patron(**r) for r in rows[:limit]], len(rows) > limit
