"""Notices into messages: the email (text and HTML) and the PDF letter of one notice.

One module per role:

- ``templates``: ``Templates``, the sandboxed Jinja2 environment of a rules directory, per language;
- ``context``: ``NoticeContext`` and the variables templates see;
- ``lint``: the check of every template, in every language, before anything goes out;
- ``email``: MIME building, Message-ID, the bytes on the wire;
- ``letter``: the fpdf2 PDF letter;
- ``letter_fonts``: its faces parsed once a process, the embedded subset computed once (a cache);
- ``fonts``: the letters' Unicode font (``find_font``, ``packaged_font``, ``MissingFont``);
- ``formats``: dates, amounts and languages (Babel), one-line headers;
- ``report``: the email listing a patron's active requests.

Templates live in ``rules/templates/<language>/`` (fr, en, es shipped), three per stage:
``<name>.subject.j2``, ``<name>.txt.j2`` and ``<name>.html.j2`` (``name`` is the stage's
``template`` or its id). A template missing from the language folder is looked up in
``rules/templates/`` itself, so a one-language site may keep its files there. The language of a
notice is the patron's ``preferred_language`` when the policy has templates for it, else the
policy's ``language``; dates and amounts are formatted for it by Babel (``|date``, ``|money``).

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

The names below are re-exported so that ``from adapters.render import Templates`` keeps working;
new code may import from the module that defines a name.
"""
from __future__ import annotations

from adapters.render.context import NoticeContext
from adapters.render.email import WIRE_POLICY, is_address, message_id, serialize, wire_bytes
from adapters.render.fonts import FONT_DIRS, MissingFont, find_font, font_problem, packaged_font
from adapters.render.formats import format_day, format_money, format_number, pick_language
from adapters.render.letter_names import LETTER_TABLE
from adapters.render.templates import Templates

__all__ = ["FONT_DIRS", "LETTER_TABLE", "WIRE_POLICY", "MissingFont", "NoticeContext", "Templates", "find_font",
           "font_problem", "format_day", "format_money", "format_number", "is_address", "message_id",
           "packaged_font", "pick_language", "serialize", "wire_bytes"]
