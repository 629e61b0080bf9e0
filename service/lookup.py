"""Reads for the staff interface and the JSON API that the command line shows otherwise: patrons
by barcode or name, the notices of a date counted by stage, channel and status, and the notices
that need someone (failed, retrying, held by the flood guard)."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from adapters.store import notices as ledger
from adapters.store.database import Store
from adapters.store.runs import latest_run
from adapters.store.search import search_patrons
from engine.facts import Patron, Status
from service import notices as notice_views
from service.notices import NoticeView

__all__ = ["Attention", "attention", "day_counts", "search"]


def search(store: Store, text: str, limit: int = 20) -> tuple[list[Patron], bool]:
    """By barcode or patron_id, else by words of the name (adapters/store/search.py)."""
    return search_patrons(store, text, limit)


def day_counts(store: Store, on: dt.date) -> list[tuple[str, str, str, int]]:
    """(stage, channel, status, how many) of the notices of that date, in the policy's stage order
    as the keys sort them."""
    rows = ledger.find(store, ledger.Query(since=on, until=on))
    counted = Counter((r["stage"], r["channel"], r["status"]) for r in rows)
    return [(stage, channel, status, n) for (stage, channel, status), n in sorted(counted.items())]


@dataclass(frozen=True)
class Attention:
    failed: list[NoticeView]
    retrying: list[NoticeView]
    held: list[NoticeView]
    held_reason: str | None


def attention(store: Store, limit: int = 200) -> Attention:
    """Failed notices, those being retried, and — when the last delivery pass was held by the flood
    guard — the pending ones never attempted, which `rappel run --confirm` would send."""
    failed = notice_views.listing(store, status=Status.FAILED.value, limit=limit).notices
    pending = notice_views.listing(store, status=Status.PENDING.value, limit=None).notices
    retrying = [v for v in pending if v.row["attempts"] > 0][:limit]
    last = latest_run(store.engine, ("day", "deliver"), not_outcome="skipped")
    held_reason = None
    held: list[NoticeView] = []
    if last is not None and last["held"]:
        held = [v for v in pending if v.row["attempts"] == 0][:limit]
        held_reason = (f"the flood guard held {last['held']} message(s) of the run of {last['run_date']}: "
                       f"confirm to send them") if held else None
    return Attention(failed, retrying, held, held_reason)
