"""schemathesis over the JSON API's OpenAPI description: every route, with a token whose role may
do everything, on a real SQLite file with tests/api_site.py's facts and notices. Whatever the
input, never a 5xx; every answer is the body and the type the description gives for its status."""
from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from engine.accounts import ACTIONS
from service import api_clients
from service.rules import load_accounts

try:
    from tests.api_site import NOW, ApiSite
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from api_site import NOW, ApiSite

_TMP = Path(tempfile.mkdtemp(prefix="rappel-schemathesis-"))
SITE = ApiSite(_TMP, f"sqlite:///{_TMP / 'rappel.db'}")
_accounts = SITE.site.rules / "accounts.yaml"
_accounts.write_text(_accounts.read_text(encoding="utf-8").replace(
    "\nroles:\n", f"\nroles:\n  everything:\n    may_edit: [email, phone, city]\n    may: [{', '.join(ACTIONS)}]\n", 1),
    encoding="utf-8")
TOKEN = api_clients.add(SITE.store, load_accounts(SITE.site.rules), "fuzz", "everything", NOW)
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

schema = schemathesis.openapi.from_asgi("/openapi.json", SITE.app)


@pytest.fixture(scope="module", autouse=True)
def _close_the_site():
    yield
    SITE.close()


STATUSES: Counter = Counter()


@schema.parametrize()
@settings(max_examples=int(os.environ.get("RAPPEL_FUZZ_EXAMPLES", "8")), deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_on_any_input(case):
    response = case.call_and_validate(headers=HEADERS, checks=[not_a_server_error, content_type_conformance,
                                                               response_schema_conformance])
    STATUSES[(case.operation.label, response.status_code)] += 1


def test_the_fuzzing_got_past_the_token():
    """Not only refusals: every operation was answered something else than 401 and 403 too."""
    if not STATUSES:
        pytest.skip("run with the fuzzing test above")
    answered = {label for (label, status), _ in STATUSES.items() if status not in (401, 403)}
    assert answered == {label for label, _ in STATUSES}, sorted(STATUSES.items())
