"""Email over SMTP, the server read by apprise from a mailto:// URL, the message rappel built.

The institution's server is an apprise ``mailto://`` (or ``mailtos://``) URL from the policy
(``delivery.email.url``, secrets as ``${NAME}``), with From and Reply-To (``from=``, ``reply=``,
from the policy's ``sender``). apprise reads it once (``RappelMail``, its mailto service: server,
port, TLS, login, envelope sender); each message is one SMTP transaction to its one recipient (read
as apprise reads a ``to=``), with its own status, on one connection kept for
``messages_per_connection`` messages.

apprise's stock mailto service builds its message from a title and a body: a random Message-ID,
a text part converted from the HTML, the date of sending. rappel's messages are built by
adapters/render/email.py (both parts from the templates, a Message-ID derived from the ledger key, a
fixed date) and sent as they are, bytes for bytes; the server's reply to each goes into the ledger
with the notice (apprise would log an SMTP refusal at DEBUG only). An apprise service and its notify
a message cost ~0.2 ms, a quarter of the sending: the channel calls its session itself.

Replies and what they mean (``SmtpReply.permanent``, ``SmtpReply.refuses_rappel``):
  - a 5xx at RCPT TO or after DATA that says the recipient's address is bad: permanent, the
    policy's fallback applies (an email becomes a letter). That is an enhanced status code (RFC
    3463) 5.1.x about the destination (5.1.1 no such mailbox, 5.1.2 no such domain, 5.1.3 bad
    syntax, 5.1.6 moved, 5.1.10 null MX…) or 5.2.x (mailbox disabled, full, over its limit), or,
    from a server that gives no enhanced code, 550, 551 or 553 at RCPT TO. A reply that names
    rappel's own envelope sender is about rappel, not the patron (Postfix delays its sender
    checks to RCPT TO: "550 5.1.0 <contentieux@…>: Sender address rejected");
  - every other 5xx (554 5.7.1 relay access denied, 530 5.7.0 authentication required, 5.7.x
    policy and spam rejections, 5.3.x system problems such as 5.3.4 message too big, 5.5.x
    protocol errors, 5.1.7/5.1.8 about the sender; a refused greeting, STARTTLS, login or MAIL
    FROM): the server refusing rappel itself. It is the site's setting that is wrong, not the
    patron's address: nothing falls back to paper for everyone, notices wait with the reply kept
    (retried with backoff, expiring after their window) while it is fixed;
  - 4xx anywhere (greylisting, mailbox full, 421 closing), connection refused, timeouts: transient,
    retried on a later pass with backoff.
After a connection-level failure, or once the server has refused rappel itself, the server is
considered unusable for the rest of the pass: later notices fail at once ("not attempted")
instead of each waiting for a timeout or being refused in turn.
"""
from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from urllib.parse import urlencode

import apprise
from apprise.plugins.email import NotifyEmail
from apprise.utils.parse import is_email, parse_emails

from adapters.channels.base import BaseChannel, Check, Delivery
from adapters.render import wire_bytes
from engine.contact import is_email_address
from engine.decide import Notice

__all__ = ["RappelMail", "SmtpEmailChannel", "SmtpReply"]

DOWN_SECONDS = 60.0          # after a connection-level failure, later sends fail at once this long
log = logging.getLogger("rappel.smtp")
HELO_NAME = "rappel"         # smtplib would look up this host's FQDN for every connection


# Enhanced status codes (RFC 3463, 7505) that say the recipient's address is bad: 5.1.x about the
# destination (not 5.1.5 "valid", 5.1.7 and 5.1.8 about the sender, 5.1.9 relayed) and any 5.2.x.
ADDRESS_DETAILS = {1: frozenset({0, 1, 2, 3, 4, 6, 10}), 2: None}     # subject -> details (None: all)
BASIC_ADDRESS_CODES = frozenset({550, 551, 553})                     # at RCPT TO, with no enhanced code
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_ADDRESS = re.compile(r"[^\s<>\"'():;,\[\]]+@[^\s<>\"'():;,\[\]]*[^\s<>\"'():;,.\[\]]")   # addresses a reply names


@dataclass(frozen=True)
class SmtpReply:
    """What the server said at one step of one transaction."""

    code: int | None          # None: no reply (connection refused, timeout, closed)
    text: str
    step: str                 # connect, starttls, login, MAIL FROM, RCPT TO, DATA
    recipient: str = ""
    sender: str = ""          # the envelope sender of the transaction (rappel's own address)

    @property
    def enhanced(self) -> tuple[int, int, int] | None:
        """The enhanced status code the reply starts with (``5.1.1`` → (5, 1, 1)), if any."""
        match = _ENHANCED.match(self.text)
        return tuple(int(part) for part in match.groups()) if match else None

    @property
    def bad_address(self) -> bool:
        """The reply says the recipient's address itself is bad (see the module's doc)."""
        if self.code is None or not 500 <= self.code < 600 or self.step not in ("RCPT TO", "DATA"):
            return False
        named = {address.lower() for address in _ADDRESS.findall(self.text)}
        if self.sender.lower() in named and self.recipient.lower() not in named:
            return False          # about rappel's envelope sender, refused at RCPT TO (Postfix delays it)
        enhanced = self.enhanced
        if enhanced is None:
            return self.step == "RCPT TO" and self.code in BASIC_ADDRESS_CODES
        klass, subject, detail = enhanced
        if klass != 5 or subject not in ADDRESS_DETAILS:
            return False
        details = ADDRESS_DETAILS[subject]
        return details is None or detail in details

    @property
    def permanent(self) -> bool:
        """The recipient's address is refused for good: retrying will not help, the fallback applies."""
        return self.bad_address

    @property
    def refuses_rappel(self) -> bool:
        """A 5xx that is not about the recipient's address: the server refuses rappel itself (its
        relay, login, sender or policy). The site's setting to fix; the notices wait."""
        return self.code is not None and 500 <= self.code < 600 and not self.bad_address

    @property
    def server_down(self) -> bool:
        """The server cannot take anything from us now: the other messages need not try."""
        return (self.code is None or self.code == 421 or self.refuses_rappel
                or self.step in ("connect", "starttls", "login", "MAIL FROM"))

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip() if self.code is not None else self.text


class SmtpFailure(Exception):
    def __init__(self, reply: SmtpReply):
        super().__init__(str(reply))
        self.reply = reply


def _targets(recipient: str) -> list[str]:
    """The recipients apprise's mailto service reads from ``to=recipient`` (NotifyEmail: each address
    parse_emails finds, kept when is_email accepts it, as its full address)."""
    found = [is_email(address) for address in parse_emails(recipient)]
    return [result["full_email"] for result in found if result]


def _reply(code: int | None, msg, step: str, recipient: str = "", sender: str = "") -> SmtpReply:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return SmtpReply(code, " ".join(text.split()), step, recipient, sender)


class _Session:
    """One SMTP connection, reused for many messages (one transaction each), reopened when needed."""

    def __init__(self, timeout: float, per_connection: int):
        self.timeout = timeout
        self.per_connection = per_connection
        self.conn: smtplib.SMTP | None = None
        self.sent_on_conn = 0
        self.key: tuple | None = None
        self.down: tuple[float, SmtpReply] | None = None
        self.greeting: SmtpReply | None = None

    def open(self, mail: NotifyEmail) -> smtplib.SMTP:
        key = (mail.smtp_host, mail.port, mail.secure_mode, mail.user, mail.password)
        if self.conn is not None and (key != self.key or self.sent_on_conn >= self.per_connection):
            self.close()
        if self.conn is None:
            self.conn = connect(mail, self.timeout)
            self.key, self.sent_on_conn = key, 0
        return self.conn

    def send(self, mail: NotifyEmail, sender: str, recipients: list[str], data: bytes) -> SmtpReply:
        if self.down and time.monotonic() - self.down[0] < DOWN_SECONDS:
            seconds = time.monotonic() - self.down[0]
            what = "refused rappel" if self.down[1].refuses_rappel else "failed"
            raise SmtpFailure(SmtpReply(None, f"not attempted: {mail.smtp_host}:{mail.port} {what} "
                                              f"{seconds:.0f} s ago ({self.down[1]})", "connect"))
        reused = self.conn is not None
        try:
            return self._transaction(self.open(mail), sender, recipients, data)
        except smtplib.SMTPServerDisconnected as exc:
            self.close()
            if reused:     # the server dropped an idle connection: once more on a fresh one
                return self.send(mail, sender, recipients, data)
            raise self._failed(SmtpReply(None, f"the server closed the connection: {exc}", "DATA")) from None
        except SmtpFailure as exc:
            if exc.reply.server_down:
                self.close()
                self.down = (time.monotonic(), exc.reply)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise self._failed(SmtpReply(None, f"{type(exc).__name__}: {exc}", "DATA")) from None

    def _failed(self, reply: SmtpReply) -> SmtpFailure:
        self.down = (time.monotonic(), reply)
        return SmtpFailure(reply)

    def _transaction(self, conn: smtplib.SMTP, sender: str, recipients: list[str], data: bytes) -> SmtpReply:
        code, msg = conn.mail(sender)
        if code != 250:
            self._reset(conn)
            raise SmtpFailure(_reply(code, msg, "MAIL FROM", sender=sender))
        for recipient in recipients:
            code, msg = conn.rcpt(recipient)
            if code not in (250, 251):
                self._reset(conn)
                raise SmtpFailure(_reply(code, msg, "RCPT TO", recipient, sender))
        code, msg = conn.data(data)
        self.sent_on_conn += 1
        if code != 250:
            raise SmtpFailure(_reply(code, msg, "DATA", recipients[0] if len(recipients) == 1 else "", sender))
        return _reply(code, msg, "DATA")

    @staticmethod
    def _reset(conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            pass

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self.conn = None


def connect(mail: NotifyEmail, timeout: float, greeting: list | None = None) -> smtplib.SMTP:
    """Connect, STARTTLS and log in as the apprise URL says; SmtpFailure with the reply if refused."""
    context = None
    if mail.secure_mode in ("ssl", "starttls"):      # loading the CA store takes a while: only for TLS
        context = ssl.create_default_context()
        if not mail.verify_certificate:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    step = "connect"
    try:
        if mail.secure_mode == "ssl":
            conn = smtplib.SMTP_SSL(local_hostname=HELO_NAME, timeout=timeout, context=context)
        else:
            conn = smtplib.SMTP(local_hostname=HELO_NAME, timeout=timeout)
        code, msg = conn.connect(mail.smtp_host, mail.port)
        if greeting is not None:
            greeting.append(_reply(code, msg, "connect"))
        conn.ehlo_or_helo_if_needed()
        if mail.secure_mode == "starttls":
            step = "starttls"
            conn.starttls(context=context)
            conn.ehlo()
        if mail.user and mail.password:
            step = "login"
            conn.login(mail.user, mail.password)
    except smtplib.SMTPResponseException as exc:
        raise SmtpFailure(_reply(exc.smtp_code, exc.smtp_error, step)) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpFailure(SmtpReply(None, f"{mail.smtp_host}:{mail.port}: {exc or type(exc).__name__}", step)) \
            from None
    return conn


def refusal(reply: SmtpReply) -> str:
    """The reason kept with a notice that was not sent: the step, the reply and what it means."""
    if reply.code is None:
        return str(reply)
    where = f"{reply.step} <{reply.recipient}>" if reply.recipient and reply.step == "RCPT TO" else reply.step
    detail = f"{where} refused: {reply}"
    if reply.refuses_rappel:
        detail += (" — the server refuses rappel itself (its relay, login, sender or policy), not the "
                   "recipient's address: the notice waits while the site's setting is fixed")
    return detail


class RappelMail(NotifyEmail):
    """apprise's mailto/mailtos service, read from the policy's URL: the server, its port, TLS and
    login, the envelope sender (see the module's doc). rappel sends its own bytes on its session."""

    service_name = "E-Mail (rappel)"
    request_rate_per_sec = 0       # rappel paces the messages itself (flood_guard.per_second)


class SmtpEmailChannel(BaseChannel):
    """The channel contract over one SMTP server: send_email (one recipient, its own URL), checks."""

    name = "smtp"
    carries = ("email",)

    def __init__(self, url: str, sender_from: str, reply_to: str, *, timeout: float = 30,
                 per_connection: int = 100, label: str = "delivery.email"):
        self.url, self.sender_from, self.reply_to, self.label = url, sender_from, reply_to, label
        self.timeout = timeout
        self.asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
        self.session = _Session(timeout, per_connection)
        self.server = self.service_for("check@rappel.invalid")   # validates the URL now, not per message

    @classmethod
    def from_policy(cls, url: str, policy, settings=None, label: str = "delivery.email") -> SmtpEmailChannel:
        timeout = settings.timeout_seconds if settings else 30
        per_connection = settings.messages_per_connection if settings else 100
        return cls(url, policy.sender.from_, policy.sender.reply_to, timeout=timeout,
                   per_connection=per_connection, label=label)

    def recipient_url(self, recipient: str) -> str:
        """The apprise URL of one recipient: the server's URL plus to=, from= and reply=."""
        extra = urlencode({"to": recipient, "from": self.sender_from, "reply": self.reply_to})
        return f"{self.url}{'&' if '?' in self.url else '?'}{extra}"

    def service_for(self, recipient: str) -> RappelMail:
        args = NotifyEmail.parse_url(self.recipient_url(recipient))
        if not args:
            raise ValueError(f"{self.label}.url: apprise cannot read this mailto URL")
        try:
            mail = RappelMail(asset=self.asset, **args)
        except Exception as exc:   # apprise: AppriseImproperlyConfigured and friends
            raise ValueError(f"{self.label}.url: {exc}") from None
        mail.socket_connect_timeout = self.timeout
        return mail

    def send_email(self, notice: Notice, message: EmailMessage) -> Delivery:
        """One message to its one recipient, on the channel's session (one SMTP transaction). The
        server, the envelope sender and the TLS and login settings are the policy URL's, read once by
        apprise (``self.server``); the recipient is read as apprise reads a ``to=`` (the same checks
        as a service of its own would make, without building one a message: ~0.2 ms each)."""
        raw = {name.lower(): value for name, value in message.raw_items()}   # as written: no parsing needed
        recipients = [address for _, address in getaddresses([raw.get("to", "")]) if address]
        if len(recipients) != 1 or not is_email_address(recipients[0]):
            return Delivery.failed(f"not one email address: {raw.get('to')!r}", permanent=True)
        recipient = recipients[0]
        targets = _targets(recipient)
        if targets != [recipient]:
            return Delivery.failed(f"apprise reads {recipient!r} as {targets!r}", permanent=True)
        mail = self.server
        reference = " ".join(str(raw.get("message-id", "")).split())
        try:
            reply = self.session.send(mail, mail.from_addr[1], [recipient], wire_bytes(message))
        except SmtpFailure as exc:
            log.warning("Email to %s not sent: %s (%s)", recipient, exc.reply, exc.reply.step)
            return Delivery.failed(refusal(exc.reply), permanent=exc.reply.permanent, reference=reference,
                                   reply=str(exc.reply))
        log.info("Sent email to %s: %s", recipient, reply)
        return Delivery.sent(reference, f"accepted by {mail.smtp_host}", reply=str(reply))

    @property
    def description(self) -> str:
        mail = self.server
        return f"smtp ({mail.smtp_host}:{mail.port})"

    def checks(self) -> list[Check]:
        """Connect, read the greeting, STARTTLS and log in as configured, then quit: nothing is sent."""
        mail = self.server
        target = f"{self.label}: {mail.smtp_host}:{mail.port} ({mail.secure_mode})"
        greeting: list[SmtpReply] = []
        try:
            conn = connect(mail, self.timeout, greeting)
        except SmtpFailure as exc:
            return [Check(target, False, f"{exc.reply.step}: {exc.reply}")]
        try:
            conn.noop()
            conn.quit()
        except (OSError, smtplib.SMTPException):
            pass
        steps = [str(greeting[0]) if greeting else "connected"]
        if mail.secure_mode == "starttls":
            steps.append("STARTTLS ok")
        if mail.user and mail.password:
            steps.append(f"logged in as {mail.user}")
        return [Check(target, True, "; ".join(steps))]

    def close(self) -> None:
        self.session.close()
