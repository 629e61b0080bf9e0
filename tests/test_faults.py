"""Crash safety and one active instance, with real processes and a real SMTP server (aiosmtpd).

- SIGKILL: a daemon is killed at random points of its day (starting, evaluating, rendering,
  talking to the SMTP server, between two messages), at least 20 times; the next daemon takes the
  lease once it expires and finishes the work. No notice may be lost and a kill may repeat at most
  the one message in flight. The counts are printed (pytest -s) and checked.
- Two daemons on one PostgreSQL database for 30 simulated days (time supplied through a clock
  file, not slept), with a graceful handover (SIGTERM) and a crash (SIGKILL) of the active one:
  every due notice reaches the SMTP server exactly once.

Daemons are forked from a warm parent process (all of rappel imported once) so that each trial
pays for its work, not for Python's start-up; each is still its own process, killed for real.
Everything goes through SMTP: patrons' emails, and letters to the libraries' mailboxes.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from service import day as pipeline
from service import rules as rules_
from adapters.channels.memory import MemoryChannel
from adapters.store.lease import read_lease
from adapters.render import message_id
from adapters.store.schema import ledger, loans, notices, runs
from adapters.store.database import Store

try:
    from tests.daemon_cases import ROOT, copy_rules, free_port, loan_row, patron_row, seed
    from tests.conftest import PG_URL, pg_schema
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import ROOT, copy_rules, free_port, loan_row, patron_row, seed
    from conftest import PG_URL, pg_schema

SENDER = "Service du contentieux <contentieux@univ.example>"
INSTALLATION = {"RAPPEL_INSTALLATION_ID": "fault-tests"}
SEED = int(os.environ.get("RAPPEL_FAULT_SEED", "20261123"))


# --- a real SMTP server ------------------------------------------------------------------------------

class Mailbox:
    """What an aiosmtpd server received: (Message-ID, recipient, arrival), in order."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.received: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        head = envelope.content.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        mid = next((line.split(":", 1)[1].strip() for line in head.split("\r\n")
                    if line.lower().startswith("message-id:")), "?")
        with self.lock:
            self.received.append((mid, ",".join(envelope.rcpt_tos), time.monotonic()))
        if self.delay:
            await asyncio.sleep(self.delay)      # a server that takes its time to answer: more to interrupt
        return "250 2.0.0 Ok: queued"

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def ids(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(mid for mid, _, _ in self.received)


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


# --- daemons forked from a warm parent -------------------------------------------------------------

ZYGOTE = r"""
import json, os, sys
import cli, service.daemon, adapters.channels.registry, service.day, adapters.render, engine.rules  # warm
out = sys.stdout
for line in sys.stdin:
    order = json.loads(line)
    if "wait" in order:
        try:
            _, status = os.waitpid(order["wait"], 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = None
        out.write(json.dumps({"code": code}) + "\n"); out.flush()
        continue
    pid = os.fork()
    if pid == 0:
        log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1); os.dup2(log, 2)
        os.environ.update(order["env"])
        code = 0
        try:
            cli.app(order["argv"], prog_name="rappel")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback; traceback.print_exc(); code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    out.write(json.dumps({"pid": pid}) + "\n"); out.flush()
"""


class Forker:
    """A parent process with rappel imported, forking one daemon process per request."""

    def __init__(self, tmp_path: Path):
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.count = 0

    def _ask(self, order: dict) -> dict:
        self.proc.stdin.write(json.dumps(order) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def daemon(self, *args: str, env: dict | None = None) -> int:
        self.count += 1
        log = self.logs / f"daemon-{self.count:02}.log"
        return self._ask({"argv": ["daemon", *args], "env": {**INSTALLATION, **(env or {})}, "log": str(log)})["pid"]

    def wait(self, pid: int) -> int | None:
        return self._ask({"wait": pid})["code"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()

    def log_text(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.logs.iterdir()))


@pytest.fixture
def forker(tmp_path):
    f = Forker(tmp_path)
    yield f
    f.close()


def smtp_rules(tmp_path: Path, port: int, window: int = 2) -> Path:
    """The shipped policy with every message through the SMTP server: emails, and letters to mailboxes."""
    return copy_rules(
        tmp_path,
        ("max_delay_days: 2", f"max_delay_days: {window}"),
        ("letters: {printer: bu-sciences}", "letters: {mailbox: sciences-contentieux@univ.example}"),
        ("  per_second: 10", "  per_second: null"),
        append=f'delivery:\n  email: {{url: "mailto://127.0.0.1:{port}"}}\n')


def set_clock(path: Path, when: dt.datetime) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(when.isoformat(), encoding="utf-8")
    os.replace(tmp, path)


def paris(day: dt.date, hhmm: str = "03:00") -> dt.datetime:
    from zoneinfo import ZoneInfo
    return dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=ZoneInfo("Europe/Paris"))


def library_facts(first: dt.date, days: int, letters_every: int = 1,
                  courtesy_every: int = 2) -> tuple[list[dict], list[dict]]:
    """For each day: a first reminder for a patron with email; every few days one for a patron
    without (a letter to the library's mailbox), and a courtesy notice; each goes on to later stages."""
    patron_rows, loan_rows = [], []
    for n in range(days):
        day = first + dt.timedelta(days=n)
        people = [(f"P{n:02}", None, "SCI")] + ([(f"Q{n:02}", "", "DROIT")] if n % letters_every == 0 else [])
        for pid, email, library in people:
            patron_rows.append(patron_row(pid, email=email))
            loan_rows.append(loan_row(f"L{pid}", pid, day - dt.timedelta(days=7), library))
        if n % courtesy_every == 0:
            patron_rows.append(patron_row(f"C{n:02}"))
            loan_rows.append(loan_row(f"LC{n:02}", f"C{n:02}", day + dt.timedelta(days=3), "SCI"))
    return patron_rows, loan_rows


class Unrendered:
    """Templates that render nothing: the oracle needs the decisions, not the messages."""

    def email(self, ctx):
        from email.message import EmailMessage
        message = EmailMessage()
        message["To"] = ctx.notice.recipient
        return message

    def letter_pdf(self, ctx):
        return b"%PDF-1.4"

    def message(self, ctx, renders):
        return self.email(ctx) if renders == "email" else self.letter_pdf(ctx)


def oracle(tmp_path: Path, rules: Path, facts, days: list[dt.date], changes=None) -> tuple[set[str], dict]:
    """The notice keys, and the ledger's statuses, of an uninterrupted run of those days, in this
    process (no daemon)."""
    store = Store(f"sqlite:///{tmp_path / 'oracle.db'}")
    seed(store, *facts)
    policy, _ = rules_.load_checked(rules)
    templates = Unrendered()
    keys = set()
    for day in days:
        if changes and day in changes:
            changes[day](store.engine)
        result = pipeline.run_day(store, policy, templates, MemoryChannel(), day, now=paris(day))
        assert all(o.status == "sent" for o in result.outcomes)
        keys |= {o.key for o in result.outcomes}
    ledger_counts = db_state(store.engine)[2]
    store.close()
    return keys, ledger_counts


def wait_for(condition, timeout: float, what: str, forker: Forker | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{forker.log_text()[-6000:]}" if forker else ""))


def day_finished(engine, day: dt.date) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(select(func.count()).select_from(runs).where(
            runs.c.kind == "day", runs.c.run_date == day, runs.c.outcome == "ok")))


def holds_lease(engine, pid: int) -> bool:
    info = read_lease(engine)
    return bool(info and info.active and info.holder.split("/")[1] == str(pid))


def db_state(engine) -> tuple[set[str], dict[str, int], dict[str, int]]:
    with engine.connect() as conn:
        keys = set(conn.scalars(select(notices.c.key)))
        by_status = dict(conn.execute(select(notices.c.status, func.count()).group_by(notices.c.status)).all())
        ledger_status = dict(conn.execute(select(ledger.c.status, func.count()).group_by(ledger.c.status)).all())
    return keys, by_status, ledger_status


# --- SIGKILL at random points ------------------------------------------------------------------------

CHAINS, TRIALS = 2, 10     # two independent installations side by side, ten kills each: 20 trials
ONE_MIGRATION_AT_A_TIME = threading.Lock()


def kill_chain(chain: int, tmp_path: Path, url: str) -> dict:
    """One installation (its database, its own SMTP server): a day per trial; the daemon of the day
    is killed at a random point, then restarted (``--once``) to finish the day."""
    from aiosmtpd.controller import Controller

    tmp_path.mkdir()
    rng = random.Random(SEED + chain)
    smtp = Mailbox(delay=0.01)
    controller = Controller(smtp, hostname="127.0.0.1", port=free_port())
    controller.start()
    forker = Forker(tmp_path)
    try:
        first = dt.date(2026, 3, 2)
        days = [first + dt.timedelta(days=n) for n in range(TRIALS)]
        rules = smtp_rules(tmp_path, controller.port)
        facts = library_facts(first, TRIALS)
        with ONE_MIGRATION_AT_A_TIME:                  # alembic's context is global to the process
            store = Store(url)                         # migrated and filled before any daemon runs
            seed(store, *facts)
            expected, expected_ledger = oracle(tmp_path, rules, facts, days)
        clock = tmp_path / "clock"
        args = ["--db", url, "--rules", str(rules), "--outbox", str(tmp_path / "outbox"), "--clock-file",
                str(clock), "--lease-seconds", "1", "--poll-seconds", "0.2", "--no-isolate-rules"]
        kills = []        # (day, how, monotonic time of the kill, messages the killed daemon got through)
        for day in days:
            set_clock(clock, paris(day))
            before = smtp.count()
            pid = forker.daemon(*args)
            started = time.monotonic()
            if rng.random() < 0.4:       # at a random moment of its work: evaluating, recording, rendering…
                pause = rng.uniform(0.0, 0.8)
                how = f"{pause:.2f}s into its tenure"
                while time.monotonic() < started + 15 and not holds_lease(store.engine, pid):
                    time.sleep(0.005)
                time.sleep(pause)
            else:                        # mid-delivery: once k messages are through, then a little later
                k, jitter = rng.randint(0, 2), rng.uniform(0.0, 0.05)
                how = f"after {k} message(s) +{jitter * 1000:.0f}ms"
                while smtp.count() < before + k and time.monotonic() < started + 15:
                    if smtp.count() > before and day_finished(store.engine, day):
                        how += " (fewer that day: killed idle)"
                        break
                    time.sleep(0.002)
                time.sleep(jitter)
            os.kill(pid, signal.SIGKILL)
            kills.append((day, how, time.monotonic(), smtp.count() - before))
            assert forker.wait(pid) == -signal.SIGKILL
            # the restart: takes the lease once the killed one's has expired, finishes the day, exits
            pid = forker.daemon(*args, "--once")
            assert forker.wait(pid) == 0, forker.log_text()[-6000:]
        keys, by_status, ledger_status = db_state(store.engine)
        store.close()
    finally:
        forker.close()
        controller.stop()
    # which kill each repeat follows: the last one before the repeat arrived (the restart sent it
    # again; the first copy may land a moment after the kill, the server reading what the killed
    # process had already written to its socket)
    per_kill = collections.Counter()
    arrivals = collections.defaultdict(list)
    for mid, _, when in smtp.received:
        arrivals[mid].append(when)
    for times in arrivals.values():
        for later in times[1:]:
            per_kill[max((i for i, (_, _, t, _) in enumerate(kills) if t < later), default=-1)] += 1
    return {"kills": kills, "per_kill": per_kill, "expected": expected, "expected_ledger": expected_ledger,
            "keys": keys, "by_status": by_status, "ledger": ledger_status, "received": smtp.ids()}


def test_sigkill_at_random_points_loses_no_notice_and_repeats_at_most_the_one_in_flight(tmp_path, figures):
    """Chain 0 on a SQLite file; chain 1 on PostgreSQL when RAPPEL_TEST_DATABASE_URL is set, else SQLite."""
    from concurrent.futures import ThreadPoolExecutor

    with contextlib.ExitStack() as stack:
        urls = [f"sqlite:///{tmp_path / f'chain-{n}.db'}" for n in range(CHAINS)]
        if PG_URL:
            urls[1] = stack.enter_context(pg_schema())
        with ThreadPoolExecutor(CHAINS) as pool:
            chains = list(pool.map(lambda n: kill_chain(n, tmp_path / f"chain-{n}", urls[n]), range(CHAINS)))
    totals = collections.Counter()
    lines = []
    for n, c in enumerate(chains):
        ids = {message_id(key, SENDER): key for key in c["expected"]}
        c["lost"] = [key for mid, key in ids.items() if c["received"][mid] == 0]
        c["unexpected"] = [mid for mid in c["received"] if mid not in ids]
        totals.update(trials=len(c["kills"]), expected=len(ids), delivered=sum(1 for mid in ids if c["received"][mid]),
                      duplicated=sum(count - 1 for count in c["received"].values()), lost=len(c["lost"]))
        for i, (day, how, _, got) in enumerate(c["kills"]):
            lines.append(f"  chain {n} ({urls[n].split(':')[0].split('+')[0]}) trial {i + 1:2}: {day} killed {how:<30} "
                         f"({got} message(s) through)"
                         + (" — 1 repeated" if c["per_kill"][i] else ""))
    figures(f"SIGKILL trials: {totals['trials']} (seed {SEED}); notices expected {totals['expected']}, "
            f"delivered {totals['delivered']}, duplicated {totals['duplicated']}, lost {totals['lost']}\n"
            + "\n".join(lines))
    for c in chains:
        assert c["keys"] == c["expected"]                        # every due notice decided, none extra
        assert c["by_status"] == {"sent": len(c["expected"])} and c["ledger"] == c["expected_ledger"]
        assert c["lost"] == [] and c["unexpected"] == []
        assert all(n <= 1 for n in c["per_kill"].values()), c["per_kill"]   # at most the one in flight
        assert -1 not in c["per_kill"]                           # no repeat without a kill before it
    assert totals["trials"] >= 20


# --- two daemons, one PostgreSQL database, thirty days -----------------------------------------------

@pytest.fixture
def pg_url():
    if not PG_URL:
        pytest.skip("two daemons on PostgreSQL: set RAPPEL_TEST_DATABASE_URL to run it")
    with pg_schema() as url:
        yield url


def holder_pid(engine) -> int:
    return int(read_lease(engine).holder.split("/")[1])


def test_two_daemons_on_postgresql_for_thirty_days_deliver_every_notice_exactly_once(tmp_path, smtp, forker,
                                                                                      pg_url, figures):
    first = dt.date(2026, 3, 2)
    days = [first + dt.timedelta(days=n) for n in range(30)]
    rules = smtp_rules(tmp_path, smtp.port)
    facts = library_facts(first, 30, letters_every=3, courtesy_every=4)
    returned_on = first + dt.timedelta(days=14)

    def returns(engine):              # day 15: a few books come back before the run; their notices stop
        with engine.begin() as conn:
            conn.execute(update(loans).where(loans.c.loan_id.in_(["LC16", "LP10", "LQ18"]))
                         .values(returned_on=returned_on))

    expected, expected_ledger = oracle(tmp_path, rules, facts, days, {returned_on: returns})
    store = Store(pg_url)
    seed(store, *facts)
    clock = tmp_path / "clock"
    set_clock(clock, paris(first, "01:00"))
    args = ["--db", pg_url, "--rules", str(rules), "--outbox", str(tmp_path / "outbox"), "--clock-file",
            str(clock), "--lease-seconds", "2", "--poll-seconds", "0.3", "--no-isolate-rules"]
    alive = {forker.daemon(*args), forker.daemon(*args)}
    events = []

    def day_done(day):
        with store.engine.connect() as conn:
            ok = conn.scalar(select(func.count()).select_from(runs).where(
                runs.c.kind == "day", runs.c.run_date == day, runs.c.outcome == "ok"))
            pending = conn.scalar(select(func.count()).select_from(notices).where(notices.c.status == "pending"))
        return ok == 1 and pending == 0

    try:
        for n, day in enumerate(days, start=1):
            if day == returned_on:
                returns(store.engine)
            set_clock(clock, paris(day, "02:00"))
            wait_for(lambda: day_done(day), 60, f"the run of {day}", forker)
            if n in (10, 20):        # the active one goes: SIGTERM on day 10, SIGKILL on day 20
                pid = holder_pid(store.engine)
                sig = signal.SIGTERM if n == 10 else signal.SIGKILL
                os.kill(pid, sig)
                assert forker.wait(pid) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
                alive.discard(pid)
                events.append(f"day {n}: {sig.name} to the active daemon")
                wait_for(lambda: read_lease(store.engine).active and holder_pid(store.engine) in alive, 30,
                         "the standby to take over", forker)
            if n in (12, 22):        # and comes back, as a standby
                alive.add(forker.daemon(*args))
                events.append(f"day {n}: a new daemon started")
    finally:
        for pid in alive:
            os.kill(pid, signal.SIGTERM)
        for pid in alive:
            forker.wait(pid)

    keys, by_status, ledger_status = db_state(store.engine)
    received = smtp.ids()
    ids = {message_id(key, SENDER): key for key in expected}
    with store.engine.connect() as conn:
        day_rows = conn.execute(select(runs.c.run_date, runs.c.outcome, runs.c.holder)
                                .where(runs.c.kind == "day")).all()
    holders = {holder for _, _, holder in day_rows}
    figures(f"two daemons, 30 days on PostgreSQL: notices expected {len(expected)}, received {sum(received.values())},"
          f" distinct {len(received)}, duplicated {sum(n - 1 for n in received.values())}, "
          f"lost {sum(1 for mid in ids if not received[mid])}; {len(holders)} daemon processes ran days; "
          + "; ".join(events))
    assert keys == expected
    assert by_status == {"sent": len(expected)} and ledger_status == expected_ledger
    assert received == collections.Counter(list(ids))            # every one exactly once, nothing else
    assert sorted(day for day, _, _ in day_rows) == days         # each day evaluated once…
    assert {outcome for _, outcome, _ in day_rows} == {"ok"}     # …and completed
    assert len(holders) >= 3                                     # by several processes in turn
    store.close()
