"""The staff interface's test installation: the shipped rules with email through a real SMTP server
(aiosmtpd), the patrons of tests/test_patron_services.py (today is Monday 2026-11-23, 10:00 in
Paris), a day already run (P1's first reminder by email, P2's letter), staff accounts of each
role, and ``serve``: the application on a real uvicorn server in a thread, on a free port.

    P1 Thomas Lefèvre   external public  loans L1 (due 11-16: first reminder today), L2
    P2 Jeanne Moreau    internal public  no email; L4 due 10-19 (35 days: a letter today)
    P5 <script>alert(1)</script>   internal public; L5 due 11-26 (a courtesy email today): the name
       every page must show as text (P6 too, so that a search lists them)
"""
from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from adapters.channels import registry
from adapters.web.app import create_app
from adapters.web.context import WebContext, networks
from service import day, staff
from service.rules import load_accounts, load_checked
from test_patron_services import LOANS, PATRONS, REQUESTS, write_csv

from conftest import RULES

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)       # 10:00 in Paris
DAY = dt.date(2026, 11, 23)
PASSWORD = "correct horse battery staple"
HINT = "update through the campus registrar; the next synchronisation brings it in"
XSS = "<script>alert(1)</script>"
STAFF = {"desk": "circulation_desk", "boss": "user_manager", "overdue": "overdue_service", "acq": "acquisitions"}


class Clock:
    def __init__(self, now: dt.datetime = NOW):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make_site(tmp_path: Path, smtp_url: str | None = None, *, sso: bool = False,
              max_per_run: int | None = None) -> WebContext:
    from adapters.sources.csvfiles import import_csv
    from adapters.store.database import Store
    from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, REQUEST_FIELDS
    from service.rules import load_policy

    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    if smtp_url:
        with (rules / "reminders.yaml").open("a", encoding="utf-8") as f:
            f.write(f'\ndelivery:\n  email: {{url: "{smtp_url}"}}\n')
    if max_per_run is not None:
        text = (rules / "reminders.yaml").read_text(encoding="utf-8")
        (rules / "reminders.yaml").write_text(text.replace("max_per_run: 1000", f"max_per_run: {max_per_run}"),
                                              encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'web.db'}"
    patrons = [*PATRONS, f"P5,2000000005,{XSS},{XSS},xss@univ.example,en,internal,public,reader,1 rue X,,33000,"
                         f"Bordeaux,France,",
                f"P6,2000000006,Jean,{XSS},,fr,internal,public,reader,2 rue X,,33000,Bordeaux,France,"]
    loans = [*LOANS, "L4,P2,3000000004,Le Petit Prince,DROIT,2026-10-19,,", f"L5,P5,3000000005,{XSS},SCI,2026-11-26,,"]
    with Store(url) as store:
        policy = load_policy(rules)
        for kind, header, rows in (("patrons", PATRON_FIELDS, patrons), ("loans", LOAN_FIELDS, loans),
                                   ("requests", REQUEST_FIELDS, REQUESTS)):
            import_csv(store, policy, kind, write_csv(tmp_path / f"{kind}.csv", header, rows))
        policy, templates = load_checked(rules)
        channel = registry.build(policy, templates, env={}, outbox=tmp_path / "outbox", rules_dir=rules,
                                 clock=lambda: NOW)
        try:
            day.run_recorded(store, policy, templates, channel, DAY, clock=lambda: NOW)
        finally:
            channel.close()
        accounts = load_accounts(rules)
        for name, role in STAFF.items():
            staff.add(store, accounts, name, role, PASSWORD, at=NOW, actor="test")
        staff.add(store, accounts, "sso.user", "circulation_desk", None, at=NOW, actor="test")
    return WebContext(rules, url, tmp_path / "outbox", tmp_path / "state", env={}, clock=Clock(),
                      sso_header="REMOTE_USER" if sso else None,
                      trusted_proxies=networks(["10.9.9.9"]) if sso else (), secure_cookies=True)


@contextmanager
def serve(context: WebContext):
    """The application on uvicorn in a thread: yields its base URL."""
    import uvicorn

    from delivery_site import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(context), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        context.close()
