"""Decisions about the library system's exports, before anything is written: what a full export
(a snapshot) closes, what it is called, and whether it is trusted without being confirmed.

A snapshot is the complete list of the open loans (or active requests) of the libraries it covers:
one that is open here and absent from it was returned (or ended) in the library system, and is
closed, dated the export's day, with the reason on the row. Patrons are never deleted by one.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import NamedTuple

from engine.policy import Policy

__all__ = ["CLOSED_REQUEST", "SnapshotCounts", "absent_reason", "closes", "describe_share", "snapshot_refusal"]

CLOSED_REQUEST = "closed"     # the status of a request absent from a full export of requests


def closes(kind: str) -> bool:
    """Whether a snapshot of this kind closes what it does not list (patrons are never deleted)."""
    return kind in ("loans", "requests")


def absent_reason(facts_date: dt.date) -> str:
    """The reason recorded on a loan closed by a snapshot (and given when its notices are cancelled)."""
    return f"absent from the export of {facts_date.isoformat()}"


class SnapshotCounts(NamedTuple):
    rows: int                  # rows in the export
    open_before: int           # open loans (active requests) of its libraries before it
    closing: int               # of those, absent from it: closed by it
    libraries: tuple[str, ...]


def describe_share(share: float) -> str:
    """0.2 → '20 %', 12/23 → '52.2 %'."""
    return f"{share * 100:.1f}".removesuffix(".0") + " %"


def snapshot_refusal(policy: Policy, kind: str, counts: SnapshotCounts, confirm: bool) -> str | None:
    """Why a snapshot must change nothing, or None: it is empty, or it would close more than
    ``imports.max_closed_share`` of the open records of its libraries (a truncated export, a failed
    query), and it is not confirmed."""
    if confirm:
        return None
    what = "open loans" if kind == "loans" else "active requests" if kind == "requests" else kind
    if counts.rows == 0:
        return (f"the export is empty: as a snapshot it would say that every one of the {what} of its "
                f"libraries has ended. Nothing was changed; check the export, or import it with --confirm")
    limit = policy.imports.max_closed_share
    if not closes(kind) or counts.open_before == 0 or counts.closing / counts.open_before <= limit:
        return None
    share = counts.closing / counts.open_before
    return (f"this snapshot would close {counts.closing} of the {counts.open_before} {what} of "
            f"{_libraries(counts.libraries)} ({describe_share(share)}), more than imports.max_closed_share "
            f"({describe_share(limit)}): a truncated export? Nothing was changed; check the export, then "
            f"import it with --confirm")


def _libraries(codes: Collection[str]) -> str:
    return ", ".join(sorted(codes)) if codes else "no library"
