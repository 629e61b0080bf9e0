"""Imports of the library system's exports: patrons, loans and requests, all rows or none."""
from __future__ import annotations

from pathlib import Path

from adapters.sources.csvfiles import ImportReport, import_csv
from adapters.store.database import Store
from engine.policy import Policy
from service.session import Refused

__all__ = ["KINDS", "ImportReport", "import_file"]

KINDS = ("patrons", "loans", "requests")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise Refused(f"unknown kind {kind!r}: {', '.join(KINDS[:-1])} or {KINDS[-1]}", 2)


def import_file(store: Store, policy: Policy, kind: str, path: Path) -> ImportReport:
    """Validate and upsert a whole CSV file; InputError (nothing imported) when any row is bad."""
    check_kind(kind)
    return import_csv(store, policy, kind, path)
