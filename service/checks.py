"""What the administrator checks: `rappel lint` (the policy, its templates, accounts.yaml,
sources.yaml and the delivery settings, optionally each server), `rappel explain` (why a stage is due or not for one
loan) and `rappel schema` (the JSON Schemas, for editors)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from adapters.channels import registry
from adapters.channels.base import Check
from adapters.render.report import lint_report_templates
from adapters.store.database import Store
from engine import explain as explaining
from engine.accounts import accounts_json_schema
from engine.policy import Policy, policy_json_schema
from engine.sources import sources_json_schema
from engine.yamlsource import InputError
from adapters.sources.presets import preset_info
from service.rules import channel_specs, load_accounts
from service.session import Refused, Rules
from service.sources import environment_problems as source_problems, load_sources

__all__ = ["LintReport", "explain_loan", "lint", "schema"]


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


def lint(rules: Rules, env: Mapping[str, str], outbox: Path, *, check_delivery: bool = False) -> LintReport:
    """Every problem as InputError (exit 2); the servers' answers in the report (nothing is sent)."""
    policy, folder = rules.policy, rules.folder
    accounts = _lint_accounts(folder, policy)
    sources = load_sources(folder, policy)
    problems = registry.environment_problems(policy, env, folder)
    problems += source_problems(sources, env)
    if problems:
        raise InputError(problems)
    report = LintReport(f"{folder}/reminders.yaml: ok ({len(policy.stages)} stages, {len(policy.libraries)} libraries)",
                        accounts, sources.describe() if sources else
                        f"{folder}/sources.yaml: absent (facts come from `rappel import`; see `rappel pull`)")
    if policy.retention is None:
        report.warnings.append(f"{folder}/reminders.yaml: no retention: section: messages, notices and the audit "
                               f"trail are kept forever; the GDPR asks for a limit, e.g. retention: "
                               f"{{messages_days: 400, ledger_days: 1095, audit_days: 1095}}")
    channel = registry.build(policy, rules.templates, env=env, outbox=outbox, rules_dir=folder)
    try:
        report.delivery = channel.describe()
        if check_delivery:
            report.checks = channel.checks()
    finally:
        channel.close()
    return report


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
