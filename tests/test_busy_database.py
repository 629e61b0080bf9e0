"""A routine import does not make a run fail nor repeat a message (SQLite). Two real processes: a
`rappel run` delivering 400 emails to an SMTP server that takes its time over each (aiosmtpd,
in-process), and a `rappel import loans` of a large file started while it sends. The import's write
holds SQLite's write lock for seconds; the run's commits wait for it (Store.patiently) instead of
failing, and every message is recorded: 0 lost, 0 repeated, both exit 0, a rerun sends nothing.

The busy timeout is set to 1 s for both processes (RAPPEL_SQLITE_BUSY_SECONDS; 30 s by default), so
an import of 250,000 rows holds the lock longer than it, as 1.2 million rows do against 30 s."""
from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
import time
from collections import Counter

from sqlalchemy import func, select

from adapters.store.schema import attempts, notices

try:
    from tests.delivery_site import RUN, Site, SmtpServer, _Handler
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import RUN, Site, SmtpServer, _Handler

MESSAGES = 400
IMPORTED = 250_000
DELAY = 0.04          # seconds the server takes over each message: the run lasts ~16 s or more


class SlowHandler(_Handler):
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(DELAY)
        return await super().handle_DATA(server, session, envelope)


def loans_file(path, rows: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["loan_id", "patron_id", "item_barcode", "title", "library", "due_date", "returned_on", "status"])
        for i in range(rows):      # loans due in March: none of them is due for anything on RUN
            out.writerow([f"X{i}", f"P{i % MESSAGES + 1}", f"BX{i}", f"Titre {i}", "SCI", "2027-03-01", "", ""])


def test_a_large_import_during_a_run_neither_fails_it_nor_repeats_a_message(tmp_path):
    server = SmtpServer()
    server.handler = SlowHandler()
    server.start()
    site = Site(tmp_path, f'\ndelivery:\n  email: {{url: "{server.url}"}}\n'
                          f'flood_guard: {{max_per_run: 1000, per_second: null}}\n')
    try:
        for n in range(1, MESSAGES + 1):             # each at their first reminder on RUN (due 2026-11-16)
            site.patron(f"P{n}", f"p{n}@etu.example")
            site.loan(f"L{n}", f"P{n}", "2026-11-16")
        big = tmp_path / "loans.csv"
        loans_file(big, IMPORTED)
        env = {**os.environ, "RAPPEL_INSTALLATION_ID": "test-installation", "RAPPEL_DB_URL": "",
               "RAPPEL_SQLITE_BUSY_SECONDS": "1"}
        common = ["--rules", str(site.rules), "--db", site.store.url]
        run = subprocess.Popen([sys.executable, "-m", "cli", "run", "--on", RUN.isoformat(), "--outbox",
                                str(site.outbox), *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        deadline = time.monotonic() + 30
        while len(server.messages) < 20 and time.monotonic() < deadline:     # the run is sending
            time.sleep(0.05)
        imported = subprocess.run([sys.executable, "-m", "cli", "import", "loans", str(big), *common], env=env,
                                  capture_output=True, text=True, timeout=120)
        out, err = run.communicate(timeout=180)
        assert imported.returncode == 0, imported.stderr
        assert f"{IMPORTED} loans imported" in imported.stdout
        assert run.returncode == 0, err[-3000:]
        assert f"delivered {MESSAGES} of {MESSAGES}" in err
        received = Counter(r for m in server.messages for r in m.rcpt_tos)
        assert len(received) == MESSAGES and set(received.values()) == {1}          # 0 lost, 0 repeated
        with site.store.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(notices).where(notices.c.status == "sent")) == MESSAGES
            by_outcome = dict(conn.execute(select(attempts.c.outcome, func.count()).group_by(attempts.c.outcome)).all())
        assert by_outcome == {"sent": MESSAGES}                                        # every one recorded
        again = subprocess.run([sys.executable, "-m", "cli", "run", "--on", RUN.isoformat(), "--outbox",
                                str(site.outbox), *common], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert "delivered 0 of 0" in again.stderr and len(server.messages) == MESSAGES
    finally:
        server.stop()
        site.close()
