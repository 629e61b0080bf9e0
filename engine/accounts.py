"""The account policy (rules/accounts.yaml): models, the edit decision's reference, notice audiences.

"May this role edit this field of this patron?" is decided by durable-rules (engine/rules.py,
``evaluate_edits``) from this policy, and every answer is cross-checked against the plain-Python
reference below (``verdict``): a disagreement is an EngineFault, never an answer. The words of an
answer (reason, and where to make the change instead) are composed here from the verdict.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine import rules
from engine.contact import is_email_address
from engine.facts import ACCOUNT_TYPES, IDENTITY_FIELDS, PATRON_FIELDS, RECORD_TYPES, Patron, RecordType
from engine.policy import Policy
from engine.yamlsource import InputError, YamlDocument, validation_problems

EDITABLE_FIELDS = tuple(f for f in PATRON_FIELDS if f not in IDENTITY_FIELDS)
CONTACT_FIELDS = ("email", "phone", "address_line1", "address_line2", "postal_code", "city", "country")

FieldName = Literal["barcode", "first_name", "last_name", "email", "preferred_language", "record_type",
                    "user_group", "address_line1", "address_line2", "postal_code", "city", "country", "phone",
                    "channels", "opt_out"]
assert set(FieldName.__args__) == set(EDITABLE_FIELDS), "FieldName must list the patron's editable fields"

# What a role may do beyond editing fields: in the staff interface (`rappel serve`) and its JSON API.
# patrons.view: look patrons up, see their loans and requests; patrons.edit: edit (field by field as
# may_edit and the account allow); requests.report: send a patron the requests report; notices.view:
# a patron's notices and the day's; notices.act: resend, cancel, retry a notice; day.view: the
# overdue service's day (runs, failures, held notices, letters to print, dry runs, the timeline);
# day.act: confirm what the flood guard held; facts.push: push loans, returns, renewals and patrons
# through the API (the library system's client).
Action = Literal["patrons.view", "patrons.edit", "requests.report", "notices.view", "notices.act",
                 "day.view", "day.act", "facts.push"]
ACTIONS: tuple[str, ...] = Action.__args__
# a role that does not say (an accounts.yaml written before the staff interface): patron services
DEFAULT_ACTIONS = ("patrons.view", "patrons.edit", "requests.report", "notices.view")

# the verdicts of the edit decision, in the order they are checked
VERDICTS = ("identity", "owned", "record_type", "allowed", "not_permitted")

_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(values: list[str], what: str) -> list[str]:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"{what} listed twice: {', '.join(dupes)}")
    return values


class InternalAccounts(_Strict):
    description: str = Field(default="", description="What internal accounts are, for the staff")


class ExternalAccounts(_Strict):
    description: str = Field(default="", description="What external accounts are, for the staff")
    source: str = Field(min_length=1, description="The system external accounts come from, e.g. the student "
                                                  "information system")
    hint: str = Field(min_length=1, description="Shown when a field the source owns is refused: where to change "
                                                "it instead")
    owned_fields: list[FieldName] = Field(description="Fields the source owns: overwritten by every "
                                                      "synchronisation, never edited locally")
    protected_fields: list[FieldName] = Field(
        default=[], description="Fields the source provides but staff may edit: once edited locally, "
                                "synchronisations keep the local value")

    @field_validator("owned_fields", "protected_fields")
    @classmethod
    def _no_repeats(cls, values):
        return _unique(values, "field")

    @model_validator(mode="after")
    def _disjoint(self):
        both = sorted(set(self.owned_fields) & set(self.protected_fields))
        if both:
            raise ValueError(f"protected_fields: {', '.join(both)} cannot be both owned by the source "
                             f"and protected (an owned field is never edited locally)")
        return self


class AccountTypes(_Strict):
    internal: InternalAccounts
    external: ExternalAccounts


class RecordTypeSpec(_Strict):
    description: str = ""
    receives_loan_notices: bool = Field(description="Whether this record type receives loan notices at all")


class RecordTypes(_Strict):
    staff: RecordTypeSpec
    public: RecordTypeSpec
    contact: RecordTypeSpec


# one list of each, in engine/facts.py: these models name the same ones
assert tuple(AccountTypes.model_fields) == ACCOUNT_TYPES, "AccountTypes must name every account type"
assert tuple(RecordTypes.model_fields) == RECORD_TYPES, "RecordTypes must name every record type"


class Role(_Strict):
    description: str = ""
    record_types: list[RecordType] = Field(default=list(RECORD_TYPES),
                                           description="Record types this role may edit (default: all)")
    may_edit: list[FieldName] = Field(description="Fields this role may edit, where the account allows it")
    may: list[Action] = Field(default=list(DEFAULT_ACTIONS),
                              description="What this role may do in the staff interface and the API "
                                          f"(default: {', '.join(DEFAULT_ACTIONS)})")

    @field_validator("record_types", "may_edit", "may")
    @classmethod
    def _no_repeats(cls, values):
        return _unique(values, "value")


class Validation(_Strict):
    postal_code: dict[str, str] = Field(
        default={"default": r"^[A-Za-z0-9][A-Za-z0-9 -]{1,9}$"},
        description="Regular expression a postal code must match, per country (the patron's `country`, "
                    "any case); `default` for the other countries")

    @field_validator("postal_code")
    @classmethod
    def _patterns(cls, patterns):
        for country, pattern in patterns.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{country}: {pattern!r} is not a regular expression: {exc}") from None
        if "default" not in patterns:
            raise ValueError("give a `default` pattern for the countries not listed")
        return patterns


class RequestsReport(_Strict):
    active_statuses: list[str] = Field(default=["active"], min_length=1,
                                       description="Request statuses listed in the requests report "
                                                   "(expired requests never are)")


class AccountsPolicy(_Strict):
    account_types: AccountTypes
    record_types: RecordTypes
    roles: dict[str, Role] = Field(min_length=1, description="Staff roles and what each may edit")
    validation: Validation = Validation()
    requests_report: RequestsReport = RequestsReport()

    @field_validator("roles")
    @classmethod
    def _role_names(cls, roles):
        bad = [name for name in roles if not re.match(r"^[a-z][a-z0-9_]*$", name)]
        if bad:
            raise ValueError(f"role names are lower-case letters, digits and _: {', '.join(bad)}")
        return roles

    @property
    def external(self) -> ExternalAccounts:
        return self.account_types.external

    @property
    def notice_record_types(self) -> list[str]:
        return [rt for rt in RECORD_TYPES if getattr(self.record_types, rt).receives_loan_notices]

    def may(self, role: str | None, action: str) -> bool:
        """Whether ``role`` may do ``action`` (one of ACTIONS); an unknown role may do nothing."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        spec = self.roles.get(role or "")
        return spec is not None and action in spec.may

    def ownership(self, account_type: str, field: str) -> str:
        """identity | owned | protected | local: who has the last word on a field of this account type."""
        if field in IDENTITY_FIELDS:
            return "identity"
        if account_type != "external":
            return "local"
        if field in self.external.owned_fields:
            return "owned"
        return "protected" if field in self.external.protected_fields else "local"


def parse_accounts(text: str, source: str = "accounts.yaml") -> AccountsPolicy:
    """Validate account policy text; raise InputError naming file, line and key of every problem."""
    doc = YamlDocument(text, source)
    if doc.duplicates:
        raise InputError(doc.duplicates)
    if not isinstance(doc.data, dict):
        raise InputError([doc.problem((), "the account policy must be a mapping of keys "
                                          "(account_types, record_types, roles, …)")])
    try:
        accounts = AccountsPolicy.model_validate(doc.data)
    except OverflowError as exc:
        raise doc.overflowed(exc) from None
    except ValidationError as exc:
        fixed = []
        for problem in validation_problems(doc, exc):
            # a model-level message names its key ("protected_fields: …"): point at that key's line
            head, sep, rest = problem.message.partition(": ")
            parts = tuple(p for p in problem.where.replace("[", ".").replace("]", "").split(".") if p)
            if sep and head.isidentifier() and doc.line_of(parts + (head,)) != doc.line_of(parts):
                problem = doc.problem(parts + (head,), rest)
            fixed.append(problem)
        raise InputError(doc.bounded(fixed)) from None
    doc.check_bounds()
    return accounts


def accounts_json_schema() -> dict:
    schema = AccountsPolicy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rappel account policy (rules/accounts.yaml)"
    return schema


# -- loan notices ------------------------------------------------------------------------------

def audience_conflicts(policy: Policy, accounts: AccountsPolicy | None) -> list[tuple[int, list[str]]]:
    """Stages whose audience names record types that accounts.yaml says receive no loan notices:
    (stage index, those record types). Such a stage would silently not reach them: an error."""
    if accounts is None:
        return []
    receiving = set(accounts.notice_record_types)
    out = []
    for i, stage in enumerate(policy.stages):
        if "audience" in stage.model_fields_set and "record_types" in stage.audience.model_fields_set:
            refused = [rt for rt in stage.audience.record_types if rt not in receiving]
            if refused:
                out.append((i, refused))
    return out


def with_notice_audiences(policy: Policy, accounts: AccountsPolicy | None) -> Policy:
    """The reminder policy with stage audiences limited to the record types that receive notices.

    A stage without ``audience.record_types`` gets the record types accounts.yaml says receive loan
    notices; a stage that lists some keeps only those that do. Without an account policy, unchanged.
    """
    if accounts is None:
        return policy
    receiving = accounts.notice_record_types
    stages = []
    for stage in policy.stages:
        explicit = "audience" in stage.model_fields_set and "record_types" in stage.audience.model_fields_set
        wanted = [rt for rt in stage.audience.record_types if rt in receiving] if explicit else list(receiving)
        audience = stage.audience.model_copy(update={"record_types": wanted})
        stages.append(stage.model_copy(update={"audience": audience}))
    return policy.model_copy(update={"stages": stages})


# -- the edit decision -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EditRequest:
    """May ``role`` edit ``field`` of a patron with this account type and record type?"""

    account_type: str
    record_type: str
    role: str
    field: str


@dataclass(frozen=True, slots=True)
class EditDecision:
    request: EditRequest
    verdict: str           # one of VERDICTS
    reason: str            # why, in a sentence
    where: str = ""        # refused: where to make the change instead

    @property
    def allowed(self) -> bool:
        return self.verdict == "allowed"

    def as_dict(self) -> dict:
        return {"field": self.request.field, "role": self.request.role, "allowed": self.allowed,
                "verdict": self.verdict, "reason": self.reason, "where": self.where}


def verdict(accounts: AccountsPolicy, req: EditRequest) -> str:
    """The plain-Python reference of the edit decision (durable-rules is checked against it)."""
    if req.field in IDENTITY_FIELDS:
        return "identity"
    if req.account_type == "external" and req.field in accounts.external.owned_fields:
        return "owned"
    role = accounts.roles.get(req.role)
    if role is None:
        return "not_permitted"
    if req.record_type not in role.record_types:
        return "record_type"
    return "allowed" if req.field in role.may_edit else "not_permitted"


def explain(accounts: AccountsPolicy, req: EditRequest, verdict_: str) -> EditDecision:
    """The words of a verdict: the reason, and where to make the change instead."""
    f, role, rt, at = req.field, req.role, req.record_type, req.account_type
    if verdict_ == "allowed":
        kind = accounts.ownership(at, f)
        note = {"protected": f"; protected: the local value is kept by later synchronisations with "
                             f"{accounts.external.source}",
                "local": "; library-local: synchronisations never change it" if at == "external" else ""}.get(kind, "")
        return EditDecision(req, verdict_, f"{role} may edit {f} of {at} {rt} accounts{note}")
    if verdict_ == "identity":
        return EditDecision(req, verdict_, f"{f} identifies the account and is never edited",
                            "create a new account instead")
    if verdict_ == "owned":
        return EditDecision(req, verdict_, f"{f} of an external account is owned by {accounts.external.source}",
                            accounts.external.hint)
    others = _roles_that_may(accounts, req)
    where = (f"ask someone with the role {' or '.join(others)}" if others else
             f"no role may edit {f} of {rt} records: the account policy (accounts.yaml, roles) decides that")
    if verdict_ == "record_type":
        return EditDecision(req, verdict_, f"{role} does not edit {rt} records", where)
    if role not in accounts.roles:
        return EditDecision(req, verdict_, f"{role!r} is not a role of the account policy "
                                           f"({', '.join(accounts.roles)})", where)
    return EditDecision(req, verdict_, f"{role} may not edit {f}", where)


def _roles_that_may(accounts: AccountsPolicy, req: EditRequest) -> list[str]:
    return [name for name in accounts.roles
            if verdict(accounts, dataclasses.replace(req, role=name)) == "allowed"]


def decide_edits(accounts: AccountsPolicy, requests: list[EditRequest]) -> list[EditDecision]:
    """Each request decided by durable-rules, cross-checked against the reference, then explained."""
    got = rules.evaluate_edits(accounts, requests)
    expected = [verdict(accounts, req) for req in requests]
    if got != expected:
        wrong = [(r, g, e) for r, g, e in zip(requests, got, expected) if g != e][:3]
        shown = "; ".join(f"{r.role}/{r.field}/{r.account_type}/{r.record_type}: {g} vs {e}" for r, g, e in wrong)
        raise rules.EngineFault(f"durable-rules and the reference disagree on edit decisions ({shown})")
    return [explain(accounts, req, v) for req, v in zip(requests, got)]


# -- values ------------------------------------------------------------------------------------

def value_problems(accounts: AccountsPolicy, changes: dict[str, str], current: Patron) -> dict[str, str]:
    """field → what is wrong with its new value (email, postal code, language, record type)."""
    problems = {}
    country = changes.get("country", current.country).strip()
    for field, value in changes.items():
        if any(ch in value for ch in "\r\n"):
            problems[field] = "must be on one line"
        elif field == "email" and value and not is_email_address(value):
            problems[field] = f"{value!r} is not an email address"
        elif field == "postal_code" and value:
            patterns = accounts.validation.postal_code
            key = next((k for k in patterns if k.casefold() == country.casefold()), "default")
            if not re.fullmatch(patterns[key], value):
                where = f"in {country}" if key != "default" else "(default pattern)"
                problems[field] = f"{value!r} is not a postal code {where}: expected {patterns[key]}"
        elif field == "record_type" and value not in RECORD_TYPES:
            problems[field] = f"{value!r} is not one of {', '.join(RECORD_TYPES)}"
        elif field == "preferred_language" and value and not _LANGUAGE.match(value):
            problems[field] = f"{value!r} is not a language code (fr, en, es…)"
        elif field == "barcode" and not value.strip():
            problems[field] = "a barcode cannot be empty"
    return problems
