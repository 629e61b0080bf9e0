"""Letters to a library's printer through CUPS: a small custom apprise service around ``lp``.

The policy names each library's printer (``letters: {printer: bu-sciences}``, a CUPS queue) and
the site's print settings (``delivery.print``: the lp command with its fixed arguments, the CUPS
server, -o options). ``CupsPrint`` is an apprise service (a ``NotifyBase`` subclass, added to an
``Apprise`` object as an instance, never registered process-wide): its ``send()`` feeds the
letter's PDF, an apprise attachment, to ``lp -d PRINTER`` and keeps the job id lp answers
("request id is bu-sciences-42 (1 file(s))"), which goes into the ledger.

CUPS translates its messages ("la id solicitada es …" under a Spanish locale), so lp and lpstat run
with LC_ALL, LC_MESSAGES and LANG set to C (the rest of the environment kept), and what they say
is read loosely: lp's exit status decides whether the letter was queued (0: it was, and it is
never printed again); the job id is the ``PRINTER-N`` word of its answer, in whatever language a
wrapper may still answer.

Every failure is transient: lp missing, the CUPS server down, an unknown or disabled printer are
the site's setting or the site's printer, not the patron's: the letter waits (retried with backoff,
expired after its window) and the reason is on its row. ``rappel lint --check-delivery`` asks CUPS
whether each configured printer exists (``lpstat -p``), without printing.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import apprise
from apprise.attachment.memory import AttachMemory
from apprise.common import NotifyType
from apprise.plugins.base import NotifyBase

from adapters.channels.base import BaseChannel, Check, Delivery
from engine.decide import Notice

__all__ = ["CupsPrint", "PrintChannel"]

_JOB = re.compile(r"request id is (\S+)")


def _cups_env() -> dict[str, str]:
    """The process environment with CUPS's messages in English (the C locale): what is parsed.

    LC_MESSAGES too: when the C library's locale is C, CUPS picks its own catalogue from the
    variables and reads LC_MESSAGES before LC_ALL (LC_ALL=C LC_MESSAGES=es_ES still answers in
    Spanish)."""
    return {**os.environ, "LC_ALL": "C", "LC_MESSAGES": "C", "LANG": "C"}


def job_id(output: str, printer: str) -> str | None:
    """The job id in lp's answer: after "request id is", else the PRINTER-N word in any language."""
    found = _JOB.search(output)
    if found and re.fullmatch(r"\S+-\d+", found.group(1)):
        return found.group(1)
    found = re.search(rf"(?<![^\s\"'«“(\[])({re.escape(printer)}-\d+)(?![\w-])", output, re.IGNORECASE)
    return found.group(1) if found else None


class CupsPrint(NotifyBase):
    """apprise service: each attachment (a PDF) to one CUPS queue with lp; the job ids are kept."""

    service_name = "CUPS (lp)"
    protocol = "rappel-lp"
    setup_url = "https://www.cups.org/doc/man-lp.html"
    attachment_support = True
    request_rate_per_sec = 0        # rappel paces the messages itself (flood_guard.per_second)
    title_maxlen = 255

    def __init__(self, printer: str, command: list[str] | None = None, server: str | None = None,
                 options: list[str] | tuple[str, ...] = (), timeout: float = 60, **kwargs):
        super().__init__(**kwargs)
        if not printer or not re.fullmatch(r"[^\s/#]+", printer):
            raise ValueError(f"{printer!r} is not a CUPS queue name")
        self.printer = printer
        self.command = list(command or ["lp"])
        self.server = server
        self.options = list(options)
        self.timeout = timeout
        self.job_ids: list[str] = []
        self.printed = 0            # documents lp accepted (exit 0), with or without a job id in its answer
        self.output = ""

    def argv(self, title: str) -> list[str]:
        argv = list(self.command)
        if self.server:
            argv += ["-h", self.server]
        argv += ["-d", self.printer, "-t", title or "rappel"]
        for option in self.options:
            argv += ["-o", option]
        return argv     # the document comes on standard input

    def send(self, body, title="", notify_type=NotifyType.INFO, attach=None, **kwargs) -> bool:
        if not attach:
            self.logger.warning("Nothing to print on %s: no attachment", self.printer)
            return False
        for attachment in attach:
            with attachment.open() as stream:
                data = stream.read()
            argv = self.argv(attachment.name or title)
            try:
                done = subprocess.run(argv, input=data, capture_output=True, timeout=self.timeout, check=False,
                                      env=_cups_env())
            except FileNotFoundError:
                self.output = f"{argv[0]}: command not found (delivery.print.command)"
                self.logger.warning(self.output)
                return False
            except subprocess.TimeoutExpired:
                self.output = f"{argv[0]} did not answer within {self.timeout:g} s"
                self.logger.warning(self.output)
                return False
            out = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
            self.output = " ".join(out.split())
            if done.returncode != 0:
                self.logger.warning("Printing on %s failed (exit %s): %s", self.printer, done.returncode, self.output)
                return False
            # exit 0: CUPS has the job. Never a failure from here on, or every retry would print it again.
            self.printed += 1
            job = job_id(out, self.printer)
            if job:
                self.job_ids.append(job)
                self.logger.info("Printed on %s: %s", self.printer, self.output)
            else:
                self.logger.warning("Printed on %s, but no job id in lp's answer: %s", self.printer, self.output)
        return True

    def url(self, privacy=False, *args, **kwargs) -> str:
        return f"{self.protocol}://{self.quote(self.printer, safe='')}"

    @property
    def url_identifier(self):
        return (self.protocol, self.printer, self.server)

    @staticmethod
    def parse_url(url):
        results = NotifyBase.parse_url(url, verify_host=False)
        if results:
            results["printer"] = NotifyBase.unquote(results["host"])
        return results


class PrintChannel(BaseChannel):
    """The channel contract for letters whose destination is ``printer:NAME``."""

    name = "print"
    carries = ("letter",)

    def __init__(self, command: str = "lp", server: str | None = None, options: list[str] | tuple[str, ...] = (),
                 timeout: float = 60, printers: list[str] | tuple[str, ...] = ()):
        self.command = shlex.split(command)
        if not self.command:
            raise ValueError("delivery.print.command: empty")
        self.server, self.options, self.timeout = server, list(options), timeout
        self.printers = list(printers)    # the queues the policy uses, for checks()
        self.asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)

    @property
    def description(self) -> str:
        return f"print (lp on {self.server or 'the CUPS default server'})"

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery:
        kind, _, printer = notice.destination.partition(":")
        if kind != "printer" or not printer:
            return Delivery.failed(f"not a printer destination: {notice.destination!r}", permanent=True)
        service = CupsPrint(printer, self.command, self.server, self.options, self.timeout, asset=self.asset)
        notifier = apprise.Apprise(asset=self.asset)
        notifier.add(service)
        result = notifier.notify(body=filename, title=filename, log_level=logging.INFO,
                                 attach=AttachMemory(content=pdf, name=filename, mimetype="application/pdf"))
        if result and service.printed:
            if service.job_ids:
                return Delivery.sent(f"cups:{printer}/{service.job_ids[0]}", f"printed on {printer}",
                                     reply=service.output)
            return Delivery.sent(f"cups:{printer}", f"printed on {printer} (lp gave no job id)",
                                 reply=service.output)
        detail = service.output or "; ".join(e.message for r in result.results for e in r.logs()) or \
            f"apprise: {result.status.name}"
        return Delivery.failed(f"printer {printer}: {detail}", reference=f"cups:{printer}", reply=service.output)

    def checks(self) -> list[Check]:
        """Ask CUPS about each printer (lpstat -p NAME): exists, enabled; nothing printed."""
        lpstat = _beside(self.command[0], "lpstat")
        if lpstat is None:
            return [Check(f"printer {p}", False, f"lpstat not found beside {self.command[0]}") for p in self.printers]
        checks = []
        for printer in self.printers:
            argv = [lpstat] + (["-h", self.server] if self.server else []) + ["-p", printer]
            try:
                done = subprocess.run(argv, capture_output=True, timeout=self.timeout, check=False,
                                      env=_cups_env())
            except FileNotFoundError:
                checks.append(Check(f"printer {printer}", False, f"{lpstat}: command not found"))
                continue
            except subprocess.TimeoutExpired:
                checks.append(Check(f"printer {printer}", False, f"lpstat did not answer within {self.timeout:g} s"))
                continue
            text = (done.stdout + done.stderr).decode("utf-8", "replace")
            out = " ".join(text.split())
            ok = done.returncode == 0 and printer_enabled(text, printer)
            checks.append(Check(f"printer {printer}" + (f" on {self.server}" if self.server else ""), ok,
                                out or f"lpstat exit {done.returncode}"))
        return checks


def printer_enabled(lpstat_output: str, printer: str) -> bool:
    """Whether ``lpstat -p PRINTER`` (C locale) says the printer exists and is enabled: its own line
    ("printer NAME is idle.  enabled since …", "… now printing …"), not "disabled since"."""
    name = re.escape(printer)
    for line in lpstat_output.splitlines():
        if re.match(rf"printer\s+{name}\s", line, re.IGNORECASE):
            return not re.match(rf"printer\s+{name}\s+disabled\b", line, re.IGNORECASE)
    return False


def _beside(command: str, tool: str) -> str | None:
    """The path of a CUPS tool next to the configured lp (same installation), or on PATH."""
    found = shutil.which(command)
    if found:
        sibling = Path(found).with_name(tool)
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
    return shutil.which(tool)
