"""The PDF letter of one notice (fpdf2): an A4 page for a windowed envelope.

The body is the stage's ``.txt.j2`` rendered for a letter; the table of documents is drawn where
the body has a line ``{{ letter_table }}`` (its value is ``LETTER_TABLE``), at the end if none.
The fixed wording (date line, subject line, table headings, page word) comes from ``_letter.j2``.
"""
from __future__ import annotations

import datetime as dt
import re
from functools import partial
from pathlib import Path

from fpdf import FPDF, FontFace
from fpdf.line_break import BREAKING_SPACE_SYMBOLS_STR, NBSP, SOFT_HYPHEN
from fpdf.util import FloatTolerance

from adapters.render.formats import one_line
from adapters.render.letter_fonts import LetterOutput, shared_font
from adapters.render.letter_names import LETTER_TABLE, LETTER_WORDING

__all__ = ["LETTER_TABLE", "LETTER_WORDING", "Letter"]

_SPECIAL = re.compile("[" + re.escape(BREAKING_SPACE_SYMBOLS_STR.replace(" ", "") + SOFT_HYPHEN + NBSP + "\n\r") + "]")


class Letter(FPDF):
    """An A4 letter for a windowed envelope (window on the right, 110 mm from the left edge)."""

    WINDOW_X, WINDOW_Y, WINDOW_W = 110, 48, 85

    def __init__(self, font: dict[str, Path], *, shared: bool = True):
        """``shared``: the faces parsed once a process and embedded from a cache
        (adapters/render/letter_fonts.py); False: by fpdf2 alone, for every letter."""
        super().__init__(orientation="P", unit="mm", format="A4")
        self.footer_text = ""
        self.font_name = "Letter"
        self.shared = shared
        for style, path in font.items():
            if shared:
                shared_font(self, self.font_name, style, Path(path))
            else:
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
        self.cell(self.WINDOW_W, 5, self.text_of(one_line(wording["date_line"])), new_x="LMARGIN", new_y="NEXT")
        self.set_y(110)
        self.set_font(self.font_name, "B", 11)
        self._paragraph(5.5, self.text_of(one_line(subject)))
        self.ln(4)
        # body, with the table where the template asks for it
        self.set_font(self.font_name, "", 10)
        placed = False
        for line in body.splitlines():
            if line.strip() == LETTER_TABLE:
                self._table(v["library_loans"], v["combined"])
                placed = True
            elif line.strip():
                self._paragraph(5, self.text_of(line))
            else:
                self.ln(3)
        if not placed:
            self.ln(3)
            self._table(v["library_loans"], v["combined"])
        return bytes(self.output(output_producer_class=LetterOutput) if self.shared else self.output())

    FAST_BREAKS = True      # False: every paragraph through multi_cell (tests compare both)

    def _paragraph(self, h: float, text: str) -> None:
        """``multi_cell(0, h, text, align="L", new_x="LMARGIN", new_y="NEXT")``: a paragraph from the
        left margin. fpdf2 breaks it character by character (most of a letter's time); a paragraph
        of plain words is broken here by words where fpdf2 would break it (at the last space that
        keeps the line within the width) and each line drawn with ``cell``; anything else (a word
        wider than the line, a hyphen where a line breaks, tabs, other spaces) goes to multi_cell."""
        lines = self._lines(text) if self.FAST_BREAKS else None
        if lines is None:
            self.multi_cell(0, h, text, align="L", new_x="LMARGIN", new_y="NEXT")
            return
        for line in lines:
            self.cell(0, h, line, align="L", new_x="LMARGIN", new_y="NEXT")

    def _lines(self, text: str) -> list[str] | None:
        if not text or text[0] == " " or text[-1] == " " or "  " in text or _SPECIAL.search(text):
            return None
        room = self.w - self.r_margin - self.x - 2 * self.c_margin
        width = self.get_string_width
        if (self.is_ttf_font and not self.text_shaping and not self._fallback_font_ids and self.char_spacing == 0
                and self.font_stretching == 100 and self.str_alias_nb_pages not in text):
            # get_string_width's number for one fragment of one font, without building the fragment
            font, size, k = self.current_font, self.font_size_pt, self.k
            width = lambda words: font.get_text_width(words, size, None)[1] / k  # noqa: E731
        words = text.split(" ")
        if FloatTolerance.greater_than(width(words[0]), room):
            return None
        lines, line = [], words[0]
        for word in words[1:]:
            longer = f"{line} {word}"
            if not FloatTolerance.greater_than(width(longer), room):
                line = longer
                continue
            if "-" in word or FloatTolerance.greater_than(width(word), room):
                return None          # fpdf2 would break inside the word
            lines.append(line)
            line = word
        lines.append(line)
        return lines

    def _table(self, loans: list[dict], combined: bool = False):
        """The documents; a letter that combines stages has a 5th column: each loan's stage."""
        self.set_font(self.font_name, "", 9)
        head = FontFace(emphasis="BOLD", fill_color=(230, 230, 230))
        widths, align = (82, 34, 26, 28), ("LEFT", "LEFT", "CENTER", "RIGHT")
        if combined:
            widths, align = (62, 30, 24, 30, 24), ("LEFT", "LEFT", "CENTER", "LEFT", "RIGHT")
        with self.table(col_widths=widths, text_align=align, line_height=5, headings_style=head,
                        padding=1) as table:
            columns = list(self.wording["columns"])
            if combined:
                columns.insert(3, self.wording.get("stage_column") or "")
            table.row([self.text_of(str(h)) for h in columns])
            when = partial(self.wording["format_date"], format=self.wording["table_date"])
            for loan in loans:
                days = str(loan["days_overdue"]) if loan["days_overdue"] else str(self.wording["no_due"])
                cells = [loan["title"], loan["item_barcode"], when(loan["due_date"]), days]
                if combined:
                    cells.insert(3, loan["stage_label"] or str(self.wording["no_due"]))
                table.row([self.text_of(cell) for cell in cells])
        self.set_font(self.font_name, "", 10)
        self.ln(2)
