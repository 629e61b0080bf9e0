"""`rappel pull`: import patrons, loans and requests straight from the library system's database.

Each source of rules/sources.yaml is read in one read-only transaction (adapters/sources/sql.py):
one consistent picture of the library system. Its kinds are imported in order (patrons, then
loans, then requests: a loan's patron is there first), each exactly as a CSV file of the same rows
would be: every row checked, all rows or none, row-level errors listed. A pull is a snapshot by
default (``snapshot: true``): the open loans it no longer has are closed, within the snapshot
guard's limits (``--confirm`` past them). Nothing is ever written to the library's database.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from adapters.sources.sql import ColumnsMismatch, QueryFailed, SourceUnavailable, SqlSource
from adapters.store.database import Store
from adapters.store.scratch import scratch_copy
from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, REQUEST_FIELDS
from engine.policy import Policy
from engine.yamlsource import InputError
from service.imports import ImportReport, import_records
from service.session import Refused
from service.sources import LoadedSources, query_for

__all__ = ["FIELDS", "PullFailed", "Pulled", "dry_run_store", "pull"]

FIELDS = {"patrons": PATRON_FIELDS, "loans": LOAN_FIELDS, "requests": REQUEST_FIELDS}


class PullFailed(Refused):
    """The library system's database could not be read (unreachable, a query refused): nothing imported
    from that kind on."""


@dataclass(frozen=True)
class Pulled:
    source: str
    kind: str
    report: ImportReport
    dry_run: bool = False

    def line(self) -> str:
        """'koha: 11 loans (2 new, 1 changed, 8 unchanged; 1 closed, absent from the pull)'."""
        r = self.report
        done = "checked (dry run: nothing written)" if self.dry_run else "pulled"
        line = f"{self.source}: {r.rows} {self.kind} {done} ({r.inserted} new, {r.changed} changed, {r.unchanged} unchanged"
        if r.snapshot and self.kind != "patrons":
            line += f"; {r.closed} {'would be ' if self.dry_run else ''}closed, absent from the pull"
        if r.reopened:
            line += f"; {r.reopened} reopened"
        return line + ")" + (f"; snapshot guard: {r.refused}" if r.refused else "")

    def as_dict(self) -> dict:
        return {"source": self.source, **self.report.as_dict()}


@contextmanager
def dry_run_store(db: str | None) -> Iterator[tuple[Store, bool]]:
    """Where a dry run checks a pull: (a throwaway copy of a SQLite database, True), so that the
    loans are checked against the patrons the same pull brings in; (any other database as it is,
    False)."""
    with scratch_copy(db) as copy:
        if copy is not None:
            yield copy, True
            return
    with Store.existing(db) as store:
        yield store, False


def pull(store: Store, policy: Policy, sources: LoadedSources, name: str | None, *, env: Mapping[str, str],
         now: dt.datetime, dry_run: bool = False, confirm: bool = False, scratch: bool = False) -> list[Pulled]:
    """Pull every kind of one source (``name``), or of every source; what each import did. ``now``:
    when (UTC), recorded with each import; the facts are dated its day in the policy's time zone.
    ``scratch`` (a dry run in a throwaway copy, ``dry_run_store``): the patrons are written to it,
    so that the dry run of the loans and requests sees them.

    InputError (exit 2) for a bad row, a query without rappel's columns, a missing ${NAME};
    PullFailed (exit 1) when the database cannot be reached or refuses a query."""
    names = list(sources.sources.sources)
    if name is not None:
        if name not in names:
            raise Refused(f"no source {name!r} in {sources.path} (sources: {', '.join(names)})", 2)
        names = [name]
    urls = {n: sources.url(n, env) for n in names}      # every ${NAME} checked before anything is read
    out: list[Pulled] = []
    for n in names:
        out += _pull_one(store, policy, sources, n, urls[n], now=now, dry_run=dry_run, confirm=confirm,
                         scratch=scratch and dry_run)
    return out


def _pull_one(store: Store, policy: Policy, sources: LoadedSources, name: str, url: str, *, now: dt.datetime,
              dry_run: bool, confirm: bool, scratch: bool) -> list[Pulled]:
    source = sources.sources.sources[name]
    today = now.astimezone(policy.tz).date()
    libraries = source.libraries or list(policy.libraries)
    params = {"returned_since": today - dt.timedelta(days=source.returned_days)}
    out = []
    try:
        reader = SqlSource(url, name)
        with reader.reading() as reading:
            for kind in sources.kinds(name):
                query, where = query_for(source, kind)
                try:
                    rows = reading.rows(query, FIELDS[kind], params)
                except ColumnsMismatch as exc:
                    what = f"the {kind} query" if where[0] == "queries" else f"the {source.preset} preset's {kind} query"
                    raise InputError([sources.problem(("sources", name) + where,
                                                      f"{what}: {exc} (it must return "
                                                      f"{', '.join(FIELDS[kind])})")]) from None
                except QueryFailed as exc:
                    raise PullFailed(f"{name}: the {kind} query failed in {reader.shown}: {exc}; nothing "
                                     f"imported from {kind} on") from None
                try:
                    report = import_records(store, policy, kind, rows, source=name, mode="pull",
                                            snapshot=source.snapshot, confirm=confirm, facts_date=today,
                                            dry_run=dry_run, libraries=libraries, now=now)
                except QueryFailed as exc:
                    raise PullFailed(f"{name}: reading {kind} failed in {reader.shown}: {exc}; nothing "
                                     f"imported from {kind} on") from None
                finally:
                    rows.close()          # the server-side cursor, whatever the import did
                if scratch and kind == "patrons":     # the same rows again (one transaction): into the copy
                    import_records(store, policy, kind, reading.rows(query, FIELDS[kind], params), source=name,
                                   mode="pull", confirm=True, facts_date=today, now=now)
                out.append(Pulled(name, kind, report, dry_run))
    except SourceUnavailable as exc:
        raise PullFailed(f"{name}: {exc}; nothing pulled") from None
    return out
