"""The administrator's rules as every use case loads them: reminders.yaml, limited by accounts.yaml
(which record types receive loan notices), and its templates, all checked: nothing runs on a
broken policy."""
from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.channels import registry
from adapters.forked import alongside
from adapters.channels.base import Channel
from adapters.render import Templates
from engine.accounts import AccountsPolicy, audience_conflicts, parse_accounts, with_notice_audiences
from engine.policy import Policy, parse_policy
from engine.yamlsource import InputError, Problem, YamlDocument
from service.calendars import ical_files, with_ical_dates
from service.sources import LoadedSources, load_sources

__all__ = ["ACCOUNTS_FILE", "POLICY_FILE", "Loaded", "load_accounts", "load_checked", "load_policy", "load_rules",
           "policy_fingerprint"]

log = logging.getLogger("rappel.rules")

POLICY_FILE = "reminders.yaml"
ACCOUNTS_FILE = "accounts.yaml"
SOURCES_FILE = "sources.yaml"


def load_policy(rules_dir: Path) -> Policy:
    """reminders.yaml, with stage audiences limited to the record types accounts.yaml says receive
    loan notices (when there is an accounts.yaml)."""
    path = Path(rules_dir) / POLICY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError([Problem(str(path), None, "", f"cannot read the policy: {exc.strerror}")]) from None
    policy, accounts = parse_with_registry(text, str(path)), load_accounts(rules_dir, missing_ok=True)
    policy = with_ical_dates(policy, Path(rules_dir), YamlDocument(text, str(path)))
    conflicts = audience_conflicts(policy, accounts)
    if conflicts:
        doc = YamlDocument(text, str(path))
        raise InputError([doc.problem(("stages", i, "audience", "record_types"),
                                      f"{', '.join(refused)}: accounts.yaml says these record types receive no loan "
                                      f"notices (receives_loan_notices: false); the stage would never reach them")
                          for i, refused in conflicts])
    return with_notice_audiences(policy, accounts)


def parse_with_registry(text: str, source: str) -> Policy:
    """The policy text parsed with the registry's channels: a stage's ``channel:`` is one registered
    in adapters/channels/, and ``delivery.channels`` holds settings its channel's model accepts;
    else InputError with file, line and key (``stages[1].channel: unknown channel 'pigoen' (known:
    email, letter)``)."""
    policy = parse_policy(text, source, registry.REGISTRY.specs())
    problems = registry.settings_problems(policy, YamlDocument(text, source)) if policy.delivery.channels else []
    if problems:
        raise InputError(problems)
    return policy


def channel_specs() -> dict:
    """The channel kinds the engine routes to (plain data), for plan_day and explain."""
    return registry.REGISTRY.specs()


def load_checked(rules_dir: Path) -> tuple[Policy, Templates]:
    """The policy and its templates, or InputError listing every problem: nothing runs on a broken policy."""
    policy = load_policy(rules_dir)
    templates = Templates(Path(rules_dir), policy)
    problems = templates.lint()
    if problems:
        raise InputError(problems)
    return policy, templates


def load_linting(rules_dir: Path) -> tuple[Policy, Templates, Callable[[], None]]:
    """load_checked for a command with other work to do meanwhile (a dry run plans its day): the
    policy now (InputError if it is broken) and its templates, whose lint runs in a forked process
    (adapters/forked.py); the function returned waits for the lint and raises InputError listing
    every problem. Nothing may be shown or written before it has returned (``linted_first``)."""
    policy = load_policy(rules_dir)
    templates = Templates(Path(rules_dir), policy)
    linted = alongside(templates.lint)

    def checked() -> None:
        problems = linted()
        if problems:
            raise InputError(problems)
    return policy, templates, checked


@contextmanager
def linted_first(checked: Callable[[], None]) -> Iterator[None]:
    """The block runs while the templates are linted (load_linting); the lint's problems are raised
    when it ends, and before anything the block raised: a broken template is said first, as when
    the lint ran before the work."""
    try:
        yield
    except BaseException:
        checked()
        raise
    checked()


def load_accounts(rules_dir: Path, *, missing_ok: bool = False) -> AccountsPolicy | None:
    """rules/accounts.yaml, validated; None when it is absent and ``missing_ok``."""
    path = Path(rules_dir) / ACCOUNTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise InputError([Problem(str(path), None, "", "cannot read the account policy: no such file")]) from None
    except OSError as exc:
        raise InputError([Problem(str(path), None, "", f"cannot read the account policy: {exc.strerror}")]) from None
    return parse_accounts(text, str(path))


# --- a private copy of the rules, for the daemon --------------------------------------------------

def policy_fingerprint(rules_dir: Path) -> str:
    """What the policy is made of: reminders.yaml, accounts.yaml (which record types receive loan
    notices), sources.yaml (where the facts come from) and every template file. An absent
    accounts.yaml or sources.yaml counts too: adding or removing one is an edit."""
    digest = hashlib.sha256()
    rules_dir = Path(rules_dir)
    files = [rules_dir / POLICY_FILE, rules_dir / ACCOUNTS_FILE, rules_dir / SOURCES_FILE, *_named_icals(rules_dir)]
    templates = rules_dir / "templates"
    if templates.is_dir():
        files += sorted(p for p in templates.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(rules_dir)).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except FileNotFoundError:
            digest.update(b"<absent>")
        except OSError:
            digest.update(b"<unreadable>")
        digest.update(b"\0")
    return digest.hexdigest()


def _named_icals(rules_dir: Path) -> list[Path]:
    """The iCalendar files reminders.yaml names inside the rules folder (none when it does not parse)."""
    try:
        policy = parse_with_registry((rules_dir / POLICY_FILE).read_text(encoding="utf-8"), POLICY_FILE)
    except (OSError, InputError):
        return []
    root = rules_dir.resolve()
    return [p for p in ical_files(policy, rules_dir) if p.resolve().is_relative_to(root)]


@dataclass
class Loaded:
    """A policy that passed lint, its templates and channel, read from a private copy of the rules."""

    policy: Policy
    templates: object
    channel: Channel
    fingerprint: str
    snapshot: Path
    sources: LoadedSources | None = None     # rules/sources.yaml, when there is one

    def discard(self) -> None:
        _close(self.channel)
        shutil.rmtree(self.snapshot, ignore_errors=True)


def load_rules(rules_dir: Path, channel_for: Callable[[Policy, object], Channel]) -> Loaded:
    """Copy reminders.yaml, accounts.yaml and sources.yaml (when there are) and templates/ aside,
    lint the copy, build its channel; or InputError (naming the files where the administrator
    edits them).

    The copy is loaded as `rappel run` loads the rules (load_checked): stage audiences
    limited to the record types accounts.yaml says receive loan notices."""
    rules_dir = Path(rules_dir)
    snapshot = Path(tempfile.mkdtemp(prefix="rappel-rules-"))
    try:
        try:
            shutil.copy2(rules_dir / POLICY_FILE, snapshot / POLICY_FILE)
        except OSError as exc:
            raise InputError([Problem(str(rules_dir / POLICY_FILE), None, "",
                                      f"cannot read the policy: {exc.strerror}")]) from None
        for name, what in ((ACCOUNTS_FILE, "the account policy"), (SOURCES_FILE, "the sources")):
            try:
                shutil.copy2(rules_dir / name, snapshot / name)
            except FileNotFoundError:
                pass              # no account policy: the stages' own audiences apply; no sources: CSV files
            except OSError as exc:
                raise InputError([Problem(str(rules_dir / name), None, "",
                                          f"cannot read {what}: {exc.strerror}")]) from None
        if (rules_dir / "templates").is_dir():
            shutil.copytree(rules_dir / "templates", snapshot / "templates")
        for ical in _named_icals(rules_dir):          # calendar.ical files, where the policy names them
            target = snapshot / ical.relative_to(rules_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            if ical.is_file():
                shutil.copy2(ical, target)
        fingerprint = policy_fingerprint(snapshot)
        try:
            policy, templates = load_checked(snapshot)
            sources = load_sources(snapshot, policy, shown_as=rules_dir / SOURCES_FILE)
        except InputError as exc:
            raise InputError([_relocated(p, snapshot, rules_dir) for p in exc.problems]) from None
        return Loaded(policy, templates, channel_for(policy, templates), fingerprint, snapshot, sources)
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise


def _relocated(problem: Problem, snapshot: Path, rules_dir: Path) -> Problem:
    source = problem.source.replace(str(snapshot), str(rules_dir))
    return Problem(source, problem.line, problem.where, problem.message.replace(str(snapshot), str(rules_dir)))


def _close(channel: Channel) -> None:
    try:
        channel.close()
    except Exception as exc:  # noqa: BLE001 - closing is best effort
        log.warning("closing the channel: %s", exc)
