"""The channel contract: how a rendered notice leaves rappel.

A channel is one module with one class (like an apprise service, without the size): it gets a
notice with its rendered email or letter and answers with a ``Delivery``. It never raises for a
delivery failure; ``permanent`` says whether retrying can help (a server that is down, a 4xx
reply: not permanent) or not (a refused address: permanent, the policy's fallback applies).
``reply`` keeps what the server answered (the SMTP reply, lp's job line) for the ledger.

Optional, by convention: ``local = True`` for a channel whose messages stay on this machine (the
outbox: the flood guard does not count them), ``checks()`` returning a ``Check`` per server it
would use (``rappel lint --check-delivery``), and ``close()``.

Channels: adapters/outbox.py (the default), adapters/smtp_email.py, adapters/printer.py,
adapters/mailbox.py; they are registered in one place, adapters/delivery.py. ``MemoryChannel``
ships with the product as the fake for unit tests.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol, runtime_checkable

from engine.decide import Notice

__all__ = ["Channel", "Check", "Delivery", "MemoryChannel"]


@dataclass(frozen=True)
class Delivery:
    """What became of one notice on one channel."""

    ok: bool
    permanent: bool      # for a failure: retrying will not help
    reference: str       # where it went: a file path, a queue id, a message id…
    detail: str = ""
    reply: str = ""      # the server's own words: "250 2.0.0 Ok: queued as 4F3A2", "550 5.1.1 …"

    @classmethod
    def sent(cls, reference: str, detail: str = "", reply: str = "") -> Delivery:
        return cls(True, False, reference, detail, reply)

    @classmethod
    def failed(cls, detail: str, permanent: bool = False, reference: str = "", reply: str = "") -> Delivery:
        return cls(False, permanent, reference, detail, reply)


@dataclass(frozen=True)
class Check:
    """One server a channel would use, tried without sending anything."""

    target: str          # "smtp.univ.example:587", "printer bu-sciences"
    ok: bool
    detail: str


@runtime_checkable
class Channel(Protocol):
    name: str

    def send_email(self, notice: Notice, message: EmailMessage) -> Delivery: ...

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery: ...


Failure = Delivery | Callable[[Notice], Delivery | None] | None


@dataclass
class MemoryChannel:
    """Keeps what it is sent in ``emails`` and ``letters``; fails on demand.

    ``fail_with`` is a Delivery returned for every notice, or a function of the notice returning
    a Delivery (fail this one) or None (deliver it). Failed notices are not recorded, only
    counted in ``attempts``.
    """

    name: str = "memory"
    fail_with: Failure = None
    local: bool = False      # counted by the flood guard, like a real server
    emails: list[tuple[Notice, EmailMessage]] = field(default_factory=list)
    letters: list[tuple[Notice, bytes, str]] = field(default_factory=list)
    attempts: int = 0

    def send_email(self, notice: Notice, message: EmailMessage) -> Delivery:
        failure = self._failure(notice)
        if failure:
            return failure
        self.emails.append((notice, message))
        return Delivery.sent(f"memory:email/{len(self.emails)}")

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery:
        failure = self._failure(notice)
        if failure:
            return failure
        self.letters.append((notice, pdf, filename))
        return Delivery.sent(f"memory:letter/{len(self.letters)}")

    def _failure(self, notice: Notice) -> Delivery | None:
        self.attempts += 1
        return self.fail_with(notice) if callable(self.fail_with) else self.fail_with
