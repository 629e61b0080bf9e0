"""One active instance: a lease row in the database, with an expiry on the database's clock.

Every daemon pointed at one database tries to take the lease named ``daemon``; the one that holds
it evaluates and delivers, the others wait. The holder renews it (a heartbeat thread, and before
every message); a holder that dies stops renewing, and another takes over once it has expired.
Taking over bumps ``generation``, so the run history says which tenure did what.

Times are the database's (PostgreSQL ``clock_timestamp()``, SQLite ``julianday('now')``), so the
machines' clocks need not agree. The same code serves SQLite (one machine) and PostgreSQL.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Float, and_, bindparam, case, literal_column, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from adapters.store.schema import leases

__all__ = ["Lease", "LeaseInfo", "holder_name", "db_now"]

log = logging.getLogger("rappel.lease")
DEFAULT_NAME = "daemon"


def holder_name() -> str:
    """Who holds the lease: host, process and a random part (a restarted process is someone else)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def db_now(conn: Connection):
    """The database's clock, in seconds since the epoch, as an SQL expression."""
    return _now_sql(conn.dialect.name)


def _now_sql(dialect: str):
    if dialect == "postgresql":
        return literal_column("CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)")
    return literal_column("((julianday('now') - 2440587.5) * 86400.0)")


@dataclass(frozen=True)
class LeaseInfo:
    holder: str
    generation: int
    acquired_at: float
    expires_in: float       # seconds, by the database's clock; negative: expired

    @property
    def active(self) -> bool:
        return self.expires_in > 0


class Lease:
    """The lease of one name; ``held`` is this process's belief, ``confirm()`` asks the database."""

    def __init__(self, engine: Engine, *, ttl: float = 60.0, name: str = DEFAULT_NAME,
                 holder: str | None = None):
        if ttl <= 0:
            raise ValueError("the lease must last some time")
        self.engine = engine
        self.ttl = float(ttl)
        self.name = name
        self.holder = holder or holder_name()
        self.generation = 0
        self._valid_until = 0.0           # monotonic: past it, this process no longer trusts its tenure
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the database side ---------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; True when we hold it."""
        started = time.monotonic()
        with self.engine.begin() as conn:
            now = db_now(conn)
            until = now + self.ttl
            insert_ = _insert(conn).values(name=self.name, holder=self.holder, generation=1, acquired_at=now,
                                           renewed_at=now, expires_at=until)
            got = conn.execute(insert_.on_conflict_do_nothing(index_elements=["name"])).rowcount == 1
            if not got:
                mine = leases.c.holder == self.holder
                got = conn.execute(
                    update(leases).where(leases.c.name == self.name, or_(mine, leases.c.expires_at < now))
                    .values(holder=self.holder, renewed_at=now, expires_at=until,
                            acquired_at=case((mine, leases.c.acquired_at), else_=now),
                            generation=leases.c.generation + case((mine, 0), else_=1))).rowcount == 1
            if got:
                self.generation = conn.execute(select(leases.c.generation)
                                               .where(leases.c.name == self.name)).scalar_one()
        if got:
            self._trust(started)
        return got

    def confirm(self) -> bool:
        """Renew now if still ours and unexpired; False (and ``held`` becomes False) otherwise."""
        started = time.monotonic()
        try:
            with self.engine.begin() as conn:
                ok = self._renew(conn)
        except SQLAlchemyError as exc:
            log.warning("cannot renew the lease: %s", exc.__class__.__name__)
            return self.held            # trusted until the last renewal runs out
        return self._renewed(ok, started)

    def confirm_in(self, conn: Connection) -> bool:
        """``confirm()`` inside the caller's transaction: its commit is the renewal. The delivery renews
        the lease in the transaction that marks a message ``sending``: the mark and the renewal are one
        commit, and a lost lease leaves no mark. A database error goes to the caller (its transaction
        fails: nothing is handed over)."""
        started = time.monotonic()
        return self._renewed(self._renew(conn), started)

    def _renew(self, conn: Connection) -> bool:
        """The renewal statement in ``conn``'s transaction: True when the lease is still ours."""
        return conn.execute(_renewal(conn.dialect.name), {"lease_name": self.name, "lease_holder": self.holder,
                                                          "lease_ttl": self.ttl}).rowcount == 1

    def _renewed(self, ok: bool, started: float) -> bool:
        """Trust the lease from ``started`` when renewed, or no longer at all."""
        if ok:
            self._trust(started)
        else:
            with self._lock:
                self._valid_until = 0.0
        return ok

    def release(self) -> None:
        """Give the lease up at once (a clean stop): the next instance need not wait for it to expire."""
        self.stop_heartbeat()
        with self._lock:
            self._valid_until = 0.0
        try:
            with self.engine.begin() as conn:
                now = db_now(conn)
                conn.execute(update(leases).where(leases.c.name == self.name, leases.c.holder == self.holder)
                             .values(expires_at=now - 1.0, renewed_at=now))
        except SQLAlchemyError as exc:
            log.warning("cannot release the lease (it expires by itself): %s", exc.__class__.__name__)

    def info(self) -> LeaseInfo | None:
        return read_lease(self.engine, self.name)

    # --- this process's side -------------------------------------------------------------------
    @property
    def held(self) -> bool:
        with self._lock:
            return time.monotonic() < self._valid_until

    def _trust(self, started: float) -> None:
        # Counted from before the request: the database may have granted it a little earlier than we heard.
        with self._lock:
            self._valid_until = started + self.ttl * 0.8

    def start_heartbeat(self) -> None:
        """Renew every third of the lease's life from a background thread."""
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="rappel-lease", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.ttl)
        self._thread = None

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if not self.confirm():
                log.warning("lease %r lost: another instance may take over", self.name)
                return


@lru_cache(maxsize=4)
def _renewal(dialect: str):
    """The renewal of a lease still ours and unexpired (built once: it runs before every message)."""
    now = _now_sql(dialect)
    return update(leases).where(and_(leases.c.name == bindparam("lease_name"), leases.c.holder == bindparam("lease_holder"),
                                     leases.c.expires_at >= now)).values(
        renewed_at=now, expires_at=now + bindparam("lease_ttl", type_=Float()))


def read_lease(engine: Engine, name: str = DEFAULT_NAME) -> LeaseInfo | None:
    with engine.connect() as conn:
        row = conn.execute(select(leases.c.holder, leases.c.generation, leases.c.acquired_at,
                                  (leases.c.expires_at - db_now(conn)).label("left"))
                           .where(leases.c.name == name)).first()
    return LeaseInfo(row.holder, row.generation, row.acquired_at, float(row.left)) if row else None


def _insert(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(leases)
