"""The staff interface's doors (tests/web_site.py: the installation; Starlette's client over https).

Every page route is a row of ROUTES: a route added without a row fails test_every_route_has_a_row."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from adapters.store.database import Store
from service import staff
from adapters.web.context import networks
from app_routes import app_routes
from web_site import PASSWORD, XSS, make_site

# (method, path as the app declares it) -> the URL asked, or None: open without a session
ROUTES = {
    ("GET", "/login"): None,
    ("POST", "/login"): None,
    ("GET", "/lang/{code}"): None,
    ("GET", "/openapi.json"): None,          # the API's description is public; every API route is not
    ("HEAD", "/openapi.json"): None,
    ("POST", "/logout"): "/logout",
    ("GET", "/"): "/?q=lef",
    ("GET", "/patrons/{ident}"): "/patrons/2000000001",
    ("POST", "/patrons/{ident}/edit"): "/patrons/2000000001/edit",
    ("POST", "/patrons/{ident}/requests-report"): "/patrons/2000000001/requests-report",
    ("GET", "/notice"): "/notice?key=2026",
    ("GET", "/notice/message.html"): "/notice/message.html?key=2026",
    ("GET", "/notice/message.pdf"): "/notice/message.pdf?key=2026",
    ("POST", "/notice/resend"): "/notice/resend",
    ("POST", "/notice/cancel"): "/notice/cancel",
    ("POST", "/notice/retry"): "/notice/retry",
    ("GET", "/day"): "/day",
    ("GET", "/day/letters.pdf"): "/day/letters.pdf",
    ("POST", "/day/confirm"): "/day/confirm",
    ("GET", "/day/dry-run"): "/day/dry-run?loan=L1",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_site(tmp_path_factory.mktemp("web"))


@pytest.fixture
def site(built, tmp_path):
    """The installation built once, its database copied for each test."""
    import dataclasses
    import shutil

    shutil.copy(built.db_url.removeprefix("sqlite:///"), tmp_path / "web.db")
    return dataclasses.replace(built, db_url=f"sqlite:///{tmp_path / 'web.db'}", clock=type(built.clock)())


@pytest.fixture
def client(site):
    from adapters.web.app import create_app

    with TestClient(create_app(site), base_url="https://testserver", follow_redirects=False) as c:
        yield c


def sign_in(client, name: str, password: str = PASSWORD, address_note: str = ""):
    client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "next": "/",
                                       "csrf_token": client.cookies.get("rappel_login_csrf", path="/login")})


def csrf_of(client) -> str:
    import re
    page = client.get("/?q=zzz").text
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def rows(store, sql: str) -> list:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return conn.execute(text(sql)).all()


def page_routes(app):
    found = {(method, path) for method, path in app_routes(app) if not path.startswith("/api")}
    assert len(found) > 10
    return found


def test_every_route_has_a_row(client):
    assert page_routes(client.app) == set(ROUTES)


@pytest.mark.parametrize("route", sorted(k for k, v in ROUTES.items() if v is not None))
def test_every_page_refuses_without_a_session(client, route):
    method, _ = route
    response = client.request(method, ROUTES[route])
    if method == "GET":
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    else:
        assert response.status_code == 403
    assert "Lefèvre" not in response.text


def test_security_headers_on_every_page(client):
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    sign_in(client, "desk")
    assert client.get("/patrons/2000000001").headers["cache-control"] == "no-store"


def test_session_cookie_is_secure_httponly_strict(client):
    cookie = sign_in(client, "desk").headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie


def test_a_post_without_its_csrf_token_is_refused(client, site):
    sign_in(client, "desk")
    response = client.post("/patrons/2000000002/edit", data={"field.phone": "05 00 00 00 01"})
    assert response.status_code == 403
    response = client.post("/patrons/2000000002/edit", data={"field.phone": "05 00 00 00 01", "csrf_token": "x"})
    assert response.status_code == 403
    with Store(site.db_url) as store:
        assert store.patron("P2").phone == "+33556000003"      # as imported (05 56 00 00 03), stored E.164
    ok = client.post("/patrons/2000000002/edit", data={"field.phone": "05 00 00 00 01", "csrf_token": csrf_of(client)})
    assert ok.status_code == 303
    with Store(site.db_url) as store:
        assert store.patron("P2").phone == "+33500000001"


def test_login_form_without_its_token_is_refused(client):
    client.get("/login")
    response = client.post("/login", data={"name": "desk", "password": PASSWORD})
    assert response.status_code == 403 and "rappel_session" not in response.headers.get("set-cookie", "")


def test_the_desk_cannot_change_what_only_the_supervisor_may(client, site):
    """P2 is internal: user_group is the user_manager's (accounts.yaml), not the desk's."""
    sign_in(client, "desk")
    response = client.post("/patrons/2000000002/edit", data={"field.user_group": "staff", "field.city": "Pessac",
                                                             "csrf_token": csrf_of(client)})
    assert response.status_code == 422
    assert 'id="error-user_group"' in response.text and 'id="error-city"' not in response.text
    with Store(site.db_url) as store:
        assert (store.patron("P2").user_group, store.patron("P2").city) == ("reader", "Bordeaux")  # all or nothing
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    sign_in(client, "boss")
    assert client.post("/patrons/2000000002/edit", data={"field.user_group": "staff",
                                                         "csrf_token": csrf_of(client)}).status_code == 303
    with Store(site.db_url) as store:
        assert store.patron("P2").user_group == "staff"
        audit = rows(store, "SELECT actor, role, field FROM patron_audit WHERE patron_id='P2'")
    assert [tuple(a) for a in audit] == [("boss", "user_manager", "user_group")]


def test_a_role_without_day_view_is_refused_the_day(client):
    sign_in(client, "desk")
    assert client.get("/day").status_code == 403


@pytest.mark.parametrize("url", ["/?q=%3Cscript", "/patrons/2000000005", "/day/dry-run?on=2026-11-27&loan=L5",
                                 "/day"])
def test_a_script_in_a_name_is_shown_as_text(client, url):
    sign_in(client, "boss" if not url.startswith("/day") else "overdue")
    page = client.get(url, follow_redirects=True)
    assert page.status_code == 200
    assert XSS not in page.text
    if url != "/day":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_a_script_in_a_name_is_text_in_the_notice_and_its_email(client):
    import re

    sign_in(client, "desk")
    patron = client.get("/patrons/2000000005").text
    link = re.search(r'href="(/notice\?key=[^"]+)"', patron).group(1)
    notice = client.get(link.replace("&amp;", "&"))
    assert notice.status_code == 200 and "courtesy" in notice.text
    assert XSS not in notice.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in notice.text
    framed = client.get(link.replace("/notice?", "/notice/message.html?").replace("&amp;", "&"))
    assert framed.headers["content-security-policy"].startswith("sandbox")
    missing = client.get("/patrons/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert missing.status_code == 404 and XSS not in missing.text


def test_sign_in_makes_a_new_session_and_ends_the_one_presented(client, site):
    """Fixation: a token planted before sign-in is never the session after."""
    sign_in(client, "desk")
    planted = client.cookies.get("rappel_session")
    client.cookies.set("rappel_session", planted, domain="testserver.local")
    response = sign_in(client, "boss")
    fresh = response.cookies.get("rappel_session")
    assert fresh and fresh != planted
    with TestClient(client.app, base_url="https://testserver", follow_redirects=False) as other:
        other.cookies.set("rappel_session", planted)
        assert other.get("/?q=lef").status_code == 303            # the planted token opens nothing
    attacker = "attacker-chosen-value"
    with TestClient(client.app, base_url="https://testserver", follow_redirects=False) as victim:
        victim.cookies.set("rappel_session", attacker)
        assert sign_in(victim, "desk").cookies.get("rappel_session") != attacker


def test_failed_sign_ins_are_rate_limited(client):
    for _ in range(5):
        assert sign_in(client, "desk", "wrong password!").status_code == 401
    response = sign_in(client, "desk")                            # the right password, too late
    assert response.status_code == 429 and "rappel_session" not in response.headers.get("set-cookie", "")
    assert "Too many failed sign-ins" in response.text


def test_a_disabled_account_is_refused_and_signed_out(client, site):
    sign_in(client, "desk")
    assert client.get("/?q=lef").status_code == 303 and "patrons" in client.get("/?q=lef").headers["location"]
    with Store(site.db_url) as store:
        staff.disable(store, "desk", at=site.clock(), actor="test")
    assert client.get("/?q=lef").headers["location"].startswith("/login")
    assert sign_in(client, "desk").status_code == 401


def test_the_sso_header_is_believed_only_from_a_trusted_proxy(tmp_path):
    from adapters.web.app import create_app

    import dataclasses

    site = dataclasses.replace(make_site(tmp_path), sso_header="REMOTE_USER", trusted_proxies=networks(["10.9.9.9"]))
    app = create_app(site)
    with TestClient(app, base_url="https://testserver", follow_redirects=False,
                    client=("192.0.2.7", 5000)) as untrusted:
        assert untrusted.get("/?q=lef", headers={"REMOTE_USER": "boss"}).status_code == 303
    with TestClient(app, base_url="https://testserver", follow_redirects=False,
                    client=("10.9.9.9", 5000)) as proxy:
        assert proxy.get("/?q=lef", headers={"REMOTE_USER": "sso.user"}).headers["location"].startswith("/patrons")
        with Store(site.db_url) as store:
            assert [tuple(s) for s in rows(store, "SELECT staff_name, via FROM web_sessions")] == [("sso.user", "header")]
        assert proxy.get("/?q=lef", headers={"REMOTE_USER": "nobody"}).status_code == 403      # no account
        assert proxy.get("/?q=lef", headers={"REMOTE_USER": "desk"}).status_code == 303
    with Store(site.db_url) as store:
        staff.disable(store, "desk", at=site.clock(), actor="test")
    with TestClient(app, base_url="https://testserver", follow_redirects=False, client=("10.9.9.9", 5000)) as proxy:
        assert proxy.get("/?q=lef", headers={"REMOTE_USER": "desk"}).status_code == 403       # disabled


def test_every_message_of_the_pages_is_translated():
    """Each _("…") of the templates has a French and a Spanish translation (adapters/web/locale)."""
    import re
    from pathlib import Path

    from babel.messages.pofile import read_po

    from adapters.web import i18n

    templates = Path(i18n.__file__).parent / "templates"
    wanted = set()
    for t in templates.glob("*.html"):
        text = t.read_text(encoding="utf-8")
        wanted |= set(re.findall(r'_\("([^"]*)"', text)) | set(re.findall(r"_\('([^']*)'", text))
    assert len(wanted) > 100
    for lang in ("fr", "es"):
        with (i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = read_po(f, locale=lang)
        assert sorted(m for m in wanted if not (catalog.get(m) and catalog.get(m).string)) == [], lang


def test_the_language_follows_the_switch_then_the_browser(client):
    assert 'lang="es"' in client.get("/login", headers={"Accept-Language": "es-ES,es;q=0.9"}).text
    assert "Connexion" in client.get("/login", headers={"Accept-Language": "de, fr;q=0.5"}).text
    client.get("/lang/en")
    assert "Sign in" in client.get("/login", headers={"Accept-Language": "fr"}).text
