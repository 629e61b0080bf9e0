"""The batches a delivery pass reads and renders ahead (service/dispatch.py), in this process or in
forked worker processes.

``prepare`` (read a batch's facts, re-check and render each notice) runs in the dispatch's helper
thread; rendering is most of a message's work and holds the interpreter's lock, so there the
rendering of the next batch and the sending of this one share one core. From WORKERS_FROM due
notices, on a database another process can open (not SQLite in memory) and where processes fork,
the batch is dealt in WORKERS parts (every WORKERS-th notice), each prepared in a worker process
forked at the start of the pass (its own connections); the items come back in the batch's order. The sending stays in the
pass's process, one message at a time, each outcome committed before the next is handed over.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from adapters.render import Templates
from adapters.store.database import Store
from engine.decide import Notice
from engine.policy import Policy

__all__ = ["WORKERS", "WORKERS_FROM", "renderers"]

WORKERS = min(2, os.cpu_count() or 1)   # processes rendering a batch, each a part of it (1: the thread alone)
WORKERS_FROM = 200  # due notices from which a pass renders in worker processes (fewer: not worth forking)

Prepare = Callable[..., list]      # service.dispatch.prepare(store, policy, templates, as_of, batch, now)


@contextmanager
def renderers(prepare: Prepare, store: Store, policy: Policy, templates: Templates, due: int):
    """What reads and renders a batch ahead: ``prepare`` in the helper thread; for a pass of WORKERS_FROM
    notices or more, on a database other processes can open, ``prepare`` in WORKERS forked processes,
    each a part of the batch (rendering is most of a message's work and takes the interpreter's lock:
    in one process the rendering and the sending share one core). The batch is the same, read and
    re-checked as one, and the sending stays in this process, one message at a time."""
    in_process = lambda as_of, batch, now: prepare(store, policy, templates, as_of, batch, now)  # noqa: E731
    if WORKERS < 2 or due < WORKERS_FROM or not _forkable(store):
        yield in_process
        return
    pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_start, initargs=(prepare, store, policy, templates))
    try:
        for started in [pool.submit(os.getpid) for _ in range(WORKERS)]:   # forked now, from this thread
            started.result()

        def in_workers(as_of: dt.date, batch: list[Notice], now: dt.datetime) -> list:
            # every WORKERS-th notice to each (letters and emails of a batch shared alike), put back in
            # the batch's order: prepare gives one item per notice, in the order given
            parts = [pool.submit(_worker_prepare, as_of, batch[i::WORKERS], now) for i in range(WORKERS)]
            done = [part.result() for part in parts]
            return [done[n % WORKERS][n // WORKERS] for n in range(len(batch))]
        yield in_workers
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _forkable(store: Store) -> bool:
    """A database a forked process can open again (not SQLite in memory), where processes fork."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    if store.dialect != "sqlite":
        return True
    database = store.engine.url.database
    return database not in (None, "", ":memory:") and not database.startswith("file::memory:")


_worker: tuple[Prepare, Store, Policy, Templates] | None = None


def _worker_start(prepare: Prepare, store: Store, policy: Policy, templates: Templates) -> None:
    """In a forked worker (given, not pickled): its own connections (the parent's are left to the parent)."""
    global _worker
    store.engine.dispose(close=False)
    _worker = (prepare, store, policy, templates)


def _worker_prepare(as_of: dt.date, batch: list[Notice], now: dt.datetime) -> list:
    prepare, store, policy, templates = _worker
    return prepare(store, policy, templates, as_of, batch, now)
