"""The JSON API refuses what it must: every /api route without a token, with a wrong one, with a
disabled client's; a role without the action (403); and what it gives back is JSON, never HTML,
whatever a patron's name holds. The routes are enumerated from the application itself, so that a
new route without its row in ACTIONS fails here."""
from __future__ import annotations

import re

import pytest

try:
    from tests.api_site import HOSTILE, NOW, ApiSite
    from tests.app_routes import app_routes
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from api_site import HOSTILE, NOW, ApiSite
    from app_routes import app_routes

# (method, path) → the action of accounts.yaml's may: it needs
ACTIONS = {
    ("GET", "/api/patrons"): "patrons.view",
    ("GET", "/api/patrons/{patron}"): "patrons.view",
    ("GET", "/api/patrons/{patron}/loans"): "patrons.view",
    ("GET", "/api/patrons/{patron}/requests"): "patrons.view",
    ("GET", "/api/patrons/{patron}/notices"): "notices.view",
    ("GET", "/api/notices"): "notices.view",
    ("GET", "/api/notices/{key}"): "notices.view",
    ("GET", "/api/notices/{key}/message"): "notices.view",
    ("GET", "/api/day"): "day.view",
    ("GET", "/api/day/attention"): "day.view",
    ("POST", "/api/notices/{key}/resend"): "notices.act",
    ("POST", "/api/notices/{key}/cancel"): "notices.act",
    ("POST", "/api/notices/{key}/retry"): "notices.act",
    ("POST", "/api/day/confirm"): "day.act",
    ("POST", "/api/patrons/{patron}/requests-report"): "requests.report",
    ("PATCH", "/api/patrons/{patron}"): "patrons.edit",
    ("PUT", "/api/loans/{loan_id}"): "facts.push",
    ("POST", "/api/loans/{loan_id}/return"): "facts.push",
    ("POST", "/api/loans/{loan_id}/renew"): "facts.push",
    ("PUT", "/api/patrons/{patron}"): "facts.push",
}
# a client of each role (tests/api_site.py) and one that lacks each action
LACKING = {"patrons.view": "none", "notices.view": "koha", "day.view": "desk", "notices.act": "koha",
           "day.act": "desk", "requests.report": "overdue", "patrons.edit": "overdue", "facts.push": "boss"}
SAMPLE = {"patron": "P1", "key": "2026-11-23/x", "loan_id": "L1"}
BODY = {"POST": {"why": "test", "returned_on": "2026-11-23", "due_date": "2026-12-01"}, "PATCH": {"phone": "1"},
        "PUT": {"patron_id": "P1", "library": "SCI", "due_date": "2026-12-01"}, "GET": None}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    site = ApiSite(tmp, f"sqlite:///{tmp / 'rappel.db'}")
    # a role that may do nothing (every shipped role may at least look a patron up)
    accounts_file = site.site.rules / "accounts.yaml"
    text = accounts_file.read_text(encoding="utf-8")
    accounts_file.write_text(text.replace("\nroles:\n", "\nroles:\n  none:\n    may_edit: []\n    may: []\n", 1),
                             encoding="utf-8")
    from service import api_clients
    from service.rules import load_accounts
    site.tokens["none"] = api_clients.add(site.store, load_accounts(site.site.rules), "none", "none", NOW)
    yield site
    site.close()


def api_routes(app) -> list[tuple[str, str]]:
    return sorted((method, path.replace("{key:notice_key}", "{key}"))
                  for method, path in app_routes(app) if path.startswith("/api"))


def url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path) + ("?q=x" if path == "/api/patrons" else "")


def test_every_api_route_has_its_row(api):
    assert api_routes(api.app) == sorted(ACTIONS)


@pytest.mark.parametrize("method, path", sorted(ACTIONS))
@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "token"])
def test_refused_without_a_valid_token(api, method, path, auth):
    headers = {} if auth is None else {"Authorization": auth if auth != "token" else api.tokens["desk"]}
    r = api.client.request(method, url(path), headers=headers, json=BODY[method])
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"
    assert r.json()["errors"][0]["field"] == "Authorization" and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("method, path", sorted(ACTIONS))
def test_refused_for_a_disabled_client(api, method, path):
    r = api.client.request(method, url(path), headers=api.headers("off"), json=BODY[method])
    assert r.status_code == 401 and "not an enabled client" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize("method, path", sorted(ACTIONS))
def test_403_for_a_role_without_the_action(api, method, path):
    action = ACTIONS[(method, path)]
    who = LACKING[action]
    r = api.call(who, method, url(path), json=BODY[method])
    assert r.status_code == 403, r.text
    assert action in r.json()["errors"][0]["message"]


def test_a_rotated_token_replaces_the_old_one(api):
    from service import api_clients

    old = api.tokens["acq"]
    new = api_clients.rotate(api.store, "acq")
    assert api.client.get("/api/patrons?q=x", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert api.client.get("/api/patrons?q=x", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    api.tokens["acq"] = new


@pytest.mark.parametrize("path", ["/api/patrons?q=Durand", "/api/patrons/P3", "/api/patrons/2900P3"])
def test_a_script_in_a_name_comes_back_as_json_text(api, path):
    r = api.get("desk", path)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert HOSTILE in r.text                      # as it is, in a JSON string: the client decides how to show it
    found = r.json()["patrons"][0] if "patrons" in r.json() else r.json()
    assert found["name"] == f"{HOSTILE} Durand"


def test_a_script_pushed_comes_back_as_json_text(api):
    body = {"barcode": "2900P8", "account_type": "internal", "record_type": "public", "last_name": HOSTILE}
    r = api.call("koha", "PUT", "/api/patrons/P8", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["patron"]["name"] == HOSTILE
    r = api.call("koha", "PUT", "/api/patrons/P8", json={**body, "email": HOSTILE})
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"
    assert r.json()["errors"] == [{"field": "email", "message": f"email {HOSTILE!r} is not an email address"}]


def test_a_message_is_served_as_its_own_type_never_sniffed(api):
    [key] = [n["key"] for n in api.get("desk", "/api/notices?patron=P3").json()["notices"]]
    r = api.get("desk", f"/api/notices/{key}/message")
    assert r.headers["content-type"].startswith("message/rfc822") and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith("attachment;")


def test_the_token_is_stored_only_as_its_hash(api):
    from sqlalchemy import select

    from adapters.store.schema import api_clients as table

    with api.store.engine.connect() as conn:
        hashes = set(conn.scalars(select(table.c.token_hash)))
    assert not hashes & set(api.tokens.values()) and all(len(h) == 64 for h in hashes)
