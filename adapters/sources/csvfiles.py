"""CSV imports of patrons, loans and requests: all rows valid, or nothing imported.

Rows are validated and written in one transaction, in chunks (bounded memory for millions of
rows); the first bad row stops the writing but not the checking, so the error lists every bad
row with its number, and the transaction is rolled back.
"""
from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, REQUEST_FIELDS, loans, patrons, requests
from adapters.store.database import Store
from engine.contact import is_email_address
from engine.facts import ACCOUNT_TYPES, RECORD_TYPES
from engine.policy import Policy
from engine.yamlsource import InputError, Problem

KINDS = {"patrons": (patrons, PATRON_FIELDS), "loans": (loans, LOAN_FIELDS), "requests": (requests, REQUEST_FIELDS)}
REQUIRED = {
    "patrons": ("patron_id", "barcode", "account_type", "record_type"),
    "loans": ("loan_id", "patron_id", "library", "due_date"),
    "requests": ("request_id", "patron_id", "library", "pickup_library", "placed_on"),
}
DATE_FIELDS = {"due_date", "returned_on", "placed_on", "expires_on"}
CHOICES = {"account_type": ACCOUNT_TYPES, "record_type": RECORD_TYPES}
MAX_REPORTED = 200
CHUNK = 5000


@dataclass
class ImportReport:
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    problems: list[Problem] = field(default_factory=list)


def local_date(text: str, tz: ZoneInfo) -> dt.date:
    """An ISO 8601 date, or a timestamp converted to a local date (naive ones are local already)."""
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(tz)
    return stamp.date()


class _Validator:
    def __init__(self, kind: str, store: Store, policy: Policy):
        self.kind = kind
        self.tz = policy.tz
        self.libraries = set(policy.libraries)
        self.seen: set[str] = set()
        self.patrons = store.known_ids(patrons) if kind != "patrons" else set()
        self.barcodes = store.barcodes() if kind == "patrons" else {}
        self.id_field = KINDS[kind][1][0]

    def row(self, raw: dict) -> tuple[dict | None, list[str]]:
        errors = []
        row = {}
        for name in KINDS[self.kind][1]:
            value = (raw.get(name) or "").strip()
            if name in REQUIRED[self.kind] and not value:
                errors.append(f"{name} is empty")
                continue
            if name in DATE_FIELDS:
                if value:
                    try:
                        value = local_date(value, self.tz)
                    except ValueError:
                        errors.append(f"{name} {value!r} is not a date (YYYY-MM-DD or an ISO 8601 timestamp)")
                        continue
                else:
                    value = None
            elif name in CHOICES and value not in CHOICES[name]:
                errors.append(f"{name} {value!r} is not one of {', '.join(CHOICES[name])}")
            elif name == "email" and value and not is_email_address(value):
                errors.append(f"email {value!r} is not an email address")
            elif name in ("library", "pickup_library") and value not in self.libraries:
                errors.append(f"{name} {value!r} is not a library of the policy ({', '.join(sorted(self.libraries))})")
            elif name == "patron_id" and self.kind != "patrons" and value not in self.patrons:
                errors.append(f"unknown patron {value!r} (import patrons first)")
            elif any(ch in value for ch in "\r\n"):
                errors.append(f"{name} contains a line break")
            row[name] = value
        key = row.get(self.id_field)
        if key:
            if key in self.seen:
                errors.append(f"{self.id_field} {key!r} appears twice in the file")
            self.seen.add(key)
        if self.kind == "patrons" and row.get("barcode"):
            owner = self.barcodes.get(row["barcode"])
            if owner is not None and owner != key:
                errors.append(f"barcode {row['barcode']!r} already belongs to patron {owner!r}")
            self.barcodes[row["barcode"]] = key
        return (None if errors else row), errors


def validated_rows(store: Store, policy: Policy, kind: str, path: Path, report: ImportReport) -> Iterator[dict]:
    """The valid rows of a CSV file, in order; each bad row's problems go to ``report.problems``.

    The file and its header are checked at once (InputError); rows are read as they are consumed.
    """
    if kind not in KINDS:
        raise InputError([Problem(str(path), None, "", f"unknown kind {kind!r}: patrons, loans or requests")])
    fields = KINDS[kind][1]
    source = str(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError([Problem(source, None, "", f"cannot read: {exc.strerror}")]) from None
    reader = csv.DictReader(handle)
    try:
        header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        handle.close()
        raise InputError([Problem(source, 1, "header", f"unreadable: {exc}")]) from None
    missing = [f for f in fields if f not in header]
    if missing:
        handle.close()
        raise InputError([Problem(source, 1, "header", f"missing column(s): {', '.join(missing)}")])
    return _rows(handle, reader, _Validator(kind, store, policy), report, source)


def _rows(handle, reader, validator: _Validator, report: ImportReport, source: str) -> Iterator[dict]:
    line = 1
    with handle:
        try:
            for number, raw in enumerate(reader, start=1):
                line = reader.line_num
                report.rows = number
                if None in raw:
                    report.problems.append(Problem(source, line, f"row {number}", "more fields than columns"))
                    continue
                row, errors = validator.row(raw)
                report.problems.extend(Problem(source, line, f"row {number}", m) for m in errors)
                if row is not None:
                    yield row
        except (UnicodeDecodeError, csv.Error) as exc:
            report.problems.append(Problem(source, line + 1, "", f"unreadable: {exc}"))


def import_csv(store: Store, policy: Policy, kind: str, path: Path) -> ImportReport:
    """Validate and upsert a whole CSV file; raise InputError (nothing imported) if any row is bad."""
    report = ImportReport(kind)
    rows = validated_rows(store, policy, kind, path, report)
    table, fields = KINDS[kind]
    existing = store.known_ids(table)
    conn = store.engine.connect()
    trans = conn.begin()
    try:
        batch: list[dict] = []
        for row in rows:
            if report.problems:
                continue
            if row[fields[0]] in existing:
                report.updated += 1
            else:
                report.inserted += 1
            batch.append(row)
            if len(batch) >= CHUNK:
                store.upsert(conn, table, batch)
                batch = []
        if report.problems:
            trans.rollback()
            raise InputError(_shorten(report.problems))
        store.upsert(conn, table, batch)
        trans.commit()
    except BaseException:
        if trans.is_active:
            trans.rollback()
        raise
    finally:
        rows.close()
        conn.close()
    return report


def _shorten(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_REPORTED:
        return problems
    last = problems[-1]
    return problems[:MAX_REPORTED] + [Problem(last.source, None, "", f"… and {len(problems) - MAX_REPORTED} more "
                                                                      f"problem(s); nothing was imported")]
