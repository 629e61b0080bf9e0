"""`rappel daemon`: every day at the policy's time, evaluate and deliver; unattended, for months.

One loop, driven by a clock it is given (the command line's is the system clock; simulations set theirs):

- it holds the database lease (adapters/store/lease.py) or waits as a standby;
- it picks up an edited policy (reminders.yaml, accounts.yaml, templates) only when it passes lint,
  else keeps the old one and says why (it runs from a private copy of the rules, so a half-edited
  template is never used); accounts.yaml limits who receives loan notices, as for `rappel run`;
- it refuses to do anything while the database belongs to another installation (installation.py);
- it evaluates every day whose scheduled time has come and that no run has completed, in order:
  the days missed during an outage first (decisions only), then today (decide and deliver), then
  delivers what is pending as of today, so a missed notice goes out only while it is inside its
  catch-up window; days too old for any window are recorded as skipped, not evaluated;
- between runs it retries pending deliveries every ``schedule.retry_minutes``;
- once a day, after the day's run, it purges what ``retention:`` says is past its time (service/
  retention.py); a failed purge is logged, in the run history (`rappel status`), never holds up delivery;
- SIGTERM/SIGINT: the message being sent finishes and is recorded, the rest stay pending for the
  next start; the lease is released so a standby takes over at once. SIGHUP: look at the policy now.

The schedule is APScheduler's CronTrigger in the policy's time zone: a time that does not exist on
the spring daylight-saving day runs when the clocks have moved on, and a time that occurs twice in
autumn runs once (the run history is per date).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service import day as pipeline, facts, retention, running_policy
from service.clock import Clock, FileClock  # noqa: F401 - FileClock: the clock of simulations
from service.fence import LeaseLost, Stopping, _Fenced, leased  # noqa: F401 - leased: for callers of the daemon's API
from service.rules import Loaded, load_rules, policy_fingerprint
from adapters.channels.base import Channel
from adapters.store.installation import Guard
from adapters.store.lease import Lease
from adapters.store.runs import Counts, DayTaken, RunLog, first_unfinished_day, last_completed_day, pending_count
from adapters.store.database import DatabaseUnavailable, Store
from engine.policy import Policy
from engine.schedule import CATCH_UP_DAYS, catch_up_days, next_moment, scheduled_day
from engine.yamlsource import InputError

__all__ = ["Daemon", "Settings", "Clock", "FileClock", "Stopping", "LeaseLost", "policy_fingerprint", "leased"]

log = logging.getLogger("rappel.daemon")
UTC = dt.timezone.utc


@dataclass
class Settings:
    rules_dir: Path
    db_url: str | None
    clock: Clock
    channel_for: Callable[[Policy, object], Channel]   # the delivery channel for a policy and its templates
    state_dir: Path | None = None                # the installation id's folder (None: the default)
    env: dict | None = None                      # environment for the installation id (None: os.environ)
    lease_seconds: float = 60.0
    poll_seconds: float = 30.0                   # real seconds between looks at the policy, lease, guard
    once: bool = False                           # run what is due, deliver, and exit
    holder: str | None = None
    evaluate: Callable[..., set] | None = None   # the rules evaluation (engine.decide.Evaluate; None: in this
    #                                              process; the command line passes isolation.evaluate_in_child)
    outbox: Path | None = None                   # the outbox folder, whose files the daily purge deletes too


@dataclass
class _State:
    loaded: Loaded
    next_delivery: dt.datetime | None = None     # the next look at pending deliveries
    day_backoff: dt.datetime | None = None       # after a failed day: not before this time
    held: int = 0                                # messages the flood guard holds (recorded once)
    said: set = field(default_factory=set)       # messages logged once until things change
    seen: str = ""                               # the fingerprint of the rules last looked at
    purged_on: dt.date | None = None             # the last day the daily purge was looked at

    @property
    def policy(self) -> Policy:
        return self.loaded.policy

    @property
    def templates(self):
        return self.loaded.templates

    @property
    def channel(self) -> Channel:
        return self.loaded.channel


class Daemon:
    def __init__(self, settings: Settings):
        self.s = settings
        self.stop = threading.Event()
        self.wake = threading.Event()            # set by a signal: the clock's wait returns at once
        self.reload_asked = threading.Event()
        self.failed_days = 0

    def _now(self) -> dt.datetime:
        """The clock's time, in UTC: stored and compared as such everywhere (SQLite keeps no offset)."""
        return self.s.clock.now().astimezone(UTC)

    # --- signals -------------------------------------------------------------------------------
    def request_stop(self, *_) -> None:
        self.stop.set()
        self.wake.set()

    def request_reload(self, *_) -> None:
        self.reload_asked.set()
        self.wake.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self.request_reload)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped (or, with ``once``, until what is due is done). The exit code."""
        loaded = load_rules(self.s.rules_dir, self._fenced)   # a broken policy at start: InputError
        policy = loaded.policy
        self.state = _State(loaded, seen=loaded.fingerprint)
        try:
            self.store = Store(self.s.db_url)     # closed when the loop ends (below)
        except BaseException:
            loaded.discard()
            raise
        self.lease = Lease(self.store.engine, ttl=self.s.lease_seconds, holder=self.s.holder)
        self.history = RunLog(self.store.engine, self.lease.holder)
        self.guard = Guard(self.store.engine, self.s.state_dir, self.s.env)
        log.info("rappel daemon %s: runs at %s %s, lease %.0fs", self.lease.holder, policy.schedule.at, policy.timezone,
                 self.s.lease_seconds)
        self.lease_wait_until = time.monotonic() + 2 * self.s.lease_seconds
        code = None
        try:
            while code is None and not self.stop.is_set():
                self.wake.clear()
                try:
                    code = self._turn()
                except Stopping:
                    break
                except DatabaseUnavailable as exc:   # the database is away: keep the policy, try again shortly
                    self._say_once("database", f"database unavailable, trying again every "
                                               f"{self.s.poll_seconds:.0f}s: {str(exc.orig).strip()[:200]}",
                                   logging.ERROR)
                    if self.s.once:
                        return 1
                    self.wake.wait(self.s.poll_seconds)
            if self.stop.is_set():
                log.info("stopped by a signal: the message in flight was finished, the rest stays pending")
            return code or 0
        finally:
            self.lease.release()
            self.state.loaded.discard()
            self.store.close()
            log.info("rappel daemon %s stopped", self.lease.holder)

    def _turn(self) -> int | None:
        """One turn of the loop: lease, policy, guard, what is due, then wait. An exit code ends it."""
        if not self.lease.held and not self._take_lease():
            if self.s.once and time.monotonic() > self.lease_wait_until:
                log.info("another instance is active; nothing to do here")
                return 0
            self.wake.wait(min(self.s.lease_seconds / 3, self.s.poll_seconds))
            return None
        self._maybe_reload()
        verdict = self.guard.check()
        self.state.said.discard("database")
        if not verdict.ok:
            self._say_once("guard", f"delivery refused: {verdict.detail}", logging.ERROR)
            if self.s.once:
                return 1
            self.s.clock.wait(None, self.wake, self.s.poll_seconds)
            return None
        self.state.said.discard("guard")
        try:
            self._run_due_days(self._now())
            self._purge_if_due(self._now())
            self._deliver_if_due(self._now())
        except LeaseLost:
            log.warning("lease lost during a run: back to standby; the run is left to the holder")
            return None
        if self.s.once:
            return 1 if self.failed_days else 0
        self.s.clock.wait(self._next_wake(), self.wake, self.s.poll_seconds)
        return None

    def _take_lease(self) -> bool:
        if not self.lease.acquire():
            info = self.lease.info()
            who = f"{info.holder}, for {info.expires_in:.0f}s more" if info else "?"
            self._say_once("standby", f"standby: another instance holds the lease ({who})")
            return False
        self.state.said.discard("standby")
        self.lease.start_heartbeat()
        stale = self.history.interrupt_others(self._now())
        log.info("active: lease taken (generation %d)%s", self.lease.generation,
                 f"; {stale} run(s) of a stopped instance marked interrupted" if stale else "")
        self.state.next_delivery = None
        running_policy.record(self.store.engine, self.lease.holder, self.state.loaded, self._now())   # for status
        return True

    def _say_once(self, key: str, message: str, level: int = logging.INFO) -> None:
        if key not in self.state.said:
            self.state.said.add(key)
            log.log(level, message)

    # --- policy reload -------------------------------------------------------------------------
    def _maybe_reload(self) -> None:
        asked = self.reload_asked.is_set()
        self.reload_asked.clear()
        current = policy_fingerprint(self.s.rules_dir)
        if current == self.state.seen and not asked:
            return
        self.state.seen = current
        now = self._now()
        try:
            loaded = load_rules(self.s.rules_dir, self._fenced)
        except InputError as exc:
            problems = [str(p) for p in exc.problems]
            log.error("policy edit rejected, still running the previous policy: %s", "; ".join(problems))
            self.history.note("reload", None, "rejected", now, "\n".join(problems))
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a file replaced while being copied: look again next turn
            self.state.seen = ""
            self._say_once(f"reload:{exc}", f"cannot read the edited policy yet, still running the previous one: "
                                            f"{type(exc).__name__}: {exc}", logging.WARNING)
            return
        self.state.loaded.discard()
        self.state.loaded = loaded
        self.state.seen = loaded.fingerprint      # edited again while being copied: seen next time
        self.state.next_delivery = None
        policy = loaded.policy
        log.info("policy reloaded (runs at %s %s)", policy.schedule.at, policy.timezone)
        self.history.note("reload", None, "ok", now, "")
        running_policy.record(self.store.engine, self.lease.holder, loaded, now)

    def _fenced(self, policy: Policy, templates) -> Channel:
        return _Fenced(self.s.channel_for(policy, templates), self.before_send, self.before_send)

    # --- days ----------------------------------------------------------------------------------
    def _run_due_days(self, now: dt.datetime) -> None:
        st = self.state
        if st.day_backoff and now < st.day_backoff:
            return
        policy = st.policy
        latest = scheduled_day(policy, now)
        today = now.astimezone(policy.tz).date()
        last_done = last_completed_day(self.store.engine)
        unfinished = first_unfinished_day(self.store.engine, last_done)
        days, skipped = catch_up_days(policy, last_done, latest, today, unfinished)
        if skipped:
            first, last = skipped
            span = f"{first}" if first == last else f"{first} to {last}"
            why = (f"{span} not evaluated: missed more than {CATCH_UP_DAYS} days ago, past every stage's "
                   f"catch-up window")
            log.warning(why)
            self.history.note("day", last, "skipped", now, why)
        if not days or self._facts_refused(days[0]):
            return
        for day in days:
            if not self._run_day(day, day == today, now):
                return
        if days[-1] != today:     # missed days only decided: deliver what is still inside its window
            self._deliver(self._now(), "catch-up")

    def _facts_refused(self, day: dt.date) -> bool:
        """Pull before deciding (schedule.pull_before), then refuse stale loans: nothing decided, the
        day is noted as failed (an alert in `rappel status`) and tried again after retry_minutes."""
        st = self.state
        why = facts.before_deciding(self.store, st.policy, st.loaded.sources, self._now, self.history,
                                    self.s.env if self.s.env is not None else os.environ)
        if why is None:
            return False
        self.history.note("day", day, "failed", self._now(), why)
        self._day_failed(day, why)
        return True

    def _day_failed(self, day: dt.date, why: str) -> None:
        """A day not decided: logged, tried again after schedule.retry_minutes."""
        minutes = self.state.policy.schedule.retry_minutes
        log.error("%s: %s (next attempt in %d min)", day, why, minutes)
        self.state.day_backoff = self._now() + dt.timedelta(minutes=minutes)
        self.failed_days += 1

    def _run_day(self, day: dt.date, deliver: bool, now: dt.datetime) -> bool:
        """Evaluate one day (and deliver when it is today). False when the loop must not go on."""
        st = self.state
        try:
            run_id = self.history.start("day", day, now)
        except DayTaken as exc:
            log.warning("%s: skipped, %s", day, exc)
            return False
        counts = Counts()
        try:
            if deliver:
                result = pipeline.run_day(self.store, st.policy, st.templates, st.channel, day, now=now,
                                          evaluate=self.s.evaluate)
                counts.decided = len(result.plan.notices)
                counts.add_outcomes(result.outcomes)
            else:
                plan = pipeline.plan_for(self.store, st.policy, day, self.s.evaluate)
                self.store.record(plan)
                counts.decided = len(plan.notices)
        except (Stopping, LeaseLost) as exc:
            counts.errors.append("stopped before the end: the rest stays pending" if isinstance(exc, Stopping)
                                 else "lease lost: the rest is left to the instance that holds it")
            self.history.finish(run_id, "interrupted", self._now(), counts)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded and retried later; the daemon keeps running
            counts.errors.append(f"{type(exc).__name__}: {exc}")
            self.history.finish(run_id, "failed", self._now(), counts)
            self._day_failed(day, f"run failed: {type(exc).__name__}: {exc}")
            return False
        st.day_backoff = None
        self.history.finish(run_id, "ok", self._now(), counts)
        what = f"{counts.sent} sent, {counts.retrying} to retry, {counts.failed} failed, {counts.dropped} dropped"
        log.info("%s: %d message(s) decided%s", day, counts.decided, f"; {what}" if deliver else " (catch-up)")
        if deliver:
            self._held(counts)
            self._retry_later()
        return True

    def _held(self, counts: Counts) -> bool:
        """Note what the flood guard holds; True when this pass says nothing new about it."""
        again = bool(counts.held) and counts.held == self.state.held
        if counts.held and not again:
            log.error("%s", counts.errors[-1] if counts.errors else "flood guard: messages held")
        self.state.held = counts.held
        return again

    def _purge_if_due(self, now: dt.datetime) -> None:
        """The daily purge, once today's run is done; a failure is logged and recorded, nothing more."""
        st = self.state
        today = now.astimezone(st.policy.tz).date()
        if st.purged_on == today or last_completed_day(self.store.engine) != today:
            return
        st.purged_on = today
        retention.daily_purge(self.store, st.policy, today, now, outbox=self.s.outbox, holder=self.lease.holder)

    # --- deliveries between runs -----------------------------------------------------------------
    def _deliver_if_due(self, now: dt.datetime) -> None:
        st = self.state
        retries = self.store.retry_times() if pending_count(self.store.engine) else None
        if retries is None:
            self._retry_later()
        elif st.next_delivery is None or now >= st.next_delivery or any(t <= now for t in retries.values()):
            self._deliver(now, "retry")

    def _deliver(self, now: dt.datetime, why: str) -> None:
        """Deliver what is pending as of today; recorded in the history when anything was attempted."""
        st = self.state
        today = now.astimezone(st.policy.tz).date()
        counts = Counts()
        try:
            outcomes = pipeline.dispatch(self.store, st.policy, st.templates, st.channel, today, now=now)
        except (Stopping, LeaseLost):
            counts.errors.append("stopped before the end: the rest stays pending")
            self.history.add("deliver", today, now, self._now(), "interrupted", counts)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded; tried again at the next pass
            counts.errors.append(f"{type(exc).__name__}: {exc}")
            self.history.add("deliver", today, now, self._now(), "failed", counts)
            log.error("delivery (%s) failed: %s: %s", why, type(exc).__name__, exc)
        else:
            counts.add_outcomes(outcomes)
            if outcomes and not self._held(counts):
                self.history.add("deliver", today, now, self._now(), "ok", counts)
                log.info("delivery (%s): %d sent, %d to retry, %d failed, %d dropped", why, counts.sent,
                         counts.retrying, counts.failed, counts.dropped)
        self._retry_later()

    def _retry_later(self) -> None:
        minutes = self.state.policy.schedule.retry_minutes
        self.state.next_delivery = self._now() + dt.timedelta(minutes=minutes)

    def _next_wake(self) -> dt.datetime:
        """The next scheduled run, a failed day's next attempt, or the next delivery to retry."""
        st, now = self.state, self._now()
        wake = min(next_moment(st.policy, now), st.day_backoff or next_moment(st.policy, now))
        if pending_count(self.store.engine):
            retries = self.store.retry_times().values()      # each message's own next attempt
            if retries:
                wake = min(wake, max(now, min(retries)))
            if st.next_delivery:
                wake = min(wake, st.next_delivery)
        return wake

    # --- the guard on every message ----------------------------------------------------------------
    def before_send(self, conn=None) -> None:
        """Stop when asked, send only while leased (``conn``: in the transaction marking it sending)."""
        if self.stop.is_set():
            raise Stopping()
        if not (self.lease.confirm() if conn is None else self.lease.confirm_in(conn)):
            raise LeaseLost()
