"""Fuzzing the two doors of bad input: the policy loader (reminders.yaml, accounts.yaml) and the CSV
importer. Hypothesis edits the shipped files (spans deleted, YAML or CSV punctuation inserted, lines
duplicated, moved, truncated, bytes that are not UTF-8) and writes random text from scratch.

Each input either loads, or is refused with InputError (what `rappel` turns into a clean exit 2,
tests/test_cli.py); anything else is a crash. A refused CSV file leaves the database exactly as it
was. No input (all under 10 KB) takes a second of CPU time: the earlier alias bomb took 137 s.
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from adapters.sources.csvfiles import import_csv
from adapters.store.database import Store
from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, loans, patrons
from engine.accounts import parse_accounts
from engine.policy import parse_policy
from engine.yamlsource import InputError

ROOT = Path(__file__).resolve().parent.parent
REMINDERS = (ROOT / "rules" / "reminders.yaml").read_text(encoding="utf-8")
ACCOUNTS = (ROOT / "rules" / "accounts.yaml").read_text(encoding="utf-8")
CPU_LIMIT = 1.0                 # seconds of CPU for one input under 10 KB
MAX_BYTES = 10_000

YAML_BITS = st.sampled_from([":", ": ", "- ", "-", "{", "}", "[", "]", ",", "&a ", "*a", "!!python/object ", "!!str ",
                             "? ", "|", ">", "#", "'", '"', "\\", "\t", "  ", "\n", "\n  ", "~", "null", "yes", "1e400",
                             "-3000000", "9999-12-31", "0001-01-01", "2026-02-30", "<<: *a", "%YAML 1.1\n", "---\n",
                             "...\n", "\x00", "\ufeff", "é", "\u202e", "${SECRET}", "offset_days", "stages", "channel"])
CSV_BITS = st.sampled_from([",", ";", "\t", '"', '""', "\n", "\r\n", "\r", " ", "=", "+", "-", "@", "\x00", "\ufeff",
                            "é", "9999-12-31", "0001-01-01", "2026-02-30", "2026-11-23T10:00:00+01:00", "P1", "L1", "SCI",
                            "lost", "x" * 300, "2026-11-20"])


@st.composite
def edited(draw, text: str, bits) -> str:
    """The text with a few random edits: a span deleted, a bit inserted, a line duplicated or moved, a cut."""
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["delete", "insert", "duplicate", "move", "cut"]))
        n = len(text)
        at = draw(st.integers(0, n))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "insert":
            text = text[:at] + draw(bits) + text[at:]
        elif kind == "cut":
            text = text[:at]
        else:
            lines = text.splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                j = draw(st.integers(0, len(lines)))
                line = lines[i] if kind == "duplicate" else lines.pop(i)
                lines.insert(min(j, len(lines)), line)
                text = "".join(lines)
    return text[:MAX_BYTES]


def random_text(bits) -> st.SearchStrategy[str]:
    return st.lists(bits | st.text(max_size=8), max_size=200).map("".join).map(lambda t: t[:MAX_BYTES])


def loads_or_refuses(parse, text: str) -> None:
    start = time.process_time()
    try:
        parse(text)
    except InputError as err:
        assert err.problems and all(str(p) for p in err.problems)
    cpu = time.process_time() - start
    assert cpu < CPU_LIMIT, f"{cpu:.2f} s of CPU for {len(text)} characters"


FUZZ = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(edited(REMINDERS, YAML_BITS) | random_text(YAML_BITS))
def test_the_policy_loader_loads_or_refuses_cleanly(text):
    loads_or_refuses(lambda t: parse_policy(t, "reminders.yaml"), text)


@FUZZ
@given(edited(ACCOUNTS, YAML_BITS) | random_text(YAML_BITS))
def test_the_account_policy_loader_loads_or_refuses_cleanly(text):
    loads_or_refuses(lambda t: parse_accounts(t, "accounts.yaml"), text)


# -- CSV -----------------------------------------------------------------------------------------

def _csv(header, rows) -> str:
    return "\n".join([",".join(header), *(",".join(row) for row in rows)]) + "\n"


PATRONS_CSV = _csv(PATRON_FIELDS, [
    [{"patron_id": pid, "barcode": f"20000{n}", "first_name": "Camille", "last_name": "Martin",
      "email": f"{pid.lower()}@etu.univ.example", "preferred_language": "fr", "account_type": "external",
      "record_type": "public", "user_group": "graduate", "address_line1": "4 allée des Œillets",
      "postal_code": "33400", "city": "Talence", "country": "France"}.get(f, "") for f in PATRON_FIELDS]
    for n, pid in enumerate(("P1", "P2", "P3"))])
LOANS_CSV = _csv(LOAN_FIELDS, [
    [{"loan_id": f"L{n}", "patron_id": f"P{n % 3 + 1}", "item_barcode": f"B{n}", "title": f"Livre {n}",
      "library": "SCI" if n % 2 else "DROIT", "due_date": f"2026-11-{10 + n:02d}"}.get(f, "") for f in LOAN_FIELDS]
    for n in range(1, 9)])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-csv")
    store = Store(f"sqlite:///{folder / 'rappel.db'}")
    policy = parse_policy(REMINDERS, "reminders.yaml")
    (folder / "patrons.csv").write_text(PATRONS_CSV, encoding="utf-8")
    import_csv(store, policy, "patrons", folder / "patrons.csv")
    yield store, policy, folder
    store.close()


def table_contents(store: Store) -> tuple:
    with store.engine.connect() as conn:
        return (sorted(tuple(r) for r in conn.execute(select(loans))),
                sorted(tuple(r) for r in conn.execute(select(patrons))))


ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"])


@st.composite
def csv_bytes(draw, text: str) -> bytes:
    body = draw(edited(text, CSV_BITS) | random_text(CSV_BITS))
    data = body.encode(draw(ENCODINGS), errors="replace")
    if draw(st.booleans()):                  # a few raw bytes: not valid in every encoding
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data[:MAX_BYTES]


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(kind_and_data=st.sampled_from(["loans", "patrons"]).flatmap(
    lambda kind: st.tuples(st.just(kind), csv_bytes(LOANS_CSV if kind == "loans" else PATRONS_CSV))),
    encoding=st.sampled_from([None, "cp1252", "utf-16"]))
def test_the_csv_importer_imports_or_refuses_cleanly_and_all_or_nothing(site, kind_and_data, encoding):
    store, policy, folder = site
    kind, data = kind_and_data
    path = folder / f"{kind}.fuzz.csv"
    path.write_bytes(data)
    before = table_contents(store)
    start = time.process_time()
    try:
        import_csv(store, policy, kind, path, encoding=encoding, facts_date=dt.date(2026, 11, 23))
    except InputError as err:
        assert err.problems and all(str(p) for p in err.problems)
        assert table_contents(store) == before, "a refused file changed the database"
    cpu = time.process_time() - start
    assert cpu < CPU_LIMIT, f"{cpu:.2f} s of CPU for {len(data)} bytes"


# -- what the fuzzing found (each was a bare exception, exit 1) -----------------------------------

def test_a_control_character_in_the_policy_is_refused_at_its_line():
    text = REMINDERS.replace("timezone: Europe/Paris", "timezone: Europe/Paris\x1f")
    line = text.splitlines().index("timezone: Europe/Paris\x1f") + 1
    with pytest.raises(InputError) as err:
        parse_policy(text, "reminders.yaml")
    [problem] = err.value.problems
    assert (problem.line, problem.message) == (line, "not valid YAML: the character U+001F (a control character) "
                                                     "is not allowed; remove it")


def test_a_file_said_to_be_utf16_without_its_mark_is_refused_at_the_header(site):
    store, policy, folder = site
    path = folder / "not-utf16.csv"
    path.write_text(LOANS_CSV, encoding="utf-8")
    before = table_contents(store)
    with pytest.raises(InputError) as err:
        import_csv(store, policy, "loans", path, encoding="utf-16")
    [problem] = err.value.problems
    assert (problem.line, problem.where) == (1, "header")
    assert problem.message.startswith("the file does not start with the byte-order mark of utf-16: it is not utf-16")
    assert table_contents(store) == before
    path.write_bytes(LOANS_CSV.encode("utf-16"))           # with its mark: read
    assert import_csv(store, policy, "loans", path, encoding="utf-16").rows == 8
