"""Which channel delivers which notice: the one place channels are registered and configured.

The registry knows the channel kinds by name, the names a stage's ``channel:`` may use. Each
``Registration`` is one route: the kind it carries as the engine routes it (a ``ChannelSpec``,
plain data: which contact it needs, how notices are grouped, what is rendered), what configures
it in the policy's ``delivery:`` section and how its channel is built from that. Shipped: ``email``
(patrons' emails), two routes for the ``letter`` kind, ``printer`` and ``mailbox`` (a letter
goes where its library's ``letters:`` says), ``sms`` (adapters/channels/sms.py) and ``webhook``
(adapters/channels/webhook.py), both configured by an apprise URL under ``delivery.channels``. A route with nothing configured goes to the local
outbox folder, so a fresh installation runs end to end with nothing to set up.

Adding a channel: one module in adapters/channels/ with a ``BaseChannel`` subclass, and one
``REGISTRY.register(Registration(...))`` naming its spec, its settings model (a pydantic model,
its settings written under ``delivery: {channels: {NAME: {...}}}`` and checked at ``rappel lint``
with file, line and key) and its builder. Nothing under engine/ changes: the service layer hands
the registry's specs to the engine (``REGISTRY.specs()``).

Settings may take ``${NAME}`` from the environment (secrets never go in the YAML): a missing
variable is an input error naming the file, the line and the key, at ``rappel lint`` as at
``rappel run``. Inside a URL the value is inserted percent-encoded (a password may hold @ or /);
a setting that is only ``${NAME}`` takes the value as it is.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from adapters.channels.base import BaseChannel, Channel, Check, Delivery
from adapters.channels.outbox import OutboxChannel
from adapters.channels.sms import SMS, SmsChannel
from adapters.channels.url_channels import UrlSettings, by_url
from adapters.channels.webhook import WEBHOOK, WebhookChannel
from adapters.render import Templates
from engine.channels import EMAIL, LETTER, ChannelSpec
from engine.decide import Notice
from engine.policy import MailboxDelivery, Policy, environment_names
from engine.yamlsource import InputError, Problem, YamlDocument, validation_problems

__all__ = ["REGISTRY", "Pacer", "Registration", "Registry", "Router", "Site", "build", "environment_problems",
           "settings_problems"]

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
    clock: Callable[[], dt.datetime] | None = None    # the time a message is sent, for its Date

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
                self.problems.append(self.problem(path, f"environment variable {name} {why} "
                                                         f"(this setting takes it: {text})"))
                continue
            out = out.replace(f"${{{name}}}", value if whole or not url else quote(value, safe=""))
        return out

    def invalid(self, path: tuple, message: str) -> None:
        self.problems.append(self.problem(path, message))

    def problem(self, path: tuple, message: str) -> Problem:
        if self.document is not None:
            return self.document.problem(path, message)
        return Problem(self.source, None, ".".join(str(p) for p in path), message)


@dataclass(frozen=True)
class Registration:
    """One route: the channel kind it carries, where its settings are, how its channel is built.

    An added channel gives ``settings``, a pydantic model of what it reads under
    ``delivery.channels.<its name>``; its route is its name. A route without settings in the
    policy is not configured: its notices go to the outbox."""

    route: str                                               # email | printer | mailbox | an added channel
    spec: ChannelSpec                                        # the kind it carries, as the engine routes it
    what: str                                                # for people: what the route carries
    build: Callable[[object, Site], Channel | None]          # its channel (None: a problem was noted)
    configured: Callable[[Policy], object | None] | None = None   # its settings, None when not configured
    settings: type[BaseModel] | None = None                 # the model of delivery.channels.<name>

    def __post_init__(self):
        if self.configured is None and self.settings is None:
            raise ValueError(f"route {self.route}: give where its settings are (configured) or their model (settings)")
        if not self.spec.via_library and self.route != self.spec.name:
            raise ValueError(f"route {self.route}: a channel that goes to the patron's contact is routed by its "
                             f"name ({self.spec.name})")

    def settings_of(self, policy: Policy, site: Site | None = None) -> object | None:
        """Its settings in this policy (validated by its model), or None when it is not configured."""
        if self.configured is not None:
            return self.configured(policy)
        raw = policy.delivery.channels.get(self.spec.name)
        if raw is None:
            return None
        try:
            return self.settings.model_validate(raw)
        except ValidationError as exc:
            if site is not None:
                site.problems.extend(validation_problems(_Under(site, self._path), exc))
            return None

    @property
    def _path(self) -> tuple:
        return ("delivery", "channels", self.spec.name)


@dataclass(frozen=True)
class _Under:
    """Problems of a channel's own settings model, placed under its key in the policy."""

    where: YamlDocument | Site
    prefix: tuple

    def problem(self, path: tuple, message: str) -> Problem:
        return self.where.problem(self.prefix + tuple(path), message)


class Registry:
    """The registrations in order, one per route; the channel kinds are their specs, by name."""

    def __init__(self, *registrations: Registration):
        self._items: list[Registration] = []
        self._by_name: dict[str, ChannelSpec] = {}      # the specs by name, kept with the registrations
        for registration in registrations:
            self.register(registration)

    def __iter__(self):
        return iter(tuple(self._items))

    def register(self, registration: Registration) -> Registration:
        if any(r.route == registration.route for r in self._items):
            raise ValueError(f"route {registration.route!r} is already registered")
        known = self.spec(registration.spec.name)
        if known is not None and known != registration.spec:
            raise ValueError(f"channel {registration.spec.name!r} is already registered as {known}")
        self._items.append(registration)
        self._by_name = {r.spec.name: r.spec for r in self._items}
        return registration

    def unregister(self, route: str) -> None:
        self._items = [r for r in self._items if r.route != route]
        self._by_name = {r.spec.name: r.spec for r in self._items}

    def specs(self) -> dict[str, ChannelSpec]:
        """The channel kinds a stage may name, for the engine (plain data; the caller's own copy)."""
        return dict(self._by_name)

    def spec(self, name: str) -> ChannelSpec | None:
        return self._by_name.get(name)

    def configurable(self, name: str) -> Registration | None:
        """The registration whose settings are delivery.channels.<name>, if any."""
        return next((r for r in self._items if r.settings is not None and r.spec.name == name), None)


def _email(settings, site: Site) -> Channel | None:
    # the SMTP, mailbox and print channels (apprise services) are loaded when built, not by lint or a dry run
    from adapters.channels.smtp import SmtpEmailChannel
    url = site.value(settings.url, ("delivery", "email", "url"), url=True)
    if site.problems:
        return None
    try:
        return SmtpEmailChannel.from_policy(url, site.policy, settings)
    except ValueError as exc:
        site.invalid(("delivery", "email", "url"), str(exc).removeprefix("delivery.email.url: "))
        return None


def _printer(settings, site: Site) -> Channel | None:
    from adapters.channels.printer import PrintChannel
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
    from adapters.channels.mailbox import MailboxChannel
    from adapters.channels.smtp import SmtpEmailChannel
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
    undated = site.templates.mailbox_email if site.templates else _no_cover
    clock = site.clock

    def cover(notice, pdf, filename):
        """The covering email, dated when it is sent (when the site gives a clock)."""
        return undated(notice, pdf, filename, clock() if clock is not None else None)

    return MailboxChannel(transport, cover)


def _no_cover(notice, pdf, filename, at=None):
    raise RuntimeError("channels built without templates only check their settings; they do not send")


REGISTRY = Registry(
    Registration("email", EMAIL, "patrons' emails", _email, lambda p: p.delivery.email),
    Registration("printer", LETTER, "letters of libraries with a printer", _printer, lambda p: p.delivery.print_),
    Registration("mailbox", LETTER, "letters of libraries with a mailbox", _mailbox, _mailbox_settings),
    Registration("sms", SMS, "patrons' SMS", by_url(SmsChannel), settings=UrlSettings),
    Registration("webhook", WEBHOOK, "notices posted as JSON", by_url(WebhookChannel), settings=UrlSettings),
)


def settings_problems(policy: Policy, document: YamlDocument) -> list[Problem]:
    """Every problem of ``delivery.channels``: a channel that takes no settings there, or settings its
    channel's model refuses (file, line and key). Nothing is built or connected."""
    problems: list[Problem] = []
    for name, raw in policy.delivery.channels.items():
        path = ("delivery", "channels", name)
        registration = REGISTRY.configurable(name)
        if registration is None:
            where = {"email": "delivery.email", "letter": "delivery.print and delivery.mailbox"}.get(name)
            problems.append(document.problem(path, f"the {name} channel takes no settings here"
                                                   + (f"; they are {where}" if where else "")))
            continue
        try:
            registration.settings.model_validate(raw)
        except ValidationError as exc:
            problems += validation_problems(_Under(document, path), exc)
    return problems


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


class Router(BaseChannel):
    """The channel contract over the configured channels: each notice to its route's channel."""

    name = "router"
    carries = ("email", "letter", "text", "json")

    def __init__(self, routes: Mapping[str, Channel], fallback: Channel, pacer: Pacer | None = None):
        self.routes = dict(routes)
        self.fallback = fallback
        self.pacer = pacer or Pacer(None)

    @staticmethod
    def route_of(notice) -> str:
        """A letter's route is its destination's kind (printer:, mailbox:); any other notice's, its channel."""
        spec = REGISTRY.spec(notice.channel)
        return notice.destination.partition(":")[0] if spec is not None and spec.via_library else notice.channel

    def channel_for(self, notice) -> Channel:
        return self.routes.get(self.route_of(notice), self.fallback)

    def is_local(self, notice) -> bool:
        return self.channel_for(notice).is_local(notice)

    def destination(self, notice) -> str:
        return self.channel_for(notice).destination(notice)

    def send_email(self, notice: Notice, message) -> Delivery:
        return self._paced(notice).send_email(notice, message)

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery:
        return self._paced(notice).send_letter(notice, pdf, filename)

    def send_text(self, notice: Notice, text: str) -> Delivery:
        return self._paced(notice).send_text(notice, text)

    def send_json(self, notice: Notice, body: dict) -> Delivery:
        return self._paced(notice).send_json(notice, body)

    def _paced(self, notice: Notice) -> Channel:
        channel = self.channel_for(notice)
        if not channel.is_local(notice):
            self.pacer.wait()
        return channel

    @property
    def description(self) -> str:
        return "; ".join(self.describe())

    def describe(self) -> list[str]:
        """Where each route goes, for people (rappel lint)."""
        return [f"{reg.what}: {self.routes.get(reg.route, self.fallback).description}" for reg in REGISTRY]

    def _channels(self) -> list[Channel]:
        return list({id(c): c for c in [*self.routes.values(), self.fallback]}.values())

    def checks(self) -> list[Check]:
        out: list[Check] = []
        for channel in self._channels():
            out += [c for c in channel.checks() if c not in out]
        return out

    def close(self) -> None:
        for channel in self._channels():
            channel.close()


def _site(policy: Policy, templates: Templates | None, env: Mapping[str, str], rules_dir: Path | None,
          clock: Callable[[], dt.datetime] | None = None) -> Site:
    source, document = POLICY_FILE, None
    if rules_dir is not None:
        path = Path(rules_dir) / POLICY_FILE
        source = str(path)
        try:
            document = YamlDocument(path.read_text(encoding="utf-8"), source)
        except (OSError, InputError):
            document = None
    return Site(policy, templates, env, source, document, clock=clock)


def build(policy: Policy, templates: Templates | None, *, env: Mapping[str, str], outbox: Path,
          rules_dir: Path | None = None, clock: Callable[[], dt.datetime] | None = None) -> Router:
    """The router for this policy: configured routes to their channels, the rest to the outbox.
    ``clock``: the time messages built while sending are dated with (the email carrying a letter to
    a mailbox); None: the start of the notice's day.

    Raises InputError (file, line, key) when a setting cannot be used, e.g. a missing ${NAME}.
    """
    site = _site(policy, templates, env, rules_dir, clock)
    routes: dict[str, Channel] = {}
    for reg in REGISTRY:
        settings = reg.settings_of(policy, site)
        channel = reg.build(settings, site) if settings is not None else None
        if channel is not None:
            routes[reg.route] = channel
    if site.problems:
        for channel in routes.values():
            channel.close()
        raise InputError(list(dict.fromkeys(site.problems)))
    return Router(routes, OutboxChannel(outbox), Pacer(policy.flood_guard.per_second))


def environment_problems(policy: Policy, env: Mapping[str, str], rules_dir: Path | None = None) -> list[Problem]:
    """Every delivery setting that cannot be used (missing ${NAME}, unreadable URL); nothing connects."""
    try:
        build(policy, None, env=env, outbox=Path("outbox"), rules_dir=rules_dir).close()
    except InputError as exc:
        return exc.problems
    return []
