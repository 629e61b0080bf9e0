"""Patrons found by what the desk types: a barcode or patron_id, else words of their name."""
from __future__ import annotations

from sqlalchemy import and_, func, or_, select

from adapters.store.database import Store
from adapters.store.schema import patrons
from engine.facts import Patron

__all__ = ["search_patrons"]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def search_patrons(store: Store, text: str, limit: int = 20) -> tuple[list[Patron], bool]:
    """The patron whose barcode or patron_id is ``text``; else those whose first or last name holds
    every word of it (any case), by last then first name. (at most ``limit``, whether there are more)."""
    text = text.strip()
    if not text:
        return [], False
    with store.engine.connect() as conn:
        exact = conn.execute(select(patrons).where(or_(patrons.c.barcode == text, patrons.c.patron_id == text))
                             .order_by(patrons.c.patron_id)).mappings().all()
        if exact:
            return [Patron(**r) for r in exact][:limit], len(exact) > limit
        words = [and_(or_(func.lower(patrons.c.first_name).like(_like(w), escape="\\"),
                          func.lower(patrons.c.last_name).like(_like(w), escape="\\"))) for w in text.split()[:5]]
        rows = conn.execute(select(patrons).where(*words)
                            .order_by(patrons.c.last_name, patrons.c.first_name, patrons.c.patron_id)
                            .limit(limit + 1)).mappings().all()
    return [Patron(**r) for r in rows[:limit]], len(rows) > limit
