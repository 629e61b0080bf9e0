"""The guard on every message: a channel checked before each send, so that a stop or a lost lease
stops a pass between two messages, never in the middle of one (the notice simply stays pending)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters.channels.base import BaseChannel, Channel

if TYPE_CHECKING:
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

    def __init__(self, inner: Channel, before_send: Callable[[], None],
                 check_in: Callable[[object], None] | None = None):
        """``check_in(conn)``: the same check inside a transaction of the caller's (see ``before_handover``)."""
        self.inner = inner
        self.before_send = before_send
        self.check_in = check_in
        self.name = inner.name
        self._checked: object = None       # the notice checked in its mark's transaction, not yet sent

    def before_handover(self, conn, notice) -> None:
        """The check, inside the transaction that marks ``notice`` sending (service/dispatch.py): it
        raises there, and no mark is committed; the send of that notice that follows does not check again."""
        if self.check_in is None:
            return
        self._checked = None
        self.check_in(conn)
        self._checked = notice.key

    def _check(self, notice) -> None:
        checked, self._checked = self._checked, None
        if checked is None or checked != getattr(notice, "key", None):
            self.before_send()

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
        self._check(notice)
        return self.inner.send_email(notice, message)

    def send_letter(self, notice, pdf, filename):
        self._check(notice)
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

    def check_in(conn) -> None:
        if not lease.confirm_in(conn):
            raise LeaseLost()

    return _Fenced(channel, before_send, check_in)
