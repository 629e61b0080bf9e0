"""How many SMS segments a text takes (3GPP TS 23.038): what ``rappel lint`` measures for ``<stage>.sms.j2``.

A text written only in the GSM 7-bit alphabet takes 160 characters in one segment, 153 in each
of several (the rest carries the concatenation header); the characters of its extension table
(``^ { } \\ [ ~ ] | €``) count twice. One character outside it (œ, ’, a curly quote, an emoji)
sends the whole text in UCS-2: 70 in one segment, 67 in each of several (a character beyond the
BMP counts twice).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Segments", "segments"]

GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Segments:
    count: int          # segments the text takes
    encoding: str       # "GSM-7" or "UCS-2"
    units: int          # its length in that encoding's units (septets, or UTF-16 code units)
    outside: str = ""   # for UCS-2: the first character outside GSM-7

    def describe(self) -> str:
        why = f" ({self.outside!r} is outside GSM-7)" if self.outside else ""
        return f"{self.units} {self.encoding} characters{why}: {self.count} segment{'s' if self.count != 1 else ''}"


def segments(text: str) -> Segments:
    """The segments ``text`` takes as one SMS."""
    outside = next((c for c in text if c not in GSM7 and c not in GSM7_EXTENSION), "")
    if not outside:
        units = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
        return Segments(_count(units, 160, 153), "GSM-7", units)
    units = len(text.encode("utf-16-le")) // 2
    return Segments(_count(units, 70, 67), "UCS-2", units, outside)


def _count(units: int, single: int, each: int) -> int:
    if units <= single:
        return 1 if units else 0
    return -(-units // each)
