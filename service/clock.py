"""Where the daemon gets the time: the command line gives it the system clock; tests and
simulations give it one whose time they set (``FileClock``: the time read from a file)."""
from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Protocol

__all__ = ["Clock", "FileClock"]


class Clock(Protocol):
    """Where the daemon gets the time. ``wait`` returns when the clock reaches ``until``, when
    ``stop`` is set, or after ``limit`` real seconds, whichever comes first."""

    def now(self) -> dt.datetime: ...

    def wait(self, until: dt.datetime | None, stop: threading.Event, limit: float) -> None: ...


class FileClock:
    """Time read from a file holding an ISO 8601 timestamp with its offset: a process whose time
    is supplied (simulations, tests), not slept."""

    def __init__(self, path: Path, poll: float = 0.02):
        self.path = Path(path)
        self.poll = poll

    def now(self) -> dt.datetime:
        for _ in range(50):       # the writer replaces the file: read again if caught in between
            try:
                text = self.path.read_text(encoding="utf-8").strip()
                if text:
                    value = dt.datetime.fromisoformat(text)
                    if value.tzinfo is None:
                        raise ValueError(f"{self.path}: the time needs its UTC offset: {text!r}")
                    return value
            except FileNotFoundError:
                pass
            time.sleep(self.poll)
        raise RuntimeError(f"no time in {self.path}")

    def wait(self, until: dt.datetime | None, stop: threading.Event, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not stop.is_set() and time.monotonic() < deadline:
            if until is not None and self.now() >= until:
                return
            stop.wait(self.poll)


# --- the daemon ----------------------------------------------------------------------------------
