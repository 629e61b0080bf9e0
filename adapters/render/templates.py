"""The stage templates of one rules directory, rendered in Jinja's immutable sandbox, per language.

Templates live in ``rules/templates/<language>/``, three per stage (``<name>.subject.j2``,
``<name>.txt.j2``, ``<name>.html.j2``); a file missing from the language folder is looked up in
``rules/templates/`` itself. Administrators edit them, so they run sandboxed with StrictUndefined,
and ``lint()`` (adapters/render/lint.py) renders every one before anything goes out.
"""
from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from functools import partial
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined

from adapters.render.context import KINDS, MAILBOX, NoticeContext, mailbox_variables, notice_variables
from adapters.render.document import notice_document, sms_text
from adapters.render.email import mailbox_message, notice_email, serialize
from adapters.render.fonts import NO_FONT, MissingFont, find_font
from adapters.render.formats import format_day, format_money, format_number, one_line, pick_language, tidy
from adapters.render.letter_names import LETTER_WORDING
from adapters.render.sandbox import LimitedSandbox
from adapters.render.lint import lint_templates
from adapters.render.requests import lint_request_templates
from engine.contact import is_email_address
from engine.decide import Notice
from engine.facts import Patron
from engine.policy import Policy
from engine.yamlsource import Problem

__all__ = ["Templates"]


class Templates:
    """The stage templates of one rules directory, checked and rendered in a sandbox, per language."""

    def __init__(self, rules_dir: Path, policy: Policy):
        self.policy = policy
        self.directory = Path(rules_dir) / "templates"
        self._envs: dict[str, LimitedSandbox] = {}
        self.env = self.environment(policy.language)

    def environment(self, language: str) -> LimitedSandbox:
        """The sandbox for one language: its folder first, then the shared templates folder."""
        env = self._envs.get(language)
        if env is None:
            env = LimitedSandbox(
                limits=self.policy.templates, loader=FileSystemLoader([str(self.directory / language), str(self.directory)]),
                undefined=StrictUndefined,
                autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
                trim_blocks=True, lstrip_blocks=True)
            env.filters["date"] = partial(format_day, language=language)
            env.filters["money"] = partial(format_money, language=language, default=self.policy.currency)
            env.filters["number"] = partial(format_number, language=language)
            self._envs[language] = env
        return env

    def language_for(self, patron: Patron) -> str:
        return pick_language(patron.preferred_language, self.policy)

    def lint(self) -> list[Problem]:
        """Every stage's templates exist, compile and render a sample notice in every language;
        [] when all is well."""
        return lint_templates(self) + lint_request_templates(self)

    # -- rendering -----------------------------------------------------------------------------

    def variables(self, ctx: NoticeContext, language: str | None = None) -> dict:
        """The template context: plain dicts, lists, strings and dates only."""
        return notice_variables(ctx, language or self.language_for(ctx.patron))

    def render(self, ctx: NoticeContext, kinds: tuple[str, ...] = KINDS) -> dict[str, str]:
        """The notice's rendered templates by kind: subject (one line), txt (tidied) and html."""
        language = self.language_for(ctx.patron)
        values = self.variables(ctx, language)
        name = self.policy.stage(ctx.notice.stage).template_name
        env = self.environment(language)
        out = {kind: env.get_template(f"{name}.{kind}.j2").render(values) for kind in kinds}
        if "subject" in out:
            out["subject"] = one_line(out["subject"])
        if "txt" in out:
            out["txt"] = tidy(out["txt"])
        if "html" in out:
            out["html"] = out["html"].strip() + "\n"
        if "sms" in out:
            out["sms"] = sms_text(out["sms"])
        return out

    def email(self, ctx: NoticeContext) -> EmailMessage:
        """The notice's email to its patron (adapters/render/email.py)."""
        return notice_email(ctx, self.render(ctx), self.language_for(ctx.patron))

    def letter_pdf(self, ctx: NoticeContext) -> bytes:
        """The notice's letter as a PDF (adapters/render/letter.py), in the patron's language."""
        if not ctx.notice.library:
            raise ValueError(f"notice {ctx.notice.key}: a letter needs a library")
        language = self.language_for(ctx.patron)
        parts = self.render(ctx, ("subject", "txt"))
        values = self.variables(ctx, language)
        wording = self.letter_wording(ctx, parts["subject"], language)
        font = find_font()
        if font is None:
            raise MissingFont(NO_FONT)
        from adapters.render.letter import Letter     # fpdf2: loaded when a letter is drawn, not for lint or a dry run
        return Letter(font).build(values, wording, parts["txt"], ctx.sent_at)

    def letter_wording(self, ctx: NoticeContext, subject: str, language: str) -> dict:
        """The letter's fixed parts in its language, from _letter.j2 (its {% set %} variables)."""
        values = {**self.variables(ctx, language), "subject": subject}
        module = self.environment(language).get_template(LETTER_WORDING).make_module(values)
        wording = {name: getattr(module, name) for name in
                   ("date_line", "subject_line", "columns", "table_date", "page", "no_due")}
        wording["stage_column"] = getattr(module, "stage_column", "")   # a 5th column when stages are combined
        if len(wording["columns"]) != 4:
            raise ValueError(f"{LETTER_WORDING}: columns must name the 4 columns of the table "
                             "(title, barcode, due date, days overdue)")
        wording["format_date"] = partial(format_day, language=language)
        return wording

    def message(self, ctx: NoticeContext, renders: str) -> EmailMessage | bytes | str | dict:
        """What a delivery sends for a notice: its email (``renders`` "email", the bytes for the wire
        computed too), its letter's PDF, its SMS text ("text": ``<stage>.sms.j2``) or its JSON document
        ("json": the subject and text templates rendered, adapters/render/document.py). The dispatch
        and `rappel preview` both render through here."""
        if renders == "email":
            message = self.email(ctx)
            serialize(message)      # its bytes too, here rather than while sending
            return message
        if renders == "text":
            return self.render(ctx, ("sms",))["sms"]
        if renders == "json":
            parts = self.render(ctx, ("subject", "txt"))
            return notice_document(ctx, parts["subject"], parts["txt"], self.language_for(ctx.patron))
        return self.letter_pdf(ctx)

    def mailbox_email(self, notice: Notice, pdf: bytes, filename: str, at: dt.datetime | None = None) -> EmailMessage:
        """The email that carries a letter to its library's mailbox, the PDF attached (policy's language),
        dated ``at`` (when it is sent)."""
        policy = self.policy
        mailbox = notice.destination.removeprefix("mailbox:")
        if not is_email_address(mailbox):
            raise ValueError(f"notice {notice.key}: {notice.destination!r} is not a mailbox address")
        values = mailbox_variables(policy, notice, filename)
        env = self.environment(policy.language)
        subject = one_line(env.get_template(MAILBOX[0]).render(values))
        text = tidy(env.get_template(MAILBOX[1]).render(values))
        return mailbox_message(policy, notice, mailbox, subject, text, pdf, filename, at)
