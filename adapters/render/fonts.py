"""The letters' font: a Unicode TrueType font, so French and Spanish text comes out exactly.

DejaVu Sans from ``$RAPPEL_FONT_DIR`` when set, else Noto Sans from the pymupdf-fonts package (a
dependency: the same font on every machine), else DejaVu Sans installed on the system. Without
any, ``Templates.lint()`` reports it and a letter is never made with a font that would change its
words (``MissingFont``).
"""
from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["FONT_DIRS", "NO_FONT", "MissingFont", "find_font", "font_problem", "packaged_font"]

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
            # the file opened here: fontTools leaves it open when it cannot parse it
            with open(path, "rb") as handle, TTFont(handle, lazy=True) as face:
                cmap = face.getBestCmap() or {}
        except (OSError, TTLibError, AssertionError, KeyError) as exc:
            return path, f"the letters' font cannot be read: {exc}"
        missing = "".join(c for c in FONT_SAMPLE if ord(c) not in cmap)
        if missing:
            shown = ", ".join(f"U+{ord(c):04X} {c.strip() or '(space)'}" for c in missing)
            return path, f"the letters' font ({'bold' if style else 'regular'}) has no {shown}"
    return None
