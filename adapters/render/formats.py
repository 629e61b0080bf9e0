"""How values are written in a message: one-line headers, tidy text, dates, amounts and languages."""
from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from babel.dates import format_date as babel_date
from babel.numbers import format_currency, format_decimal

from engine.policy import Policy

__all__ = ["format_day", "format_money", "format_number", "midnight", "one_line", "pick_language", "tidy"]

# ISO 639-2 codes that library systems often export (MARC), and the codes templates use
_ISO639_2 = {"fre": "fr", "fra": "fr", "eng": "en", "spa": "es", "ger": "de", "deu": "de", "ita": "it",
             "por": "pt", "cat": "ca", "baq": "eu", "eus": "eu", "glg": "gl", "dut": "nl", "nld": "nl"}


def one_line(value: str) -> str:
    """Header-safe: no CR, LF or other line breaks, runs of white space made one space."""
    return " ".join(value.split())


def tidy(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def midnight(day: dt.date, policy: Policy) -> dt.datetime:
    """The start of ``day`` in the policy's time zone: the date a message carries."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=policy.tz)


def pick_language(preferred: str, policy: Policy) -> str:
    """The patron's language when the policy has templates for it ('fr', 'fr-CA', 'fre'…), else the default."""
    code = re.split(r"[-_@.\s]", (preferred or "").strip().lower(), maxsplit=1)[0]
    code = _ISO639_2.get(code, code)
    return code if code in policy.available_languages else policy.language


def format_day(value: dt.date, format: str = "long", *, language: str) -> str:   # noqa: A002 - Jinja's name
    """A date for the language: Babel's short, medium, long or full, or a CLDR pattern (dd/MM/y),
    in the language's typography: the first of the month is "1er" in French ("1er décembre 2026")."""
    if type(value) is dt.date and isinstance(format, str) and isinstance(language, str):
        return _format_date(value, format, language)      # a day's notices share a few dates: each written once
    return _format_day(value, format, language)


@lru_cache(maxsize=4096)
def _format_date(value: dt.date, format: str, language: str) -> str:   # noqa: A002
    return _format_day(value, format, language)


def _format_day(value: dt.date, format: str, language: str) -> str:   # noqa: A002
    text = babel_date(value, format=format, locale=language)
    if value.day == 1 and language.split("_")[0].split("-")[0] == "fr":
        text = _FRENCH_FIRST.sub("1er", text, count=1)
    return text


_FRENCH_FIRST = re.compile(r"(?<![\d/.\-])1(?= [^\d\s])")     # "1 décembre", not "01/12" nor "1 2026"


def format_money(value, currency: str | None = None, *, language: str, default: str = "EUR") -> str:
    """An amount for the language, e.g. 12,50 € (fr) or €12.50 (en); the policy's currency by default."""
    return format_currency(value, currency or default, locale=language)


def format_number(value, *, language: str) -> str:
    return format_decimal(value, locale=language)
