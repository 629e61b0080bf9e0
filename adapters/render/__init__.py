"""Notices into messages: the email (text and HTML) and the PDF letter of one notice.

Templates live in ``rules/templates/<language>/`` (fr, en, es shipped), three per stage:
``<name>.subject.j2``, ``<name>.txt.j2`` and ``<name>.html.j2`` (``name`` is the stage's
``template`` or its id). A template missing from the language folder is looked up in
``rules/templates/`` itself, so a one-language site may keep its files there. The language of a
notice is the patron's ``preferred_language`` when the policy has templates for it, else the
policy's ``language``; dates and amounts are formatted for it by Babel (``|date``, ``|money``).

Administrators edit templates, so they run in Jinja's immutable sandbox with StrictUndefined, and
``Templates.lint()`` renders every one with a sample notice, in every language, before anything
goes out.

A letter's body is the stage's ``.txt.j2`` rendered with ``notice.channel == "letter"``; the
table of documents is drawn where the body has a line ``{{ letter_table }}`` (at the end if none).
The letter's fixed wording (date line, subject line, table headings) comes from ``_letter.j2``;
the email that carries a letter to a library's mailbox from ``_mailbox.subject.j2`` and
``_mailbox.txt.j2``, in the policy's language.

Letters are set in a Unicode TrueType font, so French and Spanish text comes out exactly (œ, €,
é, ñ…): DejaVu Sans from ``$RAPPEL_FONT_DIR`` when set, else Noto Sans from the pymupdf-fonts
package (a dependency: the same font on every machine), else DejaVu Sans installed on the system.
Without any, ``Templates.lint()`` reports it (so ``rappel lint`` and ``rappel run`` stop) and a
letter is never made with a font that would change its words.
"""
from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
import email.policy
from email import quoprimime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache, partial
from pathlib import Path

from babel.dates import format_date as babel_date
from babel.numbers import format_currency, format_decimal
from fpdf import FPDF, FontFace
from jinja2 import FileSystemLoader, StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.decide import Notice
from engine.facts import Loan, Patron
from engine.policy import Policy, Stage
from engine.yamlsource import Problem

__all__ = ["FONT_DIRS", "LETTER_TABLE", "WIRE_POLICY", "MissingFont", "NoticeContext", "Templates", "find_font",
           "font_problem", "message_id", "packaged_font", "pick_language", "serialize", "wire_bytes"]

KINDS = ("subject", "txt", "html")
LETTER_WORDING = "_letter.j2"
BOUNDARY = "=_rappel_alternative"
MAILBOX = ("_mailbox.subject.j2", "_mailbox.txt.j2")
# ISO 639-2 codes that library systems often export (MARC), and the codes templates use
_ISO639_2 = {"fre": "fr", "fra": "fr", "eng": "en", "spa": "es", "ger": "de", "deu": "de", "ita": "it",
             "por": "pt", "cat": "ca", "baq": "eu", "eus": "eu", "glg": "gl", "dut": "nl", "nld": "nl"}
LETTER_TABLE = "[[rappel:table]]"   # value of {{ letter_table }} in a letter; replaced by the table
FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",       # Debian, Ubuntu (fonts-dejavu-core)
    "/usr/share/fonts/dejavu",                # Alpine, older Fedora
    "/usr/share/fonts/dejavu-sans-fonts",     # Fedora, RHEL
    "/usr/share/fonts/TTF",                   # Arch
    "/usr/share/fonts/truetype",
    "/usr/local/share/fonts",
    "/usr/local/share/fonts/dejavu",          # FreeBSD
    "/opt/homebrew/share/fonts",
    "~/Library/Fonts",
    "/Library/Fonts",
    "~/.local/share/fonts",
    "~/.fonts",
)
FONT_PACKAGE = "pymupdf-fonts"            # Noto Sans, regular and bold, as package data (SIL OFL 1.1)
FONT_DEBIAN_PACKAGE = "fonts-dejavu-core"
FONT_SAMPLE = "œŒ€éèêàçÉÀñÑáíóúü¿¡«»—–’…\u00a0\u202f"   # what French and Spanish letters need
NO_FONT = (f"no Unicode font for the letters: install rappel with its dependencies (pip package "
           f"{FONT_PACKAGE}), or DejaVu Sans (Debian: apt-get install {FONT_DEBIAN_PACKAGE}), or set "
           "RAPPEL_FONT_DIR to a folder holding DejaVuSans.ttf")


class MissingFont(RuntimeError):
    """No Unicode font to set a letter in: nothing is printed in a font that would change its words."""


@dataclass(frozen=True)
class NoticeContext:
    """Everything one notice's messages are made from."""

    policy: Policy
    notice: Notice
    patron: Patron
    triggered: list[Loan]   # the loans in notice.loan_ids
    overdue: list[Loan]     # all the patron's open loans due before notice.date (the recap)
    as_of: dt.date          # the date the message carries

    @classmethod
    def build(cls, policy: Policy, notice: Notice, patron: Patron, loans: Iterable[Loan],
              as_of: dt.date | None = None) -> NoticeContext:
        """Pick the triggered and overdue loans out of the patron's loans.

        Loans with a status the policy excludes (lost, claimed returned…) stay out of the recap.
        """
        mine = [loan for loan in loans if loan.patron_id == patron.patron_id]
        by_id = {loan.loan_id: loan for loan in mine}
        missing = [i for i in notice.loan_ids if i not in by_id]
        if missing:
            raise KeyError(f"notice {notice.key}: loans not given: {', '.join(missing)}")
        overdue = [loan for loan in mine if loan.is_open and loan.due_date < notice.date
                   and loan.status not in policy.exclude_statuses]
        return cls(policy, notice, patron, [by_id[i] for i in notice.loan_ids], overdue,
                   as_of or notice.date)


class Templates:
    """The stage templates of one rules directory, checked and rendered in a sandbox, per language."""

    def __init__(self, rules_dir: Path, policy: Policy):
        self.policy = policy
        self.directory = Path(rules_dir) / "templates"
        self._envs: dict[str, ImmutableSandboxedEnvironment] = {}
        self.env = self.environment(policy.language)

    def environment(self, language: str) -> ImmutableSandboxedEnvironment:
        """The sandbox for one language: its folder first, then the shared templates folder."""
        env = self._envs.get(language)
        if env is None:
            env = ImmutableSandboxedEnvironment(
                loader=FileSystemLoader([str(self.directory / language), str(self.directory)]),
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

    # -- checking ------------------------------------------------------------------------------

    def lint(self) -> list[Problem]:
        """Every stage's templates exist, compile and render a sample notice in every language;
        [] when all is well."""
        problems: list[Problem] = []
        bad: set[tuple[str, str]] = set()
        for language in self.policy.available_languages:
            for name in self._required(language):
                if self._find(language, name) is None:
                    bad.add((language, name))
                    problems.append(Problem(str(self.directory / language / name), None, f"language {language}",
                                            "template file is missing"))
        for language in self.policy.available_languages:   # every file, the shared frames too
            env = self.environment(language)
            for name in env.list_templates(extensions=["j2"]):
                if "/" in name:    # another language's folder: checked in its own language
                    continue
                try:
                    env.get_template(name)
                except TemplateSyntaxError as exc:
                    bad.add((language, name))
                    problems.append(self._syntax_problem(exc))
        if self._letters_possible():    # before anything is printed in a font that would change the words
            font = find_font()
            trouble = ("fonts", NO_FONT) if font is None else font_problem(font)
            if trouble:
                problems.append(Problem(str(trouble[0]), None, "letters", trouble[1]))
        for language in self.policy.available_languages:
            for stage in self.policy.stages:
                for channel in self._channels(stage):
                    problems += self._render_problems(stage, channel, bad, language)
            if (language, LETTER_WORDING) not in bad and self._letters_possible():
                problems += self._check(language, LETTER_WORDING, "letter wording", lambda: self._wording(
                    _sample(self.policy, self.policy.stages[-1], "letter", language), "Objet", language))
        if self._mailboxes() and not any((self.policy.language, name) in bad for name in MAILBOX):
            problems += self._check(self.policy.language, MAILBOX[1], "mailbox email",
                                    lambda: self.mailbox_email(_sample_letter(self.policy), b"%PDF-1.4", "a.pdf"))
        # one problem per place: the same line failing for the email and for the letter is one mistake
        first: dict[tuple, Problem] = {}
        for problem in problems:
            first.setdefault((problem.source, problem.line, problem.where), problem)
        return list(first.values())

    def _required(self, language: str) -> list[str]:
        names = [_file(stage, kind) for stage in self.policy.stages for kind in KINDS]
        if self._letters_possible():
            names.append(LETTER_WORDING)
        if language == self.policy.language and self._mailboxes():
            names += MAILBOX
        return names

    def _find(self, language: str, name: str) -> Path | None:
        for folder in (self.directory / language, self.directory):
            if (folder / name).is_file():
                return folder / name
        return None

    def _letters_possible(self) -> bool:
        return any("letter" in self._channels(stage) for stage in self.policy.stages)

    def _mailboxes(self) -> bool:
        return any(lib.letters.mailbox for lib in self.policy.libraries.values())

    def _check(self, language: str, name: str, what: str, render) -> list[Problem]:
        try:
            render()
        except TemplateSyntaxError as exc:
            return [self._syntax_problem(exc)]
        except Exception as exc:   # noqa: BLE001 - anything a template can raise is a problem
            source, line = self._where(exc, str(self._find(language, name) or self.directory / language / name))
            detail = f"undefined variable: {exc}" if isinstance(exc, UndefinedError) else f"{type(exc).__name__}: {exc}"
            return [Problem(source, line, f"language {language}", f"{detail} (rendering the {what})")]
        return []

    def _channels(self, stage: Stage) -> list[str]:
        """The channels a stage can go out on: its own, plus letters for patrons without email."""
        if stage.channel == "letter":
            return ["letter"]
        nomail = self.policy.no_email
        as_letter = nomail.courtesy_by_letter if stage.offset_days < 0 else nomail.letters_after_due
        as_letter = as_letter or self.policy.fallback.email == "letter"
        return ["email", "letter"] if as_letter else ["email"]

    def _render_problems(self, stage: Stage, channel: str, bad: set, language: str) -> list[Problem]:
        values = self.variables(_sample(self.policy, stage, channel, language))
        kinds = KINDS if channel == stage.channel else ("subject", "txt")
        env = self.environment(language)
        problems = []
        for kind in kinds:
            name = _file(stage, kind)
            if (language, name) in bad:
                continue
            try:
                out = env.get_template(name).render(values)
            except TemplateSyntaxError as exc:
                problems.append(self._syntax_problem(exc))
                continue
            except Exception as exc:   # noqa: BLE001 - anything a template can raise is a problem
                source, line = self._where(exc, str(self._find(language, name) or self.directory / name))
                what = f"undefined variable: {exc}" if isinstance(exc, UndefinedError) else \
                    f"{type(exc).__name__}: {exc}"
                problems.append(Problem(source, line, f"stage {stage.id}",
                                        f"{what} (rendering the {channel} in {language})"))
                continue
            if kind == "subject" and not _one_line(out):
                problems.append(Problem(str(self._find(language, name)), None, f"stage {stage.id}",
                                        f"the subject is empty (in {language})"))
        return problems

    def _syntax_problem(self, exc: TemplateSyntaxError) -> Problem:
        source = exc.filename or str(self.directory / (exc.name or "?"))
        return Problem(source, exc.lineno, "", f"syntax error: {exc.message}")

    def _where(self, exc: BaseException, path: str) -> tuple[str, int | None]:
        """File and line of the innermost template frame of a rendering error."""
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.endswith(".j2"):
                return frame.filename, frame.lineno
        return path, None

    # -- rendering -----------------------------------------------------------------------------

    def variables(self, ctx: NoticeContext, language: str | None = None) -> dict:
        """The template context: plain dicts, lists, strings and dates only."""
        policy, notice = ctx.policy, ctx.notice
        language = language or self.language_for(ctx.patron)
        stage = policy.stage(notice.stage)
        library = _library(policy, notice.library) if notice.library else None
        overdue = sorted(ctx.overdue, key=_by_due)
        library_loans: list[dict] = []
        if notice.channel == "letter" and notice.library:
            seen = {loan.loan_id: loan for loan in (*ctx.triggered, *overdue) if loan.library == notice.library}
            library_loans = [_loan(policy, loan, ctx.as_of) for loan in sorted(seen.values(), key=_by_due)]
        from_name, _ = parseaddr(policy.sender.from_)
        _, reply_address = parseaddr(policy.sender.reply_to)
        return {
            "patron": {"patron_id": ctx.patron.patron_id, "barcode": ctx.patron.barcode,
                       "first_name": _one_line(ctx.patron.first_name),
                       "last_name": _one_line(ctx.patron.last_name),
                       "full_name": _one_line(ctx.patron.full_name), "email": ctx.patron.email,
                       "postal_lines": [_one_line(line) for line in ctx.patron.postal_lines]},
            "stage": {"id": stage.id, "offset_days": stage.offset_days, "channel": stage.channel,
                      "template": stage.template_name},
            "notice": {"key": notice.key, "channel": notice.channel, "date": notice.date,
                       "library": notice.library},
            "library": library,
            "triggered": [_loan(policy, loan, ctx.as_of) for loan in sorted(ctx.triggered, key=_by_due)],
            "recap": _recap(policy, overdue, ctx.as_of),
            "library_loans": library_loans,
            "letter_table": LETTER_TABLE if notice.channel == "letter" else "",
            "sender": {"from": policy.sender.from_, "reply_to": policy.sender.reply_to,
                       "name": from_name or reply_address, "address": reply_address},
            "language": language,
            "as_of": ctx.as_of,
        }

    def render(self, ctx: NoticeContext, kinds: tuple[str, ...] = KINDS) -> dict[str, str]:
        """The notice's rendered templates by kind: subject (one line), txt (tidied) and html."""
        language = self.language_for(ctx.patron)
        values = self.variables(ctx, language)
        name = self.policy.stage(ctx.notice.stage).template_name
        env = self.environment(language)
        out = {kind: env.get_template(f"{name}.{kind}.j2").render(values) for kind in kinds}
        if "subject" in out:
            out["subject"] = _one_line(out["subject"])
        if "txt" in out:
            out["txt"] = _tidy(out["txt"])
        if "html" in out:
            out["html"] = out["html"].strip() + "\n"
        return out

    def email(self, ctx: NoticeContext) -> EmailMessage:
        policy, notice, patron = ctx.policy, ctx.notice, ctx.patron
        parts = self.render(ctx)
        to = _one_line(patron.email or notice.recipient)
        if not to:
            raise ValueError(f"notice {notice.key}: patron {patron.patron_id} has no email address")
        if not is_address(to):
            raise ValueError(f"notice {notice.key}: patron {patron.patron_id}'s email {to!r} is not one address")
        # Headers are written already encoded (set_raw): building through the header registry costs
        # several milliseconds a message, most of the time of a dispatch. _raw refuses a line break
        # that is not folding, so patrons' values still cannot add a header.
        msg = EmailMessage(policy=MESSAGE_POLICY)
        _raw(msg, "From", _address_header(policy.sender.from_))
        _raw(msg, "Reply-To", _address_header(policy.sender.reply_to))
        _raw(msg, "To", formataddr((_one_line(patron.full_name), to), charset="utf-8"))
        _raw(msg, "Subject", _text_header(parts["subject"]))
        _raw(msg, "Date", format_datetime(_midnight(ctx.as_of, policy)))
        _raw(msg, "Message-ID", message_id(notice.key, policy.sender.from_))
        _raw(msg, "Auto-Submitted", "auto-generated")            # RFC 3834: no vacation replies
        _raw(msg, "MIME-Version", "1.0")
        # one fixed boundary: the bytes are stable, and "=_" never occurs in quoted-printable text
        _raw(msg, "Content-Type", f'multipart/alternative; boundary="{BOUNDARY}"')
        _raw(msg, "Content-Language", self.language_for(patron))
        msg.set_payload([_text_part(parts["txt"], "plain"), _text_part(parts["html"], "html")])
        return msg

    def letter_pdf(self, ctx: NoticeContext) -> bytes:
        if not ctx.notice.library:
            raise ValueError(f"notice {ctx.notice.key}: a letter needs a library")
        language = self.language_for(ctx.patron)
        parts = self.render(ctx, ("subject", "txt"))
        values = self.variables(ctx, language)
        wording = self._wording(ctx, parts["subject"], language)
        font = find_font()
        if font is None:
            raise MissingFont(NO_FONT)
        return _Letter(font).build(values, wording, parts["txt"], _midnight(ctx.as_of, ctx.policy))

    def _wording(self, ctx: NoticeContext, subject: str, language: str) -> dict:
        """The letter's fixed parts in its language, from _letter.j2 (its {% set %} variables)."""
        values = {**self.variables(ctx, language), "subject": subject}
        module = self.environment(language).get_template(LETTER_WORDING).make_module(values)
        wording = {name: getattr(module, name) for name in
                   ("date_line", "subject_line", "columns", "table_date", "page", "no_due")}
        if len(wording["columns"]) != 4:
            raise ValueError(f"{LETTER_WORDING}: columns must name the 4 columns of the table "
                             "(title, barcode, due date, days overdue)")
        wording["format_date"] = partial(format_day, language=language)
        return wording

    def mailbox_email(self, notice: Notice, pdf: bytes, filename: str) -> EmailMessage:
        """The email that carries a letter to its library's mailbox, the PDF attached (policy's language)."""
        policy = self.policy
        mailbox = notice.destination.removeprefix("mailbox:")
        if not is_address(mailbox):
            raise ValueError(f"notice {notice.key}: {notice.destination!r} is not a mailbox address")
        from_name, _ = parseaddr(policy.sender.from_)
        _, reply_address = parseaddr(policy.sender.reply_to)
        stage = policy.stage(notice.stage)
        values = {"library": _library(policy, notice.library or ""), "recipient": _one_line(notice.recipient),
                  "patron_id": notice.patron_id, "loan_count": len(notice.loan_ids),
                  "stage": {"id": stage.id, "offset_days": stage.offset_days, "channel": stage.channel,
                            "template": stage.template_name},
                  "notice": {"key": notice.key, "channel": notice.channel, "date": notice.date,
                             "library": notice.library},
                  "filename": filename, "language": policy.language, "as_of": notice.date,
                  "sender": {"from": policy.sender.from_, "reply_to": policy.sender.reply_to,
                             "name": from_name or reply_address, "address": reply_address}}
        env = self.environment(policy.language)
        subject = _one_line(env.get_template(MAILBOX[0]).render(values))
        text = _tidy(env.get_template(MAILBOX[1]).render(values))
        msg = EmailMessage()
        msg["From"] = _one_line(policy.sender.from_)
        msg["Reply-To"] = _one_line(policy.sender.reply_to)
        msg["To"] = mailbox
        msg["Subject"] = subject
        msg["Date"] = format_datetime(_midnight(notice.date, policy))
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
    domain = parseaddr(sender)[1].rpartition("@")[2] or "rappel.invalid"
    return f"<{_digest(key)[:32]}@{domain}>"


def pick_language(preferred: str, policy: Policy) -> str:
    """The patron's language when the policy has templates for it ('fr', 'fr-CA', 'fre'…), else the default."""
    code = re.split(r"[-_@.\s]", (preferred or "").strip().lower(), maxsplit=1)[0]
    code = _ISO639_2.get(code, code)
    return code if code in policy.available_languages else policy.language


_ADDRESS = re.compile(r"^[^@\s,;<>()\[\]\\\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
                      r"[A-Za-z0-9])?)+$")


def is_address(value: str) -> bool:
    """Exactly one bare email address: no display name, no list, no white space or line break."""
    return bool(_ADDRESS.match(value or ""))


def format_day(value: dt.date, format: str = "long", *, language: str) -> str:   # noqa: A002 - Jinja's name
    """A date for the language: Babel's short, medium, long or full, or a CLDR pattern (dd/MM/y)."""
    return babel_date(value, format=format, locale=language)


def format_money(value, currency: str | None = None, *, language: str, default: str = "EUR") -> str:
    """An amount for the language, e.g. 12,50 € (fr) or €12.50 (en); the policy's currency by default."""
    return format_currency(value, currency or default, locale=language)


def format_number(value, *, language: str) -> str:
    return format_decimal(value, locale=language)


def find_font(dirs: Iterable[str] | None = None) -> dict[str, Path] | None:
    """The letters' font files by style ("" regular, "B" bold), or None when there is none.

    DejaVu Sans from $RAPPEL_FONT_DIR when it is set (the site's choice), else Noto Sans from the
    pymupdf-fonts package, else DejaVu Sans from a standard place. ``dirs``: only those folders."""
    if dirs is not None:
        return _dejavu_in(dirs)
    env = os.environ.get("RAPPEL_FONT_DIR")
    return (_dejavu_in([env]) if env else None) or packaged_font() or _dejavu_in(FONT_DIRS)


def _dejavu_in(dirs: Iterable[str]) -> dict[str, Path] | None:
    """DejaVu Sans (regular, and bold when there) in the first of the folders that has it."""
    for folder in dirs:
        base = Path(folder).expanduser()
        regular = base / "DejaVuSans.ttf"
        if regular.is_file():
            bold = base / "DejaVuSans-Bold.ttf"
            return {"": regular, "B": bold if bold.is_file() else regular}
    return None


_PACKAGED = {"": ("notos", "NotoSans-Regular.ttf"), "B": ("notosbo", "NotoSans-Bold.ttf")}
_packaged_dir: Path | None = None
_packaged_lock = threading.Lock()


def packaged_font() -> dict[str, Path] | None:
    """Noto Sans regular and bold from the pymupdf-fonts package, None when it is not installed.

    The package holds the fonts as data in Python modules and fpdf2 reads fonts from files: they
    are written once a process to a private temporary folder (removed at exit), and again if a
    temporary-file cleaner took them from a long-running daemon."""
    global _packaged_dir
    try:
        import pymupdf_fonts
    except ImportError:
        return None
    with _packaged_lock:
        if _packaged_dir is None or not _packaged_dir.is_dir():
            _packaged_dir = Path(tempfile.mkdtemp(prefix="rappel-fonts-"))
            atexit.register(shutil.rmtree, _packaged_dir, True)
        files = {}
        for style, (name, filename) in _PACKAGED.items():
            path = _packaged_dir / filename
            if not path.is_file():
                part = path.with_name(f".{filename}.part")
                _write_font(pymupdf_fonts.myfont(name), part)
                part.replace(path)
            files[style] = path
        return files


def _write_font(data: bytes, path: Path) -> None:
    """The font file, without Noto's TTFA table (ttfautohint's settings): fpdf2's subsetting drops
    it anyway, with a fontTools warning for each letter; the letters come out byte for byte the same."""
    from fontTools.ttLib import TTFont

    face = TTFont(io.BytesIO(data), recalcTimestamp=False)
    if "TTFA" in face:
        del face["TTFA"]
    face.save(str(path))


def font_problem(font: dict[str, Path]) -> tuple[Path, str] | None:
    """The font file the letters cannot use and why (unreadable, or without œ, €, ñ…), or None."""
    from fontTools.ttLib import TTFont, TTLibError

    for style, path in font.items():
        try:
            with TTFont(str(path), lazy=True) as face:
                cmap = face.getBestCmap() or {}
        except (OSError, TTLibError, AssertionError, KeyError) as exc:
            return path, f"the letters' font cannot be read: {exc}"
        missing = "".join(c for c in FONT_SAMPLE if ord(c) not in cmap)
        if missing:
            shown = ", ".join(f"U+{ord(c):04X} {c.strip() or '(space)'}" for c in missing)
            return path, f"the letters' font ({'bold' if style else 'regular'}) has no {shown}"
    return None


# -- the letter --------------------------------------------------------------------------------

class _Letter(FPDF):
    """An A4 letter for a windowed envelope (window on the right, 110 mm from the left edge)."""

    WINDOW_X, WINDOW_Y, WINDOW_W = 110, 48, 85

    def __init__(self, font: dict[str, Path]):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.footer_text = ""
        self.font_name = "Letter"
        for style, path in font.items():
            self.add_font(self.font_name, style, str(path))
        self.text_of = str
        self.set_margins(20, 15, 20)
        self.set_auto_page_break(True, margin=20)

    def footer(self):
        self.set_y(-14)
        self.set_font(self.font_name, "", 8)
        self.cell(0, 5, self.text_of(f"{self.footer_text} - {self.page_word} {self.page_no()}/{{nb}}"), align="C")

    def build(self, v: dict, wording: dict, body: str, when: dt.datetime) -> bytes:
        library, sender = v["library"], v["sender"]
        subject = wording["subject_line"]
        self.wording, self.page_word = wording, wording["page"]
        self.set_creation_date(when)
        self.set_title(subject)
        self.set_author(library["name"])
        self.set_creator("rappel")
        self.set_lang(v["language"])
        self.footer_text = f"{library['name']} - {sender['name']}"
        self.add_page()
        # letterhead
        self.set_font(self.font_name, "B", 13)
        self.cell(0, 6, self.text_of(library["name"]), new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.font_name, "", 9)
        for line in [*library["address"], sender["name"], sender["address"]]:
            self.cell(0, 4.5, self.text_of(line), new_x="LMARGIN", new_y="NEXT")
        # the patron's address, in the envelope's window
        self.set_xy(self.WINDOW_X, self.WINDOW_Y)
        self.set_font(self.font_name, "", 11)
        self.multi_cell(self.WINDOW_W, 5.5, self.text_of("\n".join(v["patron"]["postal_lines"])), align="L")
        # date and subject
        self.set_xy(self.WINDOW_X, 100)   # below the window
        self.set_font(self.font_name, "", 10)
        self.cell(self.WINDOW_W, 5, self.text_of(_one_line(wording["date_line"])), new_x="LMARGIN", new_y="NEXT")
        self.set_y(110)
        self.set_font(self.font_name, "B", 11)
        self.multi_cell(0, 5.5, self.text_of(_one_line(subject)), align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(4)
        # body, with the table where the template asks for it
        self.set_font(self.font_name, "", 10)
        placed = False
        for line in body.splitlines():
            if line.strip() == LETTER_TABLE:
                self._table(v["library_loans"])
                placed = True
            elif line.strip():
                self.multi_cell(0, 5, self.text_of(line), align="L", new_x="LMARGIN", new_y="NEXT")
            else:
                self.ln(3)
        if not placed:
            self.ln(3)
            self._table(v["library_loans"])
        return bytes(self.output())

    def _table(self, loans: list[dict]):
        self.set_font(self.font_name, "", 9)
        head = FontFace(emphasis="BOLD", fill_color=(230, 230, 230))
        with self.table(col_widths=(82, 34, 26, 28), text_align=("LEFT", "LEFT", "CENTER", "RIGHT"),
                        line_height=5, headings_style=head, padding=1) as table:
            table.row([self.text_of(str(h)) for h in self.wording["columns"]])
            when = partial(self.wording["format_date"], format=self.wording["table_date"])
            for loan in loans:
                days = str(loan["days_overdue"]) if loan["days_overdue"] else str(self.wording["no_due"])
                table.row([self.text_of(loan["title"]), self.text_of(loan["item_barcode"]),
                           self.text_of(when(loan["due_date"])), self.text_of(days)])
        self.set_font(self.font_name, "", 10)
        self.ln(2)


# -- helpers -----------------------------------------------------------------------------------

def _file(stage: Stage, kind: str) -> str:
    return f"{stage.template_name}.{kind}.j2"


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


MESSAGE_POLICY = _MessagePolicy()
WIRE_POLICY = MESSAGE_POLICY.clone(linesep="\r\n")      # email.policy.SMTP, parsing each header once


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


def _raw(msg: EmailMessage, name: str, value: str) -> None:
    """A header given already encoded; a line break that is not folding is refused."""
    if _BARE_LINE_BREAK.search(value):
        raise ValueError(f"{name}: a line break in a header value")
    msg.set_raw(name, value)


@lru_cache(maxsize=64)
def _address_header(value: str) -> str:
    """'Name <a@b.example>' or 'a@b.example' for a header, the name RFC 2047-encoded when not ASCII."""
    name, addr = parseaddr(_one_line(value))
    return formataddr((name, addr), charset="utf-8") if name else addr


def _text_header(value: str) -> str:
    value = _one_line(value)
    return value if value.isascii() else Header(value, "utf-8").encode(maxlinelen=76)


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


def _one_line(value: str) -> str:
    """Header-safe: no CR, LF or other line breaks, runs of white space made one space."""
    return " ".join(value.split())


def _tidy(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _midnight(day: dt.date, policy: Policy) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=policy.tz)


def _by_due(loan: Loan):
    return (loan.due_date, loan.title, loan.loan_id)


def _library(policy: Policy, code: str) -> dict:
    lib = policy.libraries.get(code)
    return {"code": code, "name": lib.name if lib else code, "address": list(lib.address) if lib else []}


def _loan(policy: Policy, loan: Loan, as_of: dt.date) -> dict:
    lib = policy.libraries.get(loan.library)
    return {"loan_id": loan.loan_id, "title": loan.title, "item_barcode": loan.item_barcode,
            "library_code": loan.library, "library_name": lib.name if lib else loan.library,
            "due_date": loan.due_date, "days_overdue": max(0, (as_of - loan.due_date).days),
            "days_left": max(0, (loan.due_date - as_of).days)}


def _recap(policy: Policy, overdue: list[Loan], as_of: dt.date) -> list[dict]:
    """Overdue loans library by library: the policy's order of libraries, then unknown codes."""
    order = {code: i for i, code in enumerate(policy.libraries)}
    codes = sorted({loan.library for loan in overdue}, key=lambda c: (order.get(c, len(order)), c))
    return [{**_library(policy, code),
             "loans": [_loan(policy, loan, as_of) for loan in overdue if loan.library == code]}
            for code in codes]


def _sample(policy: Policy, stage: Stage, channel: str, language: str | None = None) -> NoticeContext:
    """A made-up notice for checking templates: two libraries, a triggered and an older loan."""
    as_of = dt.date(2026, 11, 23)
    codes = list(policy.libraries)
    own, other = codes[0], codes[-1]
    patron = Patron("P-SAMPLE", barcode="0000000", first_name="Camille", last_name="Exemple",
                    email="camille.exemple@example.org", preferred_language=language or policy.language,
                    address_line1="1 rue de l'Exemple", postal_code="33000", city="Bordeaux", country="France")
    due = as_of - dt.timedelta(days=stage.offset_days)
    triggered = Loan("L-1", patron.patron_id, own, due, "B0001", "Titre d'exemple")
    older = Loan("L-2", patron.patron_id, other, as_of - dt.timedelta(days=40), "B0002", "Autre titre")
    library = own if channel == "letter" else None
    notice = Notice(f"{as_of}/{stage.id}/{channel}/{patron.patron_id}/{library or '-'}", as_of, stage.id,
                    channel, patron.patron_id, library, ("L-1",), patron.email, patron.email)
    return NoticeContext.build(policy, notice, patron, [triggered, older], as_of)


def _sample_letter(policy: Policy) -> Notice:
    """A made-up letter for a library's mailbox, for checking the mailbox email's templates."""
    code = next((c for c, lib in policy.libraries.items() if lib.letters.mailbox), next(iter(policy.libraries)))
    lib = policy.libraries[code]
    stage = policy.stages[-1]
    return Notice(f"2026-11-23/{stage.id}/letter/P-SAMPLE/{code}", dt.date(2026, 11, 23), stage.id, "letter",
                  "P-SAMPLE", code, ("L-1",), "Camille Exemple, 1 rue de l'Exemple, 33000 Bordeaux",
                  lib.letters.destination)
