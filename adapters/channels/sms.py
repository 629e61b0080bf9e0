"""SMS through apprise: any apprise URL that sends a text to a phone number, the number put in it.

The provider is an apprise URL in the policy (``delivery.channels.sms.url``, secrets as ``${NAME}``)
with ``{to}`` where the patron's number goes, percent-encoded (``%2B33612345678``): an HTTP gateway
through apprise's ``json://``/``form://`` (``jsons://gateway.example/send?:to={to}``: the number in
the JSON body's ``to``, the text in its ``message``), or a provider's URL
(``twilio://${SID}:${TOKEN}@+33700000000/{to}``). Each message is its own URL and its own status.

apprise answers a send with True or False and logs why; the HTTP status it logs (``error=400``)
decides what the failure means (adapters/channels/http_reply.py): a provider refusing a number
(400) is refused for good and the notice falls back to the patron's next channel; a server down or
a 5xx is retried. After a connection failure the other messages of the pass are not attempted for a
minute (no timeout each).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from urllib.parse import quote

from adapters.channels.base import BaseChannel, Check, Delivery
from adapters.channels.http_reply import outcome
from adapters.channels.url_channels import shown_url
from engine.channels import ChannelSpec
from engine.decide import Notice
from engine.phones import is_e164

__all__ = ["SMS", "SmsChannel", "send_logged"]

SMS = ChannelSpec("sms", contact="phone", renders="text")
TO = "{to}"
DOWN_SECONDS = 60.0
_STATUS = re.compile(r"error=(\d{3})")
_NO_ANSWER = re.compile(r"connection error|socket exception|timed out|timeout", re.I)


class _Collect(logging.Handler):
    """apprise's log records of one thread, for one send."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.thread = threading.get_ident()
        self.lines: list[str] = []
        self.answer = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        message = record.getMessage()
        if record.levelno >= logging.INFO:
            self.lines.append(message)
        elif message.startswith("Response Details:"):      # the service's own answer, logged at DEBUG
            self.answer = " ".join(message.partition(":")[2].split())[:300]


def send_logged(service, body: str, title: str = "") -> tuple[bool, int | None, str]:
    """Send through one apprise service: (ok, the HTTP status apprise logged or None, its words)."""
    logger = logging.getLogger("apprise")
    handler = _Collect()
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.DEBUG)
    try:
        ok = bool(service.notify(body=body, title=title))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    words = " ".join(handler.lines[-2:] + ([handler.answer] if handler.answer else []))
    found = [int(m) for line in handler.lines for m in _STATUS.findall(line)]
    return ok, (found[-1] if found else None), words


class SmsChannel(BaseChannel):
    """One text per notice to the patron's number (E.164), through the provider's apprise URL."""

    name = "sms"
    carries = ("text",)

    def __init__(self, url: str, label: str = "delivery.channels.sms.url"):
        if TO not in url:
            raise ValueError(f"{label}: put {TO} where the patron's number goes "
                             f"(jsons://gateway.example/send?:to={TO}, twilio://SID:TOKEN@FROM/{TO})")
        self.url = url
        import apprise      # loaded with the first SMS channel built, not by every command

        probe = apprise.Apprise.instantiate(url.replace(TO, quote("+33612345678", safe="")))
        if probe is None:
            scheme = url.partition("://")[0]
            raise ValueError(f"{label}: {scheme}:// is not an apprise URL apprise can send with")
        self.shown = shown_url(url)
        self.down_until = 0.0

    @property
    def description(self) -> str:
        return f"sms ({self.shown})"

    def send_text(self, notice: Notice, text: str) -> Delivery:
        number = notice.destination
        if not is_e164(number):
            return Delivery.failed(f"sms: {number!r} is not an E.164 number", permanent=True)
        if time.monotonic() < self.down_until:
            return Delivery.failed("sms: not attempted: the provider did not answer a moment ago")
        import apprise

        service = apprise.Apprise.instantiate(self.url.replace(TO, quote(number, safe="")))
        if service is None:
            return Delivery.failed(f"sms: the provider URL does not take the number {number}", permanent=True)
        ok, status, words = send_logged(service, text)
        if ok:
            status = status or 200
        elif status is None and (_NO_ANSWER.search(words) or not words):
            self.down_until = time.monotonic() + DOWN_SECONDS
        return outcome("sms", status, words, f"sms:{number}")

    def checks(self) -> list[Check]:
        return [Check(f"sms {self.shown}", True, "an apprise URL apprise can send with (nothing sent)")]
