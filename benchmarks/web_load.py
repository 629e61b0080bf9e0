#!/usr/bin/env python
"""Load check of the staff interface: 50 signed-in staff browsing patron pages and searching.

    .venv/bin/python benchmarks/web_load.py [--patrons 200000] [--sessions 50] [--seconds 30]
                                            [--think 1.0] [--workdir bench-web] [--reuse] [--workers 2]

1. a SQLite database of ``--patrons`` patrons (bulk insert, fixed seed), two loans and a request
   each, one staff account (desk, circulation_desk);
2. `rappel serve --workers N` in its own processes (uvicorn) on a free port of 127.0.0.1;
3. ``--sessions`` sessions, each signed in through the sign-in form, each in a loop for
   ``--seconds``: four patron pages (a random barcode) for one search by name (httpx, asyncio,
   this process), each session waiting ``--think`` seconds on average between two clicks (a
   person reading the page; exponential; 0: the next request as soon as the answer is in);
4. prints p50/p95/p99 of the patron page and of the search, the requests per second, and PASS/FAIL
   against p95 of the patron page <= 100 ms. Exit 0: it is a report.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSWORD = "benchmark password 1"
NAMES = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
         "García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz", "Hernández", "Díaz"]


def build(db: Path, patrons: int) -> None:
    from sqlalchemy import insert

    from adapters.store.database import Store
    from adapters.store.names import backfill
    from adapters.store.schema import loans, patrons as patron_table, requests
    from service import staff
    from service.rules import load_accounts

    rng = random.Random(14)
    day = dt.date(2026, 11, 23)
    with Store(f"sqlite:///{db}") as store:
        with store.engine.begin() as conn:
            for start in range(0, patrons, 20000):
                batch = range(start, min(start + 20000, patrons))
                conn.execute(insert(patron_table), [dict(
                    patron_id=f"P{i}", barcode=f"{2000000000 + i}", first_name=rng.choice(NAMES),
                    last_name=f"{rng.choice(NAMES)}{i % 997}", email=f"p{i}@univ.example", preferred_language="fr",
                    account_type="external" if i % 3 else "internal", record_type="public", user_group="reader",
                    address_line1=f"{i % 90 + 1} rue de la Gare", address_line2="", postal_code="33000",
                    city="Bordeaux", country="France", phone="") for i in batch])
                conn.execute(insert(loans), [dict(
                    loan_id=f"L{i}-{k}", patron_id=f"P{i}", item_barcode=f"3{i:09d}{k}", title=f"Livre {i}-{k}",
                    library=("SCI", "DROIT")[k], due_date=day + dt.timedelta(days=rng.randint(-60, 30)),
                    returned_on=None, status="") for i in batch for k in (0, 1)])
                conn.execute(insert(requests), [dict(
                    request_id=f"R{i}", patron_id=f"P{i}", title=f"Réservation {i}", library="SCI",
                    pickup_library="DROIT", placed_on=day - dt.timedelta(days=5), status="active",
                    expires_on=day + dt.timedelta(days=20)) for i in batch])
            backfill(conn)        # the desk's name search words (rappel's own writes keep them)
        staff.add(store, load_accounts(ROOT / "rules"), "desk", "circulation_desk", PASSWORD,
                  at=dt.datetime.now(dt.timezone.utc), actor="benchmark")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def sign_in(client) -> None:
    await client.get("/login")
    r = await client.post("/login", data={"name": "desk", "password": PASSWORD, "next": "/",
                                          "csrf_token": client.cookies.get("rappel_login_csrf")})
    assert r.status_code == 303, r.text[:300]


async def session(client, patrons: int, until: float, pages: list, searches: list, rng: random.Random,
                  think: float, errors: list) -> None:
    import httpx

    n = 0
    await asyncio.sleep(rng.uniform(0, think))          # the sessions do not all click at once
    while time.perf_counter() < until:
        n += 1
        if n % 5 == 0:
            url, into = f"/?q={rng.choice(NAMES)}{rng.randrange(997)}", searches
        else:
            url, into = f"/patrons/{2000000000 + rng.randrange(patrons)}", pages
        t0 = time.perf_counter()
        try:
            r = await client.get(url)
        except httpx.TransportError as exc:
            errors.append(f"{url}: {type(exc).__name__}")
            continue
        into.append(time.perf_counter() - t0)
        if r.status_code not in (200, 303):
            errors.append(f"{url}: HTTP {r.status_code}")
        if think:
            await asyncio.sleep(rng.expovariate(1 / think))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


async def load(base: str, patrons: int, sessions: int, seconds: float, think: float, errors: list
               ) -> tuple[list, list, float]:
    import httpx

    pages: list[float] = []
    searches: list[float] = []
    clients = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(sessions)]
    try:
        for client in clients:                  # one by one: signing in is argon2's work, on purpose slow
            await sign_in(client)
        until = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(session(c, patrons, until, pages, searches, random.Random(i), think, errors)
                               for i, c in enumerate(clients)))
        return pages, searches, time.perf_counter() - t0
    finally:
        for client in clients:
            await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patrons", type=int, default=200_000)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--think", type=float, default=1.0, help="mean seconds between a session's clicks (a person "
                                                            "reading the page); 0: as fast as answered")
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench-web")
    ap.add_argument("--reuse", action="store_true", help="keep the database of an earlier run")
    ap.add_argument("--workers", type=int, default=2, help="rappel serve --workers (processes)")
    args = ap.parse_args()
    db = args.workdir / "web.db"
    if not (args.reuse and db.exists()):
        shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True)
        t0 = time.perf_counter()
        build(db, args.patrons)
        print(f"built {args.patrons} patrons, {2 * args.patrons} loans, {args.patrons} requests in "
              f"{time.perf_counter() - t0:.1f} s")
    port = free_port()
    env = {**os.environ, "RAPPEL_STATE_DIR": str(args.workdir / "state")}
    server = subprocess.Popen([str(Path(sys.executable).with_name("rappel")), "serve", "--port", str(port),
                               "--insecure-cookies", "--rules", str(ROOT / "rules"), "--db", f"sqlite:///{db}",
                               "--outbox", str(args.workdir / "outbox"), "--workers", str(args.workers)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("rappel serve did not start")
                time.sleep(0.2)
        errors: list[str] = []
        pages, searches, took = asyncio.run(load(base, args.patrons, args.sessions, args.seconds, args.think, errors))
    finally:
        server.terminate()
        server.wait(30)
    print(f"{args.sessions} sessions (think time {args.think:g} s, {args.workers} worker(s)) for {took:.1f} s: {len(pages)} patron pages, {len(searches)} searches, "
          f"{(len(pages) + len(searches)) / took:.0f} requests/s")
    for name, values in (("patron page", pages), ("search", searches)):
        print(f"{name:<12} p50 {pct(values, 50):6.1f} ms  p95 {pct(values, 95):6.1f} ms  p99 {pct(values, 99):6.1f} ms"
              f"  (mean {statistics.mean(values) * 1000:.1f} ms)")
    if errors:
        print(f"{len(errors)} request(s) failed, e.g. {'; '.join(errors[:3])}")
    p95 = pct(pages, 95)
    print(f"{'PASS' if p95 <= 100 else 'FAIL'}: p95 of the patron page {p95:.1f} ms (target <= 100 ms)")


if __name__ == "__main__":
    main()
