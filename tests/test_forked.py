"""adapters/forked.py: work run in a forked copy of the process, its answer handed back when asked."""
from __future__ import annotations

import os
import threading

import pytest

from adapters import forked
from adapters.forked import alongside


@pytest.fixture
def alone(monkeypatch):
    """As if this thread were the process's only one (a test before may have left one running, e.g. a
    server's): the work is forked, as in `rappel run --dry-run`."""
    monkeypatch.setattr(forked.threading, "active_count", lambda: 1)


def test_the_result_comes_back_from_another_process(alone):
    waited = alongside(lambda: (os.getpid(), [1, 2, 3]))
    pid, value = waited()
    assert value == [1, 2, 3] and pid != os.getpid()
    assert waited() == (pid, value)           # asked again: the same answer, no second wait


def test_what_the_work_raises_is_raised_where_it_is_asked_for(alone):
    def broken():
        raise ValueError("line 3: no such field")
    waited = alongside(broken)
    with pytest.raises(ValueError, match="line 3: no such field"):
        waited()


def test_an_exception_that_does_not_pickle_comes_back_in_words(alone):
    class Local(Exception):      # a class pickle cannot find by name
        pass

    def broken():
        raise Local("the disk is full")
    with pytest.raises(RuntimeError, match="Local: the disk is full"):
        alongside(broken)()


def test_with_other_threads_running_the_work_runs_here_at_once():
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        waited = alongside(os.getpid)
        assert waited() == os.getpid()       # a fork would copy only this thread: not forked
    finally:
        stop.set()
        other.join()
