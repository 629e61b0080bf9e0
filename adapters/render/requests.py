"""The request notices' emails ("your hold is ready", "pickup deadline", "your request expired").

Each request stage has three templates, ``<template>.subject.j2``, ``.txt.j2`` and ``.html.j2``
(rules/templates/<lang>/), rendered in the same sandbox as the loan notices, with the variables of
``REQUEST_VARIABLES``; ``lint_request_templates`` renders them for a made-up patron in every language
and checks the names they use, whatever the branch.
"""
from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from jinja2 import TemplateNotFound, TemplateSyntaxError

from adapters.render.context import RENDERS, library_values, sender_values
from adapters.render.document import sms_text
from adapters.render.segments import segments
from adapters.render.email import notice_email, serialize
from adapters.render.formats import midnight, one_line, tidy
from adapters.render.names_check import unknown_names
from engine.decide import Notice
from engine.facts import Patron
from engine.policy import Policy, Sender
from engine.presentation import stage_label
from engine.requests import Request, RequestStage, stage_by_id
from engine.yamlsource import Problem

__all__ = ["REQUEST_LISTS", "REQUEST_VARIABLES", "SHIPPED", "lint_request_templates", "request_message",
           "request_template_names", "request_variables"]

SHIPPED = ("hold_ready", "pickup_deadline", "hold_expired", "_request_base")   # the request templates rappel ships
REQUEST_LISTS = {"requests": "request"}
REQUEST_VARIABLES = {
    "patron": "the patron", "patron.patron_id": "their id", "patron.barcode": "their card's barcode",
    "patron.first_name": "first name", "patron.last_name": "last name", "patron.full_name": "first and last name",
    "patron.email": "email address", "patron.phone": "phone number (E.164)",
    "stage": "the request stage", "stage.id": "its id (hold_ready)", "stage.label": "its name (labels:)",
    "stage.when": "ready, expires or expired", "stage.offset_days": "its offset_days", "stage.channel": "its own channel",
    "stage.template": "its templates' name",
    "requests": "the patron's requests at this stage (request)",
    "request.request_id": "the request's id", "request.title": "the document's title",
    "request.library_code": "the holding library's code", "request.library_name": "its name",
    "request.pickup_library_code": "where to pick it up (code)", "request.pickup_library_name": "its name",
    "request.pickup_library": "that library (library.* fields: address, phone, hours_url…)",
    "request.pickup_library.code": "", "request.pickup_library.name": "", "request.pickup_library.address": "",
    "request.pickup_library.phone": "", "request.pickup_library.email": "", "request.pickup_library.hours_url": "",
    "request.pickup_library.website": "",
    "request.placed_on": "the day it was placed (a date)", "request.ready_on": "the day it became ready (or none)",
    "request.expires_on": "the last day to pick it up (or none)",
    "request.days_left": "days left to pick it up on the notice's date (0 after; none without expiry)",
    "request.status": "its status in the library system",
    "notice": "the notice", "notice.key": "its id", "notice.channel": "the channel it goes out on (email, sms…)", "notice.date": "its date",
    "sender": "who it is from", "sender.from": "From:", "sender.reply_to": "Reply-To:",
    "sender.name": "a name to sign with", "sender.address": "the reply address",
    "language": "the notice's language", "as_of": "the notice's date",
}


@dataclass(frozen=True)
class RequestContext:
    """What adapters/render/email.py's notice_email reads of a context."""

    policy: Policy
    notice: Notice
    patron: Patron
    requests: list[Request]
    as_of: dt.date
    at: dt.datetime | None = None

    @property
    def sender(self) -> Sender:
        return self.policy.sender

    @property
    def sent_at(self) -> dt.datetime:
        return self.at.astimezone(self.policy.tz) if self.at else midnight(self.as_of, self.policy)


def request_variables(ctx: RequestContext, language: str) -> dict:
    policy, notice = ctx.policy, ctx.notice
    stage = stage_by_id(policy, notice.stage)
    patron = ctx.patron

    def one(r: Request) -> dict:
        pickup = library_values(policy, r.pickup_library, language)
        return {"request_id": r.request_id, "title": r.title, "library_code": r.library,
                "library_name": library_values(policy, r.library, language)["name"],
                "pickup_library_code": r.pickup_library, "pickup_library_name": pickup["name"],
                "pickup_library": pickup, "placed_on": r.placed_on, "ready_on": r.ready_on,
                "expires_on": r.expires_on,
                "days_left": None if r.expires_on is None else max(0, (r.expires_on - ctx.as_of).days),
                "status": r.status}

    return {
        "patron": {"patron_id": patron.patron_id, "barcode": patron.barcode, "first_name": one_line(patron.first_name),
                   "last_name": one_line(patron.last_name), "full_name": one_line(patron.full_name),
                   "email": patron.email, "phone": patron.phone},
        "stage": {"id": stage.id, "label": stage_label(policy, stage.id, language), "when": stage.when,
                  "offset_days": stage.offset_days, "channel": stage.channel, "template": stage.template_name},
        "requests": [one(r) for r in sorted(ctx.requests, key=lambda r: (r.expires_on or dt.date.max, r.title,
                                                                          r.request_id))],
        "notice": {"key": notice.key, "channel": notice.channel, "date": notice.date},
        "sender": sender_values(policy.sender),
        "language": language,
        "as_of": ctx.as_of,
    }


def request_message(templates, ctx: RequestContext, renders: str = "email") -> EmailMessage | str | dict:
    """The request notice as its channel carries it, in the patron's language (``templates``: a
    Templates): its email (``renders`` "email"), its SMS (``<template>.sms.j2``, "text"), or the
    JSON document of a webhook ("json": its subject and text rendered)."""
    language = templates.language_for(ctx.patron)
    stage = stage_by_id(ctx.policy, ctx.notice.stage)
    if stage is None:
        raise ValueError(f"notice {ctx.notice.key}: {ctx.notice.stage} is not a request stage of the policy")
    values = request_variables(ctx, language)
    env = templates.environment(language)
    kinds = {"email": ("subject", "txt", "html"), "text": ("sms",), "json": ("subject", "txt")}[renders]
    parts = {kind: env.get_template(f"{stage.template_name}.{kind}.j2").render(values) for kind in kinds}
    if renders == "text":
        return sms_text(parts["sms"])
    parts["subject"], parts["txt"] = one_line(parts["subject"]), tidy(parts["txt"])
    if renders == "json":
        return request_document(ctx, parts["subject"], parts["txt"], language)
    parts["html"] = parts["html"].strip() + "\n"
    message = notice_email(ctx, parts, language)
    serialize(message)
    return message


def request_document(ctx: RequestContext, subject: str, text: str, language: str) -> dict:
    """A request notice as one JSON object (the webhook's body; a loan notice's is
    adapters/render/document.py's): its key, date, stage, channel, patron, language, requests."""
    notice = ctx.notice
    return {
        "notice": notice.key, "date": notice.date.isoformat(), "stage": notice.stage, "stages": [notice.stage],
        "channel": notice.channel, "patron_id": notice.patron_id, "library": None, "language": language,
        "requests": [{"request_id": r.request_id, "title": r.title, "library": r.library,
                      "pickup_library": r.pickup_library, "status": r.status,
                      "ready_on": r.ready_on.isoformat() if r.ready_on else None,
                      "expires_on": r.expires_on.isoformat() if r.expires_on else None}
                     for r in sorted(ctx.requests, key=lambda r: r.request_id)],
        "subject": subject,
        "text": text,
    }


def request_template_names(policy: Policy) -> set[str]:
    """The template names the request stages use, and those rappel ships (checked with these names)."""
    return {s.template_name for s in policy.request_stages} | set(SHIPPED)


def _sample(policy: Policy, stage: RequestStage) -> RequestContext:
    code = next(iter(policy.libraries))
    patron = Patron("P-SAMPLE", barcode="0000000", first_name="Camille", last_name="Exemple",
                    email="camille.exemple@example.org", phone="+33612345678")
    day = dt.date(2026, 11, 23)
    reqs = [Request("R-SAMPLE-1", patron.patron_id, code, code, dt.date(2026, 11, 2), policy.requests.ready_status,
                    dt.date(2026, 11, 30), dt.date(2026, 11, 20), "Titre d'exemple"),
            Request("R-SAMPLE-2", patron.patron_id, code, code, dt.date(2026, 11, 3), policy.requests.ready_status,
                    None, dt.date(2026, 11, 21), "Autre titre")]
    notice = Notice(f"{day}/{stage.id}/email/P-SAMPLE/-", day, stage.id, "email", patron.patron_id, None,
                    tuple(r.request_id for r in reqs), patron.email, patron.email)
    return RequestContext(policy, notice, patron, reqs, day, dt.datetime(2026, 11, 23, 9, 0, tzinfo=policy.tz))


def lint_request_templates(templates) -> list[Problem]:
    """Every request stage's templates exist and render a sample notice in every language, for each
    of its channels (an email, an SMS within sms.max_segments, a webhook's document); no template of
    a request stage uses a name it is not given, whatever the branch."""
    policy = templates.policy
    problems: list[Problem] = []
    for language in policy.available_languages:
        env = templates.environment(language)
        for stage in policy.request_stages:
            for renders in dict.fromkeys(RENDERS.get(name, "email") for name in stage.routes):
                problems += _render_sample(templates, stage, language, renders)
        problems += _names(env, language, request_template_names(policy))
    return problems


def _render_sample(templates, stage: RequestStage, language: str, renders: str) -> list[Problem]:
    policy = templates.policy
    ctx = _sample(policy, stage)

    class _One:     # the sample's language, whatever the patron prefers
        def __init__(self, t):
            self.policy, self.environment = t.policy, t.environment

        def language_for(self, _patron):
            return language
    try:
        out = request_message(_One(templates), ctx, renders)
    except TemplateNotFound as exc:
        return [Problem(str(templates.directory / language / exc.name), None, f"language {language}",
                        f"template file is missing (request stage {stage.id})")]
    except TemplateSyntaxError:
        return []       # reported by the templates' own lint
    except Exception as exc:   # noqa: BLE001 - anything a template can raise is a problem
        source, line = _place(exc, templates.directory / language / f"{stage.template_name}.*.j2")
        return [Problem(source, line, f"language {language}", f"request stage {stage.id}: {type(exc).__name__}: {exc}")]
    if renders != "text":
        return []
    where, most, measured = str(templates.directory / language / f"{stage.template_name}.sms.j2"), \
        policy.sms.max_segments, segments(out)
    if not out:
        return [Problem(where, None, f"request stage {stage.id}", f"the SMS is empty (in {language})")]
    if measured.count > most:
        return [Problem(where, None, f"request stage {stage.id}", f"language {language}: the SMS takes "
                        f"{measured.describe()}, more than sms.max_segments ({most}) in reminders.yaml")]
    return []


def _names(env, language: str, stems: Iterable[str]) -> list[Problem]:
    out = []
    for name in env.list_templates(extensions=["j2"]):
        if "/" in name or name.split(".", 1)[0] not in stems:
            continue
        try:
            found = unknown_names(env, name, set(REQUEST_VARIABLES), REQUEST_LISTS)
        except TemplateSyntaxError:
            continue
        out += [Problem(source, line, f"language {language}", f"undefined variable: {dotted}: not given to a "
                        f"request notice's template, whatever the branch (README, \"Request notices\")")
                for source, line, dotted in found]
    return out


def _place(exc: BaseException, default: Path) -> tuple[str, int | None]:
    if getattr(exc, "filename", None):
        return exc.filename, getattr(exc, "lineno", None)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return frame.filename, frame.lineno
    return str(default), None
