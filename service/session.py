"""Opening an installation: the one way every front end gets its rules, store, guard, lease and channel.

    with session.installation(rules, db, deliver=True, outbox=outbox, state_dir=state_dir) as inst:
        service.day.run_day(inst.store, inst.policy, inst.templates, inst.channel, as_of, ...)

- ``writes=False`` (dry runs, explain, show, status) opens the database as it is: no file created,
  no schema upgraded (``DatabaseNotReady`` otherwise);
- ``channel=True`` builds the policy's channels (the outbox for what is not configured);
- ``guard=True`` checks the installation guard: a database that belongs to another installation
  (a restored copy of production) is refused before anything is decided or sent;
- ``clock``: the time messages built while sending are dated with (see registry.build);
- ``lease=True`` holds the daemon's lease for the whole block (renewed by its heartbeat and before
  every message: the channel is fenced), refused beside an active daemon, released at the end.

Everything opened is closed when the block ends, whatever happens in it. A refusal is
``Refused`` (exit 1 at the command line), with a message saying what was not done.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.channels import registry
from adapters.channels.base import Channel
from adapters.render import Templates
from engine.accounts import AccountsPolicy
from engine.policy import Policy
from service import rules as rules_
from service.fence import LeaseLost, leased

if TYPE_CHECKING:     # the database code (SQLAlchemy) is loaded when a database is opened: `rappel lint` needs none
    from adapters.store.database import Store
    from adapters.store.lease import Lease

__all__ = ["Confirmed", "Installation", "LeaseLost", "Refused", "Rules", "channel_factory", "check_guard",
           "confirm_installation", "held_lease", "installation", "load_rules", "store"]


class Refused(Exception):
    """The installation refuses the operation (guard, lease); nothing was done. ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Rules:
    """The administrator's rules as loaded for one command."""

    folder: Path
    policy: Policy
    templates: Templates | None = None
    accounts: AccountsPolicy | None = None


def load_rules(folder: Path, *, templates: bool = False, accounts: bool = False) -> Rules:
    """reminders.yaml (limited by accounts.yaml), checked with its templates when ``templates``;
    accounts.yaml required when ``accounts``. InputError on any problem: nothing runs on a broken policy."""
    folder = Path(folder)
    if templates:
        policy, loaded = rules_.load_checked(folder)
    else:
        policy, loaded = rules_.load_policy(folder), None
    return Rules(folder, policy, loaded, rules_.load_accounts(folder) if accounts else None)


@contextmanager
def store(db: str | None, *, writes: bool = True) -> Iterator[Store]:
    """The database, closed at the end; ``writes=False``: as it is, neither created nor upgraded."""
    from adapters.store.database import Store
    with Store(db) if writes else Store.existing(db) as opened:
        yield opened


def check_guard(opened: Store, state_dir: Path | None, nothing: str, env: Mapping[str, str] | None = None) -> None:
    """The environment guard: a database without an installation id is claimed for this machine;
    one that belongs to another installation refuses, naming `rappel confirm-installation`."""
    from adapters.store.installation import Guard
    guard = Guard(opened.engine, state_dir, env)
    try:
        verdict = guard.check()
    except OSError as exc:
        raise Refused(f"cannot keep this machine's installation id in {guard.id_file}: {exc.strerror or exc} "
                      f"(--state-dir, $RAPPEL_STATE_DIR or $RAPPEL_INSTALLATION_ID); {nothing}") from None
    if not verdict.ok:
        raise Refused(f"delivery refused, {nothing}: {verdict.detail}")


@contextmanager
def held_lease(opened: Store) -> Iterator[Lease]:
    """Hold the daemon's lease for the whole block, renewed by its heartbeat, released at the end even
    on error; Refused at once when another instance holds it."""
    from adapters.store.daemon_state import read_daemon_policy
    from adapters.store.lease import Lease
    lease = Lease(opened.engine)
    if not lease.acquire():
        info = lease.info()
        who = f" ({info.holder}, for {info.expires_in:.0f}s more)" if info else ""
        daemon = read_daemon_policy(opened.engine)
        if info is not None and (daemon is None or daemon["holder"] != info.holder):
            raise Refused(f"another `rappel run` holds the lease on this database{who}: nothing decided or sent; "
                          f"run again once it has finished (`rappel status` shows its outcome)")
        raise Refused(f"another instance holds the lease on this database{who}: a daemon is active and delivers "
                      f"by itself; nothing decided or sent (to run by hand, stop the daemon first)")
    try:
        lease.start_heartbeat()
        yield lease
    finally:
        lease.release()


@dataclass
class Installation:
    rules: Rules
    store: Store
    channel: Channel | None = None
    lease: Lease | None = None

    @property
    def policy(self) -> Policy:
        return self.rules.policy

    @property
    def templates(self) -> Templates | None:
        return self.rules.templates

    @property
    def accounts(self) -> AccountsPolicy | None:
        return self.rules.accounts


@contextmanager
def installation(rules: Rules, db: str | None, *, writes: bool = True, channel: bool = False,
                 outbox: Path = Path("outbox"), guard: bool = False, lease: bool = False,
                 state_dir: Path | None = None, env: Mapping[str, str] | None = None,
                 nothing: str = "nothing decided or sent",
                 clock: Callable[[], dt.datetime] | None = None) -> Iterator[Installation]:
    """Open what a use case needs, in the order errors are best reported (the policy's delivery
    settings, then the database, then the guard, then the lease), and close it all at the end."""
    env = os.environ if env is None else env
    with ExitStack() as stack:
        built = None
        if channel:
            built = registry.build(rules.policy, rules.templates, env=env, outbox=outbox, rules_dir=rules.folder,
                                   clock=clock)
            stack.callback(built.close)
        opened = stack.enter_context(store(db, writes=writes))
        if guard:
            check_guard(opened, state_dir, nothing, env)
        held = stack.enter_context(held_lease(opened)) if lease else None
        if held is not None and built is not None:
            built = leased(built, held)
        yield Installation(rules, opened, built, held)



@dataclass(frozen=True)
class Confirmed:
    before: object            # the guard's verdict before (adapters.store.installation.Verdict)
    value: str | None         # the installation id now shared by the database and this machine
    id_file: Path


def confirm_installation(opened: Store, state_dir: Path | None, *, join: bool) -> Confirmed:
    """`rappel confirm-installation`: this machine now owns the database (or, ``join``, is a second
    machine of its installation). Nothing changes when the machine already is that installation."""
    from adapters.store.installation import Guard
    guard = Guard(opened.engine, state_dir)
    before = guard.check(claim=False)
    if before.ok:
        return Confirmed(before, None, guard.id_file)
    return Confirmed(before, guard.confirm(join=join), guard.id_file)


def channel_factory(outbox: Path, rules_dir: Path, env: Mapping[str, str] | None = None,
                    clock: Callable[[], dt.datetime] | None = None):
    """How a long-running front end (the daemon) builds the channels of each policy it loads;
    ``clock``: its time, for the messages dated when they are sent."""
    env = os.environ if env is None else env

    def build(policy: Policy, templates: Templates | None) -> Channel:
        return registry.build(policy, templates, env=env, outbox=outbox, rules_dir=rules_dir, clock=clock)

    return build
