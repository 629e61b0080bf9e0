"""Letters to a library's mailbox: the letter's PDF attached to an email, sent over SMTP.

For libraries whose policy says ``letters: {mailbox: droit-contentieux@univ.example}``: the staff
there print and post the letter. The covering email comes from the templates
(``_mailbox.subject.j2``, ``_mailbox.txt.j2``, the policy's language) with the PDF attached, and
goes through the same SMTP channel as the patrons' emails (``delivery.mailbox.url``, by default
``delivery.email.url``), with a Message-ID derived from the letter's ledger key. A mailbox that
refuses the message for good (550) leaves the letter failed, with the reply on its row.
"""
from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

from adapters.channels.base import BaseChannel, Check, Delivery
from adapters.channels.smtp import SmtpEmailChannel
from engine.decide import Notice

__all__ = ["MailboxChannel"]

Cover = Callable[[Notice, bytes, str], EmailMessage]


class MailboxChannel(BaseChannel):
    """The channel contract for letters whose destination is ``mailbox:ADDRESS``."""

    name = "mailbox"
    carries = ("letter",)

    def __init__(self, transport: SmtpEmailChannel, cover: Cover):
        self.transport = transport
        self.cover = cover

    @property
    def description(self) -> str:
        return f"mailbox (attached to an email, through {self.transport.description})"

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery:
        kind, _, mailbox = notice.destination.partition(":")
        if kind != "mailbox" or not mailbox:
            return Delivery.failed(f"not a mailbox destination: {notice.destination!r}", permanent=True)
        delivery = self.transport.send_email(notice, self.cover(notice, pdf, filename))
        if delivery.ok:
            return Delivery.sent(f"mailbox:{mailbox} {delivery.reference}", f"sent to {mailbox}", delivery.reply)
        return Delivery.failed(f"mailbox {mailbox}: {delivery.detail}", delivery.permanent,
                               f"mailbox:{mailbox} {delivery.reference}".strip(), delivery.reply)

    def checks(self) -> list[Check]:
        return self.transport.checks()

    def close(self) -> None:
        self.transport.close()
