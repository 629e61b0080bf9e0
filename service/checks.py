"""What the administrator checks: `rappel lint` (the policy, its templates, accounts.yaml,
sources.yaml and the delivery settings, optionally each server), `rappel explain` (why a stage is due or not for one
loan) and `rappel schema` (the JSON Schemas, for editors)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.channels import registry
from adapters.channels.base import Check
from adapters.render.report import lint_report_templates
from engine import explain as explaining
from engine.accounts import accounts_json_schema
from engine.policy import Policy, policy_json_schema
from engine.sources import sources_json_schema
from engine.yamlsource import InputError, Problem, YamlDocument
from adapters.sources.presets import preset_info
from service.rules import channel_specs, load_accounts
from service.session import Refused, Rules

if TYPE_CHECKING:      # a lint without a database loads no database code (SQLAlchemy)
    from adapters.store.database import Store
from service.sources import environment_problems as source_problems, load_sources

__all__ = ["LintReport", "explain_loan", "future_restart", "lint", "schema", "unknown_libraries"]


@dataclass
class LintReport:
    policy: str                            # "rules/reminders.yaml: ok (4 stages, 2 libraries)"
    accounts: str                          # accounts.yaml: ok, or absent
    sources: str = ""                      # sources.yaml: ok (its sources), or absent
    delivery: list[str] = field(default_factory=list)     # where each route goes
    checks: list[Check] = field(default_factory=list)     # each server tried (check_delivery)
    warnings: list[str] = field(default_factory=list)     # not errors: lint still passes

    @property
    def failed(self) -> list[str]:
        return [c.target for c in self.checks if not c.ok]


def lint(rules: Rules, env: Mapping[str, str], outbox: Path, *, check_delivery: bool = False,
         store: Store | None = None, today: dt.date | None = None) -> LintReport:
    """Every problem as InputError (exit 2); the servers' answers in the report (nothing is sent).
    ``store``: the database to hold the policy against (its open loans' libraries must be in it);
    ``today``: the institution's date, against which a restart day in the future is a warning."""
    policy, folder = rules.policy, rules.folder
    accounts = _lint_accounts(folder, policy)
    sources = load_sources(folder, policy)
    problems = registry.environment_problems(policy, env, folder)
    problems += source_problems(sources, env)
    if store is not None:
        problems += unknown_libraries(store, policy, f"{folder}/reminders.yaml")
    if problems:
        raise InputError(problems)
    report = LintReport(f"{folder}/reminders.yaml: ok ({len(policy.stages)} stages, {len(policy.libraries)} libraries)",
                        accounts, sources.describe() if sources else
                        f"{folder}/sources.yaml: absent (facts come from `rappel import`; see `rappel pull`)")
    if policy.retention is None:
        report.warnings.append(f"{folder}/reminders.yaml: no retention: section: messages, notices and the audit "
                               f"trail are kept forever; the GDPR asks for a limit, e.g. retention: "
                               f"{{messages_days: 400, ledger_days: 1095, audit_days: 1095}}")
    if today is not None and policy.resumed_on is not None and policy.resumed_on > today:
        report.warnings.append(future_restart(folder, policy.resumed_on, today))
    channel = registry.build(policy, rules.templates, env=env, outbox=outbox, rules_dir=folder)
    try:
        report.delivery = channel.describe()
        if check_delivery:
            report.checks = channel.checks()
    finally:
        channel.close()
    return report


def future_restart(folder: Path, resumed_on: dt.date, today: dt.date) -> str:
    """A restart day after today: valid, but nothing is sent until then (a year typed wrong?)."""
    path = Path(folder) / "reminders.yaml"
    try:
        line = YamlDocument(path.read_text(encoding="utf-8"), str(path)).line_of(("restart", "resumed_on"))
    except (OSError, UnicodeError, InputError):
        line = None
    where = f"{path}:{line}" if line else str(path)
    return (f"{where}: restart.resumed_on is {resumed_on.isoformat()}, {(resumed_on - today).days} day(s) after "
            f"today ({today.isoformat()}): no notice is sent before then, and none whose trigger date is "
            f"earlier ever; is the date right?")


def unknown_libraries(store: Store, policy: Policy, source: str) -> list[Problem]:
    """The libraries with open loans in the database that the policy does not have: their letters
    would wait (service.dispatch) until they are added; one problem each, at ``libraries:``."""
    return [Problem(source, None, "libraries",
                    f"library {code!r} has {count} open loan(s) in the database ({store.url}) but is not in the "
                    f"policy: its letters would wait, unsent, until it is added under libraries: (with its "
                    f"name and letters:)")
            for code, count in sorted(store.open_loans_by_library().items()) if code not in policy.libraries]


def _lint_accounts(folder: Path, policy: Policy) -> str:
    """rules/accounts.yaml and the requests report templates; InputError on any problem."""
    accounts = load_accounts(folder, missing_ok=True)
    if accounts is None:
        return f"{folder}/accounts.yaml: absent (needed by rappel patron and rappel sync only)"
    problems = lint_report_templates(policy, folder)
    if problems:
        raise InputError(problems)
    return f"{folder}/accounts.yaml: ok ({len(accounts.roles)} roles; external accounts from {accounts.external.source})"


def explain_loan(store: Store, policy: Policy, loan_id: str, as_of: dt.date) -> list[str]:
    """Each stage: due or not for this loan on ``as_of``, and why (durable-rules, cross-checked)."""
    found = store.loan(loan_id)
    if found is None:
        raise Refused(f"no loan {loan_id!r} in {store.url}", 2)
    return explaining.explain(policy, found, store.patron(found.patron_id), store.ledger_for(loan_id), as_of,
                              channels=channel_specs())


def schema(*, accounts: bool = False, sources: bool = False) -> dict:
    """The JSON Schema of reminders.yaml (its channels: those registered), of accounts.yaml or of
    sources.yaml."""
    if sources:
        return sources_json_schema(preset_info())
    return accounts_json_schema() if accounts else policy_json_schema(channel_specs())
