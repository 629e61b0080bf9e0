#!/usr/bin/env python
"""Snapshot import benchmark: a nightly export of 1,000,000 loans over a 1,000,000-loan database.

    .venv/bin/python benchmarks/snapshot_import.py [--loans 1000000] [--workdir bench-snapshot] [--db URL]

What it does (policy: rules/, the shipped reminders.yaml):

1. generates, deterministically (fixed seed), the library system's exports: N/5 patrons, N open
   loans (night 1), and the next night's export of the current loans (night 2): 2 % returned
   during the day (absent), 3 % renewed (a new due date), 2 % new loans, the rest as they were;
2. `rappel import patrons`, then `rappel import loans` of night 1 into a fresh database (N new);
3. `rappel import loans night-2 --snapshot --libraries all --dry-run` (everything counted, nothing
   written), then the same for real (the absent loans closed, the renewals written), then the
   same file again (the steady state: nothing changes, nothing is closed);
4. prints each step's wall time, CPU time and peak RSS (the child's own, os.wait4), the report line
   rappel printed, and checks the counts against what the generator did. Exits 0: a report.

--db takes a database URL (PostgreSQL: a fresh, empty database); by default a SQLite file in the
workdir, and, when RAPPEL_TEST_DATABASE_URL is set, PostgreSQL too (in a fresh schema, dropped after).
"""
from __future__ import annotations

import argparse
import csv
import json
import datetime as dt
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RULES = ROOT / "rules"
RAPPEL = Path(sys.executable).parent / "rappel"
SEED = 20261201
NIGHT_2 = "2026-12-01"

TITLES = ["Chimie organique", "Droit des obligations", "Analyse réelle", "Précis de procédure pénale",
          "Œuvres complètes", "Thermodynamique", "Mécanique quantique", "Histoire du droit"]


def write(path: Path, fields, rows) -> int:
    """(in the generating child: the benchmark itself stays small, see ``generated``)"""
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(fields)
        for row in rows:
            writer.writerow(row)
            n += 1
    return n


def exports(loans: int, workdir: Path) -> dict:
    from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS

    rng = random.Random(SEED)
    patrons = max(1, loans // 5)
    write(workdir / "patrons.csv", PATRON_FIELDS, (
        [f"P{i:07d}", f"2{i:09d}", "Camille", f"Lecteur {i}", f"p{i}@etu.univ.example", "fr", "internal",
         "public", "undergraduate", f"{i % 200 + 1} rue des Facultés", "", "33000", "Bordeaux", "France", ""]
        for i in range(patrons)))
    start = dt.date(2026, 9, 1)

    def loan(i: int, due: dt.date) -> list[str]:
        return [f"L{i:08d}", f"P{rng.randrange(patrons):07d}", f"3{i:09d}", rng.choice(TITLES),
                "SCI" if i % 3 else "DROIT", due.isoformat(), "", ""]

    night1 = [loan(i, start + dt.timedelta(days=rng.randrange(240))) for i in range(loans)]
    write(workdir / "loans-night-1.csv", LOAN_FIELDS, night1)
    stats = {"returned": 0, "renewed": 0, "new": 0, "same": 0}

    def night2():
        for row in night1:
            r = rng.random()
            if r < 0.02:
                stats["returned"] += 1
                continue
            if r < 0.05:
                row = row[:5] + [(dt.date.fromisoformat(row[5]) + dt.timedelta(days=28)).isoformat()] + row[6:]
                stats["renewed"] += 1
            else:
                stats["same"] += 1
            yield row
        for i in range(loans, loans + loans // 50):
            stats["new"] += 1
            yield loan(i, dt.date(2026, 12, 29))

    stats["rows"] = write(workdir / "loans-night-2.csv", LOAN_FIELDS, night2())
    stats["patrons"] = patrons
    return stats


def generated(loans: int, workdir: Path) -> dict:
    """The exports, written by a child process. Linux keeps a process's peak RSS across exec, and a
    child starts from its parent's: a benchmark holding a million rows would be measured in every
    command it runs."""
    out = subprocess.run([sys.executable, __file__, "--_generate", str(loans), str(workdir)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def timed(args: list[str], env: dict, output: Path) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MB, first output line) of one rappel command, a child process."""
    with open(output, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([str(RAPPEL), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    text = output.read_text(encoding="utf-8", errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"rappel {' '.join(args)} failed:\n{text[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text.splitlines()[0] if text else ""


def bench(url: str, workdir: Path, stats: dict, label: str) -> None:
    env = dict(os.environ, RAPPEL_DB_URL=url, RAPPEL_STATE_DIR=str(workdir / "state"))
    print(f"\n{label}: {url.split('?')[0]}")
    print(f"  {'step':<58} {'wall':>7} {'CPU':>7} {'peak RSS':>9}")

    def step(name: str, args: list[str], expect: str) -> None:
        wall, cpu, rss, line = timed([*args, "--rules", str(RULES)], env, workdir / "step.out")
        ok = "ok" if expect in line else f"UNEXPECTED (wanted {expect!r})"
        print(f"  {name:<58} {wall:6.1f} s {cpu:6.1f} s {rss:6.0f} MB\n      {line.split(': ', 1)[-1]}  [{ok}]")

    n = stats["rows"] - stats["new"] + stats["returned"]
    step(f"import patrons ({stats['patrons']:,} new)", ["import", "patrons", str(workdir / "patrons.csv")],
         f"({stats['patrons']} new")
    step(f"import loans night 1 ({n:,} new)", ["import", "loans", str(workdir / "loans-night-1.csv")], f"({n} new")
    night2 = ["import", "loans", str(workdir / "loans-night-2.csv"), "--snapshot", "--libraries", "all",
              "--on", NIGHT_2]
    counts = (f"({stats['new']} new, {stats['renewed']} changed, {stats['same']} unchanged); snapshot of DROIT, "
              f"SCI: {stats['returned']} loan(s)")
    step(f"snapshot night 2, --dry-run ({stats['rows']:,} rows)", [*night2, "--dry-run"], counts)
    step(f"snapshot night 2 ({stats['returned']:,} closed)", night2, counts)
    step("snapshot night 2 again (nothing changes)", night2,
         f"(0 new, 0 changed, {stats['rows']} unchanged); snapshot of DROIT, SCI: nothing absent")


def pg_schema(base: str):
    """A fresh schema on the server of ``base``: (its URL, a function that drops it)."""
    from sqlalchemy import create_engine, text

    schema = f"rappel_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", drop


def main() -> None:
    if sys.argv[1:2] == ["--_generate"]:
        print(json.dumps(exports(int(sys.argv[2]), Path(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench-snapshot")
    parser.add_argument("--db", help="database URL (default: a SQLite file; and PostgreSQL when "
                                     "RAPPEL_TEST_DATABASE_URL is set)")
    opts = parser.parse_args()
    workdir = opts.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)

    t = time.perf_counter()
    stats = generated(opts.loans, workdir)
    print(f"exports: {stats['patrons']:,} patrons; night 1 {opts.loans:,} open loans; night 2 {stats['rows']:,} "
          f"rows: {stats['returned']:,} returned (absent), {stats['renewed']:,} renewed, {stats['new']:,} new "
          f"({time.perf_counter() - t:.1f} s to generate)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other work slows the wall times)")
    if opts.db:
        bench(opts.db, workdir, stats, "database")
        return
    bench(f"sqlite:///{workdir / 'rappel.db'}", workdir, stats, "SQLite")
    base = os.environ.get("RAPPEL_TEST_DATABASE_URL")
    if base:
        url, drop = pg_schema(base)
        try:
            bench(url, workdir, stats, "PostgreSQL")
        finally:
            drop()


if __name__ == "__main__":
    main()
