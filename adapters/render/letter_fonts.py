"""The letters' font, parsed once a process and embedded from a cache (fpdf2).

fpdf2 parses a TrueType font for every document (``add_font``: about 18 ms a face) and, when the PDF
is written, subsets it with fontTools to the glyphs the document used (about 20 ms a face): 75 ms of
the 90 ms a letter took. Here:

- each face is parsed once a process (``shared_font``): a document gets a shallow copy of it with a
  subset map of its own (``SubsetMap``), the parsed tables being only read while a page is laid out;
- every document's subset starts with the same characters in the same order, ``REPERTOIRE`` (the
  Latin letters French, Spanish and most European names need, and the typographer's punctuation),
  so that the subsets of two letters that use nothing else are the same, and the font program
  embedded (and its widths, its ToUnicode map, its CIDToGIDMap) is computed once and reused
  (``LetterOutput``). A letter that uses a character outside it (a name in Greek letters) gets a
  subset of its own, computed as fpdf2 does, from a fresh copy of the font, and cached as well.

The PDF objects are those fpdf2 writes (same dictionaries, same order): tests/test_letters.py
compares a letter made here with the same letter made by fpdf2 alone, byte for byte.
"""
from __future__ import annotations

import copy
import threading
import zlib
from collections import OrderedDict
from io import BytesIO
from pathlib import Path

from fontTools import subset as ftsubset
from fontTools import ttLib
from fpdf import FPDF
from fpdf.fonts import SubsetMap, TTFFont
from fpdf.output import LOGGER, CIDSystemInfo, OutputProducer, PDFFont, _tt_font_widths
from fpdf.syntax import Name, PDFArray, PDFContentStream

__all__ = ["REPERTOIRE", "LetterOutput", "shared_font"]

REPERTOIRE = "".join(
    [chr(c) for c in range(0x21, 0x7F)]              # ASCII
    + [chr(c) for c in range(0xA0, 0x100)]           # Latin-1: French and Spanish letters, « », ¿ ¡, nbsp
    + list("ŒœŸŠšŽžŁłŃńŚśŹźŻżĆćČčĘęĄąŘřĚěŮůŐőŰűĞğŞşİıĀāĒēĪīŌōŪū")   # and the names' (Latin Extended-A)
    + list("‘’‚“”„–—…•‹›€™\u2009\u202f"))                   # the typographer's punctuation
CACHED_WIDTHS = 20_000        # texts whose width a face keeps (~2 MB; cleared when full)
CACHED_SUBSETS = 64            # distinct subsets kept a process (one in practice; more with odd names)

_lock = threading.RLock()
_prototypes: dict[tuple[str, str], tuple[TTFFont, list[int]]] = {}
_subsets: OrderedDict[tuple, tuple] = OrderedDict()
_units: dict[tuple, dict[str, int]] = {}


def shared_font(pdf: FPDF, family: str, style: str, path: Path) -> None:
    """Add the face ``path`` to ``pdf`` as ``family``/``style``, parsed once a process; its subset
    starts with the REPERTOIRE's characters that the font has."""
    stat = path.stat()        # a font file replaced (a package upgrade) is parsed again
    key = (str(path), style, stat.st_mtime_ns, stat.st_size)
    with _lock:
        if key not in _prototypes:
            scratch = FPDF()
            scratch.add_font(family, style, str(path))
            parsed = scratch.fonts[f"{family.lower()}{style}"]
            seeded = SubsetMap(parsed)
            for code in [ord(c) for c in REPERTOIRE if ord(c) in parsed.cmap]:
                seeded.pick(code)
            _prototypes[key] = (parsed, (dict(seeded._char_id_per_glyph), seeded._next, list(seeded._reserved)))
            SubsetMap.pick.cache_clear()
            SubsetMap.get_glyph.cache_clear()
        proto, seed = _prototypes[key]
    font = _SharedFace.__new__(_SharedFace)
    for name in _SLOTS:
        if hasattr(proto, name):
            setattr(font, name, getattr(proto, name))
    font.source = key
    font.units = _units.setdefault(key, {})
    font.i = len(pdf.fonts) + 1
    font.fontkey = f"{family.lower()}{style}"
    font.biggest_size_pt = 0
    font.missing_glyphs = []
    font.desc = copy.copy(proto.desc)       # the output names it and numbers it: one per document
    font.subset = _seeded(font, *seed)
    pdf.fonts[font.fontkey] = font


def _seeded(font: TTFFont, ids: dict, following: int, reserved: list[int]) -> SubsetMap:
    """A subset map as SubsetMap(font) with the REPERTOIRE picked in order: the state that picking
    leaves, copied (not 250 picks a face and a letter)."""
    subset = SubsetMap.__new__(SubsetMap)
    subset.font = font
    subset._char_id_per_glyph = dict(ids)
    subset._next = following
    subset._reserved = list(reserved)
    return subset


class _SharedFace(TTFFont):
    """A document's copy of a face parsed once: the parsed tables shared, its subset its own."""

    __slots__ = ("source", "units")   # (font file, style, its mtime and size): the key of the parsed face;
    #                                   a text's width in font units, shared by the face's copies

    def get_text_width(self, text: str, font_size_pt: float, text_shaping_params) -> tuple[int, float]:
        """fpdf2's (TTFFont.get_text_width), the sum of the characters' widths kept a process: fpdf2
        breaks a line character by character, asking the width of every prefix of it (most of a
        letter's layout), and a day's letters share their fixed wording. The sum is of integers: the
        same number as fpdf2's, however it is added up."""
        if text_shaping_params or self.is_symbol:
            return super().get_text_width(text, font_size_pt, text_shaping_params)
        if font_size_pt > self.biggest_size_pt:
            self.biggest_size_pt = font_size_pt
        units = self.units
        total = units.get(text)
        if total is None:
            cw = self.cw
            before = units.get(text[:-1]) if len(text) > 1 else None
            total = before + cw[ord(text[-1])] if before is not None else sum(cw[ord(c)] for c in text)
            if len(units) >= CACHED_WIDTHS:
                units.clear()
            units[text] = total
        return len(text), total * font_size_pt * 0.001


_SLOTS = [name for cls in TTFFont.__mro__ for name in getattr(cls, "__slots__", ())]


class _Packed(PDFContentStream):
    """A stream given already compressed (the same object fpdf2 writes with compress=True)."""

    def __init__(self, packed: bytes, length1: int | None = None):
        super().__init__(b"")
        self._contents = packed
        self.filter = Name("FlateDecode")
        self.length = len(packed)
        if length1 is not None:
            self.length1 = length1


class LetterOutput(OutputProducer):
    """fpdf2's output, the shared fonts embedded from the cache (the other fonts as fpdf2 does)."""

    def _add_fonts(self, image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name):
        fonts = sorted(self.fpdf.fonts.values(), key=lambda f: f.i)
        if not fonts or self.fpdf._compliance or not all(isinstance(f, _SharedFace) for f in fonts):
            if any(isinstance(f, _SharedFace) for f in fonts):
                raise RuntimeError("a shared letter font among other fonts, or in a PDF/A document")
            return super()._add_fonts(image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name)
        out = {}
        for font in fonts:
            fontname = f"MPDFAA+{font.name}"
            if font.missing_glyphs:      # as fpdf2 says it (the letter is still made, as fpdf2 makes it)
                LOGGER.warning("Font %s is missing the following glyphs: %s", fontname,
                               ", ".join(f"'{chr(x)}' ({chr(x).encode('unicode-escape').decode()})"
                                         for x in font.missing_glyphs[:10]))
            program, length1, widths, to_unicode, cid_to_gid = _embedded(font)
            composite = PDFFont(subtype="Type0", base_font=fontname, encoding="Identity-H")
            self._add_pdf_obj(composite, "fonts")
            out[font.i] = composite
            cid_font = PDFFont(subtype="CIDFontType2", base_font=fontname, d_w=font.desc.missing_width, w=widths)
            self._add_pdf_obj(cid_font, "fonts")
            composite.descendant_fonts = PDFArray([cid_font])
            to_unicode_obj = PDFContentStream(to_unicode)
            self._add_pdf_obj(to_unicode_obj, "fonts")
            composite.to_unicode = to_unicode_obj
            info = CIDSystemInfo()
            self._add_pdf_obj(info, "fonts")
            cid_font.c_i_d_system_info = info
            descriptor = font.desc
            descriptor.font_name = Name(fontname)
            self._add_pdf_obj(descriptor, "fonts")
            cid_font.font_descriptor = descriptor
            gid_map = _Packed(cid_to_gid)
            self._add_pdf_obj(gid_map, "fonts")
            cid_font.c_i_d_to_g_i_d_map = gid_map
            stream = _Packed(program, length1)
            self._add_pdf_obj(stream, "fonts")
            descriptor.font_file2 = stream
            font.subset.pick.cache_clear()
            font.subset.get_glyph.cache_clear()
        return out


def _embedded(font: TTFFont) -> tuple[bytes, int, str, bytes, bytes]:
    """The font program (compressed) and its raw length, the widths, the ToUnicode map and the
    CIDToGIDMap (compressed) of this document's subset: from the cache, else as fpdf2 computes them."""
    items = tuple((glyph, code) for glyph, code in font.subset.items() if glyph is not None)
    key = (font.source, items)
    with _lock:
        hit = _subsets.get(key)
        if hit is not None:
            _subsets.move_to_end(key)
            return hit
        path = font.source[0]
        face = ttLib.TTFont(path, recalcTimestamp=False, lazy=True)      # a fresh copy: subsetting changes it
        try:
            options = ftsubset.Options(notdef_outline=True, recommended_glyphs=True)
            options.drop_tables += ["FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx", "meta", "sbix", "CBDT", "CBLC",
                                    "EBDT", "EBLC", "EBSC", "SVG ", "CPAL", "COLR"]
            subsetter = ftsubset.Subsetter(options)
            subsetter.populate(glyphs=[glyph.glyph_name for glyph, _ in items])
            subsetter.subset(face)
            code_to_glyph = {code: face.getGlyphID(glyph.glyph_name) for glyph, code in items}
            buffer = BytesIO()
            face.save(buffer)
            raw = buffer.getvalue()
        finally:
            face.close()
        lines = []
        for glyph, code in items:
            if isinstance(glyph.unicode, tuple) and glyph.unicode:
                lines.append(f'<{code:04X}> <{"".join(_utf16(c) for c in glyph.unicode)}>\n')
        to_unicode = ("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo\n"
                      "<</Registry (Adobe)\n/Ordering (UCS)\n/Supplement 0\n>> def\n"
                      "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n1 begincodespacerange\n"
                      "<0000> <FFFF>\nendcodespacerange\n"
                      f"{_cmap_blocks(lines, 'bfchar')}"
                      "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend").encode("latin-1")
        gid = bytearray(256 * 256 * 2)
        for code, glyph_id in code_to_glyph.items():
            gid[code * 2] = glyph_id >> 8
            gid[code * 2 + 1] = glyph_id & 0xFF
        level = PDFContentStream._COMPRESSION_LEVEL
        hit = (zlib.compress(raw, level=level), len(raw), _tt_font_widths(font), to_unicode,
               zlib.compress(bytes(gid), level=level))
        _subsets[key] = hit
        while len(_subsets) > CACHED_SUBSETS:
            _subsets.popitem(last=False)
        return hit


def _utf16(code: int) -> str:
    if code > 0xFFFF:
        return f"{0xD800 | (code - 0x10000) >> 10:04X}{0xDC00 | (code & 0x3FF):04X}"
    return f"{code:04X}"


def _cmap_blocks(lines: list[str], kind: str) -> str:
    from fpdf.output import _build_cmap_blocks
    return _build_cmap_blocks(lines, kind)
