"""Synchronising external accounts from their source system's export (the patron CSV columns).

New patrons are created as external accounts; for existing external accounts the fields the source
owns are overwritten, protected fields too unless edited locally (the local value stays), and
library-local fields are kept; internal accounts are never touched; external accounts missing from
the file are reported, not deleted. Which field is owned, protected or local comes from the account
policy (engine/accounts.py). All or nothing: any bad row and nothing is written.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from adapters.sources.csvfiles import ImportReport, validated_rows
from adapters.store import patrons as records
from adapters.store.database import Store
from adapters.store.retention import forgotten_ids
from engine.accounts import AccountsPolicy
from engine.facts import PATRON_FIELDS
from engine.policy import Policy
from engine.yamlsource import InputError, Problem

__all__ = ["SyncReport", "sync"]

CHUNK = 2000          # rows of a sync file handled together


@dataclass
class SyncReport:
    rows: int = 0
    created: list[str] = field(default_factory=list)
    updated: int = 0
    unchanged: int = 0
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)   # (patron, field, old, new)
    kept: list[tuple[str, str, str, str]] = field(default_factory=list)      # (patron, field, local, source)
    internal: list[str] = field(default_factory=list)                        # in the file, internal here
    missing: list[str] = field(default_factory=list)                         # external here, not in the file
    erased: list[str] = field(default_factory=list)                          # in the file, erased here: skipped
    dry_run: bool = False


def sync(store: Store, policy: Policy, accounts: AccountsPolicy, path: Path, at: dt.datetime, *,
         actor: str = "sync", dry_run: bool = False) -> SyncReport:
    """Bring external accounts in line with the source system's export (the patron CSV columns).

    New patrons are created as external accounts; for existing external accounts the fields the
    source owns are overwritten, protected fields too unless edited locally, library-local fields
    are kept; internal accounts are never touched; external accounts missing from the file are
    reported, not deleted. Any bad row: InputError and nothing written. ``dry_run``: nothing written.
    """
    report = SyncReport(dry_run=dry_run)
    checked = ImportReport("patrons")
    rows = validated_rows(store, policy, "patrons", path, checked)
    seen: set[str] = set()
    known = records.known_patron_ids(store)   # only these are looked up: the others are created

    def external_rows():
        for row in rows:
            seen.add(row["patron_id"])
            if row["account_type"] == "external":
                yield row
            else:   # checked.rows is this row's number: rows are read one at a time
                checked.problems.append(Problem(str(path), None, f"row {checked.rows}",
                                                f"account_type {row['account_type']!r}: a synchronisation "
                                                f"brings external accounts only"))

    try:
        with records.writing(store, commit=not dry_run) as db:    # one transaction; a dry run rolls it back
            for chunk in _chunked(external_rows(), CHUNK):
                if checked.problems:
                    continue    # keep checking the rest of the file, write nothing
                _sync_chunk(db, accounts, chunk, known, report, at, actor)
            report.rows = checked.rows
            if checked.problems:
                raise InputError(_shorten(checked.problems))
            erased = forgotten_ids(store.engine)
            report.missing = sorted(pid for pid in db.external_ids() if pid not in seen and pid not in erased)
            report.erased = checked.erased
    finally:
        rows.close()
    return report


def _sync_chunk(db: records.PatronWriter, accounts: AccountsPolicy, chunk: list[dict], known: set[str],
                report: SyncReport, at: dt.datetime, actor: str) -> None:
    ids = [row["patron_id"] for row in chunk if row["patron_id"] in known]
    governed = [f for f in PATRON_FIELDS if accounts.ownership("external", f) in ("owned", "protected")]
    existing = db.governed(ids, governed)     # patron_id → (account_type, *governed values)
    edited = db.edited_fields(ids)            # (patron_id, field) edited locally
    inserts, updates, audited = [], [], len(report.changes)
    for row in chunk:
        pid = row["patron_id"]
        current = existing.get(pid)
        if current is None:
            inserts.append(row)
            report.created.append(pid)
            continue
        if current[0] != "external":
            report.internal.append(pid)
            continue
        values = dict(zip(governed, current[1:]))
        changed = False
        for f, old in values.items():
            value = row[f]
            if old == value:
                continue
            if (pid, f) in edited:     # a protected field edited locally: the local value stays
                report.kept.append((pid, f, old, value))
                continue
            values[f] = value
            changed = True
            report.changes.append((pid, f, old, value))     # each change is audited
        if changed:
            report.updated += 1
            updates.append((pid, values))
        else:
            report.unchanged += 1
    db.create(inserts)
    db.change_many(governed, updates)
    db.audit(report.changes[audited:], at=at, actor=actor, role="", source="sync")


def _chunked(rows, size: int) -> Iterator[list[dict]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _shorten(problems: list[Problem], limit: int = 200) -> list[Problem]:
    if len(problems) <= limit:
        return problems
    return problems[:limit] + [Problem(problems[-1].source, None, "",
                                       f"… and {len(problems) - limit} more problem(s); nothing was synchronised")]
