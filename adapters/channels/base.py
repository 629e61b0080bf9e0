"""The channel contract: how a rendered notice leaves rappel.

A channel is one module with one class (like an apprise service, without the size) that
subclasses ``BaseChannel``: it says what it carries (``carries``: emails, letters, texts, JSON
documents), gets a notice with its rendered email, letter, text or document and answers with a ``Delivery``. It never raises for a delivery
failure; ``permanent`` says whether retrying can help (a server that is down, a 4xx reply: not
permanent) or not (a refused address: permanent, the policy's fallback applies). ``reply`` keeps
what the server answered (the SMTP reply, lp's job line) for the ledger.

``BaseChannel`` holds the defaults every channel shares, so that nobody probes for them: ``local
= False`` (True for a channel whose messages stay on this machine: the flood guard does not count
them), ``checks()`` returning a ``Check`` per server it would use (``rappel lint
--check-delivery``; none by default), ``close()`` (nothing to close by default), a
``description`` for ``rappel lint``, ``destination(notice)`` (where a notice goes, for the run's
table: the notice's own destination unless the channel puts it elsewhere), and the send methods
refusing, for good and politely, what the channel does not carry.

Channels: outbox.py (the default), smtp.py, printer.py, mailbox.py, sms.py, webhook.py; memory.py is the fake that
ships with the product for tests. They are registered in one place, registry.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import ClassVar

from engine.decide import Notice

__all__ = ["BaseChannel", "Channel", "Check", "Delivery"]


@dataclass(frozen=True)
class Delivery:
    """What became of one notice on one channel."""

    ok: bool
    permanent: bool      # for a failure: retrying will not help
    reference: str       # where it went: a file path, a queue id, a message id…
    detail: str = ""
    reply: str = ""      # the server's own words: "250 2.0.0 Ok: queued as 4F3A2", "550 5.1.1 …"
    destination: str = ""   # where it went, when not the notice's destination: "outbox:outbox/"

    @classmethod
    def sent(cls, reference: str, detail: str = "", reply: str = "", destination: str = "") -> Delivery:
        return cls(True, False, reference, detail, reply, destination)

    @classmethod
    def failed(cls, detail: str, permanent: bool = False, reference: str = "", reply: str = "") -> Delivery:
        return cls(False, permanent, reference, detail, reply)


@dataclass(frozen=True)
class Check:
    """One server a channel would use, tried without sending anything."""

    target: str          # "smtp.univ.example:587", "printer bu-sciences"
    ok: bool
    detail: str


class BaseChannel:
    """The contract and its defaults; a channel overrides what it does differently."""

    name: ClassVar[str] = "channel"
    local: ClassVar[bool] = False                 # True: nothing leaves the machine (the flood guard skips it)
    carries: ClassVar[tuple[str, ...]] = ()       # "email", "letter", "text", "json": what send_<kind> takes

    @property
    def description(self) -> str:
        """Where this channel sends, for people (rappel lint)."""
        return self.name

    def is_local(self, notice: Notice) -> bool:
        """Whether this notice stays on this machine (a router answers for the channel it picks)."""
        return self.local

    def destination(self, notice: Notice) -> str:
        """Where this channel delivers this notice, for people: the notice's destination (an email
        address, printer:NAME, mailbox:ADDRESS) unless the channel puts it elsewhere (the outbox)."""
        return notice.destination

    def send_email(self, notice: Notice, message: EmailMessage) -> Delivery:
        return self.refuse("email")

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery:
        return self.refuse("letter")

    def send_text(self, notice: Notice, text: str) -> Delivery:
        """A short text to the notice's destination (an SMS: renders "text")."""
        return BaseChannel.refuse(self, "text")     # (a channel may keep a `refuse` of its own)

    def send_json(self, notice: Notice, body: dict) -> Delivery:
        """The notice as a JSON document for another system (renders "json")."""
        return BaseChannel.refuse(self, "json")

    def checks(self) -> list[Check]:
        return []

    def close(self) -> None:
        """Release connections; harmless to call twice."""

    def refuse(self, kind: str) -> Delivery:
        carried = " and ".join(f"{k}s" for k in self.carries) or "nothing"
        return Delivery.failed(f"the {self.name} channel carries {carried}, not {kind}s", permanent=True)


Channel = BaseChannel     # the name type hints use: anything that keeps the contract

