"""rules/accounts.yaml: validation, the edit decision (durable-rules vs the reference), notice audiences."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import rules
from engine.accounts import (EDITABLE_FIELDS, PATRON_FIELDS, RECORD_TYPES, AccountsPolicy, EditRequest,
                             decide_edits, parse_accounts, value_problems, verdict, with_notice_audiences)
from engine.decide import plan_day
from engine.facts import Candidate, Loan, Patron
from engine.policy import parse_policy
from engine.yamlsource import InputError

from conftest import RULES


@pytest.fixture(scope="module")
def accounts() -> AccountsPolicy:
    return parse_accounts((RULES / "accounts.yaml").read_text(encoding="utf-8"), str(RULES / "accounts.yaml"))


# -- the edit decision of the shipped policy, cell by cell ---------------------------------------
# Y allowed · I identity field · O owned by the source (external) · R the role does not edit this
# record type · N the role may not edit this field
#                              internal            external
#                              staff public contact staff public contact
GRID = """
circulation_desk patron_id          I I I  I I I
circulation_desk account_type       I I I  I I I
circulation_desk barcode            N N R  O O O
circulation_desk first_name         N N R  O O O
circulation_desk last_name          N N R  O O O
circulation_desk email              Y Y R  O O O
circulation_desk phone              Y Y R  O O O
circulation_desk address_line1      Y Y R  O O O
circulation_desk address_line2      Y Y R  O O O
circulation_desk postal_code        Y Y R  O O O
circulation_desk city               Y Y R  O O O
circulation_desk country            Y Y R  O O O
circulation_desk preferred_language Y Y R  Y Y R
circulation_desk user_group         N N R  N N R
circulation_desk record_type        N N R  N N R
circulation_desk channels           Y Y R  Y Y R
circulation_desk opt_out            Y Y R  Y Y R
user_manager     patron_id          I I I  I I I
user_manager     account_type       I I I  I I I
user_manager     barcode            Y Y Y  O O O
user_manager     first_name         Y Y Y  O O O
user_manager     last_name          Y Y Y  O O O
user_manager     email              Y Y Y  O O O
user_manager     phone              Y Y Y  O O O
user_manager     address_line1      Y Y Y  O O O
user_manager     address_line2      Y Y Y  O O O
user_manager     postal_code        Y Y Y  O O O
user_manager     city               Y Y Y  O O O
user_manager     country            Y Y Y  O O O
user_manager     preferred_language Y Y Y  Y Y Y
user_manager     user_group         Y Y Y  Y Y Y
user_manager     record_type        Y Y Y  Y Y Y
user_manager     channels           Y Y Y  Y Y Y
user_manager     opt_out            Y Y Y  Y Y Y
acquisitions     patron_id          I I I  I I I
acquisitions     account_type       I I I  I I I
acquisitions     barcode            R R N  O O O
acquisitions     first_name         R R Y  O O O
acquisitions     last_name          R R Y  O O O
acquisitions     email              R R Y  O O O
acquisitions     phone              R R Y  O O O
acquisitions     address_line1      R R Y  O O O
acquisitions     address_line2      R R Y  O O O
acquisitions     postal_code        R R Y  O O O
acquisitions     city               R R Y  O O O
acquisitions     country            R R Y  O O O
acquisitions     preferred_language R R N  R R N
acquisitions     user_group         R R N  R R N
acquisitions     record_type        R R N  R R N
acquisitions     channels           R R N  R R N
acquisitions     opt_out            R R N  R R N
overdue_service  patron_id          I I I  I I I
overdue_service  account_type       I I I  I I I
overdue_service  barcode            N N N  O O O
overdue_service  first_name         N N N  O O O
overdue_service  last_name          N N N  O O O
overdue_service  email              N N N  O O O
overdue_service  phone              N N N  O O O
overdue_service  address_line1      N N N  O O O
overdue_service  address_line2      N N N  O O O
overdue_service  postal_code        N N N  O O O
overdue_service  city               N N N  O O O
overdue_service  country            N N N  O O O
overdue_service  preferred_language N N N  N N N
overdue_service  user_group         N N N  N N N
overdue_service  record_type        N N N  N N N
overdue_service  channels           N N N  N N N
overdue_service  opt_out            N N N  N N N
library_system   patron_id          I I I  I I I
library_system   account_type       I I I  I I I
library_system   barcode            N N N  O O O
library_system   first_name         N N N  O O O
library_system   last_name          N N N  O O O
library_system   email              N N N  O O O
library_system   phone              N N N  O O O
library_system   address_line1      N N N  O O O
library_system   address_line2      N N N  O O O
library_system   postal_code        N N N  O O O
library_system   city               N N N  O O O
library_system   country            N N N  O O O
library_system   preferred_language N N N  N N N
library_system   user_group         N N N  N N N
library_system   record_type        N N N  N N N
library_system   channels           N N N  N N N
library_system   opt_out            N N N  N N N
stranger         email              N N N  O O O
stranger         preferred_language N N N  N N N
stranger         patron_id          I I I  I I I
"""
LETTERS = {"Y": "allowed", "I": "identity", "O": "owned", "R": "record_type", "N": "not_permitted"}
CELLS = [(a, r) for a in ("internal", "external") for r in RECORD_TYPES]
ROWS = [line.split() for line in GRID.strip().splitlines()]


def test_grid_covers_every_role_and_field(accounts):
    covered = {(role, field) for role, field, *_ in ROWS}
    assert covered >= set(itertools.product(accounts.roles, PATRON_FIELDS))


@pytest.mark.parametrize("role,field,expected", [(r[0], r[1], r[2:]) for r in ROWS],
                         ids=[f"{r[0]}-{r[1]}" for r in ROWS])
def test_edit_decision(accounts, role, field, expected):
    requests = [EditRequest(a, r, role, field) for a, r in CELLS]
    decisions = decide_edits(accounts, requests)            # durable-rules, cross-checked
    assert [d.verdict for d in decisions] == [LETTERS[x] for x in expected]
    assert [verdict(accounts, r) for r in requests] == [LETTERS[x] for x in expected]
    for d in decisions:
        assert d.allowed == (d.verdict == "allowed")
        assert bool(d.where) == (not d.allowed)               # every refusal says where to go instead


def test_whole_grid_in_one_evaluation_equals_reference(accounts):
    requests = [EditRequest(a, r, role, f) for a in ("internal", "external", "odd") for r in (*RECORD_TYPES, "odd")
                for role in (*accounts.roles, "stranger") for f in (*PATRON_FIELDS, "nonsense")]
    got = rules.evaluate_edits(accounts, requests)
    assert got == [verdict(accounts, r) for r in requests]


def test_words_of_the_answers(accounts):
    owned, = decide_edits(accounts, [EditRequest("external", "public", "circulation_desk", "address_line1")])
    assert "owned by the student information system" in owned.reason
    assert owned.where == "update through the campus registrar; the next synchronisation brings it in"
    scope, = decide_edits(accounts, [EditRequest("internal", "contact", "circulation_desk", "email")])
    assert scope.reason == "circulation_desk does not edit contact records"
    assert scope.where == "ask someone with the role user_manager or acquisitions"
    denied, = decide_edits(accounts, [EditRequest("internal", "public", "circulation_desk", "user_group")])
    assert denied.where == "ask someone with the role user_manager"
    protected, = decide_edits(accounts, [EditRequest("external", "public", "user_manager", "user_group")])
    assert protected.allowed and "kept by later synchronisations" in protected.reason
    unknown, = decide_edits(accounts, [EditRequest("internal", "public", "intern", "email")])
    assert not unknown.allowed and "'intern' is not a role" in unknown.reason


def test_no_requests_no_engine(accounts):
    assert rules.evaluate_edits(accounts, []) == []


def test_disagreement_is_a_fault(accounts, monkeypatch):
    monkeypatch.setattr(rules, "evaluate_edits", lambda acc, reqs: ["allowed"] * len(reqs))
    with pytest.raises(rules.EngineFault, match="disagree"):
        decide_edits(accounts, [EditRequest("external", "public", "circulation_desk", "email")])


# -- any policy: durable-rules compiled from the file equals the reference ------------------------

_fields = st.lists(st.sampled_from(EDITABLE_FIELDS), unique=True)
_role = st.fixed_dictionaries({"record_types": st.lists(st.sampled_from(RECORD_TYPES), unique=True),
                               "may_edit": _fields})


@st.composite
def _policies(draw):
    owned = draw(_fields)
    protected = [f for f in draw(_fields) if f not in owned]
    roles = draw(st.dictionaries(st.sampled_from(["desk", "manager", "acq", "a1"]), _role, min_size=1))
    return AccountsPolicy.model_validate({
        "account_types": {"internal": {}, "external": {"source": "SIS", "hint": "at the source",
                                                       "owned_fields": owned, "protected_fields": protected}},
        "record_types": {rt: {"receives_loan_notices": True} for rt in RECORD_TYPES},
        "roles": roles})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_policies())
def test_any_policy_rules_equal_reference(policy):
    requests = [EditRequest(a, r, role, f) for a in ("internal", "external") for r in RECORD_TYPES
                for role in (*policy.roles, "nobody") for f in PATRON_FIELDS]
    assert rules.evaluate_edits(policy, requests) == [verdict(policy, r) for r in requests]


# -- validation with file and line ---------------------------------------------------------------

GOOD = (RULES / "accounts.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("old,new,expected", [
    ("owned_fields: [barcode,", "owned_fields: [barcod,", "accounts.yaml:12: account_types.external.owned_fields[0]: Input should be"),
    ("protected_fields: [user_group, preferred_language]", "protected_fields: [user_group, email]",
     "accounts.yaml:15: account_types.external.protected_fields: email cannot be both owned by the source and protected"),
    ("    hint: update through", "    hnt: update through", "accounts.yaml:10: account_types.external.hnt: unknown key"),
    ("    receives_loan_notices: false", "    receives_loan_notices: maybe", "accounts.yaml:28: record_types.contact.receives_loan_notices: Input should be a valid boolean"),
    ("  user_manager:", "  User-Manager:", "accounts.yaml:30: roles: role names are lower-case letters, digits and _: User-Manager"),
    ("    record_types: [contact]", "    record_types: [vendor]", "accounts.yaml:44: roles.acquisitions.record_types[0]: Input should be 'staff', 'public' or 'contact'"),
    ("    France: '^[0-9]{5}$'", "    France: '^[0-9]{5$('", "accounts.yaml:59: validation.postal_code.France: '^[0-9]{5$(' is not a regular expression"),
    ("  acquisitions:", "  circulation_desk:", "accounts.yaml:42: roles.circulation_desk: key given twice"),
    ("    source: the student information system\n", "", "accounts.yaml:7: account_types.external.source: required key is missing"),
])
def test_policy_errors_name_file_line_key(old, new, expected):
    assert old in GOOD
    with pytest.raises(InputError) as err:
        parse_accounts(GOOD.replace(old, new, 1), "accounts.yaml")
    assert expected in str(err.value), str(err.value)


def test_not_a_mapping():
    with pytest.raises(InputError, match="must be a mapping"):
        parse_accounts("- a\n- b\n", "accounts.yaml")


# -- values ----------------------------------------------------------------------------------------

FRANCE = Patron("P1", country="France")


@pytest.mark.parametrize("changes,current,expected", [
    ({"email": "a@b.example"}, FRANCE, {}),
    ({"email": "a@b"}, FRANCE, {"email": "'a@b' is not an email address"}),
    ({"email": "a b@c.example"}, FRANCE, {"email": "'a b@c.example' is not an email address"}),
    ({"email": ""}, FRANCE, {}),                                   # clearing an address is allowed
    ({"postal_code": "33000"}, FRANCE, {}),
    ({"postal_code": "3300"}, FRANCE, {"postal_code": "'3300' is not a postal code in France: expected ^[0-9]{5}$"}),
    ({"postal_code": "1000", "country": "Belgique"}, FRANCE, {}),   # the country edited alongside counts
    ({"postal_code": "SW1A 1AA"}, Patron("P2", country="United Kingdom"), {}),
    ({"postal_code": "!!"}, Patron("P2", country="United Kingdom"),
     {"postal_code": "'!!' is not a postal code (default pattern): expected ^[A-Za-z0-9][A-Za-z0-9 -]{1,9}$"}),
    ({"city": "Bor\ndeaux"}, FRANCE, {"city": "must be on one line"}),
    ({"record_type": "vendor"}, FRANCE, {"record_type": "'vendor' is not one of staff, public, contact"}),
    ({"preferred_language": "French"}, FRANCE, {"preferred_language": "'French' is not a language code (fr, en, es…)"}),
    ({"barcode": " "}, FRANCE, {"barcode": "a barcode cannot be empty"}),
])
def test_value_problems(accounts, changes, current, expected):
    assert value_problems(accounts, changes, current) == expected


# -- which record types receive loan notices -------------------------------------------------------

def _accounts_with(receiving: set[str]) -> AccountsPolicy:
    data = parse_accounts(GOOD).model_dump()
    for rt in RECORD_TYPES:
        data["record_types"][rt]["receives_loan_notices"] = rt in receiving
    return AccountsPolicy.model_validate(data)


def test_audiences_default_to_the_record_types_that_receive_notices(policy, accounts):
    assert all(s.audience.record_types == ["staff", "public"]
               for s in with_notice_audiences(policy, accounts).stages)
    only_public = with_notice_audiences(policy, _accounts_with({"public"}))
    assert all(s.audience.record_types == ["public"] for s in only_public.stages)
    assert with_notice_audiences(policy, None) is policy


def test_an_explicit_audience_keeps_only_record_types_that_receive_notices():
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8").replace(
        "- {id: second_reminder, offset_days: 21, channel: email}",
        "- {id: second_reminder, offset_days: 21, channel: email, audience: {record_types: [staff, contact], "
        "user_groups: [graduate]}}")
    policy = with_notice_audiences(parse_policy(text), _accounts_with({"staff", "public"}))
    second = policy.stage("second_reminder")
    assert second.audience.record_types == ["staff"] and second.audience.user_groups == ["graduate"]
    assert policy.stage("courtesy").audience.record_types == ["staff", "public"]


@pytest.mark.parametrize("receiving,record_type,notified", [
    ({"staff", "public"}, "public", True),
    ({"staff", "public"}, "contact", False),
    ({"staff"}, "public", False),
    ({"staff", "public", "contact"}, "contact", True),
])
def test_plan_follows_the_account_policy(policy, receiving, record_type, notified):
    as_of = dt.date(2026, 11, 23)
    plan_policy = with_notice_audiences(policy, _accounts_with(receiving))
    patron = Patron("P1", email="p1@example.org", record_type=record_type)
    loan = Loan("L1", "P1", "SCI", as_of - dt.timedelta(days=7))        # first reminder due today
    plan = plan_day(plan_policy, [Candidate(loan, record_type, "")], {"P1": patron}, as_of)
    assert bool(plan.notices) == notified


def test_the_pipeline_loads_audiences_from_the_account_policy(tmp_path):
    import shutil

    from service.rules import load_policy

    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    text = (rules / "accounts.yaml").read_text(encoding="utf-8")
    (rules / "accounts.yaml").write_text(text.replace(
        "    description: External records created by the synchronisation (library staff are often public too).\n"
        "    receives_loan_notices: true",
        "    description: External records created by the synchronisation (library staff are often public too).\n"
        "    receives_loan_notices: false"), encoding="utf-8")
    assert all(s.audience.record_types == ["staff"] for s in load_policy(rules).stages)


def test_a_stage_that_names_a_record_type_receiving_no_notices_is_an_error(tmp_path):
    """The shipped accounts.yaml says contacts receive no loan notices: a stage that lists them would
    silently not reach them, so the policy is refused, at the stage's line."""
    import shutil

    from service.rules import load_policy
    from engine.yamlsource import InputError

    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    path = rules / "reminders.yaml"
    text = path.read_text(encoding="utf-8")
    stage = "  - {id: letter, offset_days: 35, channel: letter"
    assert text.count(stage) == 1
    path.write_text(text.replace(stage, stage + ", audience: {record_types: [public, contact]}"), encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_policy(rules)
    [problem] = info.value.problems
    line = next(n for n, row in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if row.startswith(stage))
    assert (problem.source, problem.line, problem.where) == (str(path), line, "stages[3].audience.record_types")
    assert problem.message.startswith("contact: accounts.yaml says these record types receive no loan notices")
    (rules / "accounts.yaml").unlink()                  # without an account policy, the stage's audience stands
    assert load_policy(rules).stage("letter").audience.record_types == ["public", "contact"]
