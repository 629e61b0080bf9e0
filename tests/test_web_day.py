"""The overdue service's day page (tests/web_site.py: the installation; Starlette's client over
https): the flood guard held today's messages (max_per_run: 1 for 3 messages leaving), the
overdue service confirms them, as `rappel run --confirm` would; the desk may not."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adapters.store.database import Store
from adapters.store.schema import staff_actions
from web_site import PASSWORD, make_site


@pytest.fixture
def held(tmp_path, smtp_server):
    from adapters.web.app import create_app

    site = make_site(tmp_path, smtp_server.url, max_per_run=1)
    with TestClient(create_app(site), base_url="https://testserver", follow_redirects=False) as client:
        yield site, client


def sign_in(client, name):
    client.get("/login")
    assert client.post("/login", data={"name": name, "password": PASSWORD,
                                       "csrf_token": client.cookies.get("rappel_login_csrf", path="/login")}
                       ).status_code == 303
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/?q=zzz").text).group(1)


def test_held_messages_are_shown_then_confirmed(held, smtp_server):
    site, client = held
    assert smtp_server.messages == []
    csrf = sign_in(client, "overdue")
    page = client.get("/day").text
    assert "The flood guard holds 3 message(s)" in page
    assert page.count("held by the flood guard") == 3
    refused = client.post("/day/confirm", data={"csrf_token": csrf, "why": " "})
    assert refused.status_code == 200 and "say why, for the audit trail" in refused.text
    assert client.post("/day/confirm", data={"csrf_token": csrf, "why": "the term starts: checked the dry run"}
                       ).headers["location"] == "/day?done=confirmed"
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "droit-contentieux@univ.example", "thomas.lefevre@etu.univ.example", "xss@univ.example"]
    assert "Nothing failed, nothing waits." in client.get("/day").text
    with Store(site.db_url) as store, store.engine.connect() as conn:
        [action] = conn.execute(select(staff_actions).where(staff_actions.c.action == "confirm")).mappings().all()
    assert (action["actor"], action["why"]) == ("overdue", "the term starts: checked the dry run")
    assert action["detail"].endswith("3 of 3 sent")


def test_the_desk_may_not_confirm(held, smtp_server):
    _, client = held
    csrf = sign_in(client, "desk")
    assert client.post("/day/confirm", data={"csrf_token": csrf, "why": "x"}).status_code == 403
    assert smtp_server.messages == []


def test_the_day_page_lists_the_request_stages_beside_the_timeline(held):
    site, client = held
    sign_in(client, "overdue")
    page = client.get("/day").text
    rows = re.findall(r'<tr data-stage="([a-z_]+)"><td>[a-z_]+</td>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>'
                      r'<td class="num">(\d+)</td>', page)
    assert rows == [("hold_ready", "the day the request is ready, + 0 day(s)", "email", "2"),
                    ("pickup_deadline", "2 day(s) before the pickup deadline", "email", "2"),
                    ("hold_expired", "1 day(s) after the pickup deadline", "email", "2")], rows
    client.get("/lang/fr")
    assert "2 jour(s) avant la date limite de retrait" in client.get("/day").text
