"""`rappel demo`: the bundled sample, loaded into a fresh database and run over a few days."""
from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

from service import day as pipeline
from service import rules as rules_
from service.starter import copy_tree, sample, shipped_rules
from adapters.sources.csvfiles import import_csv
from adapters.channels.outbox import OutboxChannel
from adapters.store.database import Store
from engine.explain import explain

# 2026-11-24 is skipped on purpose: the next run catches it up within the 2-day window.
DAYS = [dt.date(2026, 11, 22), dt.date(2026, 11, 23), dt.date(2026, 11, 25), dt.date(2026, 11, 26)]


def prepare(workdir: Path) -> tuple[Path, str]:
    """A fresh working folder with the demo policy and the templates shipped in the package (found
    wherever rappel is installed); returns (rules, db url)."""
    rules = workdir / "rules"
    for stale in (workdir / "rappel-demo.db", workdir / "outbox", rules, workdir / "sample"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    rules.mkdir(parents=True)
    copy_tree(sample(), workdir / "sample")          # the CSV exports the demo imports, to look at
    (rules / "reminders.yaml").write_bytes(sample().joinpath("reminders.yaml").read_bytes())
    copy_tree(shipped_rules().joinpath("templates"), rules / "templates")
    return rules, f"sqlite:///{workdir / 'rappel-demo.db'}"


def run_demo(workdir: Path, echo: Callable[[str], None] = print) -> dict[dt.date, list]:
    rules, url = prepare(Path(workdir))
    policy, templates = rules_.load_checked(rules)
    store = Store(url)
    for kind in ("patrons", "loans", "requests"):
        report = import_csv(store, policy, kind, Path(workdir) / "sample" / f"{kind}.csv")
        echo(f"imported {report.rows} {kind}")
    echo(f"policy: {rules / 'reminders.yaml'} (restart on {policy.resumed_on}: nothing older is ever sent)")
    channel = OutboxChannel(Path(workdir) / "outbox")
    shown: dict[dt.date, list] = {}
    for number, day in enumerate(DAYS + [DAYS[-1]]):
        result = pipeline.run_day(store, policy, templates, channel, day)
        shown.setdefault(day, []).extend(result.plan.notices)
        again = " again (a second run sends nothing new)" if number == len(DAYS) else ""
        skipped = " (no run on 2026-11-24: caught up today)" if day == dt.date(2026, 11, 25) else ""
        echo("")
        echo(f"== run for {day} ({day:%A}){again}{skipped}: {len(result.plan.notices)} message(s)")
        for n in result.plan.notices:
            where = n.recipient if n.channel == "email" else f"{channel.destination(n)} ({n.library}) for {n.recipient}"
            echo(f"   {n.stage:<16} {n.channel:<6} {n.patron_id}  loans {', '.join(n.loan_ids):<9} → {where}")
        for d in result.plan.decisions:
            if d.status != "pending":
                echo(f"   ({d.loan_id} {d.stage}: {d.status}: {d.reason})")
        for o in result.outcomes:
            if o.status != "sent":
                echo(f"   (delivery of {o.key}: {o.status}: {o.detail})")
    echo("")
    echo("== why did loan L08 (18 days overdue at the restart) get no first reminder?")
    echo("   rappel explain --loan L08 --on 2026-11-22")
    loan = store.loan("L08")
    for line in explain(policy, loan, store.patron(loan.patron_id), store.ledger_for("L08"), DAYS[0]):
        echo("   " + line)
    echo("")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(store.counts().items()))
    echo(f"ledger: {counts}")
    echo(f"outbox: {Path(workdir) / 'outbox'} (emails as .eml, letters as PDF); database: {url}")
    store.close()
    return shown
