#!/usr/bin/env python
"""Pull benchmark: `rappel pull` of 1,000,000 loans (and 200,000 patrons) from a Koha-shaped MariaDB
database and from an Evergreen-shaped PostgreSQL database.

    .venv/bin/python benchmarks/pull.py [--loans 1000000] [--patrons 200000] [--only mariadb|postgresql]
        [--mariadb URL] [--postgresql URL] [--workdir bench-pull]

For each server that answers (default URLs: $RAPPEL_TEST_MARIADB_URL, $RAPPEL_TEST_DATABASE_URL):

1. creates a database of its own (dropped at the end) with the tables of tests/koha_site.py or
   tests/evergreen_site.py (the published schemas' names and types), and fills it in SQL: N
   patrons, N loans on as many items, due dates spread over 2026-08-25 .. 2027-08-27, alternately
   at the libraries SCI and DROIT, 1.5 % lost, a few waiting holds;
2. `rappel pull` (the shipped preset) into a fresh SQLite file: the patrons, then the loans (the
   first pull: every row new), then the loans again (nothing changed: a night's steady state);
3. prints each step's wall time, CPU time and peak RSS (each step is a child process reaped with
   os.wait4: its own rusage), and exits 0: a report.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RAPPEL = Path(sys.executable).parent / "rappel"

from sqlalchemy import create_engine, make_url, text  # noqa: E402

import evergreen_site  # noqa: E402
import koha_site  # noqa: E402


def koha_fill(url: str, patrons: int, loans: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in koha_site.DDL:
            conn.exec_driver_sql(statement)
        sql = conn.execute
        sql(text("INSERT INTO branches VALUES ('SCI', 'Sciences'), ('DROIT', 'Droit')"))
        sql(text("INSERT INTO categories VALUES ('ETU', 'Étudiants', 'A'), ('PERS', 'Personnels', 'S')"))
        sql(text(
            f"INSERT INTO borrowers (borrowernumber, cardnumber, firstname, surname, email, address, zipcode, city, "
            f"country, branchcode, categorycode, lang) SELECT seq, CONCAT('2', LPAD(seq, 9, '0')), 'Camille', "
            f"CONCAT('Lecteur ', seq), IF(seq % 10 = 0, NULL, CONCAT('lecteur.', seq, '@etu.univ.example')), "
            f"CONCAT(seq % 200 + 1, ' rue Sainte-Catherine'), '33000', 'Bordeaux', 'France', "
            f"IF(seq % 2 = 0, 'SCI', 'DROIT'), IF(seq % 10 = 3, 'PERS', 'ETU'), 'default' FROM seq_1_to_{patrons}"))
        sql(text(f"INSERT INTO biblio (biblionumber, title, datecreated) SELECT seq, "
                             f"CONCAT('Ouvrage numéro ', seq, ' /'), '2020-01-01' FROM seq_1_to_{loans}"))
        sql(text(f"INSERT INTO items (itemnumber, biblionumber, biblioitemnumber, barcode, homebranch, "
                             f"holdingbranch, itemlost) SELECT seq, seq, seq, CONCAT('3', LPAD(seq, 9, '0')), "
                             f"IF(seq % 2 = 0, 'SCI', 'DROIT'), IF(seq % 2 = 0, 'SCI', 'DROIT'), "
                             f"IF(seq % 200 < 3, 1, 0) FROM seq_1_to_{loans}"))
        sql(text(f"INSERT INTO issues (issue_id, borrowernumber, itemnumber, date_due, branchcode, "
                             f"issuedate) SELECT seq, seq % {patrons} + 1, seq, "
                             f"TIMESTAMP('2026-08-25 23:59:00') + INTERVAL (seq % 367) DAY, "
                             f"IF(seq % 2 = 0, 'SCI', 'DROIT'), '2026-08-01 10:00:00' FROM seq_1_to_{loans}"))
        sql(text("INSERT INTO reserves (reserve_id, borrowernumber, reservedate, biblionumber, branchcode, "
                             "found, itemnumber, expirationdate) SELECT seq, seq, '2026-11-10', seq, 'SCI', 'W', "
                             "seq, '2026-11-28' FROM seq_1_to_1000"))
    engine.dispose()


def evergreen_fill(url: str, patrons: int, loans: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(evergreen_site.DDL)
        conn.exec_driver_sql(evergreen_site.SEED)
        sql = conn.execute
        sql(text("INSERT INTO actor.org_unit (id, parent_ou, ou_type, shortname, name) VALUES "
                             "(101, 1, 3, 'SCI', 'Sciences'), (102, 1, 3, 'DROIT', 'Droit')"))
        sql(text(
            f"INSERT INTO actor.usr (id, card, profile, usrname, email, ident_type, first_given_name, family_name, "
            f"mailing_address, home_ou) SELECT g, g, CASE WHEN g % 10 = 3 THEN 5 ELSE 2 END, 'user' || g, "
            f"CASE WHEN g % 10 = 0 THEN NULL ELSE 'lecteur.' || g || '@etu.univ.example' END, 1, 'Camille', "
            f"'Lecteur ' || g, g, 101 + g % 2 FROM generate_series(1, {patrons}) g"))
        sql(text(f"INSERT INTO actor.card (id, usr, barcode) SELECT g, g, '2' || lpad(g::text, 9, '0') "
                             f"FROM generate_series(1, {patrons}) g"))
        sql(text(f"INSERT INTO actor.usr_address (id, usr, street1, city, country, post_code) SELECT g, g, "
                             f"(g % 200 + 1) || ' rue Sainte-Catherine', 'Bordeaux', 'France', '33000' "
                             f"FROM generate_series(1, {patrons}) g"))
        sql(text(f"INSERT INTO reporter.materialized_simple_record (id, title) SELECT g, "
                             f"'Ouvrage numéro ' || g FROM generate_series(1, {loans}) g"))
        sql(text(f"INSERT INTO asset.call_number (id, creator, editor, record, owning_lib, label, "
                             f"label_class) SELECT g, 1, 1, g, 101 + g % 2, 'QA ' || g, 1 "
                             f"FROM generate_series(1, {loans}) g"))
        sql(text(f"INSERT INTO asset.copy (id, circ_lib, creator, call_number, editor, loan_duration, "
                             f"fine_level, barcode) SELECT g, 101 + g % 2, 1, g, 1, 2, 2, '3' || lpad(g::text, 9, '0') "
                             f"FROM generate_series(1, {loans}) g"))
        sql(text(
            f"INSERT INTO action.circulation (id, usr, xact_start, target_copy, circ_lib, circ_staff, "
            f"renewal_remaining, grace_period, due_date, duration, duration_rule, recurring_fine_rule, max_fine_rule, "
            f"stop_fines) SELECT g, g % {patrons} + 1, '2026-08-01 10:00+02', g, 101 + g % 2, 1, 2, '1 day', "
            f"timestamptz '2026-08-25 23:59:59+02' + (g % 367) * interval '1 day', '21 days', 'default', "
            f"'default', 'default', CASE WHEN g % 200 < 3 THEN 'LOST' END FROM generate_series(1, {loans}) g"))
        sql(text("INSERT INTO action.hold_request (id, request_time, capture_time, target, current_copy, "
                             "request_lib, requestor, usr, selection_ou, pickup_lib, hold_type, shelf_time, "
                             "shelf_expire_time) SELECT g, '2026-11-10 09:00+01', '2026-11-20 09:00+01', g, g, 101, g, "
                             "g, 101, 101, 'C', '2026-11-21 09:00+01', '2026-11-28 23:59:59+01' "
                             "FROM generate_series(1, 1000) g"))
        sql(text("ANALYZE"))
    engine.dispose()


def measured(args: list[str], env: dict) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, output) of a child process, from its own rusage."""
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({child.returncode}):\n{out}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.strip()


def bench(kind: str, base: str, preset: str, patrons: int, loans: int, workdir: Path) -> list[str]:
    from sqlalchemy import create_engine

    name = f"rappel_bench_{preset}_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    lines = []
    try:
        started = time.perf_counter()
        (koha_fill if preset == "koha" else evergreen_fill)(url, patrons, loans)
        lines.append(f"{kind}: {preset}-shaped database filled in {time.perf_counter() - started:.1f} s "
                     f"({patrons:,} patrons, {loans:,} loans)")
        rules = workdir / preset / "rules"
        shutil.rmtree(workdir / preset, ignore_errors=True)
        shutil.copytree(ROOT / "rules", rules, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
        db = f"sqlite:///{workdir / preset / 'rappel.db'}"
        env = {**os.environ, "RAPPEL_STATE_DIR": str(workdir / preset / "state")}
        for step, kinds in (("patrons", "patrons"), ("loans, first pull", "loans"), ("loans, unchanged", "loans")):
            (rules / "sources.yaml").write_text(f'sources:\n  {preset}:\n    preset: {preset}\n    url: "{url}"\n'
                                                f"    kinds: [{kinds}]\n", encoding="utf-8")
            wall, cpu, rss, out = measured([str(RAPPEL), "pull", "--rules", str(rules), "--db", db], env)
            lines.append(f"{kind}: pull {step:<18} {wall:7.1f} s wall {cpu:7.1f} s CPU {rss:7.0f} MB peak RSS  "
                         f"| {out}")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name}" + (" WITH (FORCE)" if kind == "postgresql" else "")))
        admin.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--loans", type=int, default=1_000_000)
    parser.add_argument("--patrons", type=int, default=200_000)
    parser.add_argument("--only", choices=("mariadb", "postgresql"))
    parser.add_argument("--mariadb", default=os.environ.get("RAPPEL_TEST_MARIADB_URL",
                                                            "mysql+pymysql://root@127.0.0.1:3306/test"))
    parser.add_argument("--postgresql", default=os.environ.get("RAPPEL_TEST_DATABASE_URL",
                                                               "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench-pull")
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"rappel pull benchmark: commit {commit}, {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    for kind, base, preset in (("mariadb", args.mariadb, "koha"), ("postgresql", args.postgresql, "evergreen")):
        if args.only and args.only != kind:
            continue
        for line in bench(kind, base, preset, args.patrons, args.loans, args.workdir):
            print(line, flush=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
