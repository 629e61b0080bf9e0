"""An installation for the JSON API's tests: the delivery tests' site (tests/delivery_site.py: the
shipped templates, SCI letters to a printer, DROIT's to a mailbox, nothing configured for delivery,
so everything goes to the outbox), some facts, one day run, and a client of each role.

The facts. Monday 2026-11-23, 10:00 in Paris (the app's clock); the run of that day at 02:00 sent:
    P1 Zoé Lefèvre (internal, barcode 2900P1, email)  L1 due 2026-11-16 SCI    first reminder, email
    P2 Léo Martin (no email, postal address)          L2 due 2026-11-16 DROIT  first reminder, letter
    P3 <script>alert(1)</script> (email)              L3 due 2026-11-26 SCI    courtesy, email
    P4 Inès Garcia (external account, email)          L4 due 2026-12-20 SCI    nothing yet
P1 has two requests: R1 active, R2 expired on 2026-11-20.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi.testclient import TestClient

from adapters.store.schema import patrons, requests
from adapters.web.app import create_app
from adapters.web.context import WebContext
from service import api_clients
from service import day as pipeline
from service.rules import load_accounts

try:
    from tests.daemon_cases import at
    from tests.delivery_site import Site
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import at
    from delivery_site import Site

NOW = at("2026-11-23 10:00")
RUN_DAY = dt.date(2026, 11, 23)
ENV = {"RAPPEL_INSTALLATION_ID": "test-installation"}
ROLES = {"desk": "circulation_desk", "boss": "user_manager", "overdue": "overdue_service", "koha": "library_system",
         "acq": "acquisitions"}
HOSTILE = "<script>alert(1)</script>"


def patron_row(patron_id: str, *, first: str, last: str, email: str = "", account: str = "internal",
               record: str = "public", address: bool = True) -> dict:
    return {"patron_id": patron_id, "barcode": f"2900{patron_id}", "first_name": first, "last_name": last,
            "email": email, "preferred_language": "fr", "account_type": account, "record_type": record,
            "user_group": "etudiant", "address_line1": "12 rue des Écoles" if address else "", "address_line2": "",
            "postal_code": "33000" if address else "", "city": "Bordeaux" if address else "",
            "country": "France" if address else "", "phone": ""}


class ApiSite:
    def __init__(self, tmp_path: Path, db_url: str | None = None, extra: str = ""):
        self.site = Site(tmp_path, extra, env=dict(ENV), db_url=db_url)
        self.store = self.site.store
        rows = [patron_row("P1", first="Zoé", last="Lefèvre", email="zoe.lefevre@etu.example"),
                patron_row("P2", first="Léo", last="Martin"),
                patron_row("P3", first=HOSTILE, last="Durand", email="p3@etu.example"),
                patron_row("P4", first="Inès", last="Garcia", email="ines.garcia@etu.example", account="external")]
        with self.store.engine.begin() as conn:
            self.store.upsert(conn, patrons, rows)
            self.store.upsert(conn, requests, [
                {"request_id": "R1", "patron_id": "P1", "title": "Le Rouge et le Noir", "library": "SCI",
                 "pickup_library": "SCI", "placed_on": dt.date(2026, 11, 2), "status": "active", "expires_on": None},
                {"request_id": "R2", "patron_id": "P1", "title": "Les Misérables", "library": "SCI",
                 "pickup_library": "DROIT", "placed_on": dt.date(2026, 10, 1), "status": "active",
                 "expires_on": dt.date(2026, 11, 20)}])
        self.site.loan("L1", "P1", "2026-11-16", library="SCI", title="Précis de droit civil")
        self.site.loan("L2", "P2", "2026-11-16", library="DROIT")
        self.site.loan("L3", "P3", "2026-11-26", library="SCI")
        self.site.loan("L4", "P4", "2026-12-20", library="SCI")
        router = self.site.router()        # the day run as `rappel run` runs it: recorded in the run history
        try:
            pipeline.run_recorded(self.store, self.site.policy, self.site.templates, router, RUN_DAY,
                                  clock=lambda: at("2026-11-23 02:00"))
        finally:
            router.close()
        accounts = load_accounts(self.site.rules)
        self.tokens = {name: api_clients.add(self.store, accounts, name, role, NOW) for name, role in ROLES.items()}
        self.tokens["off"] = api_clients.add(self.store, accounts, "off", "user_manager", NOW)
        api_clients.disable(self.store, "off")
        self.state = tmp_path / "state"
        self.context = WebContext(rules_dir=self.site.rules, db_url=self.store.url, outbox=self.site.outbox,
                                  state_dir=self.state, env=dict(ENV), clock=lambda: NOW.astimezone(dt.timezone.utc))
        self.app = create_app(self.context)
        self.client = TestClient(self.app)

    def headers(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str, path: str, **kw):
        return self.client.get(path, headers=self.headers(who), **kw)

    def call(self, who: str, method: str, path: str, **kw):
        return self.client.request(method, path, headers=self.headers(who), **kw)

    def close(self) -> None:
        from adapters.web.api_common import close

        close(self.app)
        self.client.close()
        self.site.close()
