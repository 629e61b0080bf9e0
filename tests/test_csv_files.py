"""The CSV files librarians have (adapters/sources/csvfiles.py), imported through the command line
and service.imports on a real database (SQLite file; PostgreSQL when configured).

- UTF-8 with or without BOM by default; --encoding cp1252 (or latin-1, utf-16) otherwise;
- the delimiter found among , ; tab from the header, or --delimiter; LF or CRLF;
- a byte that cannot be decoded is a bad row at its own line and column, with what to do; the
  other rows are still checked, and nothing is imported;
- a header that has its columns only once split on another delimiter says so;
- an unknown --encoding or an impossible --delimiter: exit 2 before anything is read.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from adapters.store.database import Store
from adapters.store.schema import LOAN_FIELDS, OPTIONAL_FIELDS, PATRON_FIELDS, loans
from cli import app
from engine.yamlsource import InputError
from service.imports import import_file

RULES = Path(__file__).resolve().parent.parent / "rules"

PATRONS = [
    ("P1", "2000000001", "Hélène", "Bérard", "helene.berard@etu.univ.example"),
    ("P2", "2000000002", "François", "Lefèvre", "francois.lefevre@etu.univ.example"),
]
LOANS = [   # loan, patron, title, library, due
    ("L1", "P1", "L'Être et le Néant", "SCI", "2026-11-20"),
    ("L2", "P1", "Œuvres complètes — 12 €", "DROIT", "2026-11-21"),
    ("L3", "P2", "Précis de procédure pénale", "DROIT", "2026-11-22"),
    ("L4", "P2", "Mécanique quantique", "SCI", "2026-11-23"),
    ("L5", "P2", "Thermodynamique; tome 2", "SCI", "2026-11-24"),
    ("L6", "P1", "Chimie générale", "SCI", "2026-11-25"),
]


def patron_rows() -> list[list[str]]:
    rows = [list(PATRON_FIELDS)]
    for pid, barcode, first, last, email in PATRONS:
        values = {"patron_id": pid, "barcode": barcode, "first_name": first, "last_name": last, "email": email,
                  "account_type": "internal", "record_type": "public", "city": "Bordeaux"}
        rows.append([values.get(f, "") for f in PATRON_FIELDS])
    return rows


def loan_rows() -> list[list[str]]:
    rows = [list(LOAN_FIELDS)]
    for lid, pid, title, library, due in LOANS:
        values = {"loan_id": lid, "patron_id": pid, "item_barcode": f"3000{lid}", "title": title,
                  "library": library, "due_date": due}
        rows.append([values.get(f, "") for f in LOAN_FIELDS])
    return rows


def excel(rows: list[list[str]], *, delimiter: str = ";", encoding: str = "cp1252", bom: bool = False,
          newline: str = "\r\n") -> bytes:
    """A sheet saved as Excel does: every cell quoted where it needs to be, CRLF, cp1252 or UTF-8."""
    def cell(value: str) -> str:
        return f'"{value}"' if delimiter in value or '"' in value else value
    text = newline.join(delimiter.join(cell(v) for v in row) for row in rows) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)


class Site:
    def __init__(self, tmp_path: Path, db_url: str):
        self.dir = tmp_path
        self.db = db_url

    def file(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def __call__(self, *args):
        return CliRunner().invoke(app, [*map(str, args), "--rules", str(RULES), "--db", self.db])

    def titles(self) -> dict[str, str]:
        store = Store(self.db)
        try:
            with store.engine.connect() as conn:
                return dict(conn.execute(select(loans.c.loan_id, loans.c.title)).all())
        finally:
            store.close()


@pytest.fixture
def site(tmp_path, db_url) -> Site:
    s = Site(tmp_path, db_url)
    result = s("import", "patrons", s.file("patrons.csv", excel(patron_rows(), encoding="utf-8", bom=True)))
    assert result.exit_code == 0, result.output
    return s


EXPECTED_TITLES = {lid: title for lid, _, title, _, _ in LOANS}


@pytest.mark.parametrize("label, data, options", [
    ("Excel in France, CSV (;) Windows-1252", excel(loan_rows()), ["--encoding", "cp1252"]),
    ("Excel in France, CSV UTF-8 (;) with BOM", excel(loan_rows(), encoding="utf-8", bom=True), []),
    ("latin-1 is not cp1252, but close", excel(loan_rows(), encoding="cp1252"), ["--encoding", "windows-1252"]),
    ("tab-separated UTF-8, LF", excel(loan_rows(), delimiter="\t", encoding="utf-8", newline="\n"), []),
    ("Excel's Unicode text: UTF-16, tabs", excel(loan_rows(), delimiter="\t", encoding="utf-16"),
     ["--encoding", "utf-16"]),
    ("comma, UTF-8 without BOM, delimiter given", excel(loan_rows(), delimiter=",", encoding="utf-8"),
     ["--delimiter", ","]),
    ("semicolon given by name", excel(loan_rows(), encoding="utf-8"), ["--delimiter", "semicolon"]),
])
def test_the_files_librarians_have_import(site, label, data, options):
    path = site.file("loans.csv", data)
    result = site("import", "loans", path, *options)
    assert result.exit_code == 0, f"{label}: {result.output}"
    assert result.stdout.strip() == f"{path}: 6 loans imported (6 new, 0 changed, 0 unchanged)"
    assert site.titles() == EXPECTED_TITLES


def test_json_says_how_the_file_was_read(site):
    path = site.file("loans.csv", excel(loan_rows()))
    result = site("import", "loans", path, "--encoding", "cp1252", "--json")
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    report = json.loads(line)
    assert (report["rows"], report["inserted"], report["encoding"], report["delimiter"]) == (6, 6, "cp1252", ";")


def test_a_bad_byte_on_row_5_is_reported_on_row_5(site):
    """A UTF-8 export in which one title was pasted from a cp1252 file: 'é' as the byte 0xE9."""
    data = excel(loan_rows(), encoding="utf-8")
    lines = data.split(b"\r\n")
    assert lines[5].startswith(b"L5;")                       # line 6 of the file is row 5
    lines[5] = lines[5].replace("Thermodynamique".encode(), b"Thermodynamique \xe9tendue")
    lines[6] = lines[6].replace(b"2026-11-25", b"2026-13-25")   # and a bad date on row 6, checked all the same
    path = site.file("loans.csv", b"\r\n".join(lines))
    result = site("import", "loans", path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:6: row 5: title: byte 0xE9 is not valid UTF-8: save as UTF-8 or pass --encoding cp1252",
        f"error: {path}:7: row 6: due_date '2026-13-25' is not a date (YYYY-MM-DD or an ISO 8601 timestamp)",
    ]
    assert site.titles() == {}


def test_a_cp1252_file_read_as_utf8_names_each_bad_row(site):
    path = site.file("loans.csv", excel(loan_rows()))       # cp1252, no --encoding
    result = site("import", "loans", path)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    # every title but L5's has letters outside ASCII: rows 1-4 and 6, lines 2-5 and 7
    assert [line.split(": ")[1] for line in lines] == [f"{path}:{n}" for n in (2, 3, 4, 5, 7)]
    assert lines[0].endswith("row 1: title: bytes 0xCA 0xE9 are not valid UTF-8: save as UTF-8 or pass "
                             "--encoding cp1252")                     # L'Être et le Néant
    assert "row 2: title: bytes 0x8C 0xE8 0x97 0x80 are not valid UTF-8" in lines[1]   # Œuvres complètes — 12 €
    assert site.titles() == {}


def test_a_bad_byte_in_the_header_is_at_line_1(site):
    path = site.file("loans.csv", "loan_id;patron_id;item_barcode;titre_é;library;due_date;returned_on;status\r\n"
                                  "L1;P1;;x;SCI;2026-11-20;;\r\n".encode("cp1252"))
    result = site("import", "loans", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {path}:1: header: byte 0xE9 is not valid UTF-8: save as UTF-8 or "
                                     f"pass --encoding cp1252")


def test_a_header_that_matches_once_split_on_semicolons_says_so(site):
    path = site.file("loans.csv", excel(loan_rows(), encoding="utf-8"))
    result = site("import", "loans", path, "--delimiter", ",")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {path}:1: header: missing column(s): {', '.join(f for f in LOAN_FIELDS if f not in OPTIONAL_FIELDS)}; the header has every column "
        f"once split on ';' (semicolon): pass --delimiter ';', or leave --delimiter out to find it")


def test_a_semicolon_file_missing_a_column_says_how_it_was_read(site):
    rows = [[v for i, v in enumerate(row) if i != LOAN_FIELDS.index("due_date")] for row in loan_rows()]
    path = site.file("loans.csv", excel(rows, encoding="utf-8"))
    result = site("import", "loans", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {path}:1: header: missing column(s): due_date (the header read as "
                                     f"semicolon-separated)")


@pytest.mark.parametrize("data, options, message", [
    (excel(loan_rows(), encoding="utf-8", bom=True), ["--encoding", "cp1252"],
     "header: the file starts with a UTF-8 byte-order mark: it is UTF-8, not cp1252; leave out --encoding"),
    (excel(loan_rows(), delimiter="\t", encoding="utf-16"), [],
     "header: the file is UTF-16 (Excel's \"Unicode text\"): pass --encoding utf-16"),
    (b"", [], "header: the file is empty: no header row"),
])
def test_files_that_are_not_what_they_are_said_to_be(site, data, options, message):
    path = site.file("loans.csv", data)
    result = site("import", "loans", path, *options)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}:1: {message}"


@pytest.mark.parametrize("options, message", [
    (["--encoding", "klingon"], "--encoding: 'klingon' is not a text encoding Python knows"),
    (["--encoding", "base64"], "--encoding: 'base64' is not a text encoding Python knows"),
    (["--delimiter", "ab"], "--delimiter: 'ab' cannot separate columns"),
    (["--delimiter", '"'], "--delimiter: '\"' cannot separate columns"),
])
def test_bad_reading_options_exit_2_before_anything_is_read(tmp_path, options, message):
    result = CliRunner().invoke(app, ["import", "loans", str(tmp_path / "absent.csv"), *options,
                                      "--rules", str(RULES), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {message}")
    assert not (tmp_path / "x.db").exists()


def test_import_file_reads_the_same_way(db_url, tmp_path, policy):
    store = Store(db_url)
    try:
        (tmp_path / "p.csv").write_bytes(excel(patron_rows(), encoding="cp1252"))
        report = import_file(store, policy, "patrons", tmp_path / "p.csv", encoding="cp1252")
        assert (report.inserted, report.encoding, report.delimiter) == (2, "cp1252", ";")
        assert store.patron("P2").first_name == "François"
        with pytest.raises(InputError) as info:
            import_file(store, policy, "patrons", tmp_path / "p.csv")
        assert [(p.line, p.message.split(":")[0]) for p in info.value.problems] == [
            (2, "first_name"), (2, "last_name"), (3, "first_name"), (3, "last_name")]   # Hélène Bérard, François…
    finally:
        store.close()


# --- rappel import --snapshot ------------------------------------------------------------------------

def snapshot_rows(loan_ids) -> list[list[str]]:
    return [loan_rows()[0]] + [row for row in loan_rows()[1:] if row[0] in loan_ids]


def stored(site: Site) -> dict[str, tuple]:
    store = Store(site.db)
    try:
        with store.engine.connect() as conn:
            return {r.loan_id: (r.returned_on and r.returned_on.isoformat(), r.closed_reason)
                    for r in conn.execute(select(loans))}
    finally:
        store.close()


def test_snapshot_from_the_command_line(site):
    site("import", "loans", site.file("all.csv", excel(loan_rows(), encoding="utf-8")))
    # the export of 1 December lists every loan but L6 (SCI): L6 was returned
    path = site.file("nightly.csv", excel(snapshot_rows({"L1", "L2", "L3", "L4", "L5"}), encoding="utf-8"))
    dry = site("import", "loans", path, "--snapshot", "--on", "2026-12-01", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.strip() == (f"{path}: 5 loans checked (dry run: nothing written) (0 new, 0 changed, "
                                  f"5 unchanged); snapshot of DROIT, SCI: 1 loan(s) would be closed, absent from "
                                  f"the export of 2026-12-01")
    assert stored(site)["L6"] == (None, None)
    result = site("import", "loans", path, "--snapshot", "--on", "2026-12-01")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (f"{path}: 5 loans imported (0 new, 0 changed, 5 unchanged); snapshot of "
                                     f"DROIT, SCI: 1 loan(s) closed, absent from the export of 2026-12-01")
    assert stored(site)["L6"] == ("2026-12-01", "absent from the export of 2026-12-01")
    explained = site("explain", "--loan", "L6", "--on", "2026-12-02")
    assert "returned on 2026-12-01 (absent from the export of 2026-12-01)" in explained.stdout


def test_a_truncated_export_is_refused_then_confirmed(site):
    site("import", "loans", site.file("all.csv", excel(loan_rows(), encoding="utf-8")))
    before = stored(site)
    half = site.file("half.csv", excel(snapshot_rows({"L1", "L2", "L3"}), encoding="utf-8"))   # half the rows
    result = site("import", "loans", half, "--snapshot", "--on", "2026-12-01")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"error: {half}: this snapshot would close 3 of the 6 open loans of DROIT, SCI (50 %), more than "
        f"imports.max_closed_share (20 %): a truncated export? Nothing was changed; check the export, then "
        f"import it with --confirm")
    assert stored(site) == before
    dry = site("import", "loans", half, "--snapshot", "--dry-run")
    assert dry.exit_code == 0 and "snapshot guard: this snapshot would close 3 of the 6" in dry.stderr
    confirmed = site("import", "loans", half, "--snapshot", "--on", "2026-12-01", "--confirm", "--json")
    assert confirmed.exit_code == 0, confirmed.output
    report = json.loads(confirmed.stdout)
    assert (report["closed"], report["unchanged"], report["libraries"], report["mode"]) == (
        3, 3, ["DROIT", "SCI"], "snapshot")
    assert sorted(lid for lid, (returned, _) in stored(site).items() if returned) == ["L4", "L5", "L6"]


def test_an_empty_export_is_refused(site):
    site("import", "loans", site.file("all.csv", excel(loan_rows(), encoding="utf-8")))
    empty = site.file("empty.csv", excel(loan_rows()[:1], encoding="utf-8"))
    result = site("import", "loans", empty, "--snapshot", "--libraries", "all")
    assert result.exit_code == 1 and "the export is empty" in result.stderr
    assert not any(returned for returned, _ in stored(site).values())
    result = site("import", "loans", empty, "--snapshot", "--libraries", "all", "--confirm", "--on", "2026-12-01")
    assert result.exit_code == 0, result.output
    assert all(returned == "2026-12-01" for returned, _ in stored(site).values())


def test_a_snapshot_of_one_library_leaves_the_others_and_says_so(site):
    site("import", "loans", site.file("all.csv", excel(loan_rows(), encoding="utf-8")))
    sci = site.file("sci.csv", excel(snapshot_rows({"L1", "L4", "L5", "L6"}), encoding="utf-8"))
    result = site("import", "loans", sci, "--snapshot")
    assert result.exit_code == 0, result.output
    assert "snapshot of SCI: nothing absent" in result.stdout
    assert result.stderr.strip() == ("note: DROIT has open loans and is not in this snapshot: left as they are (a "
                                     "snapshot covers the libraries it names; --libraries all if the export has "
                                     "every library)")
    result = site("import", "loans", sci, "--snapshot", "--libraries", "SCI,MEDECINE")
    assert result.exit_code == 2 and "not a library of the policy: MEDECINE" in result.stderr
