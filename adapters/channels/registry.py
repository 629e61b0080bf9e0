"""Which channel delivers which notice: the one place channels are registered and configured.

A notice goes by its route: ``email`` (a patron's email), ``printer`` (a letter for a library
whose letters go to a printer) or ``mailbox`` (a letter for a library's mailbox). Each route has
one registration below: which part of the policy's ``delivery:`` section configures it and how
its channel is built from it. A route with nothing configured goes to the local outbox folder,
so a fresh installation runs end to end with nothing to set up.

Adding a channel: one module in adapters/ with the channel contract (adapters/channels.py), its
settings in the policy's ``delivery:`` section, and one ``Registration`` line here.

Settings may take ``${NAME}`` from the environment (secrets never go in the YAML): a missing
variable is an input error naming the file, the line and the key, at ``rappel lint`` as at
``rappel run``. Inside a URL the value is inserted percent-encoded (a password may hold @ or /);
a setting that is only ``${NAME}`` takes the value as it is.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from adapters.channels.base import Channel, Check, Delivery
from adapters.channels.mailbox import MailboxChannel
from adapters.channels.outbox import OutboxChannel
from adapters.channels.printer import PrintChannel
from adapters.render import Templates
from adapters.channels.smtp import SmtpEmailChannel
from engine.decide import Notice
from engine.policy import MailboxDelivery, Policy, environment_names
from engine.yamlsource import InputError, Problem, YamlDocument

__all__ = ["REGISTRY", "Pacer", "Registration", "Router", "Site", "build", "environment_problems"]

POLICY_FILE = "reminders.yaml"


@dataclass
class Site:
    """What building channels needs: the policy, its templates, the environment, where errors point."""

    policy: Policy
    templates: Templates | None
    env: Mapping[str, str]
    source: str = POLICY_FILE
    document: YamlDocument | None = None
    problems: list[Problem] = field(default_factory=list)

    def value(self, text: str | None, path: tuple, *, url: bool = False) -> str | None:
        """A setting with its ${NAME} taken from the environment; a missing one is a problem."""
        if text is None:
            return None
        names = environment_names(text)
        whole = len(names) == 1 and text == f"${{{names[0]}}}"
        out = text
        for name in names:
            value = self.env.get(name)
            if value is None or value == "":
                why = "is not set" if value is None else "is empty"
                self.problems.append(self._problem(path, f"environment variable {name} {why} "
                                                         f"(this setting takes it: {text})"))
                continue
            out = out.replace(f"${{{name}}}", value if whole or not url else quote(value, safe=""))
        return out

    def invalid(self, path: tuple, message: str) -> None:
        self.problems.append(self._problem(path, message))

    def _problem(self, path: tuple, message: str) -> Problem:
        if self.document is not None:
            return self.document.problem(path, message)
        return Problem(self.source, None, ".".join(str(p) for p in path), message)


@dataclass(frozen=True)
class Registration:
    route: str                                               # email | printer | mailbox
    what: str                                                # for people: what the route carries
    configured: Callable[[Policy], object | None]            # its settings, None when not configured
    build: Callable[[object, Site], Channel | None]          # its channel (None: a problem was noted)


def _email(settings, site: Site) -> Channel | None:
    url = site.value(settings.url, ("delivery", "email", "url"), url=True)
    if site.problems:
        return None
    try:
        return SmtpEmailChannel.from_policy(url, site.policy, settings)
    except ValueError as exc:
        site.invalid(("delivery", "email", "url"), str(exc).removeprefix("delivery.email.url: "))
        return None


def _printer(settings, site: Site) -> Channel | None:
    base = ("delivery", "print")
    command = site.value(settings.command, base + ("command",))
    server = site.value(settings.server, base + ("server",))
    options = [site.value(o, base + ("options", i)) for i, o in enumerate(settings.options)]
    printers = sorted({lib.letters.printer for lib in site.policy.libraries.values() if lib.letters.printer})
    if site.problems:
        return None
    try:
        return PrintChannel(command, server, options, settings.timeout_seconds, printers)
    except ValueError as exc:
        site.invalid(base + ("command",), str(exc))
        return None


def _mailbox_settings(policy: Policy):
    if policy.delivery.mailbox is not None:
        return policy.delivery.mailbox
    return policy.delivery.email          # libraries' mailboxes through the patrons' SMTP server


def _mailbox(settings, site: Site) -> Channel | None:
    own = settings.url if isinstance(settings, MailboxDelivery) else None
    email = site.policy.delivery.email
    if own is None and email is None:
        site.invalid(("delivery", "mailbox"), "needs a url, or delivery.email to send through")
        return None
    path = ("delivery", "mailbox", "url") if own else ("delivery", "email", "url")
    url = site.value(own or email.url, path, url=True)
    if site.problems:
        return None
    try:
        transport = SmtpEmailChannel.from_policy(url, site.policy, email, label=".".join(path[:2]))
    except ValueError as exc:
        site.invalid(path, str(exc).split(": ", 1)[-1])
        return None
    return MailboxChannel(transport, site.templates.mailbox_email if site.templates else _no_cover)


def _no_cover(notice, pdf, filename):
    raise RuntimeError("channels built without templates only check their settings; they do not send")


REGISTRY: tuple[Registration, ...] = (
    Registration("email", "patrons' emails", lambda p: p.delivery.email, _email),
    Registration("printer", "letters of libraries with a printer", lambda p: p.delivery.print_, _printer),
    Registration("mailbox", "letters of libraries with a mailbox", _mailbox_settings, _mailbox),
)


class Pacer:
    """At most ``per_second`` messages a second (flood_guard.per_second); None: no limit."""

    def __init__(self, per_second: float | None, clock=time.monotonic, sleep=time.sleep):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_at: float | None = None

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


class Router:
    """The channel contract over the configured channels: each notice to its route's channel."""

    name = "router"

    def __init__(self, routes: Mapping[str, Channel], fallback: Channel, pacer: Pacer | None = None):
        self.routes = dict(routes)
        self.fallback = fallback
        self.pacer = pacer or Pacer(None)

    @staticmethod
    def route_of(notice) -> str:
        return "email" if notice.channel == "email" else notice.destination.partition(":")[0]

    def channel_for(self, notice) -> Channel:
        return self.routes.get(self.route_of(notice), self.fallback)

    def is_local(self, notice) -> bool:
        return bool(getattr(self.channel_for(notice), "local", False))

    def send_email(self, notice: Notice, message) -> Delivery:
        return self._paced(notice).send_email(notice, message)

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery:
        return self._paced(notice).send_letter(notice, pdf, filename)

    def _paced(self, notice: Notice) -> Channel:
        channel = self.channel_for(notice)
        if not getattr(channel, "local", False):
            self.pacer.wait()
        return channel

    def describe(self) -> list[str]:
        """Where each route goes, for people (rappel lint)."""
        lines = []
        for reg in REGISTRY:
            channel = self.routes.get(reg.route, self.fallback)
            where = getattr(channel, "root", None)
            lines.append(f"{reg.what}: {channel.name}" + (f" ({where}/)" if where is not None else ""))
        return lines

    def checks(self) -> list[Check]:
        out: list[Check] = []
        seen: set[int] = set()
        for channel in [*self.routes.values(), self.fallback]:
            if id(channel) in seen or not hasattr(channel, "checks"):
                continue
            seen.add(id(channel))
            out += [c for c in channel.checks() if c not in out]
        return out

    def close(self) -> None:
        for channel in {id(c): c for c in [*self.routes.values(), self.fallback]}.values():
            close = getattr(channel, "close", None)
            if close:
                close()


def _site(policy: Policy, templates: Templates | None, env: Mapping[str, str], rules_dir: Path | None) -> Site:
    source, document = POLICY_FILE, None
    if rules_dir is not None:
        path = Path(rules_dir) / POLICY_FILE
        source = str(path)
        try:
            document = YamlDocument(path.read_text(encoding="utf-8"), source)
        except (OSError, InputError):
            document = None
    return Site(policy, templates, env, source, document)


def build(policy: Policy, templates: Templates | None, *, env: Mapping[str, str], outbox: Path,
          rules_dir: Path | None = None) -> Router:
    """The router for this policy: configured routes to their channels, the rest to the outbox.

    Raises InputError (file, line, key) when a setting cannot be used, e.g. a missing ${NAME}.
    """
    site = _site(policy, templates, env, rules_dir)
    routes: dict[str, Channel] = {}
    for reg in REGISTRY:
        settings = reg.configured(policy)
        channel = reg.build(settings, site) if settings is not None else None
        if channel is not None:
            routes[reg.route] = channel
    if site.problems:
        for channel in routes.values():
            getattr(channel, "close", lambda: None)()
        raise InputError(list(dict.fromkeys(site.problems)))
    return Router(routes, OutboxChannel(outbox), Pacer(policy.flood_guard.per_second))


def environment_problems(policy: Policy, env: Mapping[str, str], rules_dir: Path | None = None) -> list[Problem]:
    """Every delivery setting that cannot be used (missing ${NAME}, unreadable URL); nothing connects."""
    try:
        build(policy, None, env=env, outbox=Path("outbox"), rules_dir=rules_dir).close()
    except InputError as exc:
        return exc.problems
    return []
