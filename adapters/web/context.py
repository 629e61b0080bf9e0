"""What every page and API route of one `rappel serve` shares: the rules folder, the database, the
outbox, the clock, and who is trusted to say who signed in. Routes reach it as
``request.app.state.rappel`` (see ``app.create_app``).

The database is opened once (and upgraded then) and shared by every request; the rules are read
again when a file of the rules folder has changed (looked at every RECHECK seconds at most: an
edited policy is in force within them; a broken one is an error, never half-used)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from adapters.channels import registry
from adapters.store.database import Store
from engine.accounts import AccountsPolicy, EditDecision, EditRequest, decide_edits
from service import session
from service.staff import Limits

RECHECK = 2.0        # seconds between two looks at the rules folder's files (an edit is seen within them)
POOL = 40            # database connections: one per thread of the server's pool (anyio's default, 40)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def networks(values: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """``--trusted-proxy`` values: addresses or networks (127.0.0.1, 10.0.0.0/8, ::1)."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


@dataclass
class WebContext:
    rules_dir: Path
    db_url: str | None = None                   # None: $RAPPEL_DB_URL, else sqlite:///rappel.db
    outbox: Path = Path("outbox")
    state_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    clock: Callable[[], dt.datetime] = _utc_now  # aware UTC; tests pass a fixed clock
    sso_header: str | None = None               # e.g. REMOTE_USER, set by the reverse proxy
    trusted_proxies: tuple[Network, ...] = ()   # the only addresses whose sso_header is believed
    secure_cookies: bool = True                 # False only for plain-HTTP development
    limits: Limits = field(default_factory=Limits)
    _store: Store | None = field(default=None, init=False, repr=False)
    _rules: tuple[tuple, session.Rules] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _checked: float = field(default=0.0, init=False, repr=False)
    _decided: dict = field(default_factory=dict, init=False, repr=False)
    _rules_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _signature(self) -> tuple:
        out = []
        for root, _dirs, files in os.walk(self.rules_dir):
            for name in sorted(files):
                st = os.stat(os.path.join(root, name))
                out.append((root, name, st.st_mtime_ns, st.st_size))
        return tuple(sorted(out))

    def rules(self) -> session.Rules:
        """The policy, templates and accounts policy as they are on disk now."""
        cached = self._rules
        now = time.monotonic()
        if cached is not None and now - self._checked < RECHECK:
            return cached[1]
        signature = self._signature()
        self._checked = now
        if cached is not None and cached[0] == signature:
            return cached[1]
        with self._rules_lock:                  # one request loads them, the others wait for it
            cached = self._rules
            if cached is not None and cached[0] == signature:
                return cached[1]
            loaded = session.load_rules(self.rules_dir, templates=True, accounts=True)
            self._decided = {}
            self._rules = (signature, loaded)
            return loaded

    def decide_edits(self, accounts: AccountsPolicy, asked: list[EditRequest]) -> list[EditDecision]:
        """engine.accounts.decide_edits, its answers kept while the rules are those loaded (they
        depend on nothing else): the patron page asks the same questions for every patron of a
        kind. An edit itself is always decided afresh (service.patrons.edit)."""
        key = (id(accounts), tuple(asked))
        found = self._decided.get(key)
        if found is None:
            found = decide_edits(accounts, asked)
            self._decided[key] = found
        return list(found)

    def store(self) -> Store:
        """The database, opened (and upgraded) at the first request, shared by all."""
        with self._lock:
            if self._store is None:
                self._store = Store(self.db_url, pool_size=POOL)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def trusts(self, address: str | None) -> bool:
        if not address or not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)

    @contextmanager
    def installation(self, *, channel: bool = False, writes: bool = True,
                     guard: bool = False) -> Iterator[session.Installation]:
        """The rules, the shared store and (``channel=True``) the policy's channels, closed at the end;
        ``guard``: refused (session.Refused) on a database of another installation."""
        rules = self.rules()
        with ExitStack() as stack:
            built = None
            if channel:
                built = registry.build(rules.policy, rules.templates, env=self.env, outbox=self.outbox,
                                       rules_dir=rules.folder, clock=self.clock)
                stack.callback(built.close)
            opened = self.store()
            if guard:
                session.check_guard(opened, self.state_dir, "nothing sent", self.env)
            yield session.Installation(rules, opened, built)
