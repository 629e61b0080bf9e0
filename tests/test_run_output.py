"""What `rappel run` prints and records for a person (issue: the day in full, as a new user tried it).

The installation of tests/test_cli.py (the shipped rules, a SQLite file, the file outbox), run on
Monday 2026-11-23 unless said otherwise:
    L4 (P1, due 2026-11-26)            courtesy, 3 days before due          → email to P1
    L1 + L2 (P1, due 2026-11-16)        first reminder, day 7, two libraries → one email to P1
    L3 (P2, no email, due 2026-11-16)   first reminder                       → a letter, library SCI
    L5 (P3, a contact)                  nothing;  L6 (P1, lost)              nothing
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS

try:
    from tests.test_cli import DAY, Install
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from test_cli import DAY, Install

ROOT = Path(__file__).resolve().parent.parent


def test_output_piped_to_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`rappel … | head -1`: the reader leaves after one line; rappel stops without a word, exit 0.
    Three thousand messages make sure rappel is still writing when head has gone (a pipe holds 64 KiB)."""
    site = Install(tmp_path)
    count = 3000
    site("import", "patrons", site.csv("many-patrons.csv", [",".join(PATRON_FIELDS)] + [
        f"M{n},29{n:08d},Camille,Lecteur{n},p{n}@etu.univ.example,fr,internal,public,reader,,,,,," for n in range(count)]))
    site("import", "loans", site.csv("many-loans.csv", [",".join(LOAN_FIELDS)] + [
        f"ML{n},M{n},39{n:08d},Livre {n},SCI,2026-11-16,," for n in range(count)]))
    rappel = f"{sys.executable} -m cli"
    common = f"--rules {site.rules} --db {site.db}"
    for command in (f"{rappel} run --on {DAY} --dry-run {common}",
                    f"{rappel} run --on {DAY} --dry-run --json {common}",
                    f"{rappel} explain --loan ML1 --on {DAY} {common}"):
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -1"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert (done.returncode, done.stderr) == (0, ""), command
        assert len(done.stdout.splitlines()) == 1
