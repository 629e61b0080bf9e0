"""Patrons' phone numbers: checked and written one way, E.164 (+33612345678), for their country.

A number written with its country code (+33 6 12 34 56 78, 0033…) is read as it is; one written
the national way (06 12 34 56 78) is read in the patron's ``country`` (an ISO 3166 code, FR, or
its name in English, French, Spanish or German: France, Espagne), else in the policy's
``sms.country``. What the ``phonenumbers`` library does not take as a possible number for that
country is refused with the number and the country, at the import's row or the edit's field;
what is stored is its E.164 form, the one the ``sms`` channel hands to a provider.

Pure: the library's metadata and Babel's territory names are data, no I/O of rappel's own.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import phonenumbers

__all__ = ["PhoneProblem", "is_e164", "normalise", "region_of"]

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_NAME_LANGUAGES = ("en", "fr", "es", "de")


class PhoneProblem(ValueError):
    """A phone number that cannot be read as one for its country; the message says which and why."""


def is_e164(value: str | None) -> bool:
    """True when ``value`` is written as E.164 (what an import or an edit stores): + and 7 to 15 digits."""
    return bool(value) and _E164.fullmatch(value) is not None


# codes in common use that are not ISO 3166's: UK (reserved for the United Kingdom, GB), EL (Greece
# in the European Union's usage, GR)
_ALIASES = {"UK": "GB", "EL": "GR"}


def _numbers():
    """The phonenumbers library, imported when a number is read (40 ms: not for every command)."""
    import phonenumbers
    return phonenumbers


@lru_cache(maxsize=1)
def _regions_by_name() -> dict[str, str]:
    from babel import Locale
    names: dict[str, str] = {}
    supported = _numbers().SUPPORTED_REGIONS
    for language in _NAME_LANGUAGES:
        for code, name in Locale.parse(language).territories.items():
            if code in supported:
                names.setdefault(name.casefold(), code)
    return names


def region_of(country: str | None) -> str | None:
    """The ISO 3166 region of a patron's ``country`` (FR, "France", "Espagne"), or None when it is
    none rappel knows (or empty)."""
    text = (country or "").strip()
    if not text:
        return None
    text = _ALIASES.get(text.upper(), text)
    if len(text) == 2 and text.upper() in _numbers().SUPPORTED_REGIONS:
        return text.upper()
    return _regions_by_name().get(text.casefold())


def normalise(number: str, country: str | None = None, default: str | None = None) -> str:
    """``number`` in E.164, read in ``country`` (the patron's) or else ``default`` (sms.country) when it
    is written without its country code; "" for an empty one. Raises PhoneProblem saying why."""
    text = (number or "").strip()
    if not text:
        return ""
    region, named = region_of(country), (country or "").strip()
    international = text.startswith(("+", "00"))
    if named and region is None and not international:
        raise PhoneProblem(f"phone {text!r}: country {named!r} is not one rappel knows (an ISO 3166 code, FR, or "
                           f"its name); write the number with its country code (+33 …)")
    where = f"in {named}" if region else ""
    if region is None:
        region = region_of(default) if default else None
        where = f"in {region} (sms.country)" if region and not international else ""
    if region is None and not international:
        raise PhoneProblem(f"phone {text!r}: no country to read it in (the patron's country, or sms.country in "
                           f"reminders.yaml); write it with its country code (+33 …)")
    if region is None and text.startswith("00"):
        text = "+" + text[2:]
    phonenumbers = _numbers()
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneProblem(f"phone {number.strip()!r} is not a phone number{' ' + where if where else ''}: "
                           f"{_why(exc)}") from None
    if not phonenumbers.is_valid_number(parsed):
        shown = where or f"in {phonenumbers.region_code_for_number(parsed) or 'any country'}"
        raise PhoneProblem(f"phone {number.strip()!r} is not a valid number {shown}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _why(exc: phonenumbers.NumberParseException) -> str:
    phonenumbers = _numbers()
    return {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "its country code is unknown",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "it is not a number",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, str(exc))
