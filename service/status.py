"""`rappel status`: the last run and its outcome, the next one, the active daemon, the installation
guard, the last purge, how old the facts are, the ledger and the failures, as plain values
(``status_report``) and as lines for a terminal (``status_lines``). ``alerts`` non-empty means an
operator must look (exit 1)."""
from __future__ import annotations

import datetime as dt

from adapters.store.installation import Guard
from adapters.store.freshness import last_imports
from adapters.store.lease import read_lease
from adapters.store.database import WAITING
from adapters.store.runs import failures, last_completed_day, latest_run, pending_count, unattempted_count
from adapters.store.runs import waiting as waiting_notices
from engine.schedule import next_moment, scheduled_day
from engine.yamlsource import InputError
from service.facts import age_of_loans
from service.rules import load_policy
from service.running_policy import running
from service.sources import facts_age_limit, load_sources

__all__ = ["status_report", "status_lines"]

UTC = dt.timezone.utc


def _local_iso(value: dt.datetime | None, tz: dt.tzinfo = UTC) -> str | None:
    """A time as people read it: ISO 8601 in the policy's time zone, with its offset."""
    return value.astimezone(tz).isoformat(timespec="seconds") if value else None


def _run(row: dict | None, tz: dt.tzinfo) -> dict | None:
    if row is None:
        return None
    return {"kind": row["kind"], "date": row["run_date"].isoformat() if row["run_date"] else None,
            "outcome": row["outcome"], "started": _local_iso(row["started_at"], tz),
            "finished": _local_iso(row["finished_at"], tz),
            "holder": row["holder"], "decided": row["decided"], "sent": row["sent"], "retrying": row["retrying"],
            "failed": row["failed"], "dropped": row["dropped"], "held": row["held"],
            "errors": [e for e in row["errors"].splitlines() if e]}


def status_report(store, rules_dir, now: dt.datetime, *, state_dir=None, max_failures: int = 0,
                  env: dict | None = None) -> dict:
    """Everything `rappel status` says, as plain values; ``alerts`` non-empty means call someone.
    Times are in the policy's time zone (UTC when the policy cannot be read)."""
    engine = store.engine
    alerts: list[str] = []
    warnings: list[str] = []
    day_ago = now - dt.timedelta(days=1)
    policy_problems: list[str] = []
    try:
        policy = load_policy(rules_dir)
        sources = load_sources(rules_dir, policy)
    except InputError as exc:
        policy, sources, policy_problems = None, None, [str(p) for p in exc.problems]
    tz = policy.tz if policy is not None else UTC

    def _iso(value: dt.datetime | None) -> str | None:
        return _local_iso(value, tz)

    last_day = latest_run(engine, ("day",), not_outcome="skipped")
    last_ok = latest_run(engine, ("day",), outcome="ok")
    if last_ok is None:
        alerts.append("no run has completed yet")
    elif last_ok["finished_at"] is None or last_ok["finished_at"] < day_ago:
        alerts.append(f"no run completed in the last day (last: {last_ok['run_date']}, finished "
                      f"{_iso(last_ok['finished_at'])})")
    if last_day and last_day["outcome"] == "failed":
        alerts.append(f"the last run ({last_day['run_date']}) failed: {last_day['errors'].splitlines()[0]}")

    last_pass = latest_run(engine, ("day", "deliver"), not_outcome="skipped")
    if last_pass and last_pass["held"]:
        waiting = unattempted_count(engine)
        if waiting:
            since = _iso(last_pass["started_at"])
            alerts.append(f"the flood guard holds {last_pass['held']} message(s) since {since}: "
                          f"check them, then `rappel run --confirm`")

    left = waiting_notices(engine, WAITING)
    if left.for_fix:
        alerts.append(f"{left.for_fix} notice(s) wait for the library to fix its policy or a template, not sent "
                      f"(they go out once it is fixed, within their window): {left.reasons[0]}")

    failed_total, failed = failures(engine, day_ago)
    if failed_total > max_failures:
        alerts.append(f"{failed_total} deliveries failed in the last day or are being retried "
                      f"(threshold {max_failures})")

    verdict = Guard(engine, state_dir, env).check(claim=False)
    if verdict.database_id is not None and not verdict.ok:
        alerts.append(f"delivery refused: {verdict.detail}")

    lease = read_lease(engine)
    if lease is None or not lease.active:
        warnings.append("no daemon holds the lease (none running, or stopped)")
    runs_policy, differs = running(engine, rules_dir, lease.holder if lease is not None and lease.active else None)
    if differs:
        warnings.append(differs)

    next_run = behind = limit = None
    imported = last_imports(engine)
    if policy is None:
        warnings.append(f"cannot read the policy, next run unknown: {policy_problems[0]}")
    else:
        next_run = next_moment(policy, now)
        latest = scheduled_day(policy, now)
        done = last_completed_day(engine)
        behind = 0 if done is None else max(0, (latest - done).days)
        limit = facts_age_limit(policy, sources)
        age = age_of_loans(store, policy, sources, now)
        if age.stale:
            alerts.append(f"stale facts, runs decide nothing: {age.why(policy.tz)}")
        if policy.retention is None:
            warnings.append("no retention: section in the policy: personal data is kept forever (see the "
                            "README, \"Retention and erasure\")")
    purge = latest_run(engine, ("purge",))
    if purge and purge["outcome"] == "failed":
        alerts.append(f"the last purge ({purge['run_date']}) failed, data past its retention is kept: "
                      f"{purge['errors'].splitlines()[0] if purge['errors'] else 'no detail'}")
    last_pull = latest_run(engine, ("pull",))
    loans_at = imported.get("loans", {}).get("finished_at")
    if last_pull and last_pull["outcome"] == "failed" and (loans_at is None or loans_at < last_pull["started_at"]):
        alerts.append(f"the pull before deciding failed at {_iso(last_pull['started_at'])}: "
                      f"{(last_pull['errors'].splitlines() or [''])[0]}")
    rejected = latest_run(engine, ("reload",))
    if rejected and rejected["outcome"] == "rejected":
        warnings.append(f"a policy edit was rejected at {_iso(rejected['started_at'])}; the daemon runs the "
                        f"previous policy: {rejected['errors'].splitlines()[0] if rejected['errors'] else ''}")

    return {
        "now": _iso(now),
        "last_run": _run(last_day, tz),
        "last_completed": _run(last_ok, tz),
        "next_run": _iso(next_run),
        "days_behind": behind,
        "daemon": None if lease is None else {"holder": lease.holder, "generation": lease.generation,
                                              "active": lease.active, "expires_in": round(lease.expires_in, 1)},
        "daemon_policy": None if runs_policy is None else {**runs_policy,
                                                           "loaded_at": _iso(runs_policy["loaded_at"])},
        "installation": {"ok": verdict.ok, "database_id": verdict.database_id, "local_id": verdict.local_id,
                         "detail": verdict.detail},
        "last_purge": _run(purge, tz),
        "ledger": dict(sorted(store.counts().items())),
        "pending": pending_count(engine),
        "waiting": {"retry": left.retrying, "next_attempt_at": _iso(left.next_at), "fix": left.for_fix,
                    "reasons": list(left.reasons)},
        "failures": {"count": failed_total, "threshold": max_failures,
                     "shown": [{**f, "updated_at": _iso(f["updated_at"])} for f in failed]},
        "facts": {kind: {"finished_at": _iso(f["finished_at"]), "source": f["source"], "mode": f["mode"],
                         "rows": f["rows"], "age_hours": round((now - f["finished_at"]).total_seconds() / 3600, 1)}
                  for kind, f in sorted(imported.items())},
        "max_facts_age_hours": limit,
        "policy_problems": policy_problems,
        "alerts": alerts,
        "warnings": warnings,
    }


def status_lines(report: dict) -> list[str]:
    """The report for a terminal."""
    out = []
    state = "ALERT" if report["alerts"] else "OK"
    out.append(f"rappel status: {state} (at {report['now']})")
    last = report["last_run"]
    if last:
        out.append(f"last run:     {last['date']} {last['outcome']}, started {last['started']}, finished "
                   f"{last['finished'] or '-'}: {last['decided']} decided, {last['sent']} sent, "
                   f"{last['retrying']} to retry, {last['failed']} failed, {last['dropped']} dropped")
        out += [f"              {e}" for e in last["errors"][:5]]
    else:
        out.append("last run:     none")
    ok = report["last_completed"]
    if ok and (not last or ok["date"] != last["date"]):
        out.append(f"last success: {ok['date']}, finished {ok['finished']}")
    behind = report["days_behind"]
    out.append(f"next run:     {report['next_run'] or 'unknown'}"
               + (f" ({behind} day(s) due and not yet run)" if behind else ""))
    d = report["daemon"]
    out.append("daemon:       " + (f"{d['holder']} (lease generation {d['generation']}, "
                                   + (f"{d['expires_in']:.0f}s left)" if d["active"] else "expired)")
                                   if d else "never started"))
    ran = report.get("daemon_policy")
    if ran:
        stages = ", ".join(f"{x['id']} ({x['offset_days']:+d} d, {x['channel']})" for x in ran["summary"].get("stages", []))
        out.append(f"policy:       {'the daemon runs' if ran['active'] else 'the last daemon ran'} the one loaded "
                   f"{ran['loaded_at']} (fingerprint {ran['fingerprint'][:12]}"
                   + ("" if ran.get("same_as_files", True) else ", NOT the files on disk")
                   + f"): {stages}; libraries {', '.join(ran['summary'].get('libraries', [])) or '-'}")
    purge = report.get("last_purge")
    if purge:
        out.append(f"last purge:   {purge['date']} {purge['outcome']}, finished {purge['finished'] or '-'}")
        out += [f"              {e}" for e in purge["errors"][:3]]
    inst = report["installation"]
    out.append(f"installation: {'ok, ' if inst['ok'] else ''}{inst['detail']}")
    counts = ", ".join(f"{k} {v}" for k, v in report["ledger"].items()) or "empty"
    out.append(f"ledger:       {counts}; {report['pending']} message(s) pending")
    facts = report["facts"]
    shown = "; ".join(f"{kind} {f['age_hours']:g} h ago ({f['mode']} from {f['source']}, {f['rows']} rows)"
                      for kind, f in facts.items()) or "never imported"
    limit = report["max_facts_age_hours"]
    out.append(f"facts:        {shown}" + (f"; loans older than {limit:g} h are not decided on" if limit else ""))
    fails = report["failures"]
    out.append(f"failures:     {fails['count']} in the last day or retrying (threshold {fails['threshold']})")
    for f in fails["shown"]:
        out.append(f"  {f['key']} ({f['status']}, {f['attempts']} attempt(s)) → {f['recipient']}: "
                   f"{f['last_error'] or ''}")
    out += [f"warning: {w}" for w in report["warnings"]]
    out += [f"ALERT: {a}" for a in report["alerts"]]
    return out
