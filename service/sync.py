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

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from adapters.sources.csvfiles import ImportReport, validated_rows
from adapters.store.database import Store
from adapters.store.schema import PATRON_FIELDS, patron_audit, patron_local_edits, patrons
from engine.accounts import AccountsPolicy
from engine.policy import Policy
from engine.yamlsource import InputError, Problem

__all__ = ["SyncReport", "sync"]

CHUNK = 2000          # rows of a sync file handled together
IN_LIMIT = 2000       # values in one SQL IN list (SQLite allows 32,766 since 3.32)


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
    known = store.known_ids(patrons)   # only these are looked up: the others are created

    def external_rows():
        for row in rows:
            seen.add(row["patron_id"])
            if row["account_type"] == "external":
                yield row
            else:   # checked.rows is this row's number: rows are read one at a time
                checked.problems.append(Problem(str(path), None, f"row {checked.rows}",
                                                f"account_type {row['account_type']!r}: a synchronisation "
                                                f"brings external accounts only"))

    conn = store.engine.connect()
    trans = conn.begin()
    try:
        for chunk in _chunked(external_rows(), CHUNK):
            if checked.problems:
                continue    # keep checking the rest of the file, write nothing
            _sync_chunk(conn, accounts, chunk, known, report, at, actor)
        report.rows = checked.rows
        if checked.problems:
            raise InputError(_shorten(checked.problems))
        external = conn.scalars(select(patrons.c.patron_id).where(patrons.c.account_type == "external"))
        report.missing = sorted(pid for pid in external if pid not in seen)
        if dry_run:
            trans.rollback()
        else:
            trans.commit()
    except BaseException:
        if trans.is_active:
            trans.rollback()
        raise
    finally:
        rows.close()
        conn.close()
    return report


def _sync_chunk(conn: Connection, accounts: AccountsPolicy, chunk: list[dict], known: set[str],
                report: SyncReport, at: dt.datetime, actor: str) -> None:
    ids = [row["patron_id"] for row in chunk if row["patron_id"] in known]
    governed = [f for f in PATRON_FIELDS if accounts.ownership("external", f) in ("owned", "protected")]
    columns = [patrons.c.patron_id, patrons.c.account_type, *(patrons.c[f] for f in governed)]
    existing: dict[str, tuple] = {}           # patron_id → (patron_id, account_type, *governed values)
    edited: set[tuple[str, str]] = set()
    for part in _slices(ids, IN_LIMIT):
        existing.update((r[0], tuple(r)) for r in conn.execute(select(*columns).where(patrons.c.patron_id.in_(part))))
        edited.update((pid, f) for pid, f in conn.execute(
            select(patron_local_edits.c.patron_id, patron_local_edits.c.field)
            .where(patron_local_edits.c.patron_id.in_(part))))
    inserts, updates, audits = [], [], []
    for row in chunk:
        pid = row["patron_id"]
        current = existing.get(pid)
        if current is None:
            inserts.append(row)
            report.created.append(pid)
            continue
        if current[1] != "external":
            report.internal.append(pid)
            continue
        values = dict(zip(governed, current[2:]))
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
            report.changes.append((pid, f, old, value))
            audits.append({"patron_id": pid, "changed_at": at, "actor": actor, "role": "", "source": "sync",
                           "field": f, "old_value": old, "new_value": value})
        if changed:
            report.updated += 1
            updates.append({"b_patron_id": pid, **{f"b_{f}": v for f, v in values.items()}})
        else:
            report.unchanged += 1
    if inserts:
        conn.execute(insert(patrons), inserts)
    if updates:
        stmt = (update(patrons).where(patrons.c.patron_id == bindparam("b_patron_id"))
                .values({f: bindparam(f"b_{f}") for f in governed}))
        conn.execute(stmt, updates)
    if audits:
        conn.execute(insert(patron_audit), audits)


def _chunked(rows, size: int) -> Iterator[list[dict]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _slices(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _shorten(problems: list[Problem], limit: int = 200) -> list[Problem]:
    if len(problems) <= limit:
        return problems
    return problems[:limit] + [Problem(problems[-1].source, None, "",
                                       f"… and {len(problems) - limit} more problem(s); nothing was synchronised")]
