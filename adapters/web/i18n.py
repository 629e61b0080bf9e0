"""The staff interface in French, English and Spanish: the .po catalogs of adapters/web/locale/,
compiled in memory when the application starts (no build step), and the language of a request:
the one chosen with the switch (a cookie), else the browser's Accept-Language, else English."""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from babel import Locale, negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("fr", "en", "es")
DEFAULT = "en"
COOKIE = "rappel_lang"

__all__ = ["COOKIE", "LANGUAGES", "language_of", "translations"]


@lru_cache(maxsize=None)
def translations(lang: str) -> NullTranslations:
    """The catalog of ``lang`` compiled from its .po file (English: the messages as written)."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if lang not in LANGUAGES or not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def language_of(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    wanted = []
    for part in (accept_language or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        if tag and tag != "*":
            wanted.append((weight, tag.replace("-", "_")))
    ordered = [tag for _, tag in sorted(wanted, key=lambda x: -x[0])]
    return negotiate_locale(ordered, LANGUAGES, sep="_") or \
        next((t.split("_")[0] for t in ordered if t.split("_")[0] in LANGUAGES), DEFAULT)


def language_name(lang: str) -> str:
    return Locale.parse(lang).get_display_name(lang).capitalize()


def load_all() -> None:
    """Compile every catalog now (at start-up): a broken .po fails the start, not a request."""
    for lang in LANGUAGES:
        translations(lang)
