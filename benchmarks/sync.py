#!/usr/bin/env python
"""Sync benchmark: `rappel sync` of 200,000 external patrons, target at most 60 s each.

    .venv/bin/python benchmarks/sync.py [--patrons 200000] [--workdir bench-sync] [--db URL]

What it does (policy: rules/, the shipped reminders.yaml and accounts.yaml):

1. generates, deterministically (fixed seed), the source system's export of N external patrons
   (the patron CSV columns), and a second export a week later: 10 % of the patrons moved (address,
   postal code, city), 5 % changed email, 2 % changed user group (a protected field), 1 % left
   (missing from the file: reported, kept), 1 % new;
2. `rappel sync` of the first export into a fresh database: N creations (the first load);
3. marks 1 % of the patrons as locally edited (their user group, as `rappel patron edit` does), so
   the next sync has protected fields to keep;
4. `rappel sync --dry-run` of the second export (every change computed, shown field by field,
   nothing written), then `rappel sync` of it (written, audited), then the same file again
   (nothing to change: the steady state of a nightly sync);
5. prints each wall time and peak RSS with PASS/FAIL against the target, and exits 0: a report.

Every step runs the real command line in a child process; times include start-up and imports.
--db takes a database URL (PostgreSQL: a fresh, empty database or schema); default: a SQLite file.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RULES = ROOT / "rules"
RAPPEL = Path(sys.executable).parent / "rappel"
SEED = 20261123
TARGET_S = 60.0

from adapters.store.schema import PATRON_FIELDS  # noqa: E402

FIRST = ["Camille", "Thomas", "Jeanne", "Lucía", "Hugo", "Inès", "Marc", "Élodie", "Léa", "Nathan", "Chloé", "Louis"]
LAST = ["Durand", "Lefèvre", "Moreau", "García", "Bernard", "Petit", "Fournier", "Roux", "Martin", "Dubois"]
STREETS = ["rue Sainte-Catherine", "allée des Œillets", "place Gambetta", "cours Victor Hugo", "rue Judaïque",
           "avenue Thiers", "cours de la Libération", "rue du Palais"]
TOWNS = [("33000", "Bordeaux"), ("33400", "Talence"), ("33600", "Pessac"), ("33100", "Bordeaux")]
GROUPS = ["undergraduate", "graduate", "postgraduate", "doctoral"]


def patron(i: int, rng: random.Random) -> dict:
    postal, city = rng.choice(TOWNS)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {"patron_id": f"S{i:07d}", "barcode": f"2{i:09d}", "first_name": first, "last_name": last,
            "email": f"{first.lower()}.{last.lower()}.{i}@etu.univ.example".encode("ascii", "ignore").decode(),
            "preferred_language": rng.choice(["fr", "fr", "fr", "en", "es"]), "account_type": "external",
            "record_type": "public", "user_group": rng.choice(GROUPS),
            "address_line1": f"{rng.randint(1, 200)} {rng.choice(STREETS)}", "address_line2": "",
            "postal_code": postal, "city": city, "country": "France", "phone": ""}


def write(path: Path, rows) -> int:
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=PATRON_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            n += 1
    return n


def exports(n: int, workdir: Path) -> tuple[Path, Path, dict]:
    rng = random.Random(SEED)
    first = [patron(i, rng) for i in range(n)]
    write(workdir / "sis-week1.csv", first)
    stats = {"moved": 0, "email": 0, "group": 0, "left": 0, "new": 0}
    second = []
    for row in first:
        r = rng.random()
        if r < 0.01:
            stats["left"] += 1
            continue
        row = dict(row)
        if rng.random() < 0.10:
            postal, city = rng.choice(TOWNS)
            row.update(address_line1=f"{rng.randint(1, 200)} {rng.choice(STREETS)}", postal_code=postal, city=city)
            stats["moved"] += 1
        if rng.random() < 0.05:
            row["email"] = row["email"].replace("@etu.", "@alumni.")
            stats["email"] += 1
        if rng.random() < 0.02:
            row["user_group"] = rng.choice(GROUPS)
            stats["group"] += 1
        second.append(row)
    for i in range(n, n + n // 100):
        second.append(patron(i, rng))
        stats["new"] += 1
    write(workdir / "sis-week2.csv", second)
    return workdir / "sis-week1.csv", workdir / "sis-week2.csv", stats


def timed(args: list[str], env: dict, output: Path) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MB, first output line) of one rappel command, a child process.

    Its output goes to a file (a dry run prints every change: a pipe would fill up and block it).
    """
    with open(output, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([str(RAPPEL), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    text = output.read_text(encoding="utf-8", errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"rappel {' '.join(args)} failed:\n{text[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, text.splitlines()[0] if text else ""


def mark_local_edits(url: str, share: float) -> int:
    """As `rappel patron edit --set user_group=…` would leave it: a protected field edited here."""
    import datetime as dt

    from sqlalchemy import create_engine, insert, select

    from adapters.store.schema import patron_local_edits, patrons

    engine = create_engine(url)
    with engine.begin() as conn:
        ids = list(conn.scalars(select(patrons.c.patron_id).order_by(patrons.c.patron_id)))
        step = int(1 / share)
        rows = [{"patron_id": pid, "field": "user_group", "edited_at": dt.datetime.now(dt.timezone.utc),
                 "actor": "benchmark"} for pid in ids[::step]]
        conn.execute(insert(patron_local_edits), rows)
    engine.dispose()
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patrons", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench-sync")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file in the workdir)")
    opts = parser.parse_args()

    workdir = opts.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    url = opts.db or f"sqlite:///{workdir / 'rappel.db'}"
    env = dict(os.environ, RAPPEL_DB_URL=url)

    t = time.perf_counter()
    week1, week2, stats = exports(opts.patrons, workdir)
    print(f"exports: {opts.patrons:,} patrons, then {stats} ({time.perf_counter() - t:.1f} s to generate)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}; "
          f"database: {url.split(':')[0]}")

    results = []

    def step(name: str, args: list[str]):
        wall, cpu, rss, line = timed([*args, "--rules", str(RULES)], env, workdir / f"step{len(results) + 1}.out")
        results.append((name, wall, rss))
        print(f"  {name:<44} {wall:6.1f} s {cpu:6.1f} s {rss:6.0f} MB  {'PASS' if wall <= TARGET_S else 'FAIL'}   {line}")

    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other work on the machine slows the wall times)")
    print(f"\nstep (target: wall at most {TARGET_S:.0f} s)         wall      CPU  peak RSS")
    step(f"sync week 1: {opts.patrons:,} new external patrons", ["sync", str(week1)])
    edited = mark_local_edits(url, 0.01)
    print(f"  ({edited:,} patrons' user group marked as edited locally)")
    step("sync week 2 --dry-run (changes shown)", ["sync", str(week2), "--dry-run"])
    step("sync week 2 (changes written, audited)", ["sync", str(week2)])
    step("sync week 2 again (nothing to change)", ["sync", str(week2)])
    worst = max(w for _, w, _ in results)
    print(f"\nslowest step {worst:.1f} s: {'PASS' if worst <= TARGET_S else 'FAIL'} (target {TARGET_S:.0f} s)")


if __name__ == "__main__":
    main()
