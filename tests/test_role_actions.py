"""What a role may do in the staff interface and the API (accounts.yaml `may:`), decided once for
the pages, the API and any other front end."""
from pathlib import Path

import pytest

from engine.accounts import ACTIONS, DEFAULT_ACTIONS, parse_accounts
from engine.yamlsource import InputError

SHIPPED = parse_accounts((Path(__file__).parent.parent / "rules" / "accounts.yaml").read_text())

# (role, action) → may it?
TABLE = [
    ("circulation_desk", "patrons.view", True),
    ("circulation_desk", "patrons.edit", True),
    ("circulation_desk", "requests.report", True),
    ("circulation_desk", "notices.act", True),
    ("circulation_desk", "day.view", False),
    ("circulation_desk", "day.act", False),
    ("circulation_desk", "facts.push", False),
    ("user_manager", "day.view", True),
    ("user_manager", "day.act", False),
    ("overdue_service", "day.act", True),
    ("overdue_service", "patrons.edit", False),
    ("library_system", "facts.push", True),
    ("library_system", "notices.view", False),
    ("no_such_role", "patrons.view", False),
    (None, "patrons.view", False),
]


@pytest.mark.parametrize(("role", "action", "expected"), TABLE)
def test_shipped_roles(role, action, expected):
    assert SHIPPED.may(role, action) is expected


def test_a_role_that_does_not_say_gets_patron_services_only():
    text = (Path(__file__).parent.parent / "rules" / "accounts.yaml").read_text()
    text = text.replace("    may: [patrons.view, patrons.edit, requests.report, notices.view, notices.act]\n", "")
    accounts = parse_accounts(text)
    assert [a for a in ACTIONS if accounts.may("circulation_desk", a)] == list(DEFAULT_ACTIONS)


def test_an_unknown_action_in_the_policy_is_refused_with_its_line():
    text = (Path(__file__).parent.parent / "rules" / "accounts.yaml").read_text()
    text = text.replace("may: [patrons.view, facts.push]", "may: [patrons.view, facts.pull]")
    with pytest.raises(InputError) as caught:
        parse_accounts(text)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if "facts.pull" in l)
    assert any(f"accounts.yaml:{line}: roles.library_system.may[1]: Input should be" in str(p)
               for p in caught.value.problems), \
        caught.value.problems


def test_an_unknown_action_asked_for_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown action"):
        SHIPPED.may("circulation_desk", "patrons.delete")
