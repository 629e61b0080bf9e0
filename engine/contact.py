"""How rappel reaches a patron: the one test of "is this a usable email address".

Used where the plan routes a notice (engine/decide.py), where a value is validated (imports,
patron edits, the policy's sender, inside its display-name form) and, as a last guard, before a
message is handed to a server. An address is usable when it is exactly one plain address: no
display name, no list, no white space or line break, nothing a header could be built from.
"""
from __future__ import annotations

import re

__all__ = ["is_email_address"]

_ADDRESS = re.compile(r"[^@\s,;<>()\[\]\\\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")


def is_email_address(value: str | None) -> bool:
    """True when ``value`` is exactly one plain email address (local@domain.tld), nothing after it."""
    return bool(value) and _ADDRESS.fullmatch(value) is not None
