"""One function run in a forked copy of this process while this one works on: its result (or its
exception) comes back pickled through a pipe when asked for.

Used where two independent pieces of work can share the machine's cores (the templates' lint of a
dry run beside its planning). A fork copies the process as it stands, so nothing is re-imported or
re-read; where there is no fork, or other threads run (a fork copies only the calling thread, and a
lock another one held would stay held in the child), the function runs here at once instead.
"""
from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["alongside"]

T = TypeVar("T")


def alongside(work: Callable[[], T]) -> Callable[[], T]:
    """``work`` started in a forked child; the function returned waits for it and gives its result,
    or raises what it raised (a RuntimeError naming it when that does not pickle)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        try:
            done = ("ok", work())
        except Exception as exc:  # noqa: BLE001 - handed back to the caller, as the child's would be
            done = ("raised", exc)
        return lambda: _unpack(done)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                               # the child: work, answer, leave without cleaning up the parent's
        os.close(read)
        try:
            try:
                payload = pickle.dumps(("ok", work()))
            except Exception as exc:  # noqa: BLE001
                try:
                    payload = pickle.dumps(("raised", exc))
                except Exception:  # noqa: BLE001 - an exception that does not pickle: its words
                    payload = pickle.dumps(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))
            with os.fdopen(write, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)
    os.close(write)
    answer: list = []

    def wait() -> T:
        if not answer:
            with os.fdopen(read, "rb") as source:
                data = source.read()
            _, status = os.waitpid(pid, 0)
            if not data:
                raise RuntimeError(f"the forked process gave no answer (wait status {status})")
            answer.append(pickle.loads(data))
        return _unpack(answer[0])
    return wait


def _unpack(done: tuple):
    kind, value = done
    if kind == "raised":
        raise value
    return value
