"""The default channel: messages written to a local outbox folder, nothing to configure.

    <root>/email/<YYYY-MM-DD>/<name>.eml               one RFC 5322 message per email notice
    <root>/letters/<LIBRARY>/<YYYY-MM-DD>/<name>.pdf   one PDF per letter, by library
    <root>/sms/<YYYY-MM-DD>/<name>.txt                 one text per SMS notice (UTF-8)
    <root>/webhook/<YYYY-MM-DD>/<name>.json            one JSON document per webhook notice

``<name>`` comes from the notice key, so sending the same notice again overwrites the same file.
Files are written to a temporary file beside the target and renamed over it: a crash leaves
the old file or the new one, never half of one.

A delivery's file is not forced to disk one message at a time (an fsync of the file and of its
folder cost 8 ms a message, 80 % of a run to the outbox): the rename is atomic, and the written
file is in the kernel's cache before the outcome is committed, so a crash of rappel (the failure
delivery guards against: each outcome committed before the next message) never loses it. A power
cut can lose the last seconds of files, as it can the last commits of SQLite in WAL mode with
synchronous=NORMAL; the message's bytes are kept in the database with its outcome
(adapters/store/sent.py), so a lost file can be written again from there (`rappel letters`, the
notice's page). The files are flushed to disk when the channel is closed, at the end of a pass.
Other writers (a staff resend, a preview, `rappel letters`) keep ``write_atomic``'s fsync.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import threading
from email.message import EmailMessage
from pathlib import Path

from adapters.channels.base import BaseChannel, Check, Delivery
from adapters.render import wire_bytes
from engine.decide import Notice

__all__ = ["OutboxChannel", "email_file", "letter_file", "safe_name", "text_file"]

FILE_MODE = 0o640   # letters and emails carry patrons' personal data
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def safe_name(key: str) -> str:
    """A file name for a notice key: readable, portable, and distinct for distinct keys."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", key).strip("._-")[:80] or "notice"
    return f"{slug}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:10]}"


def email_file(root: Path, date: dt.date, key: str) -> Path:
    """Where the outbox keeps the email of the notice ``key`` of ``date``."""
    return Path(root) / "email" / date.isoformat() / f"{safe_name(key)}.eml"


def text_file(root: Path, date: dt.date, key: str, kind: str = "sms") -> Path:
    """Where the outbox keeps an SMS (``kind`` "sms") or a webhook's document ("webhook") of ``key``."""
    return Path(root) / kind / date.isoformat() / f"{safe_name(key)}{TEXT_SUFFIXES[kind]}"


TEXT_SUFFIXES = {"sms": ".txt", "webhook": ".json"}


def letter_file(root: Path, library: str | None, date: dt.date, key: str) -> Path:
    """Where the outbox keeps the letter of the notice ``key`` of ``date`` for ``library``."""
    library = library or "_none"
    if not _PLAIN.match(library):   # a code that is no plain folder name gets a safe one
        library = safe_name(library)
    return Path(root) / "letters" / library / date.isoformat() / f"{safe_name(key)}.pdf"


class OutboxChannel(BaseChannel):
    name = "outbox"
    local = True       # nothing leaves the machine: the flood guard does not count these
    carries = ("email", "letter", "text", "json")

    def __init__(self, root: Path):
        self.root = Path(root)
        self._unflushed = False        # files written since the last flush to disk (close)
        self._folders: set[Path] = set()   # the dated folders made by this channel

    @property
    def description(self) -> str:
        return f"outbox ({self.root}/)"

    def destination(self, notice: Notice) -> str:
        """``outbox:<folder>/``: what the run's table shows, and what a delivery here records."""
        return f"outbox:{self.root}/"

    def email_path(self, notice: Notice) -> Path:
        return email_file(self.root, notice.date, notice.key)

    def letter_path(self, notice: Notice) -> Path:
        return letter_file(self.root, notice.library, notice.date, notice.key)

    def send_email(self, notice: Notice, message: EmailMessage) -> Delivery:
        return self._write(self.email_path(notice), lambda: wire_bytes(message))

    def send_letter(self, notice: Notice, pdf: bytes, filename: str) -> Delivery:
        """Write the PDF; ``filename`` is for attachments, the outbox names files by notice key."""
        return self._write(self.letter_path(notice), lambda: pdf)

    def text_path(self, notice: Notice, kind: str = "sms") -> Path:
        return text_file(self.root, notice.date, notice.key, kind)

    def send_text(self, notice: Notice, text: str) -> Delivery:
        return self._write(self.text_path(notice), lambda: text.encode("utf-8"))

    def send_json(self, notice: Notice, body: dict) -> Delivery:
        return self._write(self.text_path(notice, "webhook"),
                           lambda: json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8"))

    def _write(self, path: Path, data) -> Delivery:
        try:
            self._unflushed = True
            write_atomic(path, data(), durable=False, folders=self._folders)   # flushed at close (module's doc)
        except OSError as exc:
            return Delivery.failed(f"cannot write {path}: {exc.strerror or exc}", reference=str(path))
        return Delivery.sent(str(path), "written to the outbox", destination=f"outbox:{self.root}/")

    def close(self) -> None:
        """The pass is over: what it wrote is flushed to disk (once, rather than once a message)."""
        if self._unflushed and hasattr(os, "sync"):
            self._unflushed = False
            os.sync()

    def checks(self) -> list[Check]:
        folder = self.root
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        ok = folder.is_dir() and os.access(folder, os.W_OK)
        return [Check(f"outbox {self.root}", ok, "writable" if ok else f"{folder} is not a writable folder")]


def write_atomic(path: Path, data: bytes, *, durable: bool = True, folders: set | None = None) -> None:
    """``data`` as the file ``path`` (a temporary file renamed over it); ``durable``: forced to disk
    (the file and its folder) before returning. ``folders``: the folders this writer made already
    (not asked again for every file of a day)."""
    if folders is None or path.parent not in folders:
        path.parent.mkdir(parents=True, exist_ok=True)
        if folders is not None:
            folders.add(path.parent)
    # the temporary file is this writer's own (process and thread): no random name to find, half
    # the cost of mkstemp's; a leftover of a crash is truncated and reused, a link planted there refused
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, FILE_MODE)
    except FileNotFoundError:
        if folders is None:
            raise
        path.parent.mkdir(parents=True, exist_ok=True)     # removed since it was made (a purge)
        fd = os.open(tmp, flags, FILE_MODE)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, FILE_MODE)      # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
