"""The names a letter's templates meet, without the PDF library: what a notice's variables and
``rappel lint`` need of letters (adapters/render/letter.py, which imports fpdf2, is loaded only
when a letter is drawn)."""
from __future__ import annotations

__all__ = ["LETTER_TABLE", "LETTER_WORDING"]

LETTER_TABLE = "[[rappel:table]]"   # value of {{ letter_table }} in a letter; replaced by the table
LETTER_WORDING = "_letter.j2"       # the letter's fixed wording (date line, subject line, headings…)
