"""The policy the daemon runs, as `rappel status` tells it: recorded by the daemon when it takes the
lease and at every (re)load (adapters/store/daemon_state.py), compared with the files on disk."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from adapters.store.daemon_state import read_daemon_policy, record_daemon_policy
from engine.policy import Policy
from service.rules import policy_fingerprint

__all__ = ["record", "running", "summary"]


def summary(policy: Policy) -> dict:
    """What people recognise a policy by: its stages (id, offset, channel), libraries, zone and time."""
    return {"stages": [{"id": s.id, "offset_days": s.offset_days, "channel": s.channel} for s in policy.stages],
            "libraries": sorted(policy.libraries), "timezone": policy.timezone, "schedule": str(policy.schedule.at)}


def record(engine, holder: str, loaded, at: dt.datetime) -> None:
    """What the daemon ``holder`` runs from ``at`` on: ``loaded`` (service.rules.Loaded). Recorded when it
    takes the lease and at every reload; it runs it since ``at`` unless it recorded the same policy
    before (a lease taken again keeps the time it was loaded)."""
    before = read_daemon_policy(engine)
    same = before is not None and (before["holder"], before["policy_fingerprint"]) == (holder, loaded.fingerprint)
    loaded_at = before["policy_loaded_at"] if same and before["policy_loaded_at"] else at
    record_daemon_policy(engine, holder=holder, fingerprint=loaded.fingerprint, loaded_at=loaded_at,
                         summary=summary(loaded.policy), at=at)


def running(engine, rules_dir: Path | None, active_holder: str | None) -> tuple[dict | None, str | None]:
    """(what the daemon recorded, as status reports it; None when no daemon ever recorded it) and a
    warning when the files in ``rules_dir`` are not what it runs (None when they are, or no daemon
    holds the lease: then nothing runs them)."""
    state = read_daemon_policy(engine)
    if state is None:
        return None, None
    shown = {"holder": state["holder"], "fingerprint": state["policy_fingerprint"],
             "loaded_at": state["policy_loaded_at"], "summary": state["summary"],
             "active": state["holder"] == active_holder}
    if rules_dir is None or not shown["active"]:
        return shown, None
    on_disk = policy_fingerprint(Path(rules_dir))
    shown["same_as_files"] = on_disk == state["policy_fingerprint"]
    if shown["same_as_files"]:
        return shown, None
    return shown, (f"the files in {rules_dir} differ from the policy the daemon runs (loaded "
                   f"{state['policy_loaded_at'].isoformat(timespec='seconds') if state['policy_loaded_at'] else '?'}): "
                   f"it takes an edit up within a poll once it passes lint (a rejected edit is in the warnings; "
                   f"`rappel lint` says why)")
