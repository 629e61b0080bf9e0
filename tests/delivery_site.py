"""A small installation for delivery tests: a rules folder, a database, a real SMTP server.

``SmtpServer`` is aiosmtpd on 127.0.0.1 (a real server, in-process): it keeps every message it
accepts, and refuses recipients as told (``refuse["x@y"] = "550 5.1.1 ..."``). ``Site`` holds a
rules folder (the shipped templates, a policy written by the test), a SQLite database and the
outbox folder, and runs days through the same code as ``rappel run``.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import shutil
import socket
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import select

from adapters.channels import registry as delivery

from service import day as pipeline
from service import rules as rules_
from adapters.store.schema import ledger, loans, notices, patrons
from adapters.store.database import Store

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "rules" / "templates"
RUN = dt.date(2026, 11, 23)   # a Monday

POLICY = """\
timezone: Europe/Paris
sender:
  from: "Service du contentieux <contentieux@univ.example>"
  reply_to: contentieux@univ.example
language: fr
languages: [fr, en, es]
max_delay_days: 2
exclude_statuses: [lost, claimed_returned]
stages:
  - {{id: courtesy, offset_days: -3, channel: email}}
  - {{id: first_reminder, offset_days: 7, channel: email}}
  - {{id: second_reminder, offset_days: 21, channel: email}}
  - {{id: letter, offset_days: 35, channel: letter}}
libraries:
  SCI:
    name: "Bibliothèque des sciences"
    address: ["Campus de Talence", "33400 Talence"]
    letters: {{printer: bu-sciences}}
  DROIT:
    name: "Bibliothèque de droit"
    address: ["Place Pey-Berland", "33000 Bordeaux"]
    letters: {{mailbox: droit-contentieux@univ.example}}
{extra}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


class _Handler:
    def __init__(self):
        self.messages: list[Received] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


class SmtpServer:
    """aiosmtpd on 127.0.0.1, started and stopped by the tests."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.handler = _Handler()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def refuse(self) -> dict[str, str]:
        return self.handler.refuse

    def start(self) -> SmtpServer:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class Site:
    """One installation: rules (shipped templates + a test policy), a database, an outbox."""

    def __init__(self, tmp_path: Path, extra: str = "", env: dict | None = None, db_url: str | None = None,
                 printer: str = "bu-sciences"):
        self.dir = tmp_path
        self.rules = tmp_path / "rules"
        if not self.rules.exists():
            shutil.copytree(TEMPLATES, self.rules / "templates")
            shutil.copy(ROOT / "rules" / "accounts.yaml", self.rules / "accounts.yaml")
        text = POLICY.format(extra=extra).replace("printer: bu-sciences", f"printer: {printer}")
        (self.rules / "reminders.yaml").write_text(text, encoding="utf-8")
        self.policy, self.templates = rules_.load_checked(self.rules)
        self.env = env or {}
        self.outbox = tmp_path / "outbox"
        self.store = Store(db_url or f"sqlite:///{tmp_path / 'rappel.db'}")
        self.last = None

    # -- facts ----------------------------------------------------------------------------------
    def patron(self, patron_id: str, email: str = "", *, first="Camille", last=None, language="fr",
               address=True) -> None:
        row = {"patron_id": patron_id, "barcode": f"2900{patron_id}", "first_name": first,
               "last_name": last or f"Lecteur-{patron_id}", "email": email, "preferred_language": language,
               "account_type": "internal", "record_type": "public", "user_group": "",
               "address_line1": "12 rue des Écoles" if address else "", "address_line2": "",
               "postal_code": "33000" if address else "", "city": "Bordeaux" if address else "",
               "country": "France" if address else "", "phone": ""}
        with self.store.engine.begin() as conn:
            self.store.upsert(conn, patrons, [row])

    def loan(self, loan_id: str, patron_id: str, due: str, library: str = "SCI", title: str | None = None,
             status: str = "") -> None:
        row = {"loan_id": loan_id, "patron_id": patron_id, "item_barcode": f"B-{loan_id}",
               "title": title or f"Livre {loan_id}", "library": library, "due_date": dt.date.fromisoformat(due),
               "returned_on": None, "status": status}
        with self.store.engine.begin() as conn:
            self.store.upsert(conn, loans, [row])

    # -- runs -----------------------------------------------------------------------------------
    def router(self) -> delivery.Router:
        return delivery.build(self.policy, self.templates, env=self.env, outbox=self.outbox, rules_dir=self.rules)

    def run(self, day: dt.date = RUN, *, now: dt.datetime | None = None, confirm: bool = False, channel=None):
        router = channel or self.router()
        try:
            self.last = pipeline.run_day(self.store, self.policy, self.templates, router, day, now=now,
                                         confirm=confirm)
        finally:
            if channel is None:
                router.close()
        return self.last

    def decide_only(self, day: dt.date = RUN):
        plan = pipeline.plan_for(self.store, self.policy, day)
        self.store.record(plan)
        return plan

    # -- what is recorded -----------------------------------------------------------------------
    def notice(self, key: str):
        with self.store.engine.connect() as conn:
            return conn.execute(select(notices).where(notices.c.key == key)).one()

    def notices(self) -> dict[str, str]:
        with self.store.engine.connect() as conn:
            return {r.key: r.status for r in conn.execute(select(notices))}

    def ledger(self) -> dict[tuple[str, str], tuple[str, str, str]]:
        """(loan, stage) → (status, notice key, reason)."""
        with self.store.engine.connect() as conn:
            return {(r.loan_id, r.stage): (r.status, r.notice_key, r.reason) for r in conn.execute(select(ledger))}

    def outbox_files(self) -> list[Path]:
        return sorted(p for p in self.outbox.rglob("*") if p.is_file()) if self.outbox.exists() else []

    def close(self) -> None:
        self.store.close()
