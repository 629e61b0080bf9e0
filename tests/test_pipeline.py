"""One day of rappel end to end (service/day.py, service/dispatch.py): import → decide → ledger → deliver.

Real parts: CSV exports imported into a real database (SQLite file; PostgreSQL when configured),
the shipped templates, and two channels: the in-memory one and the file outbox.

Unless a test says otherwise: the shipped policy (rules/reminders.yaml) — courtesy 3 days before
the due date, first reminder on day 7, second on day 21, letter on day 35, each caught up within 2
days; lost and claimed_returned loans excluded; contacts get no loan notices; a patron without an
email address gets the reminders after the due date as letters (one per library), no courtesy.

A message is written (stage, channel, patron, library of a letter or None, loan ids).
"""
from __future__ import annotations

import csv
import email
import email.policy
from pathlib import Path

import pytest
from sqlalchemy import select

from service import day as pipeline
from adapters.channels.base import BaseChannel, Delivery
from adapters.channels.memory import MemoryChannel
from adapters.sources.csvfiles import import_csv
from adapters.channels.outbox import OutboxChannel
from adapters.render import Templates
from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, ledger, notices
from adapters.store.database import Store

try:
    from tests.engine_cases import d, default_policy, policy_variant
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import d, default_policy, policy_variant

RULES = Path(__file__).resolve().parent.parent / "rules"


class World:
    """A library's facts as CSV exports, a database, the templates and a channel: one installation."""

    def __init__(self, tmp_path: Path, db_url: str, channel: str = "memory", policy=None):
        self.dir = tmp_path
        self.policy = policy or default_policy()
        self.templates = Templates(RULES, self.policy)
        self.store = Store(db_url)
        self.outbox = tmp_path / "outbox"
        self.kind = channel
        self.channel = MemoryChannel() if channel == "memory" else OutboxChannel(self.outbox)
        self.patrons: dict[str, dict] = {}
        self.loans: dict[str, dict] = {}
        self._memory_seen = 0
        self.last = None

    # -- facts: what the library system exports every night --------------------------------------
    def patron(self, patron_id: str, *, email: bool | str = True, record_type: str = "public", group: str = "",
               name: str | None = None) -> None:
        address = email if isinstance(email, str) else (f"{patron_id.lower()}@etu.univ.example" if email else "")
        self.patrons[patron_id] = {
            "patron_id": patron_id, "barcode": f"20000{patron_id}", "first_name": name or "Camille",
            "last_name": f"Lecteur-{patron_id}", "email": address, "preferred_language": "fr",
            "account_type": "internal", "record_type": record_type, "user_group": group,
            "address_line1": f"{len(self.patrons) + 1} rue des Facultés", "postal_code": "33000",
            "city": "Bordeaux", "country": "France"}

    def loan(self, loan_id: str, patron_id: str, due: str, library: str = "SCI", *, returned: str | None = None,
             status: str = "", item_type: str = "") -> None:
        self.loans[loan_id] = {"loan_id": loan_id, "patron_id": patron_id, "item_barcode": f"3000{loan_id}",
                               "title": f"Livre {loan_id}", "library": library, "due_date": due,
                               "returned_on": returned or "", "status": status, "item_type": item_type}

    def change(self, loan_id: str, **values) -> None:
        """A change in the library system (return, renewal, status), imported at once."""
        self.loans[loan_id].update({("due_date" if k == "due" else "returned_on" if k == "returned" else k): v
                                    for k, v in values.items()})
        self.sync()

    def sync(self) -> None:
        for kind, fields, rows in (("patrons", PATRON_FIELDS, self.patrons), ("loans", LOAN_FIELDS, self.loans)):
            path = self.dir / f"{kind}.csv"
            with open(path, "w", newline="", encoding="utf-8") as out:
                writer = csv.DictWriter(out, fieldnames=fields)
                writer.writeheader()
                writer.writerows({f: row.get(f, "") for f in fields} for row in rows.values())
            import_csv(self.store, self.policy, kind, path)

    # -- the daily run -------------------------------------------------------------------------------
    def run(self, day: str) -> list[tuple]:
        """rappel run --on day: decide, record, deliver; the messages delivered by this run."""
        self.last = pipeline.run_day(self.store, self.policy, self.templates, self.channel, d(day))
        return self.delivered(self.last.outcomes)

    def decide_only(self, day: str):
        """The run crashes right after committing its decisions: nothing is delivered."""
        plan = pipeline.plan_for(self.store, self.policy, d(day))
        self.store.record(plan)
        return plan

    def dispatch(self, day: str) -> list[tuple]:
        outcomes = pipeline.dispatch(self.store, self.policy, self.templates, self.channel, d(day))
        self.last_outcomes = outcomes
        return self.delivered(outcomes)

    def delivered(self, outcomes) -> list[tuple]:
        """What went out, read back from the database (notice + its ledger rows marked sent),
        cross-checked against what the channel actually received."""
        keys = [o.key for o in outcomes if o.status == "sent"]
        out = []
        with self.store.engine.connect() as conn:
            for key in keys:
                row = conn.execute(select(notices).where(notices.c.key == key)).one()
                assert row.status == "sent"
                ids = tuple(sorted(conn.scalars(select(ledger.c.loan_id).where(
                    ledger.c.notice_key == key, ledger.c.status == "sent"))))
                assert ids, f"notice {key} sent with no loan"
                out.append((row.stage, row.channel, row.patron_id, row.library, ids))
                if self.kind == "outbox":
                    path = Path(row.reference)
                    assert path.is_file() and self.outbox in path.parents, row.reference
                    assert path.suffix == (".eml" if row.channel == "email" else ".pdf")
        if self.kind == "memory":
            got = [(n.stage, n.channel, n.patron_id, n.library, tuple(n.loan_ids))
                   for n, *_ in (*self.channel.emails, *self.channel.letters)]
            assert len(got) - self._memory_seen == len(out)
            self._memory_seen = len(got)
        return sorted(out, key=lambda m: (m[0], m[2], m[3] or ""))

    # -- what is recorded ----------------------------------------------------------------------------
    def ledger(self) -> dict[tuple[str, str, str], str]:
        """(loan, due date, stage) → status."""
        with self.store.engine.connect() as conn:
            return {(r.loan_id, r.due_date.isoformat(), r.stage): r.status for r in conn.execute(select(ledger))}

    def ledger_reason(self, loan_id: str, stage: str) -> str:
        with self.store.engine.connect() as conn:
            return conn.execute(select(ledger.c.reason).where(ledger.c.loan_id == loan_id,
                                                              ledger.c.stage == stage)).scalar_one()

    def notice(self, key: str):
        with self.store.engine.connect() as conn:
            return conn.execute(select(notices).where(notices.c.key == key)).one()

    def notice_for(self, day: str, stage: str, patron_id: str, library: str | None = None):
        """The one notice decided on a day for a stage and patron (and library, for a letter)."""
        query = select(notices).where(notices.c.run_date == d(day), notices.c.stage == stage,
                                      notices.c.patron_id == patron_id)
        query = query.where(notices.c.library.is_(None) if library is None else notices.c.library == library)
        with self.store.engine.connect() as conn:
            return conn.execute(query).one()

    def outbox_files(self) -> dict[str, bytes]:
        if not self.outbox.exists():
            return {}
        return {str(p.relative_to(self.outbox)): p.read_bytes() for p in sorted(self.outbox.rglob("*")) if p.is_file()}

    def email_text(self, day: str, stage: str, patron_id: str) -> str:
        """The plain-text part of the email sent for a notice."""
        key = self.notice_for(day, stage, patron_id).key
        if self.kind == "memory":
            [message] = [m for n, m in self.channel.emails if n.key == key]
        else:
            message = email.message_from_bytes(Path(self.notice(key).reference).read_bytes(),
                                               policy=email.policy.default)
        return message.get_body(("plain",)).get_content()

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=["memory", "outbox"])
def channel_kind(request) -> str:
    return request.param


@pytest.fixture
def any_world(tmp_path, db_url, channel_kind):
    """For what depends on delivery: both the in-memory channel and the file outbox."""
    w = World(tmp_path, db_url, channel_kind)
    yield w
    w.close()


@pytest.fixture
def world(tmp_path, db_url):
    """For what is decided: the in-memory channel (the outbox is covered by the delivery tests)."""
    w = World(tmp_path, db_url, "memory")
    yield w
    w.close()


def email_msg(stage, patron_id, *loan_ids):
    return (stage, "email", patron_id, None, tuple(loan_ids))


def letter_msg(stage, patron_id, library, *loan_ids):
    return (stage, "letter", patron_id, library, tuple(loan_ids))


# --- idempotence ---------------------------------------------------------------------------------

def test_the_same_date_twice_sends_nothing_new(any_world):
    world = any_world
    world.patron("P1")
    world.patron("P2")
    world.patron("P3", email=False)
    world.loan("L1", "P1", "2026-11-16")            # first reminder on Monday 2026-11-23
    world.loan("L2", "P2", "2026-11-26", "DROIT")   # courtesy on 2026-11-23
    world.loan("L3", "P3", "2026-11-16")            # first reminder, as a letter (no email address)
    world.sync()

    assert world.run("2026-11-23") == [
        email_msg("courtesy", "P2", "L2"),
        email_msg("first_reminder", "P1", "L1"),
        letter_msg("first_reminder", "P3", "SCI", "L3"),
    ]
    ledger, files = world.ledger(), world.outbox_files()

    assert world.run("2026-11-23") == []
    assert world.last.plan.notices == [] and world.last.plan.decisions == [] and world.last.outcomes == []
    assert world.ledger() == ledger
    assert world.outbox_files() == files
    assert world.run("2026-11-24") == []   # caught-up day: already in the ledger


# --- catch-up and staleness ----------------------------------------------------------------------

def test_missed_days_are_caught_up_within_the_window(world):
    """Runs on 20, 22, 25 and 26 November: the 21st, 23rd and 24th are missed."""
    for p in ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"):
        world.patron(p)
    world.loan("G", "P8", "2026-11-10")   # first reminder 2026-11-17: 3 days stale at the first run
    world.loan("E", "P2", "2026-11-13")   # first reminder 2026-11-20
    world.loan("A", "P1", "2026-11-14")   # first reminder 2026-11-21 (missed)
    world.loan("C", "P1", "2026-11-15")   # first reminder 2026-11-22
    world.loan("B", "P3", "2026-11-16")   # first reminder 2026-11-23 (missed, and the 24th too)
    world.loan("K", "P4", "2026-11-24")   # courtesy 2026-11-21 (missed)
    world.loan("J", "P5", "2026-11-25")   # courtesy 2026-11-22
    world.loan("I", "P6", "2026-11-26")   # courtesy 2026-11-23 (missed twice)
    world.loan("H", "P7", "2026-11-27")   # courtesy 2026-11-24 (missed)
    world.sync()

    runs = {
        "2026-11-20": [email_msg("first_reminder", "P2", "E")],
        "2026-11-22": [email_msg("courtesy", "P4", "K"),              # 1 day late, still before due
                       email_msg("courtesy", "P5", "J"),
                       email_msg("first_reminder", "P1", "A", "C")],  # A 1 day late, with C on its day
        "2026-11-25": [email_msg("courtesy", "P6", "I"),              # 2 days late, the day before due
                       email_msg("courtesy", "P7", "H"),              # 1 day late
                       email_msg("first_reminder", "P3", "B")],       # 2 days late
        "2026-11-26": [],
    }
    assert {day: world.run(day) for day in runs} == runs
    assert not any(loan == "G" for loan, _, _ in world.ledger())   # stale: never sent, never recorded


def test_a_long_gap_sends_no_stale_notice(world):
    world.patron("P1")
    world.loan("L1", "P1", "2026-10-01")   # first 10-08, second 10-22, letter 11-05
    world.sync()
    runs = {"2026-10-01": [], "2026-10-15": [],                   # the first reminder is 7 days stale
            "2026-10-23": [email_msg("second_reminder", "P1", "L1")],
            "2026-11-09": []}                                      # the letter is 4 days stale
    assert {day: world.run(day) for day in runs} == runs
    assert world.ledger() == {("L1", "2026-10-01", "second_reminder"): "sent"}


def test_after_a_long_gap_only_the_latest_stage_goes_out(tmp_path, db_url):
    """A 14-day catch-up window: after an outage first and second reminder are both due; only the
    second is sent, the first is recorded as superseded."""
    wide = policy_variant(("max_delay_days: 2 ", "max_delay_days: 14 "))
    world = World(tmp_path, db_url, "memory", policy=wide)
    try:
        world.patron("P1")
        world.loan("L1", "P1", "2026-10-01")   # first 10-08, second 10-22, letter 11-05
        world.sync()
        runs = {"2026-10-01": [],
                "2026-10-22": [email_msg("second_reminder", "P1", "L1")],   # first 14 days late: superseded
                "2026-10-23": [],
                "2026-11-05": [letter_msg("letter", "P1", "SCI", "L1")]}
        assert {day: world.run(day) for day in runs} == runs
        assert world.ledger() == {("L1", "2026-10-01", "first_reminder"): "superseded",
                                  ("L1", "2026-10-01", "second_reminder"): "sent",
                                  ("L1", "2026-10-01", "letter"): "sent"}
    finally:
        world.close()


# --- renewals ------------------------------------------------------------------------------------

def test_a_renewal_applies_the_stages_again_for_the_new_due_date(world):
    world.patron("P1")
    world.loan("L1", "P1", "2026-11-10")
    world.sync()
    sent = {}
    day = d("2026-11-05")
    while day <= d("2026-12-05"):
        if day == d("2026-11-18"):
            world.change("L1", due="2026-11-25")   # renewed on the 18th, before that day's run
        got = world.run(day.isoformat())
        if got:
            sent[day.isoformat()] = got
        day = day.fromordinal(day.toordinal() + 1)
    assert sent == {
        "2026-11-07": [email_msg("courtesy", "P1", "L1")],         # 3 days before 2026-11-10
        "2026-11-17": [email_msg("first_reminder", "P1", "L1")],   # 7 days after 2026-11-10
        "2026-11-22": [email_msg("courtesy", "P1", "L1")],         # 3 days before 2026-11-25
        "2026-12-02": [email_msg("first_reminder", "P1", "L1")],   # 7 days after 2026-11-25
    }
    assert world.ledger() == {
        ("L1", "2026-11-10", "courtesy"): "sent", ("L1", "2026-11-10", "first_reminder"): "sent",
        ("L1", "2026-11-25", "courtesy"): "sent", ("L1", "2026-11-25", "first_reminder"): "sent"}


# --- between decision and delivery ------------------------------------------------------------------

@pytest.mark.parametrize("change, reason", [
    ({"returned": "2026-11-23"}, "returned on 2026-11-23"),
    ({"due": "2026-12-07"}, "renewed: now due on 2026-12-07"),
    ({"status": "lost"}, "status 'lost' is excluded"),
])
def test_a_loan_changed_after_the_decision_is_cancelled_the_rest_is_sent(any_world, change, reason):
    world = any_world
    world.patron("P1")
    world.loan("L1", "P1", "2026-11-16", "SCI")
    world.loan("L2", "P1", "2026-11-16", "DROIT")
    world.sync()
    plan = world.decide_only("2026-11-23")
    assert [n.loan_ids for n in plan.notices] == [("L1", "L2")]   # one email for both

    world.change("L1", **change)
    assert world.dispatch("2026-11-23") == [email_msg("first_reminder", "P1", "L2")]
    assert world.ledger() == {("L1", "2026-11-16", "first_reminder"): "cancelled",
                              ("L2", "2026-11-16", "first_reminder"): "sent"}
    assert reason in world.ledger_reason("L1", "first_reminder")
    text = world.email_text("2026-11-23", "first_reminder", "P1")
    listed, _, recap = text.partition("Récapitulatif")
    assert "Livre L2" in listed
    assert "Livre L1" not in listed
    assert "Livre L1" not in recap   # returned, not overdue any more, or written off


def test_every_loan_returned_before_delivery_cancels_the_notice(any_world):
    world = any_world
    world.patron("P1")
    world.loan("L1", "P1", "2026-11-16")
    world.loan("L2", "P1", "2026-11-16")
    world.sync()
    world.decide_only("2026-11-23")
    world.change("L1", returned="2026-11-23")
    world.change("L2", returned="2026-11-23")
    assert world.dispatch("2026-11-23") == []
    assert [o.status for o in world.last_outcomes] == ["cancelled"]
    assert world.notice_for("2026-11-23", "first_reminder", "P1").status == "cancelled"
    assert world.ledger() == {("L1", "2026-11-16", "first_reminder"): "cancelled",
                              ("L2", "2026-11-16", "first_reminder"): "cancelled"}
    assert world.outbox_files() == {}
    assert world.run("2026-11-24") == []   # and nothing later either


@pytest.mark.parametrize("due, stage, decided, next_run, outcome", [
    # loan due    stage             decided on    next run      what the next run does with it
    ("2026-11-16", "first_reminder", "2026-11-23", "2026-11-24", "sent"),      # 1 day late
    ("2026-11-16", "first_reminder", "2026-11-23", "2026-11-25", "sent"),      # 2 days late
    ("2026-11-16", "first_reminder", "2026-11-23", "2026-11-26", "expired"),   # 3 days: past the window
    ("2026-11-26", "courtesy",       "2026-11-23", "2026-11-25", "sent"),      # the day before due
    ("2026-11-26", "courtesy",       "2026-11-23", "2026-11-26", "expired"),   # the due date has come
])
def test_a_crash_after_the_commit_is_delivered_by_the_next_run_or_expires(any_world, due, stage, decided,
                                                                          next_run, outcome):
    world = any_world
    world.patron("P1")
    world.loan("L1", "P1", due)
    world.sync()
    plan = world.decide_only(decided)   # committed, then the process died
    [key] = [n.key for n in plan.notices]
    assert world.ledger() == {("L1", due, stage): "pending"}

    got = world.run(next_run)
    assert world.last.plan.notices == []   # nothing decided again
    assert got == ([email_msg(stage, "P1", "L1")] if outcome == "sent" else [])
    assert world.notice(key).status == outcome
    assert world.ledger() == {("L1", due, stage): outcome}
    assert world.outbox_files() == {} or outcome == "sent"


class _CrashAfter(BaseChannel):
    """A real channel that delivers, then the process dies before rappel records the delivery."""

    def __init__(self, inner, deliveries: int):
        self.inner, self.left, self.name = inner, deliveries, inner.name

    def _maybe_die(self, delivery):
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt("killed after delivering, before recording it")
        return delivery

    def send_email(self, notice, message):
        return self._maybe_die(self.inner.send_email(notice, message))

    def send_letter(self, notice, pdf, filename):
        return self._maybe_die(self.inner.send_letter(notice, pdf, filename))


def test_a_crash_during_delivery_loses_nothing_and_repeats_only_the_message_in_flight(any_world):
    world = any_world
    for p in ("P1", "P2", "P3"):
        world.patron(p)
        world.loan(f"L{p[1]}", p, "2026-11-16")
    world.sync()
    real = world.channel
    world.channel = _CrashAfter(real, 2)
    with pytest.raises(KeyboardInterrupt):
        world.run("2026-11-23")
    world.channel = real
    if world.kind == "memory":
        world._memory_seen = len(real.emails)   # the two delivered before the crash
    statuses = {k: v for k, v in world.ledger().items()}
    assert sorted(statuses.values()) == ["pending", "pending", "sent"]

    assert world.run("2026-11-24") == [email_msg("first_reminder", "P2", "L2"),   # the one in flight, again
                                       email_msg("first_reminder", "P3", "L3")]
    if world.kind == "memory":
        delivered = [n.patron_id for n, _ in world.channel.emails]
        assert sorted(delivered) == ["P1", "P2", "P2", "P3"]   # P2's email was in flight: sent twice
    else:
        assert len([f for f in world.outbox_files() if f.endswith(".eml")]) == 3   # rewritten in place
    assert set(world.ledger().values()) == {"sent"}


# --- who gets what ---------------------------------------------------------------------------------

def test_excluded_statuses_get_nothing(world):
    world.patron("P1")
    world.patron("P2")
    world.patron("P3")
    world.loan("OK", "P1", "2026-11-16")
    world.loan("LOST", "P2", "2026-11-16", status="lost")
    world.loan("CLAIMED", "P3", "2026-11-16", status="claimed_returned")
    world.sync()
    runs = {"2026-11-13": [email_msg("courtesy", "P1", "OK")],
            "2026-11-23": [email_msg("first_reminder", "P1", "OK")],
            "2026-12-07": [email_msg("second_reminder", "P1", "OK")],
            "2026-12-21": [letter_msg("letter", "P1", "SCI", "OK")]}
    assert {day: world.run(day) for day in runs} == runs
    assert {loan for loan, _, _ in world.ledger()} == {"OK"}


def test_an_excluded_loan_is_not_in_the_recap(world):
    world.patron("P1")
    world.loan("OK", "P1", "2026-11-16")
    world.loan("LOST", "P1", "2026-11-10", status="lost")                # overdue, but written off
    world.loan("CLAIMED", "P1", "2026-11-12", "DROIT", status="claimed_returned")
    world.loan("OLD", "P1", "2026-11-05", "DROIT")                       # overdue and open: in the recap
    world.sync()
    assert world.run("2026-11-23") == [email_msg("first_reminder", "P1", "OK")]
    text = world.email_text("2026-11-23", "first_reminder", "P1")
    assert "Livre OK" in text and "Livre OLD" in text
    assert "Livre LOST" not in text
    assert "Livre CLAIMED" not in text


def test_contacts_never_get_loan_notices(world):
    world.patron("V1", record_type="contact", group="vendor")
    world.patron("V2", record_type="contact", group="vendor", email=False)
    world.patron("S1", record_type="staff", group="staff")
    world.loan("C1", "V1", "2026-11-16")
    world.loan("C2", "V2", "2026-11-16")
    world.loan("S", "S1", "2026-11-16")
    world.sync()
    runs = {"2026-11-13": [email_msg("courtesy", "S1", "S")],
            "2026-11-23": [email_msg("first_reminder", "S1", "S")],
            "2026-12-07": [email_msg("second_reminder", "S1", "S")],
            "2026-12-21": [letter_msg("letter", "S1", "SCI", "S")]}
    assert {day: world.run(day) for day in runs} == runs
    assert {loan for loan, _, _ in world.ledger()} == {"S"}


def test_one_email_per_patron_per_stage_one_letter_per_library(world):
    world.patron("P1")
    world.patron("P2")
    world.patron("P3", email=False)
    world.loan("A1", "P1", "2026-11-16", "SCI")
    world.loan("A2", "P1", "2026-11-16", "DROIT")
    world.loan("A3", "P1", "2026-11-16", "SCI")
    world.loan("B1", "P2", "2026-11-16", "SCI")
    world.loan("C1", "P3", "2026-11-16", "SCI")
    world.loan("C2", "P3", "2026-11-16", "DROIT")
    world.sync()
    assert world.run("2026-11-23") == [
        email_msg("first_reminder", "P1", "A1", "A2", "A3"),   # three loans, two libraries: one email
        email_msg("first_reminder", "P2", "B1"),
        letter_msg("first_reminder", "P3", "DROIT", "C2"),     # no email: one letter per library
        letter_msg("first_reminder", "P3", "SCI", "C1"),
    ]
    text = world.email_text("2026-11-23", "first_reminder", "P1")
    assert "Bibliothèque des sciences" in text and "Bibliothèque de droit" in text
    assert all(f"Livre {i}" in text for i in ("A1", "A2", "A3")) and "Livre B1" not in text

    for returned in ("B1", "C1", "C2"):   # only P1 still has them on the letter day
        world.change(returned, returned="2026-12-01")
    assert world.run("2026-12-21") == [
        letter_msg("letter", "P1", "DROIT", "A2"),       # the letter stage: one per library
        letter_msg("letter", "P1", "SCI", "A1", "A3"),
    ]
    destinations = {world.notice_for("2026-12-21", "letter", "P1", lib).destination for lib in ("SCI", "DROIT")}
    assert destinations == {"printer:bu-sciences", "mailbox:droit-contentieux@univ.example"}


def test_no_courtesy_for_a_patron_without_email(world):
    world.patron("P1", email=False)
    world.loan("L1", "P1", "2026-11-26")
    world.sync()
    assert world.run("2026-11-23") == []
    assert world.ledger() == {("L1", "2026-11-26", "courtesy"): "cancelled"}
    assert "no email address" in world.ledger_reason("L1", "courtesy")


def test_a_second_run_the_same_day_after_an_import_sends_the_new_loan(world):
    world.patron("P1")
    world.patron("P2")
    world.loan("L1", "P1", "2026-11-16")
    world.sync()
    assert world.run("2026-11-23") == [email_msg("first_reminder", "P1", "L1")]
    world.loan("L2", "P1", "2026-11-16")   # missing from the morning export
    world.loan("L3", "P2", "2026-11-16")
    world.sync()
    assert world.run("2026-11-23") == [email_msg("first_reminder", "P1", "L2"),
                                       email_msg("first_reminder", "P2", "L3")]


# --- failing channels -------------------------------------------------------------------------------

def test_a_transient_failure_keeps_the_notice_pending_until_it_goes_out(any_world, tmp_path):
    world = any_world
    world.patron("P1")
    world.loan("L1", "P1", "2026-11-16")
    world.sync()
    healthy = world.channel
    if world.kind == "memory":
        world.channel = MemoryChannel(fail_with=Delivery.failed("421 4.7.0 try again later", permanent=False))
        error = "421 4.7.0 try again later"
    else:
        blocked = tmp_path / "not-a-folder"
        blocked.write_text("a file where the outbox folder should be")
        world.channel = OutboxChannel(blocked)
        error = "cannot write"
    assert world.run("2026-11-23") == []
    key = world.notice_for("2026-11-23", "first_reminder", "P1").key
    row = world.notice(key)
    assert (row.status, row.attempts) == ("pending", 1) and error in row.last_error
    assert world.ledger() == {("L1", "2026-11-16", "first_reminder"): "pending"}

    assert world.run("2026-11-24") == []
    row = world.notice(key)
    assert (row.status, row.attempts) == ("pending", 2) and error in row.last_error

    world.channel = healthy
    assert world.run("2026-11-25") == [email_msg("first_reminder", "P1", "L1")]   # 2 days late: in time
    assert (world.notice(key).status, world.notice(key).attempts) == ("sent", 3)
    assert world.ledger() == {("L1", "2026-11-16", "first_reminder"): "sent"}


def test_a_notice_failing_past_its_window_expires(world):
    world.patron("P1")
    world.loan("L1", "P1", "2026-11-16")   # first reminder 2026-11-23, caught up until 2026-11-25
    world.sync()
    world.channel = MemoryChannel(fail_with=Delivery.failed("421 4.7.0 try again later", permanent=False))
    for day in ("2026-11-23", "2026-11-24", "2026-11-25"):
        assert world.run(day) == []
    row = world.notice_for("2026-11-23", "first_reminder", "P1")
    assert (row.status, row.attempts) == ("pending", 3)
    world.channel = MemoryChannel()
    assert world.run("2026-11-26") == []   # 3 days after its trigger: stale, not sent
    assert world.notice_for("2026-11-23", "first_reminder", "P1").status == "expired"
    assert world.ledger() == {("L1", "2026-11-16", "first_reminder"): "expired"}
    assert world.channel.attempts == 0


def test_a_permanent_failure_marks_the_notice_failed_with_the_reason(tmp_path, db_url):
    world = World(tmp_path, db_url, "memory")
    try:
        world.patron("P1", email="nobody@etu.univ.example")
        world.patron("P2")
        world.loan("L1", "P1", "2026-11-16")
        world.loan("L2", "P2", "2026-11-16")
        world.sync()
        world.channel = MemoryChannel(fail_with=lambda n: Delivery.failed(
            "550 5.1.1 user unknown", permanent=True) if n.patron_id == "P1" else None)
        world._memory_seen = 0
        assert world.run("2026-11-23") == [email_msg("first_reminder", "P2", "L2")]
        row = world.notice_for("2026-11-23", "first_reminder", "P1")   # the email
        assert (row.status, row.attempts) == ("failed", 1) and "550 5.1.1 user unknown" in row.last_error
        assert world.ledger() == {("L1", "2026-11-16", "first_reminder"): "failed",   # (a fallback letter
                                  ("L2", "2026-11-16", "first_reminder"): "sent"}     # is refused too)
        assert "550 5.1.1 user unknown" in world.ledger_reason("L1", "first_reminder")
        attempts = world.channel.attempts
        assert world.run("2026-11-24") == []          # not retried, not decided again
        assert world.channel.attempts == attempts
    finally:
        world.close()
