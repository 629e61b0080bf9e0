"""The JSON API's clients: each a name, a role of accounts.yaml and a token (`rappel api-client`).

The token is made here (``secrets.token_urlsafe``, 256 bits), shown once, and only its sha256 is
kept: a leaked database gives no token, and a lost token is replaced (``rotate``), never recovered.
A token comes in ``Authorization: Bearer …``; ``authenticate`` finds its enabled client and notes
when it was last used. A plain sha256 (no salt, no slow hash) is right for a random 256-bit token:
nothing to guess, and the lookup is by the hash itself.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from adapters.store import api_clients as table
from adapters.store.database import Store
from engine.accounts import AccountsPolicy
from engine.yamlsource import InputError, Problem

__all__ = ["Client", "add", "authenticate", "disable", "listing", "rotate", "token_hash"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TOUCH_EVERY = dt.timedelta(minutes=1)     # last_used_at is written at most this often per client


@dataclass(frozen=True)
class Client:
    name: str
    role: str
    disabled: bool = False

    @property
    def actor(self) -> str:
        """Who acts, in the audit trail: api:NAME."""
        return f"api:{self.name}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _refuse(where: str, message: str) -> InputError:
    return InputError([Problem(where, None, "", message)])


def _new_token() -> str:
    return "rappel_" + secrets.token_urlsafe(32)


def add(store: Store, accounts: AccountsPolicy, name: str, role: str, at: dt.datetime) -> str:
    """A new client acting as ``role``; its token, to show once."""
    if not NAME.match(name):
        raise _refuse(name, "a client's name is letters, digits, . _ - (at most 100), e.g. koha or discovery")
    if role not in accounts.roles:
        raise _refuse("--role", f"{role!r} is not a role of accounts.yaml ({', '.join(accounts.roles)})")
    token = _new_token()
    try:
        table.add(store, name, token_hash(token), role, at)
    except table.NameTaken:
        raise _refuse(name, "a client of this name exists (rappel api-client rotate gives it a new token)") from None
    return token


def listing(store: Store) -> list[dict]:
    return table.all_clients(store)


def disable(store: Store, name: str) -> None:
    if not table.set_disabled(store, name, True):
        raise _refuse(name, "no such API client (rappel api-client list)")


def rotate(store: Store, name: str) -> str:
    """A new token for the client (enabled again); the old one is refused from now on."""
    token = _new_token()
    if not table.set_hash(store, name, token_hash(token)):
        raise _refuse(name, "no such API client (rappel api-client list)")
    table.set_disabled(store, name, False)
    return token


def authenticate(store: Store, token: str, at: dt.datetime) -> Client | None:
    """The client of this token, or None (unknown, or disabled); its last use noted."""
    if not token:
        return None
    row = table.by_hash(store, token_hash(token))
    if row is None or row["disabled"]:
        return None
    last = row["last_used_at"]
    if last is None or at - last >= TOUCH_EVERY:
        table.touch(store, row["name"], at)
    return Client(row["name"], row["role"])
