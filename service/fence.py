"""The guard on every message: a channel checked before each send, so that a stop or a lost lease
stops a pass between two messages, never in the middle of one (the notice simply stays pending)."""
from __future__ import annotations

from collections.abc import Callable

from adapters.channels.base import Channel
from adapters.store.lease import Lease

__all__ = ["LeaseLost", "Stopping", "leased"]


class Stopping(BaseException):
    """Raised before sending the next message once a stop was asked for (not an Exception: the
    pipeline must not record it as a delivery failure; the notice simply stays pending)."""


class LeaseLost(BaseException):
    """Raised before sending the next message when this instance no longer holds the lease."""


class _Fenced:
    """The policy's channel, checked before every message (``before_send`` raises to stop it):
    for the daemon, not after a stop and only while leased."""

    def __init__(self, inner: Channel, before_send: Callable[[], None]):
        self.inner = inner
        self.before_send = before_send

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def send_email(self, notice, message):
        self.before_send()
        return self.inner.send_email(notice, message)

    def send_letter(self, notice, pdf, filename):
        self.before_send()
        return self.inner.send_letter(notice, pdf, filename)


def leased(channel: Channel, lease: Lease) -> Channel:
    """``channel``, renewing ``lease`` before every message as the daemon does: once the lease is
    lost (another instance took over), LeaseLost is raised before sending and the notice stays
    pending. For `rappel run`, which holds the daemon's lease for the whole run."""

    def before_send() -> None:
        if not lease.confirm():
            raise LeaseLost()

    return _Fenced(channel, before_send)
