"""Staff accounts, web sessions and failed sign-ins (the staff interface, `rappel staff`).

The use cases (service/staff.py) decide and hash; this module runs their statements. Times are
stored in UTC and handed out aware (SQLite gives them back naive).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, insert, or_, select, update

from adapters.store.database import Store
from adapters.store.schema import login_failures, patrons, staff, staff_actions, web_sessions

__all__ = ["add_failure", "audit", "count_failures", "delete_session", "delete_sessions_of", "find_session",
           "insert_session", "insert_staff", "list_staff", "staff_member", "touch_session",
           "update_staff"]

UTC = dt.timezone.utc


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row(row) -> dict:
    return {k: (_aware(v) if isinstance(v, dt.datetime) else v) for k, v in row._mapping.items()}


# --- staff accounts ------------------------------------------------------------------------------

def staff_member(store: Store, name: str) -> dict | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(staff).where(staff.c.name == name)).first()
    return _row(row) if row else None


def list_staff(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(select(staff).order_by(staff.c.name))]


def insert_staff(store: Store, *, name: str, role: str, password_hash: str, at: dt.datetime, actor: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(staff).values(name=name, role=role, password_hash=password_hash, disabled=0,
                                          created_at=at.astimezone(UTC),
                                          password_changed_at=at.astimezone(UTC) if password_hash else None))
        _audit(conn, at, actor, "staff.add", f"{name} as {role}" + ("" if password_hash else " (sign-on only)"))


def update_staff(store: Store, name: str, values: dict, *, at: dt.datetime | None = None, actor: str = "",
                 action: str = "", sessions_end: bool = False) -> None:
    """Change a staff account (``action``: audited as it, by ``actor``); ``sessions_end``: its
    browsers are signed out (a new password, a disabled account)."""
    with store.engine.begin() as conn:
        conn.execute(update(staff).where(staff.c.name == name).values(
            **{k: (_aware(v) if isinstance(v, dt.datetime) else v) for k, v in values.items()}))
        if sessions_end:
            conn.execute(delete(web_sessions).where(web_sessions.c.staff_name == name))
        if action:
            _audit(conn, at, actor, action, name)


def _audit(conn, at: dt.datetime, actor: str, action: str, detail: str, *, why: str = "",
           patron_id: str | None = None, notice_key: str | None = None) -> None:
    conn.execute(insert(staff_actions).values(at=at.astimezone(UTC), actor=actor, action=action, detail=detail,
                                              why=why, patron_id=patron_id, notice_key=notice_key))


def audit(store: Store, *, at: dt.datetime, actor: str, action: str, detail: str = "", why: str = "",
          patron_id: str | None = None, notice_key: str | None = None) -> None:
    """One staff action, on its own (a requests report sent, a flood guard confirmed)."""
    with store.engine.begin() as conn:
        _audit(conn, at, actor, action, detail, why=why, patron_id=patron_id, notice_key=notice_key)


# --- sessions ------------------------------------------------------------------------------------

def insert_session(store: Store, *, token_hash: str, staff_name: str, role: str, csrf_token: str,
                   at: dt.datetime, expires_at: dt.datetime, address: str, via: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < at.astimezone(UTC)))
        conn.execute(insert(web_sessions).values(token_hash=token_hash, staff_name=staff_name, role=role,
                                                 csrf_token=csrf_token, created_at=at.astimezone(UTC),
                                                 last_seen_at=at.astimezone(UTC),
                                                 expires_at=expires_at.astimezone(UTC), address=address[:64],
                                                 via=via))
        conn.execute(update(staff).where(staff.c.name == staff_name).values(last_login_at=at.astimezone(UTC)))


def find_session(store: Store, token_hash: str) -> dict | None:
    """The session with the staff account it belongs to (``disabled``, its ``role`` now)."""
    query = (select(web_sessions, staff.c.disabled, staff.c.role.label("staff_role"))
             .join(staff, staff.c.name == web_sessions.c.staff_name, isouter=True)
             .where(web_sessions.c.token_hash == token_hash))
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    return _row(row) if row else None


def touch_session(store: Store, token_hash: str, at: dt.datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(web_sessions).where(web_sessions.c.token_hash == token_hash)
                     .values(last_seen_at=at.astimezone(UTC)))


def delete_session(store: Store, token_hash: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == token_hash))


def delete_sessions_of(store: Store, name: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.staff_name == name))


# --- failed sign-ins -----------------------------------------------------------------------------

def add_failure(store: Store, name: str, address: str, at: dt.datetime, *, older_than: dt.datetime) -> None:
    """Record a failed sign-in; those before ``older_than`` are forgotten."""
    with store.engine.begin() as conn:
        conn.execute(delete(login_failures).where(login_failures.c.at < older_than.astimezone(UTC)))
        conn.execute(insert(login_failures).values(name=name[:255], address=address[:64], at=at.astimezone(UTC)))


def count_failures(store: Store, *, name: str, address: str, since: dt.datetime) -> tuple[int, int]:
    """(failures for this name, failures from this address) since ``since``."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(login_failures.c.name, login_failures.c.address)
                            .where(login_failures.c.at >= since.astimezone(UTC),
                                   or_(login_failures.c.name == name, login_failures.c.address == address))).all()
    return sum(r.name == name for r in rows), sum(r.address == address for r in rows)
