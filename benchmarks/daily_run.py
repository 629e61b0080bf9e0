#!/usr/bin/env python
"""Daily-run benchmark: import, dry run, real run and scaling of one day of rappel at library size.

    .venv/bin/python benchmarks/daily_run.py [--loans 1000000] [--patrons 200000] [--workdir bench-data]
                                             [--skip-real] [--skip-2m] [--repeat 3] [--reuse]

What it does, for the benchmark day D = 2026-11-23 (policy: rules/reminders.yaml):

1. generates, deterministically (fixed seed), a patrons CSV and an OPEN-loans CSV (due dates spread
   uniformly over D-90 .. D+275, so a few percent of the loans are candidates on D), plus a second
   loans CSV of as many loans that are never candidates on D (half returned, half due after D+40);
2. imports patrons then loans into a fresh SQLite file with the CLI (`rappel import`), as a user
   would: wall time and peak RSS of each process;
3. dry-runs D with the CLI (`rappel run --on D --dry-run --json`), --repeat times (median), counting
   the JSON lines (messages); and times the same work in-process (store.candidates + plan_day, the
   body of pipeline.plan_for) to separate interpreter start-up and imports from the work;
4. peak RSS of every measured process: each one is a direct child reaped with os.wait4, whose
   rusage is that child's own (RUSAGE_CHILDREN would be the maximum over all children so far);
5. really runs D on a copy of the 1M database (`rappel run --on D --outbox DIR`): decisions
   committed, then every notice delivered by the local outbox channel (.eml and .pdf files);
6. scaling: a copy of the 1M database plus the 1M non-candidate loans (2M loans), dry-run D again:
   same candidates, and the time ratio 2M/1M should stay near 1 (an indexed pre-filter);
7. prints a table of every figure with its target and PASS/FAIL, and exits 0: it is a report.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
DAY = dt.date(2026, 11, 23)
SEED = 20261123
GENERATOR = 2          # bump when the generated data change
BIN = Path(sys.executable).parent
RAPPEL = BIN / "rappel"

TARGET_IMPORT_S = 15.0      # import 1M loans; a snapshot re-import with 1 % changed
TARGET_DRY_S = 2.5          # dry run, ~80,000 candidates, empty ledger
TARGET_RAW_RATIO = 10.0     # ... and at most 10x the raw query of the same candidates, same run
TARGET_NEXT_S = 1.5         # dry run of the next day (the ledger holds yesterday's decisions)
TARGET_RATIO = 1.1          # dry run on 2M loans, same candidates, over the 1M one
TARGET_EMAILS_S = 1000.0    # real run to the outbox, emails per second
TARGET_LETTERS_S = 200.0    # real run to the outbox, letters (PDF) per second
TARGET_SMTP_S = 800.0       # dispatch to a real SMTP server (aiosmtpd), one connection
TARGET_HELP_S = 0.3         # `rappel --help`
TARGET_LINT_S = 1.0         # `rappel lint`
TARGET_RSS_MB = 300.0       # peak RSS of any of the above
TARGET_PG = 1.5             # PostgreSQL: each figure at most 1.5x the SQLite one

PATRON_FIELDS = ("patron_id", "barcode", "first_name", "last_name", "email", "preferred_language",
                 "account_type", "record_type", "user_group", "address_line1", "address_line2",
                 "postal_code", "city", "country", "phone")
LOAN_FIELDS = ("loan_id", "patron_id", "item_barcode", "title", "library", "due_date", "returned_on", "status")


# --------------------------------------------------------------------------------------------
# data generation
# --------------------------------------------------------------------------------------------
FIRST = ["Camille", "Thomas", "Jeanne", "Lucía", "Hugo", "Léa", "Nathan", "Chloé", "Louis", "Manon", "Jules",
         "Inès", "Gabriel", "Zoé", "Arthur", "Émilie", "Raphaël", "Sofía", "Mateo", "Anaïs", "Yanis", "Clément"]
LAST = ["Durand", "Lefèvre", "Moreau", "García", "Martin", "Bernard", "Dubois", "Petit", "Robert", "Richard",
        "Fernández", "Lambert", "Rousseau", "Fontaine", "Chevalier", "Gómez", "N'Diaye", "Le Gall", "Nguyen"]
STREETS = ["rue Sainte-Catherine", "cours Victor Hugo", "place Gambetta", "allée des Œillets",
           "avenue Thiers", "quai des Chartrons", "rue du Palais-Gallien", "cours de l'Argonne"]
TOWNS = [("33000", "Bordeaux"), ("33400", "Talence"), ("33600", "Pessac"), ("33700", "Mérignac"),
         ("33800", "Bordeaux"), ("33170", "Gradignan")]
TITLES = ["Introduction à l'algèbre linéaire", "Droit constitutionnel", "Chimie organique", "Les Fleurs du mal",
          "Physique statistique", "Droit des obligations, 12e édition", "Analyse réelle et complexe",
          "Cien años de soledad", "Procédure pénale", "Biologie cellulaire", "Thermodynamique \"classique\"",
          "Histoire du droit", "Probabilités, statistiques", "Mécanique quantique I", "Code civil 2026",
          "Économie du travail", "Génétique moléculaire", "Droit administratif", "Géologie de la France",
          "Algorithmique; structures de données"]


def _ascii(text: str) -> str:
    import unicodedata
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", folded.lower())


def generate_patrons(path: Path, n: int, rng: random.Random) -> None:
    first = [(f, _ascii(f)) for f in FIRST]
    last = [(x, _ascii(x)) for x in LAST]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(PATRON_FIELDS)
        rand = rng.random
        for i in range(1, n + 1):
            fn, fa = first[rng.randrange(len(first))]
            ln, la = last[rng.randrange(len(last))]
            r = rand()
            if r < 0.02:
                record, group, account = "contact", "vendor", "internal"
            elif r < 0.12:
                record, group, account = "staff", "staff", "internal"
            else:
                record = "public"
                g = rand()
                group = "undergraduate" if g < 0.6 else "graduate" if g < 0.85 else "reader"
                account = "external" if group != "reader" else "internal"
            email = "" if rand() < 0.10 else f"{fa}.{la}.{i}@{'etu.' if record == 'public' else ''}univ.example"
            lang = rng.choice(("fr", "fr", "fr", "fr", "fr", "fr", "fr", "fr", "es", "en"))
            pc, town = TOWNS[i % len(TOWNS)]
            w.writerow((f"P{i:07d}", f"{2000000000 + i}", fn, ln, email, lang, account, record, group,
                        f"{1 + i % 150} {STREETS[i % len(STREETS)]}", "Bâtiment B" if i % 17 == 0 else "",
                        pc, town, "France", f"05 56 {i % 100:02d} {i // 100 % 100:02d} {i // 10000 % 100:02d}"
                        if rand() < 0.3 else ""))


def _dates(start: dt.date, days: int) -> tuple[list[str], list[str]]:
    plain = [(start + dt.timedelta(days=k)).isoformat() for k in range(days)]
    # a timestamp whose local (Europe/Paris) date is the same day, as some systems export them
    stamped = [f"{d}T18:00:00+01:00" for d in plain]
    return plain, stamped


def generate_loans(path: Path, n: int, n_patrons: int, rng: random.Random, spread: int = 366) -> None:
    """n open loans, due uniformly over D-90 .. D-90+spread-1 (366: D+275); ~1.5% with an excluded status."""
    start = DAY - dt.timedelta(days=90)
    plain, stamped = _dates(start, spread)
    dues = [stamped[k] if s else plain[k]   # ~10% as timestamps, as some systems export them
            for k, s in zip(rng.choices(range(spread), k=n), rng.choices((True, False), weights=(1, 9), k=n))]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(LOAN_FIELDS)
        w.writerows(zip((f"L{i:08d}" for i in range(1, n + 1)), _patron_ids(rng, n, n_patrons),
                        (str(3000000000 + i) for i in range(1, n + 1)), rng.choices(TITLES, k=n),
                        rng.choices(("SCI", "DROIT"), weights=(6, 4), k=n), dues, itertools.repeat("", n),
                        rng.choices(("", "lost", "claimed_returned"), weights=(985, 10, 5), k=n)))


def generate_extra_loans(path: Path, n: int, first_id: int, n_patrons: int, rng: random.Random) -> None:
    """n loans that are never candidates on D: half returned (any due date), half open and due after D+40."""
    start = DAY - dt.timedelta(days=90)
    plain, _ = _dates(start, 366)
    early, _ = _dates(start - dt.timedelta(days=30), 366 + 30)        # early[k + 30] == plain[k]
    future, _ = _dates(DAY + dt.timedelta(days=41), 360)
    last = 90 - 1 + 30                                                  # early[last] is D-1
    dues, rets = [], []
    for j, (k, back, f) in enumerate(zip(rng.choices(range(366), k=n), rng.choices(range(30), k=n),
                                         rng.choices(range(360), k=n))):
        if j % 2 == 0:   # returned: between 30 days before its due date and the day before D
            dues.append(plain[k])
            rets.append(early[min(k + 30 - back, last)])
        else:            # open, due after every stage's range on D
            dues.append(future[f])
            rets.append("")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(LOAN_FIELDS)
        w.writerows(zip((f"L{i:08d}" for i in range(first_id, first_id + n)), _patron_ids(rng, n, n_patrons),
                        (str(3000000000 + i) for i in range(first_id, first_id + n)), rng.choices(TITLES, k=n),
                        rng.choices(("SCI", "DROIT"), weights=(6, 4), k=n), dues, rets, itertools.repeat("", n)))


def _patron_ids(rng: random.Random, n: int, n_patrons: int) -> list[str]:
    ids = [f"P{i:07d}" for i in range(1, n_patrons + 1)]
    return rng.choices(ids, k=n)


# --------------------------------------------------------------------------------------------
# measuring a child process: wall time and its own peak RSS (os.wait4 gives that child's rusage)
# --------------------------------------------------------------------------------------------
@dataclass
class Run:
    cmd: list[str]
    wall: float
    rss_mb: float
    rc: int
    cpu: float = 0.0          # user + system CPU seconds of the child (less sensitive to a busy machine)
    stdout: str = ""
    stderr: str = ""


def measure(cmd: list[str], stdout_file: Path | None = None, keep_stdout: bool = True) -> Run:
    out = open(stdout_file, "w+b") if stdout_file else tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    with out, err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode("utf-8", "replace") if keep_stdout else ""
        return Run(cmd, wall, usage.ru_maxrss / 1024, proc.returncode, usage.ru_utime + usage.ru_stime,
                   text, err.read().decode("utf-8", "replace"))


def self_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database (WAL included), by the backup API."""
    for p in (dst, Path(f"{dst}-wal"), Path(f"{dst}-shm")):
        p.unlink(missing_ok=True)
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    b.close()
    a.close()


def fresh_db(path: Path) -> str:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        p.unlink(missing_ok=True)
    return f"sqlite:///{path}"


# --------------------------------------------------------------------------------------------
# the phases
# --------------------------------------------------------------------------------------------
@dataclass
class Report:
    figures: list[tuple[str, str, str, str]] = field(default_factory=list)   # name, value, target, verdict
    notes: list[str] = field(default_factory=list)
    started: str = ""
    tree: str = ""

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        self.figures.append((name, value, target, verdict))
        print(f"  {name}: {value}" + (f"   (target {target}: {verdict})" if target else ""), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)


def do_import(kind: str, csv_path: Path, url: str) -> Run:
    r = measure([str(RAPPEL), "import", kind, str(csv_path), "--db", url, "--rules", str(RULES)])
    if r.rc != 0:
        raise RuntimeError(f"import {kind} failed (exit {r.rc}): {r.stderr.strip()[-800:]}")
    return r


def dry_run(url: str, out: Path, day: dt.date = DAY) -> tuple[Run, dict]:
    cmd = [str(RAPPEL), "run", "--on", day.isoformat(), "--dry-run", "--json", "--db", url, "--rules", str(RULES)]
    r = measure(cmd, stdout_file=out, keep_stdout=False)
    if r.rc != 0:
        raise RuntimeError(f"dry run failed (exit {r.rc}): {r.stderr.strip()[-800:]}")
    return r, count_messages(out)


def count_messages(path: Path) -> dict:
    counts = {"messages": 0, "loans": 0, "email": 0, "letter": 0}
    stages: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            n = json.loads(line)
            counts["messages"] += 1
            counts["loans"] += len(n["loan_ids"])
            counts[n["channel"]] = counts.get(n["channel"], 0) + 1
            stages[n["stage"]] = stages.get(n["stage"], 0) + 1
    counts["stages"] = stages
    return counts


def measure_dry(label: str, url: str, workdir: Path, repeat: int, rep: Report, day: dt.date = DAY,
                target: float = TARGET_DRY_S) -> dict:
    print(f"\n== dry run {label} of {day} (rappel run --dry-run --json), {repeat}x", flush=True)
    runs = []
    counts = {}
    for k in range(repeat):
        r, counts = dry_run(url, workdir / f"dry-{label.replace(' ', '-')}.jsonl", day)
        runs.append(r)
        print(f"  run {k + 1}: {r.wall:.2f} s (CPU {r.cpu:.2f} s), peak RSS {r.rss_mb:.0f} MB, {counts['messages']} messages", flush=True)
    inproc = measure(self_cmd("--_inproc", url, "--repeat", str(repeat), "--day", day.isoformat()))
    if inproc.rc != 0:
        raise RuntimeError(f"in-process measurement failed: {inproc.stderr.strip()[-800:]}")
    ip = json.loads(inproc.stdout.strip().splitlines()[-1])
    wall = statistics.median(r.wall for r in runs)
    cpu = statistics.median(r.cpu for r in runs)
    rep.add(f"dry run {label}: wall, median of {repeat}", f"{wall:.2f} s "
            f"[{', '.join(f'{r.wall:.2f}' for r in runs)}] (CPU {cpu:.2f} s)", f"≤ {target:g} s",
            wall <= target)
    P = ip["parts"]

    def wc(k):
        return f"{P[k]['wall']:.2f} s (CPU {P[k]['cpu']:.2f})"

    rep.add(f"dry run {label}: in-process plan_for, median", f"{wc('plan_for')} = candidates() {wc('candidates')}"
            f" + plan_day {wc('plan_day')}")
    rep.add(f"dry run {label}: plan_day breakdown (CPU s)",
            f"pairs {P['pairs']['cpu']:.2f}, durable-rules {P['rules']['cpu']:.2f}, reference cross-check "
            f"{P['reference']['cpu']:.2f}, grouping/notices {P['grouping']['cpu']:.2f}")
    rep.add(f"dry run {label}: process overhead (CPU s)",
            f"imports {P['imports']['cpu']:.2f} + policy & template lint {P['load_checked']['cpu']:.2f} + "
            f"Store() {P['store_open']['cpu']:.2f} + JSON output {P['output']['cpu']:.2f}; "
            f"wall − in-process plan_for = {wall - P['plan_for']['wall']:.2f} s")
    rep.add(f"dry run {label}: raw query of the same rows (driver only), median",
            f"{P['raw']['wall']:.3f} s (CPU {P['raw']['cpu']:.3f}), {ip['raw_rows']} rows")
    rep.add(f"dry run {label}: candidates / engine events / due pairs",
            f"{ip['candidates']} / {ip['events']} / {ip['due']}")
    rep.add(f"dry run {label}: messages (JSON lines)", f"{counts['messages']} ({counts.get('email', 0)} email, "
            f"{counts.get('letter', 0)} letter; {counts['loans']} loans; by stage {counts['stages']})")
    rss = max(r.rss_mb for r in runs)
    rep.add(f"dry run {label}: peak RSS", f"{rss:.0f} MB (in-process child: {inproc.rss_mb:.0f} MB)",
            f"≤ {TARGET_RSS_MB:.0f} MB", rss <= TARGET_RSS_MB)
    return {"wall": wall, "cpu": cpu, "inproc": ip, "counts": counts, "rss": rss}


class Backend:
    """Where the benchmark's databases live: SQLite files in the workdir, or databases of their own on
    the server of ``--db URL`` (PostgreSQL: a copy is CREATE DATABASE … TEMPLATE), dropped at the end."""

    def __init__(self, workdir: Path, server: str | None):
        self.workdir, self.server = workdir, server
        self.kind = "sqlite" if server is None else server.split(":", 1)[0].split("+", 1)[0]
        self.made: list[str] = []

    def url(self, name: str) -> str:
        if self.server is None:
            return f"sqlite:///{self.workdir / (name + '.db')}"
        from sqlalchemy import make_url
        return make_url(self.server).set(database=self._db(name)).render_as_string(hide_password=False)

    def _db(self, name: str) -> str:
        return f"rappel_bench_{name.replace('-', '_')}"

    def exists(self, name: str) -> bool:
        if self.server is None:
            return (self.workdir / (name + ".db")).exists()
        return self._admin(f"SELECT 1 FROM pg_database WHERE datname = '{self._db(name)}'", fetch=True)

    def _admin(self, sql: str, fetch: bool = False):
        from sqlalchemy import create_engine, text
        admin = create_engine(self.server, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                result = conn.execute(text(sql))
                return bool(result.fetchall()) if fetch else None
        finally:
            admin.dispose()

    def fresh(self, name: str) -> str:
        if self.server is None:
            return fresh_db(self.workdir / (name + ".db"))
        self._admin(f"DROP DATABASE IF EXISTS {self._db(name)} WITH (FORCE)")
        self._admin(f"CREATE DATABASE {self._db(name)}")
        return self.url(name)

    def copy(self, src: str, dst: str) -> str:
        if self.server is None:
            sqlite_copy(self.workdir / (src + ".db"), self.workdir / (dst + ".db"))
        else:
            self._admin(f"DROP DATABASE IF EXISTS {self._db(dst)} WITH (FORCE)")
            self._admin(f"CREATE DATABASE {self._db(dst)} TEMPLATE {self._db(src)}")
        return self.url(dst)

    def query(self, name: str, sql: str) -> list[tuple]:
        from sqlalchemy import create_engine, text
        engine = create_engine(self.url(name))
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()


def generate_snapshot(src: Path, dst: Path, every: int = 100) -> int:
    """The next night's full export: the same open loans, one in ``every`` renewed (due 14 days later)."""
    changed = 0
    with open(src, newline="", encoding="utf-8") as fin, open(dst, "w", newline="", encoding="utf-8") as fout:
        r, w = csv.reader(fin), csv.writer(fout)
        head = next(r)
        w.writerow(head)
        due = head.index("due_date")
        for i, row in enumerate(r):
            if i % every == 0:
                row[due] = (dt.date.fromisoformat(row[due][:10]) + dt.timedelta(days=14)).isoformat()
                changed += 1
            w.writerow(row)
    return changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loans", type=int, default=1_000_000)
    ap.add_argument("--patrons", type=int, default=200_000)
    ap.add_argument("--days-spread", type=int, default=366, metavar="N",
                    help="the open loans' due dates spread over N days from D-90 (150: about 80,000 candidates "
                         "on D for 1M loans; 366: about 40,000)")
    ap.add_argument("--db", default=None, metavar="URL",
                    help="a PostgreSQL server (…/postgres): the same table there, in databases of its own; "
                         "each figure compared with the last SQLite run's of the same data")
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench-data")
    ap.add_argument("--repeat", type=int, default=3, help="dry runs per database (median)")
    ap.add_argument("--skip-real", action="store_true", help="no real run")
    ap.add_argument("--skip-2m", action="store_true", help="no scaling database")
    ap.add_argument("--skip-smtp", action="store_true", help="no SMTP dispatch (benchmarks/dispatch.py)")
    ap.add_argument("--smtp-notices", type=int, default=5000)
    ap.add_argument("--reuse", action="store_true", help="reuse CSV files and databases left by a previous run")
    args = ap.parse_args()

    workdir = args.workdir if args.workdir.is_absolute() else (Path.cwd() / args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rep = Report()
    n_l, n_p = args.loans, args.patrons
    tag = f"{n_l // 1000}k" if n_l < 1_000_000 else f"{n_l / 1e6:g}M"
    tag2 = f"{2 * n_l // 1000}k" if 2 * n_l < 1_000_000 else f"{2 * n_l / 1e6:g}M"
    patrons_csv, loans_csv, extra_csv = workdir / "patrons.csv", workdir / "loans.csv", workdir / "loans-extra.csv"
    snap_csv = workdir / "loans-snapshot.csv"
    back = Backend(workdir, args.db)
    kind = back.kind
    done = lambda name: workdir / f"{kind}-{name}.ok"   # noqa: E731
    url1 = back.url("bench-1")

    print(f"rappel daily-run benchmark: day {DAY}, {n_p} patrons, {n_l} loans over {args.days_spread} days, "
          f"{kind}, workdir {workdir}")
    rep.started = machine()
    rep.tree = tree()
    print(f"machine: {rep.started}", flush=True)
    print(f"tree: {rep.tree}", flush=True)
    results: dict = {}
    t = Targets(rep, kind, workdir / "figures-sqlite.json")
    try:
        # 1. data ------------------------------------------------------------------------
        print("\n== generating CSV files", flush=True)
        meta = workdir / "generated.json"
        wanted = {"patrons": n_p, "loans": n_l, "seed": SEED, "day": DAY.isoformat(), "generator": GENERATOR,
                  "spread": args.days_spread}
        if args.reuse and meta.exists() and json.loads(meta.read_text()) == wanted:
            rep.note("reusing the CSV files of a previous run")
        else:
            for stale in (meta, extra_csv, snap_csv, *workdir.glob("*.ok")):   # databases of other data
                stale.unlink(missing_ok=True)
            t0 = time.perf_counter()
            rng = random.Random(SEED)
            generate_patrons(patrons_csv, n_p, rng)
            generate_loans(loans_csv, n_l, n_p, rng, args.days_spread)
            meta.write_text(json.dumps(wanted))
            rep.add("generation (patrons + loans CSV)", f"{time.perf_counter() - t0:.1f} s "
                    f"({(patrons_csv.stat().st_size + loans_csv.stat().st_size) / 1e6:.0f} MB)")
        if not args.skip_2m and not extra_csv.exists():
            t0 = time.perf_counter()
            generate_extra_loans(extra_csv, n_l, n_l + 1, n_p, random.Random(SEED + 1))
            rep.add("generation (non-candidate loans CSV)", f"{time.perf_counter() - t0:.1f} s "
                    f"({extra_csv.stat().st_size / 1e6:.0f} MB)")
        if not snap_csv.exists():
            generate_snapshot(loans_csv, snap_csv)

        # 2. import ----------------------------------------------------------------------
        if args.reuse and back.exists("bench-1") and done("bench-1").exists():
            rep.note(f"reusing bench-1 (import not measured)")
        else:
            done("bench-1").unlink(missing_ok=True)
            print(f"\n== import into a fresh {kind} database (rappel import)", flush=True)
            back.fresh("bench-1")
            rp = do_import("patrons", patrons_csv, url1)
            rl = do_import("loans", loans_csv, url1)
            rep.add(f"import {n_p} patrons", f"{rp.wall:.1f} s (CPU {rp.cpu:.1f} s), peak RSS {rp.rss_mb:.0f} MB")
            t.check("import loans (CSV)", f"import {n_l} loans", rl.wall, f"CPU {rl.cpu:.1f} s", TARGET_IMPORT_S,
                    rl.rss_mb)
            done("bench-1").write_text("ok")
            print("\n== snapshot re-import, 1 % changed (rappel import loans --snapshot --libraries all)", flush=True)
            url_s = back.copy("bench-1", "bench-snap")
            rs = measure([str(RAPPEL), "import", "loans", str(snap_csv), "--snapshot", "--libraries", "all",
                          "--on", DAY.isoformat(), "--db", url_s, "--rules", str(RULES)])
            if rs.rc != 0:
                raise RuntimeError(f"snapshot import failed (exit {rs.rc}): {rs.stderr.strip()[-800:]}")
            t.check("snapshot re-import", f"snapshot re-import of {n_l} loans, 1 % changed", rs.wall,
                    f"CPU {rs.cpu:.1f} s; {rs.stdout.strip().splitlines()[-1][:90] if rs.stdout.strip() else ''}",
                    TARGET_IMPORT_S, rs.rss_mb)

        # 3./4. dry run --------------------------------------------------------------------
        results["dry1"] = d1 = measure_dry(tag, url1, workdir, args.repeat, rep)
        t.check("dry run", f"dry run, {d1['inproc']['candidates']} candidates, empty ledger", d1["wall"],
                f"CPU {d1['cpu']:.2f} s", TARGET_DRY_S, d1["rss"])
        raw = d1["inproc"]["parts"]["raw"]["wall"]
        ratio = d1["wall"] / raw if raw else float("inf")
        t.ratio("dry run / raw query", f"dry run / raw {kind} query of the same candidates (and ledger), "
                f"{raw:.3f} s", ratio, TARGET_RAW_RATIO)

        # the next day: the ledger holds D's decisions (recorded as `rappel run` would, nothing delivered)
        print(f"\n== the next day: D's decisions recorded, dry run of D+1", flush=True)
        url_n = back.copy("bench-1", "bench-next")
        rec = measure(self_cmd("--_record", url_n, DAY.isoformat()))
        if rec.rc != 0:
            raise RuntimeError(f"recording D failed: {rec.stderr.strip()[-800:]}")
        rep.add("the next day: D's decisions recorded", rec.stdout.strip().splitlines()[-1])
        results["next"] = dn = measure_dry(f"{tag} next day", url_n, workdir, args.repeat, rep,
                                           DAY + dt.timedelta(days=1), TARGET_NEXT_S)
        t.check("dry run, next day", f"dry run D+1, {dn['inproc']['candidates']} candidates, ledger of D",
                dn["wall"], f"CPU {dn['cpu']:.2f} s", TARGET_NEXT_S, dn["rss"])

        # 6. scaling ---------------------------------------------------------------------
        if not args.skip_2m:
            url2 = back.url("bench-2")
            if args.reuse and back.exists("bench-2") and done("bench-2").exists():
                rep.note("reusing bench-2")
            else:
                done("bench-2").unlink(missing_ok=True)
                print(f"\n== scaling database: copy of {tag} + {n_l} non-candidate loans", flush=True)
                back.copy("bench-1", "bench-2")
                rx = do_import("loans", extra_csv, url2)
                rep.add(f"import +{n_l} loans into the {tag} database",
                        f"{rx.wall:.1f} s (CPU {rx.cpu:.1f} s), peak RSS {rx.rss_mb:.0f} MB")
                done("bench-2").write_text("ok")
            results["dry2"] = measure_dry(tag2, url2, workdir, args.repeat, rep)
            scaling(rep, results, tag, tag2)
            d2 = results["dry2"]
            t.ratio(f"dry run {tag2} / {tag}", f"dry run {tag2} loans / {tag}, same candidates",
                    d2["wall"] / d1["wall"], TARGET_RATIO, d2["rss"])

        # 5. real run ----------------------------------------------------------------------
        if not args.skip_real:
            real_run(back, workdir, tag, rep, t)
        if not args.skip_smtp:
            smtp(back, rep, t, args.smtp_notices)
        startup(url1, rep, t)
    except Exception as exc:  # a report: say what broke, print what was measured
        import traceback
        traceback.print_exc()
        rep.note(f"benchmark stopped: {type(exc).__name__}: {exc}")

    t.save()
    print_summary(rep, n_p, n_l)
    t.print_table(f"{kind}, {n_l} loans over {args.days_spread} days; tree {rep.tree}")
    return 0


def scaling(rep: Report, results: dict, tag: str, tag2: str) -> None:
    d1, d2 = results["dry1"], results["dry2"]
    ratio = d2["wall"] / d1["wall"]
    rep.add(f"scaling: dry-run wall {tag2}/{tag}", f"{ratio:.2f}× ({d2['wall']:.2f} s / {d1['wall']:.2f} s; "
            f"CPU {d2['cpu'] / d1['cpu']:.2f}×)",
            f"≤ {TARGET_RATIO}×", ratio <= TARGET_RATIO)
    p1, p2 = d1["inproc"]["parts"], d2["inproc"]["parts"]
    rep.add(f"scaling: in-process plan_for {tag2}/{tag}", f"{p2['plan_for']['wall'] / p1['plan_for']['wall']:.2f}× "
            f"(CPU {p2['plan_for']['cpu'] / p1['plan_for']['cpu']:.2f}×; candidates() CPU "
            f"{p2['candidates']['cpu']:.2f} s vs {p1['candidates']['cpu']:.2f} s)")
    same = d1["inproc"]["candidates"] == d2["inproc"]["candidates"] and d1["counts"]["messages"] == d2["counts"]["messages"]
    rep.add("scaling: same candidates and messages on both databases", "yes" if same else
            f"NO ({d1['inproc']['candidates']} vs {d2['inproc']['candidates']})", "identical", same)


def real_run(back: Backend, workdir: Path, tag: str, rep: Report, t: Targets) -> None:
    print(f"\n== real run on a copy of the {tag} database (CLI, local outbox)", flush=True)
    url = back.copy("bench-1", "bench-real")
    outbox = workdir / "outbox"
    shutil.rmtree(outbox, ignore_errors=True)
    cmd = [str(RAPPEL), "run", "--on", DAY.isoformat(), "--json", "--outbox", str(outbox), "--db", url,
           "--rules", str(RULES)]
    r = measure(cmd, stdout_file=workdir / "real.jsonl", keep_stdout=False)
    counts = count_messages(workdir / "real.jsonl")
    m = re.search(r"delivered (\d+) of (\d+) pending", r.stderr)
    files = [p for p in outbox.rglob("*") if p.is_file()] if outbox.exists() else []
    eml = sum(p.suffix == ".eml" for p in files)
    pdf = sum(p.suffix == ".pdf" for p in files)
    size = sum(p.stat().st_size for p in files)
    rep.add(f"real run {tag}: wall", f"{r.wall:.1f} s (CPU {r.cpu:.1f} s; exit {r.rc})")
    rep.add(f"real run {tag}: messages decided / delivered",
            f"{counts['messages']} / {m.group(1) + ' of ' + m.group(2) if m else 'unknown (no summary line)'}")
    rep.add(f"real run {tag}: files written", f"{len(files)} ({eml} .eml, {pdf} .pdf, {size / 1e6:.0f} MB)")
    if m and int(m.group(1)):
        rep.add(f"real run {tag}: time per delivered message", f"{1000 * r.wall / int(m.group(1)):.1f} ms")
    # each file's time since the one written before it is its channel's: the rate of each channel
    stamps = sorted((p.stat().st_mtime_ns, p.suffix) for p in files)
    spent = {".eml": 0, ".pdf": 0}
    for (a, _), (b, suffix) in zip(stamps, stamps[1:]):
        spent[suffix] = spent.get(suffix, 0) + (b - a)
    for suffix, n, key, goal in ((".eml", eml, "real run, emails", TARGET_EMAILS_S),
                                 (".pdf", pdf, "real run, letters", TARGET_LETTERS_S)):
        if n > 1 and spent[suffix]:
            t.rate(key, f"real run to the outbox: {n} {suffix} files, {spent[suffix] / 1e9:.1f} s between files",
                   n / (spent[suffix] / 1e9), goal, r.rss_mb)
    rep.add(f"real run {tag}: peak RSS", f"{r.rss_mb:.0f} MB", f"≤ {TARGET_RSS_MB:.0f} MB", r.rss_mb <= TARGET_RSS_MB)
    if r.rc != 0:
        tail = [line for line in r.stderr.strip().splitlines() if line.strip()][-3:]
        rep.note(f"real run exit {r.rc}: {' | '.join(tail)[:400]}")
    rows = dict(back.query("bench-real", "SELECT status, count(*) FROM notices GROUP BY status"))
    ledger = dict(back.query("bench-real", "SELECT status, count(*) FROM ledger GROUP BY status"))
    rep.add(f"real run {tag}: notices by status", json.dumps(rows))
    rep.add(f"real run {tag}: ledger rows by status", json.dumps(ledger))


def smtp(back: Backend, rep: Report, t: Targets, n: int) -> None:
    print(f"\n== dispatch to aiosmtpd, {n} emails (benchmarks/dispatch.py)", flush=True)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "dispatch.py"), "--notices", str(n)]
    if back.server is not None:
        cmd += ["--db", back.fresh("bench-smtp")]
    r = measure(cmd)
    m = re.search(r"= (\d+) emails/s", r.stdout)
    for line in r.stdout.strip().splitlines():
        print(f"  | {line}")
    if m is None:
        rep.note(f"dispatch benchmark gave no rate (exit {r.rc}): {r.stderr.strip()[-300:]}")
        return
    t.rate("SMTP dispatch", f"dispatch to aiosmtpd, one connection, {n} emails", float(m.group(1)), TARGET_SMTP_S,
           r.rss_mb)


def startup(url: str, rep: Report, t: Targets) -> None:
    print("\n== start-up: rappel --help, rappel lint (5x, median)", flush=True)
    for key, cmd, goal in (("rappel --help", [str(RAPPEL), "--help"], TARGET_HELP_S),
                           ("rappel lint", [str(RAPPEL), "lint", "--rules", str(RULES)], TARGET_LINT_S)):
        runs = [measure(cmd) for _ in range(5)]
        wall = statistics.median(r.wall for r in runs)
        t.check(key, f"{' '.join(cmd[1:2])} start-up [{', '.join(f'{r.wall:.2f}' for r in runs)}]", wall,
                f"exit {runs[0].rc}", goal, max(r.rss_mb for r in runs))


class Targets:
    """The issue's targets, one row each: measured, goal, PASS/FAIL; peak RSS of each measured process;
    on PostgreSQL, each figure against the last SQLite run's (saved in the workdir)."""

    def __init__(self, rep: Report, kind: str, saved: Path):
        self.rep, self.kind, self.saved = rep, kind, saved
        self.rows: list[tuple] = []
        self.figures: dict[str, float] = {}
        self.sqlite: dict[str, float] = {}
        if kind != "sqlite" and saved.exists():
            self.sqlite = json.loads(saved.read_text())

    def _row(self, key, label, shown, goal, ok, value, higher_better, rss):
        self.figures[key] = value
        other = self.sqlite.get(key) if self.kind != "sqlite" else None
        vs = ""
        if other:
            times = (other / value) if higher_better else (value / other)
            vs = f"{times:.2f}× SQLite ({other:.3g}): {'PASS' if times <= TARGET_PG else 'FAIL'}"
        rss_s = "" if rss is None else f"{rss:.0f} MB: {'PASS' if rss <= TARGET_RSS_MB else 'FAIL'}"
        self.rows.append((key, shown, goal, "PASS" if ok else "FAIL", rss_s, vs, label))
        self.rep.add(f"TARGET {key} ({label})", shown, goal, ok)

    def check(self, key, label, seconds, detail, goal, rss=None):
        self._row(key, label, f"{seconds:.2f} s ({detail})", f"≤ {goal:g} s", seconds <= goal, seconds, False, rss)

    def ratio(self, key, label, value, goal, rss=None):
        self._row(key, label, f"{value:.2f}×", f"≤ {goal:g}×", value <= goal, value, False, rss)

    def rate(self, key, label, per_s, goal, rss=None):
        self._row(key, label, f"{per_s:.0f}/s", f"≥ {goal:g}/s", per_s >= goal, per_s, True, rss)

    def save(self) -> None:
        if self.kind == "sqlite" and self.figures:
            self.saved.write_text(json.dumps(self.figures, indent=1))

    def print_table(self, title: str) -> None:
        print("\n" + "=" * 100)
        print(f"TARGETS — {title}")
        pg = self.kind != "sqlite"
        head = ["target", "measured", "goal", "", f"peak RSS (≤ {TARGET_RSS_MB:.0f} MB)"]
        if pg:
            head.append(f"vs SQLite (≤ {TARGET_PG}×)")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for key, shown, goal, verdict, rss_s, vs, _ in self.rows:
            cells = [key, shown, goal, verdict, rss_s or "—"] + ([vs or "no SQLite figure"] if pg else [])
            print("| " + " | ".join(cells) + " |")
        verdicts = [r[3] for r in self.rows] + [r[4].rsplit(" ", 1)[-1] for r in self.rows if r[4]] + \
                   ([r[5].rsplit(" ", 1)[-1] for r in self.rows if r[5]] if pg else [])
        print(f"{verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL")


def machine() -> str:
    model = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPU(s) {model}{mem}, load average {load}; Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")


def tree() -> str:
    """The commit measured, and the files changed on top of it (others work in the same tree)."""
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.split("\n")
    except OSError:
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head.strip()[:70]}" + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def print_summary(rep: Report, n_p: int, n_l: int) -> None:
    print("\n" + "=" * 100)
    print(f"SUMMARY — day {DAY}, {n_p} patrons, {n_l} loans")
    print(f"machine at start: {rep.started}")
    print(f"machine at end:   {machine()}")
    print(f"tree: {rep.tree}")
    print("=" * 100)
    w0 = min(60, max(len(f[0]) for f in rep.figures)) if rep.figures else 20
    for name, value, target, verdict in rep.figures:
        tail = f"  [{target}: {verdict}]" if target else ""
        print(f"{name:<{w0}}  {value}{tail}")
    fails = [f[0] for f in rep.figures if f[3] == "FAIL"]
    print("-" * 100)
    print(f"targets: {sum(f[3] == 'PASS' for f in rep.figures)} PASS, {len(fails)} FAIL"
          + (f" ({'; '.join(fails)})" if fails else ""))
    for n in rep.notes:
        print(f"note: {n}")


# --------------------------------------------------------------------------------------------
# child-process modes (not for users): the library calls the CLI would make, timed from inside
# --------------------------------------------------------------------------------------------
def child_record(url: str, day: dt.date) -> int:
    """Decide ``day`` and record its decisions as `rappel run` does before delivering (nothing delivered)."""
    from service import day as pipeline
    from service import rules as rules_
    from adapters.store.database import Store
    policy, _ = rules_.load_checked(RULES)
    store = Store(url)
    plan = pipeline.plan_for(store, policy, day)
    store.record(plan)
    print(f"{len(plan.notices)} notices, {len(plan.decisions)} ledger rows recorded for {day}")
    return 0


def raw_query(url: str, policy, day: dt.date) -> int:
    """The candidates' rows (loans joined to patrons, less those the ledger settles) and their ledger
    rows, straight from the driver: the statements Store.candidates runs, with their values written in."""
    from sqlalchemy import create_engine
    from adapters.store.candidates import candidate_queries
    queries = candidate_queries(policy, day)
    if queries is None:
        return 0
    dialect = create_engine(url).dialect
    rows, ledger = (str(q.compile(dialect=dialect, compile_kwargs={"literal_binds": True})) for q in queries)
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("///", 1)[1])
    else:
        import psycopg
        from sqlalchemy import make_url
        conn = psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        cur = conn.cursor()
        cur.execute(ledger)
        cur.fetchall()
        cur.execute(rows)
        return len(cur.fetchall())
    finally:
        conn.close()


def child_inproc(url: str, repeat: int, day: dt.date = DAY) -> int:
    """The dry run's parts, timed from inside one process: wall and CPU seconds of each."""
    import contextlib
    import resource

    def clock():
        return time.perf_counter(), time.process_time()

    def since(t):
        return time.perf_counter() - t[0], time.process_time() - t[1]

    t = clock()
    import cli  # (what `rappel run` imports before working)
    from adapters.channels import registry  # noqa: F401  (the channels `rappel run` builds, dry run included)
    from service import day as pipeline
    from service import dayview
    from service import rules as rules_
    from adapters.store.database import Store
    from engine import decide, reference, rules
    imports = since(t)
    t = clock()
    policy, _ = rules_.load_checked(RULES)   # the policy and the templates' lint, as `rappel run` does
    load = since(t)
    t = clock()
    store = Store(url)
    store_open = since(t)

    parts: dict[str, list] = {k: [] for k in ("plan_for", "candidates", "plan_day", "pairs", "rules", "reference",
                                              "output", "raw")}
    plan = got = None
    raw_rows = 0
    for _ in range(repeat):
        t = clock()
        raw_rows = raw_query(url, policy, day)
        parts["raw"].append(since(t))
        t = clock()
        plan = pipeline.plan_for(store, policy, day)
        parts["plan_for"].append(since(t))
        pause = pipeline.collector_paused()     # the parts as plan_for and the dry run's output run them
        pause.__enter__()
        t = clock()
        cands, pats = store.candidates(policy, day)
        parts["candidates"].append(since(t))
        t = clock()
        decide.plan_day(policy, cands, pats, day)
        parts["plan_day"].append(since(t))
        t = clock()
        pairs = decide.evaluation_pairs(policy, cands, day)
        parts["pairs"].append(since(t))
        t = clock()
        got = rules.evaluate_here(policy, cands, day, pairs)
        parts["rules"].append(since(t))
        t = clock()
        expected = {(ci, si) for ci, si in pairs if reference.is_due(policy, si, cands[ci], day)}
        parts["reference"].append(since(t))
        assert got == expected
        t = clock()
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            cli.print_lines(dayview.messages(plan, lambda n: n.destination), True)
        parts["output"].append(since(t))
        pause.__exit__(None, None, None)
        del cands, pats, expected

    med = statistics.median
    out = {k: {"wall": med(x[0] for x in v), "cpu": med(x[1] for x in v)} for k, v in parts.items()}
    rest = {m: max(0.0, out["plan_day"][m] - out["pairs"][m] - out["rules"][m] - out["reference"][m])
            for m in ("wall", "cpu")}
    out["grouping"] = rest
    out["imports"] = dict(zip(("wall", "cpu"), imports))
    out["load_checked"] = dict(zip(("wall", "cpu"), load))
    out["store_open"] = dict(zip(("wall", "cpu"), store_open))
    print(json.dumps({
        "parts": out, "raw_rows": raw_rows,
        "candidates": plan.candidates, "events": plan.events, "due": len(got),
        "notices": len(plan.notices), "decisions": len(plan.decisions),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if len(sys.argv) > 1 and sys.argv[1] == "--_inproc":   # --_inproc URL --repeat N --day D
        sys.exit(child_inproc(sys.argv[2], int(sys.argv[4]), dt.date.fromisoformat(sys.argv[6])))
    if len(sys.argv) > 1 and sys.argv[1] == "--_record":   # --_record URL D
        sys.exit(child_record(sys.argv[2], dt.date.fromisoformat(sys.argv[3])))
    sys.exit(main())
