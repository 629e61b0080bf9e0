"""The guard on every message: a channel checked before each send, so that a stop or a lost lease
stops a pass between two messages, never in the middle of one (the notice simply stays pending)."""
from __future__ import annotations

from collections.abc import Callable

from adapters.channels.base import BaseChannel, Channel
from adapters.store.lease import Lease

__all__ = ["LeaseLost", "Stopping", "leased"]


class Stopping(BaseException):
    """Raised before sending the next message once a stop was asked for (not an Exception: the
    pipeline must not record it as a delivery failure; the notice simply stays pending)."""


class LeaseLost(BaseException):
    """Raised before sending the next message when this instance no longer holds the lease."""


class _Fenced(BaseChannel):
    """The policy's channel, checked before every message (``before_send`` raises to stop it):
    for the daemon, not after a stop and only while leased. Everything else is the inner channel's."""

    def __init__(self, inner: Channel, before_send: Callable[[], None]):
        self.inner = inner
        self.before_send = before_send
        self.name = inner.name

    @property
    def description(self) -> str:
        return self.inner.description

    @property
    def routes(self) -> dict:
        """The configured routes of the inner router (none: everything goes to the outbox)."""
        return getattr(self.inner, "routes", {})

    def is_local(self, notice) -> bool:
        return self.inner.is_local(notice)

    def destination(self, notice) -> str:
        return self.inner.destination(notice)

    def send_email(self, notice, message):
        self.before_send()
        return self.inner.send_email(notice, message)

    def send_letter(self, notice, pdf, filename):
        self.before_send()
        return self.inner.send_letter(notice, pdf, filename)

    def checks(self):
        return self.inner.checks()

    def close(self) -> None:
        self.inner.close()


def leased(channel: Channel, lease: Lease) -> Channel:
    """``channel``, renewing ``lease`` before every message as the daemon does: once the lease is
    lost (another instance took over), LeaseLost is raised before sending and the notice stays
    pending. For `rappel run`, which holds the daemon's lease for the whole run."""

    def before_send() -> None:
        if not lease.confirm():
            raise LeaseLost()

    return _Fenced(channel, before_send)
