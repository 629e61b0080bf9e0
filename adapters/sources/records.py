"""Records of the library system — CSV rows, rows of a SQL pull — checked and imported, all or none.

A record is (row number, {column: text}), with the CSV files' column names and values written as
in a CSV cell (dates YYYY-MM-DD or ISO 8601 timestamps, "" for empty). Each is checked on its own
(``RowChecker``: dates, choices, libraries, declared statuses…), then loaded into a staging table
(adapters/store/facts.py) where the checks across rows run in SQL (an id twice, an unknown
patron, a barcode that is someone else's) and the file is compared with the database. Any bad
row and nothing is written: the error lists every bad row with its number (and line, for a file).

A snapshot (a full export) also closes what it no longer lists: the open loans of its libraries
absent from it are returned on the export's date with the reason recorded (engine/imports.py);
requests become closed; patrons are never deleted. The guard against a truncated export refuses
it (SnapshotRefused, nothing changed) unless confirmed. The rows of a patron erased here (`rappel
patron forget`) are skipped and listed in the report: an export does not bring them back.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from zoneinfo import ZoneInfo

from adapters.store.database import Store
from adapters.store.facts import FIELDS, Clash, Staging, record_import
from adapters.store.requests import mark_ready
from adapters.store.retention import forgotten_ids
from engine.contact import is_email_address
from engine.facts import ACCOUNT_TYPES, RECORD_TYPES, split_names
from engine.phones import PhoneProblem, normalise
from engine.imports import SnapshotCounts, absent_reason, closes, snapshot_refusal
from engine.policy import Policy
from engine.preferences import channels_problem, opt_out_problem
from engine.yamlsource import InputError, Problem

__all__ = ["KINDS", "ImportReport", "RowChecker", "SnapshotRefused", "Undecodable", "load", "local_date"]

KINDS = tuple(FIELDS)
REQUIRED = {
    "patrons": ("patron_id", "barcode", "account_type", "record_type"),
    "loans": ("loan_id", "patron_id", "library", "due_date"),
    "requests": ("request_id", "patron_id", "library", "pickup_library", "placed_on"),
}
DATE_FIELDS = {"due_date", "returned_on", "placed_on", "expires_on"}
CHOICES = {"account_type": ACCOUNT_TYPES, "record_type": RECORD_TYPES}
MAX_REPORTED = 200
CHUNK = 5000
MODES = ("import", "snapshot", "pull", "push")     # push: one record from the JSON API


class SnapshotRefused(Exception):
    """A snapshot the guard refuses (empty, or closing too much of its libraries): nothing changed."""


class Undecodable(str):
    """A value some bytes of which could not be decoded (its text shows them as U+FFFD); ``message``
    says which bytes and what to do."""

    message: str

    def __new__(cls, text: str, message: str):
        value = super().__new__(cls, text)
        value.message = message
        return value


@dataclass
class ImportReport:
    kind: str
    source: str = ""
    mode: str = "import"
    rows: int = 0
    inserted: int = 0          # new rows
    changed: int = 0           # stored rows the file changes (reopened loans included)
    unchanged: int = 0         # stored rows the file gives as they are
    closed: int = 0            # open loans (active requests) absent from a snapshot, closed by it
    reopened: int = 0          # loans an earlier snapshot closed, listed open again
    facts_date: dt.date | None = None
    snapshot: bool = False
    libraries: tuple[str, ...] = ()    # a snapshot's libraries: what it is the complete list of
    outside: tuple[str, ...] = ()      # libraries with open loans that the snapshot does not cover
    dry_run: bool = False
    refused: str = ""          # a dry run: why the real import would be refused ("" if it would not)
    encoding: str = ""         # a file's: the codec it was read with, and its delimiter
    delimiter: str = ""
    problems: list[Problem] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)     # rows skipped: of patrons erased here (patron forget)

    @property
    def updated(self) -> int:
        """The rows that were already stored, changed or not."""
        return self.changed + self.unchanged

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("problems")
        out["facts_date"] = self.facts_date.isoformat() if self.facts_date else None
        out["libraries"], out["outside"] = list(self.libraries), list(self.outside)
        return out


def local_date(text: str, tz: ZoneInfo) -> dt.date:
    """An ISO 8601 date, or a timestamp converted to a local date (naive ones are local already)."""
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(tz)
    return stamp.date()


def _shown(status: str) -> str:
    return '"" (no status)' if status == "" else status


_TEXT, _DATE, _CHOICE, _EMAIL, _LIBRARY, _STATUS, _CHANNELS, _OPT_OUT, _PHONE = range(9)


class RowChecker:
    """Checks one record on its own: every field of the kind, a value for each (None where bad)."""

    def __init__(self, kind: str, policy: Policy, strict_phones: bool = True):
        self.kind = kind
        self.strict_phones = strict_phones     # a pull keeps a number it cannot read as written (no SMS to it)
        self.fields = FIELDS[kind]
        self.tz = policy.tz
        self.earliest, self.latest = policy.imports.dates.earliest, policy.imports.dates.latest
        self.libraries = set(policy.libraries)
        self.known = ", ".join(sorted(self.libraries))
        declared = policy.declared_statuses if kind == "loans" else None
        self.statuses = None if declared is None else set(declared)
        self.declared = ", ".join(_shown(s) for s in declared or ())
        self.plan = [(name, name in REQUIRED[kind], self._check_of(name)) for name in self.fields]
        self.policy = policy
        if kind == "patrons":
            from adapters.channels.registry import REGISTRY   # the channels a patron may prefer
            self.channels = list(REGISTRY.specs())

    def _check_of(self, name: str) -> int:
        if name in DATE_FIELDS:
            return _DATE
        if name in CHOICES:
            return _CHOICE
        if name == "email":
            return _EMAIL
        if name in ("library", "pickup_library"):
            return _LIBRARY
        if name == "status" and self.statuses is not None:
            return _STATUS
        if name == "channels":
            return _CHANNELS
        if name == "opt_out":
            return _OPT_OUT
        if name == "phone":
            return _PHONE
        return _TEXT

    def row(self, raw: dict) -> tuple[dict, list[str]]:
        values, errors = self.values(raw)
        return dict(zip(self.fields, values)), errors

    def values(self, raw: dict) -> tuple[list, list[str]]:
        """The record's values in field order (dates as dates, None where bad), and its problems."""
        errors: list[str] = []
        if None in raw:        # csv.DictReader's key for the values past the header's columns
            errors.append("more fields than columns")
        out: list = []
        get = raw.get
        for name, required, check in self.plan:
            value = get(name)
            if value.__class__ is not str:
                if isinstance(value, Undecodable):
                    errors.append(f"{name}: {value.message}")
                    out.append(None)
                    continue
                if not isinstance(value, str):      # a driver's value, from a caller that did not convert it
                    value = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
            value = value.strip()
            if required and not value:
                errors.append(f"{name} is empty")
                out.append(None)
                continue
            problem = None
            if check == _DATE:
                if value:
                    try:
                        day = local_date(value, self.tz)
                    except (ValueError, OverflowError):     # OverflowError: 0001-01-01T00:00+14:00 in Paris
                        problem = f"{name} {value!r} is not a date (YYYY-MM-DD or an ISO 8601 timestamp)"
                    else:
                        if self.earliest <= day <= self.latest:
                            out.append(day)
                            continue
                        problem = (f"{name} {value!r} is out of range: between {self.earliest} and {self.latest} "
                                   f"(imports.dates in reminders.yaml)")
                else:
                    out.append(None)
                    continue
            elif check == _CHOICE and value not in CHOICES[name]:
                problem = f"{name} {value!r} is not one of {', '.join(CHOICES[name])}"
            elif check == _EMAIL and value and not is_email_address(value):
                problem = f"email {value!r} is not an email address"
            elif check == _LIBRARY and value not in self.libraries:
                problem = f"{name} {value!r} is not a library of the policy ({self.known})"
            elif check == _STATUS and value not in self.statuses:
                problem = f"status {value!r} is not one of the statuses the policy declares ({self.declared})"
            elif check in (_CHANNELS, _OPT_OUT) and value:
                problem = (channels_problem(value, self.channels) if check == _CHANNELS
                           else opt_out_problem(value, self.policy))
                if problem is None:
                    out.append(" ".join(split_names(value)))      # one way to write it: "sms email"
                    continue
            elif check == _PHONE and value:
                try:
                    out.append(normalise(value, (get("country") or "").strip(), self.policy.sms.country))
                    continue
                except PhoneProblem as exc:
                    if self.strict_phones:
                        problem = str(exc)
                    else:
                        out.append(" ".join(value.split()))
                        continue
            elif "\n" in value or "\r" in value:
                problem = f"{name} contains a line break"
            if problem is None:
                out.append(value)
            else:
                errors.append(problem)
                out.append(None)
        return out, errors


class _Problems:
    """Every bad row's problems in row order, at most MAX_REPORTED kept (and how many in all)."""

    def __init__(self, source: str):
        self.source = source
        self.kept: list[tuple[int, Problem]] = []
        self.total = 0

    def add(self, row: int, line: int | None, messages: Iterable[str]) -> None:
        for message in messages:
            self.total += 1
            if len(self.kept) < MAX_REPORTED:
                self.kept.append((row, Problem(self.source, line, f"row {row}", message)))

    def merge(self, clashes: list[Clash], total: int) -> None:
        self.kept += [(c.row, Problem(self.source, c.line, f"row {c.row}", c.message)) for c in clashes]
        self.total += total

    def __bool__(self) -> bool:
        return self.total > 0

    def listed(self) -> list[Problem]:
        kept = [p for _, p in sorted(self.kept, key=lambda item: item[0])][:MAX_REPORTED]
        if self.total > len(kept):
            kept.append(Problem(self.source, None, "", f"… and {self.total - len(kept)} more problem(s); "
                                                       f"nothing was imported"))
        return kept


def load(store: Store, policy: Policy, kind: str, records: Iterable[tuple[int, dict]], *, source: str,
         facts_date: dt.date, finished_at: dt.datetime, mode: str = "import", snapshot: bool = False,
         confirm: bool = False, dry_run: bool = False, libraries: Collection[str] | None = None,
         line_of: Callable[[int], int | None] | None = None) -> ImportReport:
    """Check and import ``records`` of ``kind`` in one transaction (see the module's doc).

    InputError (nothing written) when any record is bad; SnapshotRefused when the snapshot guard
    refuses it (a dry run reports it in ``refused`` instead). ``libraries``: the snapshot's scope
    (default: the libraries the records name). ``line_of(row)``: the line of a row in its file,
    asked just after the record is read. A dry run checks and counts everything, writes nothing.
    """
    if kind not in FIELDS:
        raise InputError([Problem(source, None, "", f"unknown kind {kind!r}: patrons, loans or requests")])
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    if libraries is not None:
        unknown = sorted(set(libraries) - set(policy.libraries))
        if unknown:
            raise InputError([Problem(source, None, "libraries", f"not a library of the policy: {', '.join(unknown)} "
                                                                  f"({', '.join(sorted(policy.libraries))})")])
    checker = RowChecker(kind, policy, strict_phones=mode != "pull")
    report = ImportReport(kind, source, mode, facts_date=facts_date, snapshot=snapshot, dry_run=dry_run)
    problems = _Problems(source)
    erased = forgotten_ids(store.engine)      # never brought back by an import
    whose = checker.fields.index("patron_id")
    with store.engine.connect() as conn:
        trans = conn.begin()
        staging = None
        try:
            staging = Staging(conn, kind)
            batch: list[dict] = []
            for seq, (number, values) in enumerate(records, start=1):
                line = line_of(number) if line_of else None
                row, errors = checker.values(values)
                if errors:
                    problems.add(number, line, errors)
                elif erased and row[whose] in erased:
                    report.erased.append(row[whose])
                    continue
                batch.append((seq, number, line, *row))
                if len(batch) >= CHUNK:
                    staging.add(batch)
                    batch = []
            staging.add(batch)
            staging.indexed()
            problems.merge(*staging.clashes(MAX_REPORTED))
            if problems:
                raise InputError(problems.listed())
            compared = staging.compare()
            report.rows, report.inserted, report.changed, report.unchanged, report.reopened = compared
            counts = SnapshotCounts(report.rows, 0, 0, ())
            if snapshot and closes(kind):
                scope = tuple(sorted(libraries)) if libraries is not None else staging.libraries()
                tally = staging.open_by_library(scope)
                mine = [tally[code] for code in scope if code in tally]
                counts = SnapshotCounts(report.rows, sum(n for n, _ in mine), sum(gone for _, gone in mine), scope)
                report.libraries, report.closed = scope, counts.closing
                report.outside = tuple(code for code in sorted(tally) if code not in scope)
            refusal = snapshot_refusal(policy, kind, counts, confirm) if snapshot else None
            if refusal and not dry_run:
                raise SnapshotRefused(refusal)
            report.refused = refusal or ""
            if dry_run:
                trans.rollback()
                return report
            trans.commit()              # the checks read one snapshot, writing nothing stored (the staging
            trans = conn.begin()        # table is this connection's); the writes take the lock from here,
            staging.lock(report.inserted + report.changed)   # briefly: a run's commits wait seconds, not
            if counts.closing:                                  # the whole import
                report.closed = staging.close_absent(counts.libraries, facts_date, absent_reason(facts_date))
            staging.apply(store.dialect)
            if kind == "requests":      # the day a request became ready, for the request notices
                mark_ready(conn, policy, facts_date)
            staging.drop()
            record_import(conn, kind=kind, source=source, mode=mode, facts_date=facts_date, finished_at=finished_at,
                          counts=[("rows", report.rows), ("inserted", report.inserted), ("changed", report.changed),
                                  ("unchanged", report.unchanged), ("closed", report.closed)])
            trans.commit()
            return report
        finally:
            if trans.is_active:
                trans.rollback()
            if staging is not None:
                staging.drop()
