"""The fake that ships with the product: a channel that keeps what it is sent, for tests.

``MemoryChannel`` carries emails and letters like a real server would: it keeps them in
``emails`` and ``letters``, refuses for good the recipients in ``refuse`` (recipient → the
server's reply, like a 550), and while ``down`` is set every send fails for a while (transient,
like a server that does not answer). ``fail_with`` fails on demand: a Delivery returned for
every notice, or a function of the notice returning a Delivery (fail this one) or None (deliver
it). Failed notices are not kept, only counted in ``attempts``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from adapters.channels.base import BaseChannel, Delivery
from engine.decide import Notice

__all__ = ["MemoryChannel"]

Failure = Delivery | Callable[[Notice], Delivery | None] | None


@dataclass
class MemoryChannel(BaseChannel):
    name: str = "memory"
    fail_with: Failure = None
    local: bool = False      # counted by the flood guard, like a real server
    refuse: dict[str, str] = field(default_factory=dict)     # recipient → reply: refused for good
    down: str = ""           # while set: every send fails with this reason, to be retried
    emails: list[tuple[Notice, EmailMessage]] = field(default_factory=list)
    letters: list[tuple[Notice, bytes, str]] = field(default_factory=list)
    attempts: int = 0
    carries = ("email", "letter")

    @property
    def description(self) -> str:
        return "memory (kept in this process)"

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
        if self.down:
            return Delivery.failed(self.down)
        if self.refuse and notice.recipient in self.refuse:
            reply = self.refuse[notice.recipient]
            return Delivery.failed(f"refused: {reply}", permanent=True, reply=reply)
        return self.fail_with(notice) if callable(self.fail_with) else self.fail_with
