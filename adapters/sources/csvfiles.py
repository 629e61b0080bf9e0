"""CSV files as librarians have them, read as records (adapters/sources/records.py imports them).

- Encoding: UTF-8 with or without a byte-order mark by default; any Python codec with
  ``encoding`` (cp1252 or latin-1 for Excel on Windows, utf-16 for Excel's "Unicode text"). A
  byte that cannot be decoded makes its row bad, at its own line, naming the column and the
  bytes, with what to do ("save as UTF-8 or pass --encoding cp1252"); the rest is still checked.
- Delimiter: found from the header among , ; and tab (French Excel writes ;), or given; a header
  that has its columns only once split on another delimiter says so.
- Line endings LF or CRLF; blank lines are skipped; rows are numbered from 1 after the header.
The file is read as it is consumed: memory does not grow with its size.
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from adapters.sources.records import FIELDS, ImportReport, RowChecker, Undecodable, load
from adapters.store.database import Store
from adapters.store.retention import forgotten_ids
from adapters.store.schema import OPTIONAL_FIELDS, patrons
from engine.policy import Policy
from engine.yamlsource import InputError, Problem

__all__ = ["CsvRecords", "Reading", "import_csv", "open_records", "validated_rows"]

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
_OPEN, _CLOSE = "\ufdd0", "\ufdd1"    # noncharacters: where the decoder met bytes it could not decode
_ERRORS = "rappel-mark-undecodable"


def _mark(exc: UnicodeError):
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return f"{_OPEN}{bytes(exc.object[exc.start:exc.end]).hex()}{_CLOSE}", exc.end


codecs.register_error(_ERRORS, _mark)


@dataclass(frozen=True)
class Reading:
    """How a file is read: the codec (utf-8-sig unless told) and the delimiter (None: found)."""

    codec: str = "utf-8-sig"
    delimiter: str | None = None
    named: str = "UTF-8"           # the encoding as the user knows it

    @classmethod
    def checked(cls, encoding: str | None, delimiter: str | None) -> Reading:
        """From ``--encoding`` and ``--delimiter``; InputError for an unknown codec or a bad delimiter."""
        codec, named = "utf-8-sig", "UTF-8"
        if encoding is not None:
            try:
                info = codecs.lookup(encoding)
            except LookupError:
                info = None
            if info is None or not getattr(info, "_is_text_encoding", True):
                raise InputError([Problem("--encoding", None, "", f"{encoding!r} is not a text encoding Python "
                                                                  f"knows: e.g. utf-8, cp1252 (Excel on Windows), "
                                                                  f"latin-1, utf-16")])
            codec, named = ("utf-8-sig", "UTF-8") if info.name == "utf-8" else (info.name, encoding)
        if delimiter is not None:
            delimiter = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";"}.get(delimiter.lower(), delimiter)
            if len(delimiter) != 1 or delimiter in "\"\r\n" or delimiter.isalnum() or delimiter == " ":
                raise InputError([Problem("--delimiter", None, "", f"{delimiter!r} cannot separate columns: give "
                                                                   f"one character such as , ; or tab")])
        return cls(codec, delimiter, named)


class CsvRecords:
    """The rows of one CSV file as records, (row number, {column: text}), read as they are iterated.
    ``line_of(row)`` is the line the row just read ends on."""

    def __init__(self, path: Path, kind: str, reading: Reading):
        self.path = path
        self.source = str(path)
        self.kind = kind
        self.reading = reading
        try:
            self._raw = open(path, "rb")
        except OSError as exc:
            raise InputError([Problem(self.source, None, "", f"cannot read: {exc.strerror}")]) from None
        self._dirty = False
        try:
            self._start()
        except BaseException:
            self._raw.close()
            raise

    @property
    def encoding(self) -> str:
        return self.reading.named

    def _header_problem(self, message: str) -> InputError:
        return InputError([Problem(self.source, 1, "header", message)])

    def _start(self) -> None:
        head = self._raw.peek(4)[:4] if hasattr(self._raw, "peek") else b""
        codec = self.reading.codec
        if head.startswith(codecs.BOM_UTF8) and codec != "utf-8-sig":
            raise self._header_problem(f"the file starts with a UTF-8 byte-order mark: it is UTF-8, not "
                                       f"{self.reading.named}; leave out --encoding")
        if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and not codec.startswith("utf-16"):
            raise self._header_problem("the file is UTF-16 (Excel's \"Unicode text\"): pass --encoding utf-16")
        if codec == "utf-16" and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise self._header_problem(f"the file does not start with the byte-order mark of {self.reading.named}: "
                                       f"it is not {self.reading.named} (leave out --encoding for UTF-8, or give "
                                       f"utf-16-le / utf-16-be if it really is UTF-16 without a mark)")
        self._text = io.TextIOWrapper(self._raw, encoding=codec, errors=_ERRORS, newline="")
        try:
            first = self._text.readline()
        except UnicodeError as exc:
            raise self._header_problem(f"cannot be read as {self.reading.named}: {exc}") from None
        if not first.strip():
            raise self._header_problem("the file is empty: no header row")
        if _OPEN in first:
            raise self._header_problem(self._undecodable(first.rstrip("\r\n")))
        self.delimiter, self.columns = self._header(first.rstrip("\r\n"))
        self._reader = csv.reader(self._lines(chain([first], self._text)), delimiter=self.delimiter)
        next(self._reader)

    def _header(self, line: str) -> tuple[str, list[str]]:
        fields = FIELDS[self.kind]

        def columns(delimiter: str) -> list[str]:
            return [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]

        def missing(delimiter: str) -> list[str]:
            found = set(columns(delimiter))
            return [f for f in fields if f not in found and f not in OPTIONAL_FIELDS]

        given = self.reading.delimiter
        delimiter = given or min(DELIMITERS, key=lambda d: len(missing(d)))   # ties: , then ; then tab
        lacking = missing(delimiter)
        if lacking:
            message = f"missing column(s): {', '.join(lacking)}"
            other = next((d for d in DELIMITERS if d != delimiter and not missing(d)), None)
            if given and other:
                message += (f"; the header has every column once split on {other!r} ({DELIMITERS[other]}): "
                            f"pass --delimiter {_shell(other)}, or leave --delimiter out to find it")
            elif delimiter != ",":
                message += f" (the header read as {DELIMITERS.get(delimiter, repr(delimiter))}-separated)"
            raise self._header_problem(message)
        return delimiter, columns(delimiter)

    def _lines(self, lines) -> Iterator[str]:
        for line in lines:
            if _OPEN in line:
                self._dirty = True
            yield line

    def _undecodable(self, text: str) -> str:
        parts = text.split(_OPEN)[1:]
        shown = " ".join(" ".join(f"0x{part[i:i + 2].upper()}" for i in range(0, part.index(_CLOSE), 2))
                         for part in parts)
        hint = ("save as UTF-8 or pass --encoding cp1252" if self.reading.codec == "utf-8-sig"
                else "save as UTF-8 or pass the --encoding it was saved in")
        several = " " in shown
        what = f"bytes {shown} are" if several else f"byte {shown} is"
        return f"{what} not valid {self.reading.named}: {hint}"

    def _clean(self, value: str) -> str:
        if _OPEN not in value:
            return value
        return Undecodable(_strip_marks(value), self._undecodable(value))

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        columns = self.columns
        width = len(columns)
        number = 0
        try:
            for fields in self._reader:
                if not fields:
                    continue
                number += 1
                if self._dirty:
                    fields = [self._clean(v) for v in fields]
                    self._dirty = False
                values = dict(zip(columns, fields))
                if len(fields) > width:
                    values[None] = fields[width:]
                yield number, values
        except csv.Error as exc:
            raise InputError([Problem(self.source, self._reader.line_num, f"row {number + 1}",
                                      f"unreadable: {exc}")]) from None
        except UnicodeError as exc:     # a decoder that refuses instead of marking the byte (UTF-16's odd end)
            raise InputError([Problem(self.source, self._reader.line_num + 1, f"row {number + 1}",
                                      f"cannot be read as {self.reading.named}: {exc}")]) from None

    def line_of(self, row: int) -> int:
        return self._reader.line_num

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> CsvRecords:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _strip_marks(value: str) -> str:
    """The value with each undecodable run shown as U+FFFD."""
    out, rest = [], value
    while _OPEN in rest:
        before, _, after = rest.partition(_OPEN)
        out += [before, "\ufffd"]
        rest = after.partition(_CLOSE)[2]
    return "".join(out) + rest


def _shell(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else f"'{delimiter}'"


@contextmanager
def open_records(path: Path, kind: str, *, encoding: str | None = None,
                 delimiter: str | None = None) -> Iterator[CsvRecords]:
    """The records of a CSV file; its header checked at once (InputError at line 1)."""
    records = CsvRecords(Path(path), kind, Reading.checked(encoding, delimiter))
    try:
        yield records
    finally:
        records.close()


def import_csv(store: Store, policy: Policy, kind: str, path: Path, *, snapshot: bool = False,
               confirm: bool = False, facts_date: dt.date | None = None, dry_run: bool = False,
               encoding: str | None = None, delimiter: str | None = None) -> ImportReport:
    """Check and import a whole CSV file (InputError, nothing imported, if any row is bad); the
    export's date is today in the policy's time zone unless given (service.imports passes its clock)."""
    now = dt.datetime.now(dt.timezone.utc)
    with open_records(path, kind, encoding=encoding, delimiter=delimiter) as rows:
        report = load(store, policy, kind, rows, source=str(path), finished_at=now,
                      facts_date=facts_date or now.astimezone(policy.tz).date(),
                      mode="snapshot" if snapshot else "import", snapshot=snapshot, confirm=confirm,
                      dry_run=dry_run, line_of=rows.line_of)
    report.encoding, report.delimiter = rows.encoding, rows.delimiter
    return report


def validated_rows(store: Store, policy: Policy, kind: str, path: Path, report: ImportReport) -> Iterator[dict]:
    """The valid rows of a CSV file, in order, each checked on its own and against the rows before
    it (an id twice, a barcode someone else's; an unknown patron); each bad row's problems go to
    ``report.problems``. For a use case that writes row by row (``rappel sync``); an import goes
    through ``load``, which does the checks across rows in SQL. The header is checked at once."""
    if kind not in FIELDS:
        raise InputError([Problem(str(path), None, "", f"unknown kind {kind!r}: patrons, loans or requests")])
    records = CsvRecords(Path(path), kind, Reading())
    return _checked(records, RowChecker(kind, policy), store, report)


def _checked(records: CsvRecords, checker: RowChecker, store: Store, report: ImportReport) -> Iterator[dict]:
    key_field = FIELDS[records.kind][0]
    seen: set[str] = set()
    known = store.known_ids(patrons) if records.kind != "patrons" else set()
    barcodes = store.barcodes() if records.kind == "patrons" else {}
    erased = forgotten_ids(store.engine)
    with records:
        for number, values in records:
            report.rows = number
            row, errors = checker.row(values)
            key = row.get(key_field)
            if key:
                if key in seen:
                    errors.append(f"{key_field} {key!r} appears twice in the file")
                seen.add(key)
            if records.kind != "patrons" and row.get("patron_id") and row["patron_id"] not in known:
                errors.append(f"unknown patron {row['patron_id']!r} (import patrons first)")
            if records.kind == "patrons" and row.get("barcode"):
                owner = barcodes.get(row["barcode"])
                if owner is not None and owner != key:
                    errors.append(f"barcode {row['barcode']!r} already belongs to patron {owner!r}")
                barcodes[row["barcode"]] = key
            line = records.line_of(number)
            report.problems.extend(Problem(records.source, line, f"row {number}", m) for m in errors)
            if not errors and row["patron_id"] in erased:
                report.erased.append(row["patron_id"])     # never brought back (rappel patron forget)
            elif not errors:
                yield row
