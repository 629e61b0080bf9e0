"""The outbox folder's files under retention and erasure.

- ``expired``: the files of the dated folders (``email/<DATE>/``, ``letters/<LIBRARY>/<DATE>/``,
  ``sms/<DATE>/``, ``webhook/<DATE>/``)
  whose date is on or before a cut-off day: the purge of the messages deletes them with the
  database's copy. A folder is dated by its notices' date; a file whose delivery was retried a day
  later goes with the others of its notice's day.
- ``of_patron``: every file that holds one patron's messages: their notices' files (where the
  outbox writes them, and where the notice's row says it was written) and the emails addressed to
  them that no notice records (a requests report).

Only the outbox's own files are touched (.eml, .pdf, .txt and .json under the dated folders); ``remove``
deletes them and the dated folders left empty, and says which it could not delete.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from pathlib import Path

from adapters.channels.outbox import TEXT_SUFFIXES, email_file, letter_file, safe_name, text_file

__all__ = ["expired", "of_patron", "remove"]

SUFFIXES = (".eml", ".pdf", *TEXT_SUFFIXES.values())
HEADER_BYTES = 65536        # an email's headers are read from its first bytes


def _dated_folders(root: Path) -> Iterable[tuple[dt.date, Path]]:
    parents = [root / "email", *(root / kind for kind in TEXT_SUFFIXES)]
    letters = root / "letters"
    if letters.is_dir():
        parents += sorted(p for p in letters.iterdir() if p.is_dir())
    for parent in parents:
        if not parent.is_dir():
            continue
        for folder in sorted(parent.iterdir()):
            try:
                day = dt.date.fromisoformat(folder.name)
            except ValueError:
                continue           # not a folder the outbox dated
            if folder.is_dir():
                yield day, folder


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES)


def expired(root: Path, last_day: dt.date) -> list[Path]:
    """The outbox's files dated on or before ``last_day``; OSError when the outbox cannot be read
    (NotADirectoryError: ``root`` is a file)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    return [f for day, folder in _dated_folders(root) if day <= last_day for f in _files(folder)]


def of_patron(root: Path, notices: Iterable, email: str) -> list[Path]:
    """The files of these notices (each with key, date, library, reference) and the emails to ``email``."""
    root = Path(root)
    found: set[Path] = set()
    for n in notices:
        found.add(email_file(root, n.date, n.key))
        found.add(letter_file(root, n.library, n.date, n.key))
        found.update(text_file(root, n.date, n.key, kind) for kind in TEXT_SUFFIXES)
        if n.reference:       # where the notice's row says it was written, if it is one of its files
            where = Path(n.reference)
            if where.suffix in SUFFIXES and where.name.startswith(safe_name(n.key)):
                found.add(where)
    if email:
        for day, folder in _dated_folders(root):
            if folder.parent.name != "email":
                continue
            found.update(f for f in _files(folder) if _addressed_to(f, email))
    return sorted(p for p in found if p.is_file())


def _addressed_to(path: Path, email: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
    except OSError:
        return False
    headers = BytesHeaderParser(policy=default_policy).parsebytes(head)
    wanted = email.strip().lower()
    return any(addr.lower() == wanted for _, addr in getaddresses([str(v) for v in headers.get_all("To", [])]))


def remove(paths: Iterable[Path]) -> tuple[int, list[str]]:
    """Delete the files; (how many were deleted, "path: why" for each that could not be)."""
    done, problems, folders = 0, [], set()
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
            continue
        done += 1
        folders.add(path.parent)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()       # only when empty: a dated folder with nothing left
        except OSError:
            pass
    return done, problems
