"""Imports of the library system's exports: patrons, loans and requests, all rows or none.

``import_records`` is the one way facts come in: CSV files (``import_file``: decoded, their
delimiter found, each row a record) and SQL pulls hand it (row number, {column: text}) records with
the CSV files' column names. A snapshot (``snapshot=True``: the complete list of the open loans of
its libraries) also returns the open loans it no longer lists, dated ``facts_date``, with the
reason; requests it no longer lists become closed; patrons are never deleted. Every successful
import is recorded in fact_imports (what the freshness guard reads).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from pathlib import Path

from adapters.sources import csvfiles
from adapters.sources.records import KINDS, ImportReport, SnapshotRefused, load
from adapters.store.database import Store
from engine.policy import Policy
from service.session import Refused

__all__ = ["KINDS", "ImportReport", "check_kind", "check_reading", "import_file", "import_records"]


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise Refused(f"unknown kind {kind!r}: {', '.join(KINDS[:-1])} or {KINDS[-1]}", 2)


def check_reading(encoding: str | None, delimiter: str | None) -> None:
    """``--encoding`` and ``--delimiter`` as given: InputError (exit 2) for an unknown codec or a
    delimiter that cannot be one."""
    csvfiles.Reading.checked(encoding, delimiter)


def import_records(store: Store, policy: Policy, kind: str, records: Iterable[tuple[int, dict[str, str]]], *,
                   source: str, mode: str = "import", snapshot: bool = False, confirm: bool = False,
                   facts_date: dt.date | None = None, dry_run: bool = False,
                   libraries: Collection[str] | None = None, now: dt.datetime | None = None) -> ImportReport:
    """Check and import ``records`` of ``kind``, all or none.

    records: (row number, {column: value as text}), the CSV column names (schema LOAN_FIELDS,
    PATRON_FIELDS, REQUEST_FIELDS; dates YYYY-MM-DD or ISO 8601 timestamps, "" for empty).
    InputError (exit 2, nothing written) lists every bad record with its number, from ``source``.
    ``snapshot``: the records are the complete list of the open loans (active requests) of
    ``libraries`` (default: the libraries they name): the open ones absent are closed on
    ``facts_date`` (default: today in the policy's time zone, from ``now`` or the clock). A snapshot
    that is empty, or would close more than imports.max_closed_share of those open loans, raises
    Refused (exit 1, nothing changed) unless ``confirm``; a dry run says so in ``report.refused``.
    ``dry_run``: everything checked and counted, nothing written. ``mode``: import | snapshot | pull,
    as recorded in fact_imports (a snapshot is recorded as ``snapshot`` unless it is a pull).
    """
    check_kind(kind)
    now = now or dt.datetime.now(dt.timezone.utc)
    facts_date = facts_date or now.astimezone(policy.tz).date()
    if snapshot and mode == "import":
        mode = "snapshot"
    try:
        return load(store, policy, kind, records, source=source, facts_date=facts_date, finished_at=now, mode=mode,
                    snapshot=snapshot, confirm=confirm, dry_run=dry_run, libraries=libraries)
    except SnapshotRefused as exc:
        raise Refused(f"{source}: {exc}", 1) from None


def import_file(store: Store, policy: Policy, kind: str, path: Path, *, snapshot: bool = False,
                confirm: bool = False, encoding: str | None = None, delimiter: str | None = None,
                facts_date: dt.date | None = None, dry_run: bool = False,
                libraries: Collection[str] | None = None, now: dt.datetime | None = None) -> ImportReport:
    """Import a CSV export (see ``import_records``): UTF-8 with or without BOM unless ``encoding``
    says otherwise; the delimiter found among , ; and tab from the header unless given. A byte that
    cannot be decoded is a bad row at its own line."""
    check_kind(kind)
    now = now or dt.datetime.now(dt.timezone.utc)
    facts_date = facts_date or now.astimezone(policy.tz).date()
    with csvfiles.open_records(path, kind, encoding=encoding, delimiter=delimiter) as rows:
        try:
            report = load(store, policy, kind, rows, source=str(path), facts_date=facts_date, finished_at=now,
                          mode="snapshot" if snapshot else "import", snapshot=snapshot, confirm=confirm,
                          dry_run=dry_run, libraries=libraries, line_of=rows.line_of)
        except SnapshotRefused as exc:
            raise Refused(f"{path}: {exc}", 1) from None
    report.encoding, report.delimiter = rows.encoding, rows.delimiter
    return report
