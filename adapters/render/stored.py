"""Messages as they were kept (adapters/store/sent.py): read back for people, and readdressed to be
sent again (`rappel notices show`, `rappel notices resend`).

A resend changes only the header lines it must, on the bytes themselves: ``Date`` (now), ``Message-ID``
(a new one: a mailbox that already holds the first, a spam folder included, would drop a second copy
with the same id) and, when the staff give another address, ``To``. Every other header and the whole
body go out byte for byte as they were first sent.
"""
from __future__ import annotations

import email
import email.policy
import re
from email.utils import formataddr

from adapters.render.formats import one_line

__all__ = ["MAIN_HEADERS", "display_name", "html_part", "readdressed", "readable"]

MAIN_HEADERS = ("From", "Reply-To", "To", "Subject", "Date", "Message-ID")
_FIELD = re.compile(rb"^([!-9;-~]+):")          # a header field's name (RFC 5322 ftext)


def readable(data: bytes) -> dict:
    """An email's headers (decoded, in order) and its text: {"headers": [[name, value], …], "text": …}."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    headers = [[name, " ".join(str(value).split())] for name, value in message.items()]
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    return {"headers": headers, "text": text}


def html_part(data: bytes) -> str | None:
    """The email's HTML part, as text (None when it has none)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    body = message.get_body(preferencelist=("html",))
    return body.get_content() if body is not None else None


def display_name(data: bytes) -> str:
    """The name of an email's first recipient, as its To says it ('' if none)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    to = message["To"]
    addresses = getattr(to, "addresses", ()) if to is not None else ()
    return addresses[0].display_name if addresses else ""


def readdressed(data: bytes, *, date: str, message_id: str, to: tuple[str, str] | None = None) -> bytes:
    """The email's bytes with its Date and Message-ID replaced (and its To, ``(name, address)``), the rest
    unchanged. The new values are single lines; a header missing from the message is added at the end
    of its header block."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("not an email as rappel keeps them (no blank line after the headers)")
    new = {"date": ("Date", date), "message-id": ("Message-ID", message_id)}
    if to is not None:
        name, address = to
        new["to"] = ("To", formataddr((one_line(name), address), charset="utf-8") if name else address)
    for label, value in new.values():
        if "\r" in value or "\n" in value or not value.isascii():
            raise ValueError(f"{label}: not a single line of ASCII: {value!r}")
    fields: list[tuple[str, list[bytes]]] = []
    for line in head.split(b"\r\n"):
        match = _FIELD.match(line)
        if match is None and fields:          # a folded continuation of the field before
            fields[-1][1].append(line)
        else:
            fields.append(((match.group(1).decode("ascii").lower() if match else ""), [line]))
    out: list[bytes] = []
    done: set[str] = set()
    for name, lines in fields:
        if name in new:
            if name not in done:
                label, value = new[name]
                out.append(f"{label}: {value}".encode("ascii"))
                done.add(name)
            continue
        out.extend(lines)
    out.extend(f"{label}: {value}".encode("ascii") for name, (label, value) in new.items() if name not in done)
    return b"\r\n".join(out) + sep + body
