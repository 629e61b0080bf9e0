"""Who may enter the staff interface: staff accounts (`rappel staff`), sign-in by password or by the
reverse proxy's single sign-on, and web sessions.

- An account has a name, a role of rules/accounts.yaml, and an argon2 hash of its password ("" for
  an account that signs in only through the proxy's single sign-on). A hash made with older
  parameters is replaced at the next successful sign-in.
- A session is a random token in the browser's cookie; the database keeps only its sha256. Every
  sign-in makes a new one (a token the browser had before is never the session after), with a CSRF
  token of its own; it ends after ``idle`` without a request, after ``absolute`` in any case, at
  sign-out, and when its account is disabled or its password changed.
- Failed sign-ins are counted per name and per address over ``window``: past the limits the
  sign-in is refused without checking the password (``RateLimited``).
- Every change to an account is audited in staff_actions, with who did it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from adapters.store import staff as rows
from adapters.store.database import Store
from engine.accounts import AccountsPolicy
from engine.yamlsource import InputError, Problem

__all__ = ["Limits", "RateLimited", "SignInRefused", "WebSession", "add", "check_role", "disable", "end_session", "find_session",
           "hash_token",
           "listing", "open_session", "passwd", "sign_in", "sign_in_by_header"]

_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("not a password of anyone")


@dataclass(frozen=True)
class Limits:
    idle: dt.timedelta = dt.timedelta(minutes=30)
    absolute: dt.timedelta = dt.timedelta(hours=10)
    window: dt.timedelta = dt.timedelta(minutes=15)
    per_name: int = 5                  # failed sign-ins of one name in the window
    per_address: int = 20              # failed sign-ins from one address in the window
    touch_every: dt.timedelta = dt.timedelta(seconds=60)


class SignInRefused(Exception):
    """Wrong name or password, an unknown or disabled account: said the same way for each."""


class RateLimited(SignInRefused):
    """Too many failed sign-ins for this name or from this address: wait, then try again."""


@dataclass(frozen=True)
class WebSession:
    token: str              # only in the cookie (empty for a session found by its cookie)
    token_hash: str
    name: str
    role: str
    csrf_token: str
    via: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _problem(where: str, message: str) -> InputError:
    return InputError([Problem(where, None, "", message)])


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255 or any(c.isspace() or not c.isprintable() for c in name):
        raise _problem("NAME", f"{name!r}: a staff name is one word of printable characters (at most 255)")
    return name


def check_role(accounts: AccountsPolicy, role: str) -> None:
    if role not in accounts.roles:
        raise _problem("--role", f"{role!r} is not a role of accounts.yaml (known roles: "
                                 f"{', '.join(accounts.roles)})")


def _check_password(password: str) -> None:
    if len(password) < 10:
        raise _problem("password", "at least 10 characters")


# --- accounts ------------------------------------------------------------------------------------

def add(store: Store, accounts: AccountsPolicy, name: str, role: str, password: str | None, *, at: dt.datetime,
        actor: str) -> dict:
    """A new staff account; ``password`` None: single sign-on only."""
    name = _check_name(name)
    check_role(accounts, role)
    if password is not None:
        _check_password(password)
    if rows.staff_member(store, name) is not None:
        raise _problem("NAME", f"a staff account {name!r} exists already (rappel staff passwd, disable)")
    rows.insert_staff(store, name=name, role=role, password_hash=_HASHER.hash(password) if password else "",
                      at=at, actor=actor)
    return rows.staff_member(store, name)


def _existing(store: Store, name: str) -> dict:
    member = rows.staff_member(store, name)
    if member is None:
        raise _problem("NAME", f"no staff account {name!r} (rappel staff list)")
    return member


def passwd(store: Store, name: str, password: str, *, at: dt.datetime, actor: str) -> None:
    """A new password; the account's browsers are signed out."""
    _existing(store, name)
    _check_password(password)
    rows.update_staff(store, name, {"password_hash": _HASHER.hash(password), "password_changed_at": at},
                      at=at, actor=actor, action="staff.passwd", sessions_end=True)


def disable(store: Store, name: str, *, at: dt.datetime, actor: str) -> None:
    """The account signs in no more; its browsers are signed out at once."""
    _existing(store, name)
    rows.update_staff(store, name, {"disabled": 1}, at=at, actor=actor, action="staff.disable", sessions_end=True)


def listing(store: Store) -> list[dict]:
    return [{"name": m["name"], "role": m["role"], "sign_in": "password" if m["password_hash"] else "sso-only",
             "disabled": bool(m["disabled"]), "created_at": m["created_at"], "last_login_at": m["last_login_at"]}
            for m in rows.list_staff(store)]


# --- signing in ----------------------------------------------------------------------------------

def open_session(store: Store, member: dict, *, at: dt.datetime, address: str, via: str,
                 limits: Limits = Limits()) -> WebSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    rows.insert_session(store, token_hash=hash_token(token), staff_name=member["name"], role=member["role"],
                        csrf_token=csrf, at=at, expires_at=at + limits.absolute, address=address, via=via)
    return WebSession(token, hash_token(token), member["name"], member["role"], csrf, via)


def sign_in(store: Store, name: str, password: str, *, at: dt.datetime, address: str,
            limits: Limits = Limits()) -> WebSession:
    """A new session for a right name and password; SignInRefused (RateLimited past the limits)."""
    by_name, by_address = rows.count_failures(store, name=name, address=address, since=at - limits.window)
    if by_name >= limits.per_name or by_address >= limits.per_address:
        raise RateLimited(f"too many failed sign-ins {'for this name' if by_name >= limits.per_name else 'from here'}"
                          f": try again in {int(limits.window.total_seconds() // 60)} minutes")
    member = rows.staff_member(store, name)
    stored = member["password_hash"] if member and not member["disabled"] else ""
    try:
        _HASHER.verify(stored or _DUMMY, password)     # the same work whether the account exists or not
        ok = bool(stored)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        rows.add_failure(store, name, address, at, older_than=at - limits.window)
        raise SignInRefused("wrong name or password, or an account that may not sign in")
    if _HASHER.check_needs_rehash(stored):
        rows.update_staff(store, name, {"password_hash": _HASHER.hash(password)})
    return open_session(store, member, at=at, address=address, via="password", limits=limits)


def sign_in_by_header(store: Store, name: str, *, at: dt.datetime, address: str,
                      limits: Limits = Limits()) -> WebSession:
    """The proxy's single sign-on said who this is (the caller checked the proxy is trusted)."""
    member = rows.staff_member(store, name.strip())
    if member is None or member["disabled"]:
        raise SignInRefused(f"{name!r} has no staff account here, or it is disabled")
    return open_session(store, member, at=at, address=address, via="header", limits=limits)


def find_session(store: Store, token: str, *, at: dt.datetime, limits: Limits = Limits()) -> WebSession | None:
    """The live session of this cookie, or None (unknown, idle too long, past its end, its account
    disabled or gone). Its role is the account's role now."""
    if not token:
        return None
    found = rows.find_session(store, hash_token(token))
    if found is None:
        return None
    if (found["disabled"] is None or found["disabled"] or found["expires_at"] <= at
            or found["last_seen_at"] + limits.idle <= at):
        rows.delete_session(store, found["token_hash"])
        return None
    if at - found["last_seen_at"] >= limits.touch_every:
        rows.touch_session(store, found["token_hash"], at)
    return WebSession("", found["token_hash"], found["staff_name"], found["staff_role"], found["csrf_token"],
                      found["via"])


def end_session(store: Store, session: WebSession) -> None:
    rows.delete_session(store, session.token_hash)
