"""The reminder policy (rules/reminders.yaml) as validated pydantic models."""
from __future__ import annotations

import datetime as dt
import re
from email.utils import parseaddr
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (AfterValidator, BaseModel, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from engine.channels import DEFAULT, NAME_PATTERN, ChannelSpec, unknown_channel
from engine.contact import is_email_address
from engine.calendar import CalendarSpec, ClosedDays
from engine.facts import RecordType
from engine.limits import TemplateLimits
from engine.policy_base import Imports, Preferences, Schedule, Sms, _Routed, _Strict
from engine.presentation import Contact, LanguageLabels, StageSender, label_problems
from engine.requests import RequestSettings, RequestStage, check_request_stages
from engine.retention import Retention, check_retention
from engine.yamlsource import InputError, YamlDocument, dotted_path as _path, validation_problems
from engine.environ import Templated, _no_literal_secret, _templated, environment_names  # noqa: F401 - public names
from engine.timeline import MAX_OFFSET, Audience, Count, StageOverride, check_timelines  # noqa: F401 - Audience

Channel = Annotated[str, Field(pattern=NAME_PATTERN)]    # a registered channel's name: email, letter, …
CATCH_UP_DAYS = 31     # the daemon's missed days: evaluated this far back at most (or the longest window)


def _known_channel(name: str, info: ValidationInfo) -> str:
    """A channel the caller knows (the registry's, passed as context; email and letter by default)."""
    channels = (info.context or {}).get("channels", DEFAULT)
    if name not in channels:
        raise ValueError(unknown_channel(name, channels))
    return name


def _address(value: str) -> str:
    """An email address, bare or with a display name ("Name <a@b.example>")."""
    if "\n" in value or "\r" in value:
        raise ValueError("must be on one line")
    _, addr = parseaddr(value)
    if not is_email_address(addr):
        raise ValueError(f"{value!r} is not an email address")
    return value


Address = Annotated[str, AfterValidator(_address)]


class Sender(_Strict):
    from_: Address = Field(alias="from", description="From: header, e.g. 'Service du contentieux <contentieux@univ.example>'")
    reply_to: Address = Field(description="Reply-To: header; patrons' replies go there")


class Restart(_Strict):
    resumed_on: dt.date = Field(description="No notice whose trigger date is before this day is ever sent")


class Stage(_Routed):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Stage name, used in the ledger and template names")
    offset_days: int = Field(description="Days after the due date (negative: before it)")
    count: Count = Field(default="days", description="How offset_days counts: days, or open_days of the loan's "
                                                     "library (its calendar's closed days skipped)")
    channel: Channel = Field(description="The channel it goes out on: email, letter, or one added in "
                                         "adapters/channels/")
    max_delay_days: int | None = Field(default=None, ge=0, description="Catch-up window; the policy's default when absent")
    audience: Audience = Audience()
    template: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$",
                                 description="Template name in rules/templates/ (default: the stage id)")
    combine: bool | None = Field(default=None, description="false: never combined with other stages")
    sender: StageSender | None = Field(default=None, description="service: always from the policy's sender")
    channels: list[Channel] | None = Field(default=None, description="The channels a patron may have it on, "
                                           "their preference (a patron's channels) choosing among them, the "
                                           "first they can be reached by going out; default: its channel only")

    _channel_known = field_validator("channel")(_known_channel)

    @field_validator("channels")
    @classmethod
    def _channels_known(cls, names: list[str] | None, info: ValidationInfo) -> list[str] | None:
        for name in names or ():
            _known_channel(name, info)
        return names


class LetterRoute(_Strict):
    printer: str | None = Field(default=None, description="Printer (CUPS queue) that prints this library's letters")
    mailbox: Address | None = Field(default=None, description="Mailbox that receives this library's letters as PDF")

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.printer is None) == (self.mailbox is None):
            raise ValueError("give exactly one of printer or mailbox")
        return self

    @property
    def destination(self) -> str:
        return f"printer:{self.printer}" if self.printer else f"mailbox:{self.mailbox}"


class Library(_Strict):
    name: str
    letters: LetterRoute
    address: list[str] = Field(default=[], description="Letterhead lines under the library's name")
    calendar: ClosedDays | None = Field(default=None, description="Days this library is closed, besides the "
                                                                  "institution's calendar")
    stages: list[StageOverride] = Field(default=[], description="Stages this library runs its own way (by id)")
    contact: Contact = Contact()
    sender: Sender | None = Field(default=None, description="Who its notices are from (default: `sender`)")


class NoEmail(_Strict):
    """What happens to email stages for a patron without an email address."""

    letters_after_due: bool = Field(default=True, description="Send email stages after the due date as letters")
    courtesy_by_letter: bool = Field(default=False, description="Send stages before the due date as letters too")


def _mail_url(url: str) -> str:
    scheme = url.partition("://")[0].lower()
    if scheme not in ("mailto", "mailtos") or "://" not in url:
        raise ValueError("an apprise mailto:// or mailtos:// URL, e.g. mailtos://${SMTP_USER}:${SMTP_PASSWORD}"
                         "@smtp.example.org:587")
    query = url.partition("?")[2].lower()
    if any(pair.split("=", 1)[0] in ("to", "cc", "bcc") for pair in query.split("&")):
        raise ValueError("no to=, cc= or bcc=: rappel adds one recipient per message (each recipient's status "
                         "is known)")
    return _no_literal_secret(url)


MailUrl = Annotated[str, AfterValidator(_templated), AfterValidator(_mail_url)]


class EmailDelivery(_Strict):
    url: MailUrl = Field(description="apprise mailto:// (or mailtos:// for TLS) URL of the institution's SMTP "
                                     "server, without recipient; secrets as ${NAME} from the environment. "
                                     "From and Reply-To come from `sender`")
    timeout_seconds: float = Field(default=30, gt=0, description="Connect and reply timeout of the SMTP server")
    messages_per_connection: int = Field(default=100, ge=1,
                                         description="Messages sent on one SMTP connection before reconnecting")


class PrintDelivery(_Strict):
    command: Templated = Field(default="lp", description="The CUPS lp command (with fixed arguments of this site, "
                                                         "e.g. 'lp -U rappel'); rappel adds -d PRINTER and the file")
    server: Templated | None = Field(default=None, description="CUPS server (host[:port] or socket path), "
                                                               "passed as -h; the CUPS default when absent")
    options: list[Templated] = Field(default=["media=A4"], description="lp -o options for every letter")
    timeout_seconds: float = Field(default=60, gt=0, description="How long lp may take")


class MailboxDelivery(_Strict):
    url: MailUrl | None = Field(default=None, description="SMTP server for the libraries' mailboxes "
                                                          "(default: delivery.email.url)")


class Retry(_Strict):
    first_minutes: int = Field(default=15, ge=1, description="Wait after a first transient failure")
    max_minutes: int = Field(default=360, ge=1, description="Longest wait between attempts (the wait doubles)")


class Delivery(_Strict):
    """Where messages go. Nothing configured: everything is written to the local outbox folder."""

    email: EmailDelivery | None = Field(default=None, description="Patrons' emails over SMTP (else: the outbox)")
    print_: PrintDelivery | None = Field(default=None, alias="print",
                                         description="Letters for `printer:` libraries through CUPS (else: the outbox)")
    mailbox: MailboxDelivery | None = Field(default=None, description="Letters for `mailbox:` libraries, attached "
                                            "to an email (default: through delivery.email when it is set)")
    retry: Retry = Retry()
    channels: dict[Annotated[str, Field(pattern=NAME_PATTERN)], dict[str, Any]] = Field(
        default={}, description="Settings of the channels added in adapters/channels/, by channel name, "
                                "each checked by its channel's own model")


class Fallback(_Strict):
    email: Literal["letter", "none"] = Field(
        default="letter", description="What an email stage refused for good (no such mailbox…) becomes: a letter "
                                      "to the patron's postal address (one per library), or nothing")


class FloodGuard(_Strict):
    max_per_run: int = Field(default=1000, ge=1, description="A run that would send more messages than this sends "
                                                            "none and says so (rappel run --confirm sends them)")
    per_second: float | None = Field(default=10, gt=0, description="Messages per second at most to servers "
                                                                   "(SMTP, CUPS); no limit when null")


StatusMeaning = Literal["on_loan", "exclude"]


class Policy(_Strict):
    timezone: str = Field(description="IANA time zone of the institution, e.g. Europe/Paris")
    sender: Sender
    language: str = Field(default="fr", pattern=r"^[a-z]{2,3}$",
                          description="Default language of the notices (patrons without a known preferred language)")
    languages: list[str] | None = Field(default=None, description="Languages with templates (rules/templates/<lang>/);"
                                        " a patron's preferred_language picks one. Default: [language]")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 code of amounts in notices")
    max_delay_days: int = Field(default=2, ge=0, description="Default catch-up window for every stage, in days")
    restart: Restart | None = None
    calendar: CalendarSpec | None = Field(default=None, description="The institution's closed days (each library's "
                                                                    "calendar adds its own)")
    exclude_statuses: list[str] = Field(default=[], description="Loan statuses that never get notices")
    statuses: dict[str, StatusMeaning] | None = Field(
        default=None, description="Every loan status the library system exports, and what it means: on_loan "
                                  "(reminded) or exclude (never a notice: lost, claimed returned…); \"\" is a "
                                  "loan without status. When given, an imported loan with any other status is "
                                  "rejected; exclude_statuses, if kept, must agree with it")
    imports: Imports = Imports()
    preferences: Preferences = Field(default=Preferences(), description="What a patron may choose: stages "
                                     "they may opt out of, stages sent on their own channel whatever they prefer")
    no_email: NoEmail = NoEmail()
    sms: Sms = Field(default=Sms(), description="Phone numbers' default country, and how long an SMS may be")
    stages: list[Stage] = Field(min_length=1)
    libraries: dict[str, Library] = Field(min_length=1)
    combine: bool = Field(default=True, description="One envelope a day (engine/envelope.py); false: one per stage")
    labels: dict[str, LanguageLabels] = Field(default={}, description="Names of stages and libraries, by language")
    templates: TemplateLimits = Field(default=TemplateLimits(), description="Each rendered part's size and time")
    delivery: Delivery = Delivery()
    fallback: Fallback = Fallback()
    flood_guard: FloodGuard = FloodGuard()
    schedule: Schedule = Schedule()
    retention: Retention | None = Field(default=None, description="How long records are kept (absent: forever; "
                                                                  "`rappel lint` warns)")
    max_facts_age_hours: float | None = Field(
        default=None, gt=0, description="A run whose loans were imported longer ago than this refuses to decide "
                                        "(for installations fed by CSV files; with rules/sources.yaml, set it "
                                        "there: 26 by default)")
    requests: RequestSettings = Field(default=RequestSettings(), description="How request statuses read for "
                                      "the request notices (request_stages)")
    request_stages: list[RequestStage] = Field(default=[], description="Notices on requests: ready for pickup, "
                                               "pickup deadline, expired (engine/requests.py)")
    _derived: dict = PrivateAttr(default_factory=dict)    # engine.timeline's cache, per policy object

    def __eq__(self, other):      # the same policy whatever engine.timeline has cached on either
        return self.__dict__ == other.__dict__ if isinstance(other, Policy) else NotImplemented

    __hash__ = BaseModel.__hash__

    @model_validator(mode="after")
    def _check(self):
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        ids = [s.id for s in self.stages]
        for i, stage_id in enumerate(ids):
            if stage_id in ids[:i]:
                raise ValueError(f"stages[{i}].id: stage ids must be unique; {stage_id} is also stage "
                                 f"{ids.index(stage_id) + 1}")
        for i, (before, after) in enumerate(zip(self.stages, self.stages[1:]), start=1):
            if after.offset_days <= before.offset_days:
                raise ValueError(
                    f"stages[{i}].offset_days: offsets must be strictly increasing; {after.id} "
                    f"({after.offset_days}) comes after {before.id} ({before.offset_days})")
        if self.statuses is not None:
            for status in self.exclude_statuses:
                if self.statuses.get(status, "exclude") != "exclude":
                    raise ValueError(f"exclude_statuses: {status!r} is declared {self.statuses[status]} in statuses")
        if self.languages is not None:
            bad = [code for code in self.languages if not re.fullmatch(r"[a-z]{2,3}", code)]
            if bad:
                raise ValueError(f"languages: language codes are 2 or 3 lower-case letters (fr, en, es); "
                                 f"not {', '.join(map(repr, bad))}")
            if self.language not in self.languages:
                raise ValueError(f"languages: the default language {self.language!r} must be one of them")
        ids = [stage.id for stage in (*self.stages, *self.request_stages)]
        for key in ("optional", "mandatory"):
            unknown = [name for name in getattr(self.preferences, key) if name not in ids]
            if unknown:
                raise ValueError(f"preferences.{key}: {unknown[0]!r} is not a stage ({', '.join(ids)})")
        both = set(self.preferences.optional) & set(self.preferences.mandatory)
        if both:
            raise ValueError(f"preferences: {sorted(both)[0]} is optional or mandatory, not both")
        for stage in (*self.stages, *self.request_stages):
            if stage.channels and stage.id in self.preferences.mandatory:
                raise ValueError(f"preferences.mandatory: {stage.id} goes out on its own channel: its "
                                 f"channels: cannot offer others")
        check_timelines(self)
        check_request_stages(self)
        for path, message in label_problems(self):      # the first one
            raise ValueError(f"{'.'.join(map(str, path))}: {message}")
        if self.retention is not None:
            check_retention(self.retention, max(self.window(s) for s in self.stages), CATCH_UP_DAYS)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def excluded_statuses(self) -> frozenset[str]:
        """The loan statuses that never get a notice: exclude_statuses and those statuses: declares exclude."""
        declared = {status for status, meaning in (self.statuses or {}).items() if meaning == "exclude"}
        return frozenset(self.exclude_statuses) | declared

    @property
    def declared_statuses(self) -> tuple[str, ...] | None:
        """The loan statuses an import accepts, or None when the policy does not declare them (any)."""
        if self.statuses is None:
            return None
        return tuple(self.statuses) + tuple(s for s in self.exclude_statuses if s not in self.statuses)

    def window(self, stage: Stage) -> int:
        return self.max_delay_days if stage.max_delay_days is None else stage.max_delay_days

    def is_optional(self, stage_id: str) -> bool:
        """Whether patrons may opt out of the stage (preferences.optional)."""
        return stage_id in self.preferences.optional

    def is_mandatory(self, stage_id: str) -> bool:
        """Whether the stage goes out on its own channel whatever a patron prefers (preferences.mandatory)."""
        return stage_id in self.preferences.mandatory

    def stage(self, stage_id: str) -> Stage:
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise KeyError(stage_id)

    @property
    def available_languages(self) -> list[str]:
        """The languages notices are written in, the default first."""
        langs = self.languages or [self.language]
        return [self.language] + [code for code in langs if code != self.language]

    @property
    def resumed_on(self) -> dt.date | None:
        return self.restart.resumed_on if self.restart else None


def parse_policy(text: str, source: str = "reminders.yaml", channels: Mapping[str, ChannelSpec] = DEFAULT) -> Policy:
    """Validate policy text; raise InputError naming file, line and key of every problem.

    ``channels``: the channel kinds a stage may name (the registry's; email and letter by default)."""
    doc = YamlDocument(text, source)
    if doc.duplicates:
        raise InputError(doc.duplicates)
    if not isinstance(doc.data, dict):
        raise InputError([doc.problem((), "the policy must be a mapping of keys (timezone, sender, stages, …)")])
    try:
        policy = Policy.model_validate(doc.data, context={"channels": channels})
    except OverflowError as exc:
        raise doc.overflowed(exc) from None
    except ValidationError as exc:
        problems = validation_problems(doc, exc)
        # model-level messages name their key as "key: message" (or "stages[2].id: …"); point at its line
        fixed = []
        for p in problems:
            head, sep, rest = p.message.partition(": ")
            path = _path(head) if sep and not p.where else None
            if path and path[0] in Policy.model_fields:
                p = doc.problem(path, rest)
            fixed.append(p)
        raise InputError(doc.bounded(fixed)) from None
    doc.check_bounds()
    unknown = [doc.problem(("delivery", "channels", name), unknown_channel(name, channels))
               for name in policy.delivery.channels if name not in channels]
    if unknown:
        raise InputError(unknown)
    return policy


def policy_json_schema(channels: Mapping[str, ChannelSpec] = DEFAULT) -> dict:
    schema = Policy.model_json_schema(by_alias=True)
    stage_channel = schema["$defs"]["Stage"]["properties"]["channel"]
    stage_channel.pop("pattern", None)
    stage_channel["enum"] = list(channels)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rappel reminder policy (rules/reminders.yaml)"
    return schema
