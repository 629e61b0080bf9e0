"""The JSON API's clients (table api_clients): a name, the sha256 of its token, its role. The token
itself is never stored (service/api_clients.py makes and shows it once)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.store.database import Store
from adapters.store.schema import api_clients

__all__ = ["NameTaken", "add", "all_clients", "by_hash", "set_disabled", "set_hash", "touch"]


class NameTaken(Exception):
    """A client of that name exists already."""


def _row(mapping) -> dict:
    out = dict(mapping)
    for name in ("created_at", "last_used_at"):
        if isinstance(out.get(name), dt.datetime) and out[name].tzinfo is None:
            out[name] = out[name].replace(tzinfo=dt.timezone.utc)
    out["disabled"] = bool(out["disabled"])
    out.pop("token_hash", None)
    return out


def add(store: Store, name: str, token_hash: str, role: str, at: dt.datetime) -> None:
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(api_clients).values(name=name, token_hash=token_hash, role=role,
                                                    created_at=at.astimezone(dt.timezone.utc), disabled=0))
    except IntegrityError:
        raise NameTaken(name) from None


def all_clients(store: Store) -> list[dict]:
    """Every client (name, role, created_at, disabled, last_used_at), by name; never the hash."""
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(select(api_clients).order_by(api_clients.c.name)).mappings()]


def by_hash(store: Store, token_hash: str) -> dict | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(api_clients).where(api_clients.c.token_hash == token_hash)).mappings().first()
    return _row(row) if row is not None else None


def set_disabled(store: Store, name: str, disabled: bool) -> bool:
    """False when there is no such client."""
    with store.engine.begin() as conn:
        return conn.execute(update(api_clients).where(api_clients.c.name == name)
                            .values(disabled=int(disabled))).rowcount > 0


def set_hash(store: Store, name: str, token_hash: str) -> bool:
    """A new token's hash (the old token stops working at once); False when there is no such client."""
    with store.engine.begin() as conn:
        return conn.execute(update(api_clients).where(api_clients.c.name == name)
                            .values(token_hash=token_hash)).rowcount > 0


def touch(store: Store, name: str, at: dt.datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(api_clients).where(api_clients.c.name == name)
                     .values(last_used_at=at.astimezone(dt.timezone.utc)))
