"""The letters to print: those handed over on a day, per library, and one PDF of them all.

A site with printers configured has its letters printed already; one whose letters went to the
outbox (or that reprints a day's pile) wants them as one file. ``letters_to_print`` lists what the
database keeps (the very PDF each letter was handed over as); ``merged_letters_pdf`` puts them one
after another, in the order given (`rappel letters`, the staff interface's day page).

A letter's day is the day it was last handed to its channel (the message kept is the last one handed
over), in the time zone given: the policy's, for the callers that have it.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

from pypdf import PdfReader, PdfWriter
from pypdf.errors import PdfReadError

from adapters.store import letters as kept
from adapters.store.database import Store
from engine.yamlsource import InputError, Problem

__all__ = ["LetterRef", "letters_to_print", "merged_letters_pdf"]


@dataclass(frozen=True)
class LetterRef:
    key: str
    patron_id: str
    library: str | None
    status: str                    # the notice's: sent, failed, …
    stage: str
    date: dt.date                  # the notice's date (the day it was decided)
    destination: str               # printer:NAME, mailbox:ADDRESS, outbox:…
    filename: str
    size: int                      # bytes of the PDF
    handed_over_at: dt.datetime    # aware, in the time zone asked for
    pages: int | None = None       # counted when asked (it reads every PDF)

    def as_dict(self) -> dict:
        return {"key": self.key, "patron_id": self.patron_id, "library": self.library, "status": self.status,
                "stage": self.stage, "date": self.date.isoformat(), "destination": self.destination,
                "filename": self.filename, "size": self.size, "handed_over_at": self.handed_over_at.isoformat(),
                "pages": self.pages}


def _day_bounds(on: dt.date, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(on, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(on + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return start, end


def letters_to_print(store: Store, *, on: dt.date, library: str | None = None, tz: dt.tzinfo = dt.timezone.utc,
                     pages: bool = False) -> list[LetterRef]:
    """The letters handed over on ``on`` (a local day in ``tz``), of one library or all, by library
    then key; ``pages``: each with its number of pages."""
    start, end = _day_bounds(on, tz)
    rows = kept.handed_over(store, start, end, library)
    counts = {}
    if pages and rows:
        bodies = kept.letter_bodies(store, [r["key"] for r in rows])
        counts = {key: _pages(key, data) for key, data in bodies.items()}
    return [LetterRef(key=r["key"], patron_id=r["patron_id"], library=r["library"], status=r["status"],
                      stage=r["stage"], date=r["run_date"], destination=r["destination"], filename=r["filename"],
                      size=r["size"], handed_over_at=r["stored_at"].astimezone(tz), pages=counts.get(r["key"]))
            for r in rows]


def _reader(key: str, data: bytes) -> PdfReader:
    try:
        return PdfReader(io.BytesIO(data))
    except (PdfReadError, ValueError) as exc:
        raise InputError([Problem(key, None, "", f"the letter kept is not a readable PDF: {exc}")]) from None


def _pages(key: str, data: bytes) -> int:
    return len(_reader(key, data).pages)


def merged_letters_pdf(store: Store, keys: list[str]) -> bytes:
    """One PDF of the letters kept for these notices, in this order. A key without a kept letter is
    an InputError naming it (nothing is merged then)."""
    if not keys:
        raise InputError([Problem("letters", None, "", "no letter to merge")])
    bodies = kept.letter_bodies(store, keys)
    missing = [key for key in keys if key not in bodies]
    if missing:
        raise InputError([Problem(key, None, "", "no letter (PDF) is kept for this notice") for key in missing])
    writer = PdfWriter()
    for key in keys:
        writer.append(_reader(key, bodies[key]))
    out = io.BytesIO()
    writer.write(out)
    writer.close()
    return out.getvalue()
