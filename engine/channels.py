"""What the engine knows of a channel: a few plain facts, handed in by whoever calls it.

A stage's ``channel:`` names a channel kind. To route a notice the engine needs only this:
which contact the patron must have (an email address, a postal address, a phone number, or none),
how notices are grouped (one per patron, or one per patron and library like letters), what is
rendered (an email message, a letter PDF, a short text, a JSON document) and where it goes (the patron's own contact, or the library's ``letters:``
setting: a printer or a mailbox). The channel registry (adapters/channels/registry.py) holds one
``ChannelSpec`` per kind and the service layer passes them in; the engine never imports adapters.
``DEFAULT`` is what rappel ships, email and letter, for callers (and tests) that need no other.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["DEFAULT", "EMAIL", "LETTER", "NAME_PATTERN", "ChannelSpec", "unknown_channel"]

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"      # a channel's name in the policy: email, letter, sms…

Contact = Literal["email", "postal", "phone", "none"]
Renders = Literal["email", "letter", "text", "json"]


@dataclass(frozen=True)
class ChannelSpec:
    """How the engine routes to one channel kind (plain data, no behaviour)."""

    name: str
    contact: Contact             # what the patron must have: a valid email address, a postal address, a
    #                              phone number (E.164), or none (a channel to another system)
    renders: Renders             # what is rendered for it: an email message, a letter PDF, a short text
    #                              (<stage>.sms.j2), or a JSON document with the notice's text
    per_library: bool = False    # one notice per patron and library (a letter has a library's letterhead)
    via_library: bool = False    # it goes where the library's `letters:` says (printer:, mailbox:), not to
    #                              the patron's contact

    def __post_init__(self):
        if self.renders == "letter" and not self.per_library:
            raise ValueError(f"channel {self.name}: a letter is set out for one library: per_library=True")
        if self.via_library and not self.per_library:
            raise ValueError(f"channel {self.name}: what goes through a library is one per library: per_library=True")


EMAIL = ChannelSpec("email", contact="email", renders="email")
LETTER = ChannelSpec("letter", contact="postal", renders="letter", per_library=True, via_library=True)
DEFAULT: Mapping[str, ChannelSpec] = MappingProxyType({"email": EMAIL, "letter": LETTER})


def unknown_channel(name: str, channels: Mapping[str, ChannelSpec]) -> str:
    """The message for a channel name nobody registered."""
    return f"unknown channel {name!r} (known: {', '.join(channels)})"
