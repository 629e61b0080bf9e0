"""Notices into email messages (MIME): the notice's email, the email carrying a letter to a
library's mailbox, their Message-ID, and the bytes sent over SMTP or written as .eml.

Headers are written already encoded (``set_raw``): building them through the header registry costs
several milliseconds a message, most of the time of a dispatch. A line break that is not folding
is refused, so patrons' values cannot add a header.
"""
from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
import re
from email import quoprimime
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from adapters.render.context import NoticeContext
from adapters.render.formats import midnight, one_line
from engine.contact import is_email_address
from engine.decide import Notice
from engine.policy import Policy

__all__ = ["BOUNDARY", "MESSAGE_POLICY", "WIRE_POLICY", "is_address", "mailbox_message", "message_id",
           "notice_email", "prepared", "serialize", "wire_bytes"]

BOUNDARY = "=_rappel_alternative"

# Names in headers are RFC 2047 "Q"-encoded (=?utf-8?q?Zo=C3=A9?=), whatever else the process has
# loaded: email.utils.formataddr reads the shared charset table, which apprise changes when it is
# imported (utf-8 in quoted-printable): a preview made without apprise would otherwise differ from the
# message sent.
UTF8 = Charset("utf-8")
UTF8.header_encoding = QP
is_address = is_email_address   # the one email predicate (engine/contact.py), under its former name here

_BARE_LINE_BREAK = re.compile(r"\r|\n(?![ \t])")


@lru_cache(maxsize=8192)
def _parsed_header(name: str, value: str):
    return email.policy.default.header_fetch_parse(name, value)


class _MessagePolicy(email.policy.EmailPolicy):
    """The default policy, with each header value parsed once: serialising a message asks for its
    Content-Type several times, and every message has the same parts' headers. Header objects
    are immutable, so sharing them is safe."""

    def header_fetch_parse(self, name, value):
        if hasattr(value, "name") or not isinstance(value, str):
            return super().header_fetch_parse(name, value)
        return _parsed_header(name, value)

    def fold_binary(self, name, value):
        """A header's bytes, folded once for a value (most headers are the same in every message)."""
        if not isinstance(value, str):
            return super().fold_binary(name, value)
        return _folded(self, name, value)


@lru_cache(maxsize=8192)
def _folded(policy: email.policy.EmailPolicy, name: str, value: str) -> bytes:
    return email.policy.EmailPolicy.fold_binary(policy, name, value)


MESSAGE_POLICY = _MessagePolicy()
WIRE_POLICY = MESSAGE_POLICY.clone(linesep="\r\n")      # email.policy.SMTP, parsing each header once


def notice_email(ctx: NoticeContext, parts: dict[str, str], language: str) -> EmailMessage:
    """The notice's email to its patron: text and HTML alternatives, from the rendered ``parts``."""
    policy, notice, patron = ctx.policy, ctx.notice, ctx.patron
    to = one_line(patron.email or notice.recipient)
    if not to:
        raise ValueError(f"notice {notice.key}: patron {patron.patron_id} has no email address")
    if not is_email_address(to):
        raise ValueError(f"notice {notice.key}: patron {patron.patron_id}'s email {to!r} is not one address")
    msg = EmailMessage(policy=MESSAGE_POLICY)
    sender = ctx.sender                                       # the stage's, the library's or the policy's
    _raw(msg, "From", _address_header(sender.from_))
    _raw(msg, "Reply-To", _address_header(sender.reply_to))
    _raw(msg, "To", formataddr((one_line(patron.full_name), to), charset=UTF8))
    _raw(msg, "Subject", _text_header(parts["subject"]))
    _raw(msg, "Date", format_datetime(ctx.sent_at))                # when it is sent (the pass's time)
    _raw(msg, "Message-ID", message_id(notice.key, policy.sender.from_))
    _raw(msg, "Auto-Submitted", "auto-generated")            # RFC 3834: no vacation replies
    _raw(msg, "MIME-Version", "1.0")
    # one fixed boundary: the bytes are stable, and "=_" never occurs in quoted-printable text
    _raw(msg, "Content-Type", f'multipart/alternative; boundary="{BOUNDARY}"')
    _raw(msg, "Content-Language", language)
    msg.set_payload([_text_part(parts["txt"], "plain"), _text_part(parts["html"], "html")])
    return msg


def mailbox_message(policy: Policy, notice: Notice, mailbox: str, subject: str, text: str, pdf: bytes,
                    filename: str, at: dt.datetime | None = None) -> EmailMessage:
    """The email that carries a letter to its library's mailbox, the PDF attached (policy's language);
    dated ``at``, when it is sent (None: the start of the notice's day)."""
    msg = EmailMessage()
    msg["From"] = one_line(policy.sender.from_)
    msg["Reply-To"] = one_line(policy.sender.reply_to)
    msg["To"] = mailbox
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at.astimezone(policy.tz) if at else midnight(notice.date, policy))
    msg["Message-ID"] = message_id(notice.key, policy.sender.from_)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=_safe_filename(filename))
    msg["Content-Language"] = policy.language
    for part in msg.iter_parts():
        del part["MIME-Version"]
    msg.set_boundary("=_rappel_" + _digest(notice.key)[:24])
    return msg


def message_id(key: str, sender: str) -> str:
    """A Message-ID derived from the notice key: the same notice always gets the same id."""
    return f"<{_digest(key)[:32]}@{_domain(sender)}>"


@lru_cache(maxsize=64)
def _domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "rappel.invalid"


def serialize(message: EmailMessage) -> None:
    """Compute a message's bytes for the wire ahead of sending (the dispatch does it while the
    previous message is being sent); ``wire_bytes`` then reuses them if the headers are unchanged."""
    message._rappel_wire = (tuple(message.raw_items()), message.as_bytes(policy=WIRE_POLICY))


def wire_bytes(message: EmailMessage) -> bytes:
    """The message as sent over SMTP or written as .eml: CRLF line ends, headers as rendered."""
    cached = getattr(message, "_rappel_wire", None)
    if cached is not None and cached[0] == tuple(message.raw_items()):
        return cached[1]
    return message.as_bytes(policy=WIRE_POLICY)


def prepared(data: bytes) -> EmailMessage:
    """A message read back from the bytes it is to be sent as (a resend): ``wire_bytes`` gives exactly
    these bytes, not a new serialisation of them."""
    message = email.message_from_bytes(data, policy=MESSAGE_POLICY)
    message._rappel_wire = (tuple(message.raw_items()), data)
    return message


def _raw(msg: EmailMessage, name: str, value: str) -> None:
    """A header given already encoded; a line break that is not folding is refused."""
    if _BARE_LINE_BREAK.search(value):
        raise ValueError(f"{name}: a line break in a header value")
    msg.set_raw(name, value)


@lru_cache(maxsize=64)
def _address_header(value: str) -> str:
    """'Name <a@b.example>' or 'a@b.example' for a header, the name RFC 2047-encoded when not ASCII."""
    name, addr = parseaddr(one_line(value))
    return formataddr((name, addr), charset=UTF8) if name else addr


@lru_cache(maxsize=1024)
def _text_header(value: str) -> str:
    """A Subject, RFC 2047-encoded when not ASCII (encoded once: a day's subjects are a few)."""
    value = one_line(value)
    return value if value.isascii() else Header(value, UTF8).encode(maxlinelen=76)


def _text_part(text: str, subtype: str) -> EmailMessage:
    """A text/plain or text/html part in UTF-8, quoted-printable."""
    part = EmailMessage(policy=MESSAGE_POLICY)
    _raw(part, "Content-Type", f'text/{subtype}; charset="utf-8"')
    _raw(part, "Content-Transfer-Encoding", "quoted-printable")
    part.set_payload(quoprimime.body_encode(text.encode("utf-8").decode("latin-1")))
    return part


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "letter.pdf"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
