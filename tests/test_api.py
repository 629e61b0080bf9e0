"""The JSON API (adapters/web/api*.py): reads, actions and facts pushed by the library system, on
SQLite and PostgreSQL (RAPPEL_TEST_DATABASE_URL). The installation and its facts are
tests/api_site.py's: Monday 2026-11-23, 10:00 in Paris, after that day's run at 02:00."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from adapters.store.schema import fact_imports, patron_audit, staff_actions
from service import day as pipeline
from service import facts

try:
    from tests.api_site import HOSTILE, NOW, ApiSite
    from tests.conftest import PG_URL, pg_schema
    from tests.daemon_cases import at
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from api_site import HOSTILE, NOW, ApiSite
    from conftest import PG_URL, pg_schema
    from daemon_cases import at

L1_REMINDER = "2026-11-23/first_reminder/email/P1/-/"
P2_LETTER = "2026-11-23/first_reminder/letter/P2/DROIT/"


@pytest.fixture
def api(tmp_path, db_url):
    """A site of one's own: for the tests that change things."""
    site = ApiSite(tmp_path, db_url)
    yield site
    site.close()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def reads(request, tmp_path_factory):
    """One site for the tests that only read, on SQLite and on PostgreSQL."""
    tmp = tmp_path_factory.mktemp("reads")
    if request.param == "sqlite":
        site = ApiSite(tmp, f"sqlite:///{tmp / 'rappel.db'}")
        yield site
        site.close()
        return
    if not PG_URL:
        pytest.skip("PostgreSQL case: set RAPPEL_TEST_DATABASE_URL to run it")
    with pg_schema() as url:
        site = ApiSite(tmp, url)
        yield site
        site.close()


def key_of(api, start: str) -> str:
    [key] = [n["key"] for n in api.get("desk", "/api/notices").json()["notices"] if n["key"].startswith(start)]
    return key


# --- reads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, found", [
    ("/api/patrons?q=2900P1", ["P1"]),                 # a barcode
    ("/api/patrons?q=P2", ["P2"]),                     # a patron_id
    ("/api/patrons?q=lefèvre", ["P1"]),                # a name, any case
    ("/api/patrons?q=LEFEVRE", ["P1"]),                # any case, without its accents
    ("/api/patrons?q=zoé%20LEF", ["P1"]),              # beginnings of words of the name
    ("/api/patrons?q=ZOE%20lef", ["P1"]),
    ("/api/patrons?q=ines", ["P4"]),                   # Inès
    ("/api/patrons?q=%C3%89V", []),                    # a word is found by its beginning, not its middle
    ("/api/patrons?q=mart%20l", ["P2"]),               # Léo Martin: every word typed must match
    ("/api/patrons?q=mart%20z", []),
    ("/api/patrons?q=d", ["P3"]),                      # Durand
    ("/api/patrons?q=m", ["P2"]),                      # Martin
    ("/api/patrons?q=g", ["P4"]),
    ("/api/patrons?q=nobody", []),
    ("/api/patrons?q=%25", []),                        # a LIKE wildcard is a character like the others
])
def test_patron_search(reads, path, found):
    r = reads.get("desk", path)
    assert r.status_code == 200, r.text
    assert [p["patron_id"] for p in r.json()["patrons"]] == found


def test_a_patron_identity_account_and_who_owns_each_field(reads):
    internal = reads.get("desk", "/api/patrons/2900P1").json()
    assert (internal["name"], internal["account_type"], internal["source"]) == ("Zoé Lefèvre", "internal", None)
    fields = {f["field"]: f for f in reads.get("desk", "/api/patrons/P4").json()["fields"]}
    assert (fields["email"]["ownership"], fields["email"]["editable"]) == ("owned", False)
    assert fields["email"]["where"] == "update through the campus registrar; the next synchronisation brings it in"
    assert (fields["preferred_language"]["ownership"], fields["preferred_language"]["editable"]) == ("protected", True)
    assert fields["patron_id"]["ownership"] == "identity"


def test_loans_requests_and_notices_of_a_patron(reads):
    [loan] = reads.get("desk", "/api/patrons/P1/loans").json()["loans"]
    assert (loan["loan_id"], loan["due_date"], loan["days_overdue"]) == ("L1", "2026-11-16", 7)
    requests = reads.get("desk", "/api/patrons/P1/requests").json()["requests"]
    assert sorted((r["request_id"], r["active"]) for r in requests) == [("R1", True), ("R2", False)]
    [notice] = reads.get("desk", "/api/patrons/P1/notices").json()["notices"]
    assert notice["key"].startswith(L1_REMINDER) and notice["status"] == "sent"
    assert [a["outcome"] for a in notice["attempts"]] == ["sent"]


@pytest.mark.parametrize("query, stages", [
    ("", ["first_reminder", "first_reminder", "courtesy"]),
    ("?stage=courtesy", ["courtesy"]),
    ("?patron=2900P2", ["first_reminder"]),
    ("?barcode=B-L3", ["courtesy"]),
    ("?loan=L1", ["first_reminder"]),
    ("?status=sent&since=2026-11-23&until=2026-11-23", ["first_reminder", "first_reminder", "courtesy"]),
    ("?since=2026-11-24", []),
    ("?limit=1", ["first_reminder"]),
])
def test_notices_with_the_command_lines_filters(reads, query, stages):
    r = reads.get("overdue", "/api/notices" + query)
    assert r.status_code == 200, r.text
    assert [n["stage"] for n in r.json()["notices"]] == stages
    assert r.json()["more"] == (query == "?limit=1")


@pytest.mark.parametrize("query, field", [
    ("?status=lost", "status"), ("?since=2026-11-24&until=2026-11-20", "since"), ("?loan=NOPE", "loan"),
    ("?limit=0", "limit"), ("?since=yesterday", "since"),
])
def test_bad_filters_are_422_naming_the_field(reads, query, field):
    r = reads.get("overdue", "/api/notices" + query)
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"
    assert [e["field"] for e in r.json()["errors"]] == [field]


@pytest.mark.parametrize("start, media_type, begins", [
    (L1_REMINDER, "message/rfc822", b""), (P2_LETTER, "application/pdf", b"%PDF"),
])
def test_one_notice_and_its_message(reads, start, media_type, begins):
    key = key_of(reads, start)
    notice = reads.get("desk", f"/api/notices/{key}").json()
    assert notice["message"]["media_type"] == media_type and notice["attempts"][0]["kind"] == "send"
    r = reads.get("desk", f"/api/notices/{key}/message")
    assert r.status_code == 200 and r.headers["content-type"].startswith(media_type)
    assert r.content.startswith(begins) and len(r.content) == notice["message"]["size"]


def test_unknown_things_are_404(reads):
    assert reads.get("desk", "/api/patrons/NOPE").status_code == 404
    r = reads.get("desk", "/api/notices/2026-01-01/none")
    assert r.status_code == 404 and r.json()["errors"] == [
        {"field": "key", "message": "no such notice (rappel notices lists them, with their keys)"}]
    for action in ("cancel", "retry"):
        r = reads.call("desk", "POST", f"/api/notices/2026-01-01/none/{action}", json={"why": "checking"})
        assert r.status_code == 404, (action, r.text)
    r = reads.get("desk", "/api/notices/2026-11-23")          # the beginning of several keys
    assert r.status_code == 409 and "give more of it" in r.json()["errors"][0]["message"]


def test_the_day_and_what_needs_someone(reads):
    day = reads.get("overdue", "/api/day").json()
    assert day["date"] == "2026-11-23" and day["next_run"] == "2026-11-24T02:00:00+01:00"
    assert {(c["stage"], c["channel"], c["status"], c["count"]) for c in day["notices"]} == {
        ("courtesy", "email", "sent", 1), ("first_reminder", "email", "sent", 1),
        ("first_reminder", "letter", "sent", 1)}
    assert reads.get("overdue", "/api/day/attention").json() == {"failed": [], "retrying": [], "held": [],
                                                               "held_reason": None}


# --- actions -------------------------------------------------------------------------------------

def audit(api) -> list[tuple[str, str, str]]:
    with api.store.engine.connect() as conn:
        return [(r.action, r.actor, r.why) for r in conn.execute(select(staff_actions).order_by(staff_actions.c.id))]


def test_resend_a_sent_email_audited_as_the_client(api):
    key = key_of(api, L1_REMINDER)
    r = api.call("desk", "POST", f"/api/notices/{key}/resend", json={"why": "never arrived"})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "sent" and [a["kind"] for a in r.json()["notice"]["attempts"]] == ["send", "resend"]
    assert r.json()["notice"]["attempts"][1]["actor"] == "api:desk"
    assert audit(api) == [("resend", "api:desk", "never arrived")]


def test_cancel_and_retry_refuse_a_sent_notice(api):
    key = key_of(api, L1_REMINDER)
    r = api.call("overdue", "POST", f"/api/notices/{key}/cancel", json={"why": "returned"})
    assert r.status_code == 422 and "only a pending or held notice can be cancelled" in r.text
    r = api.call("overdue", "POST", f"/api/notices/{key}/retry", json={"why": "again"})
    assert r.status_code == 409 and "only a failed notice goes back in the queue" in r.text
    assert audit(api) == []


def test_requests_report_goes_to_the_outbox(api):
    r = api.call("desk", "POST", "/api/patrons/2900P1/requests-report")
    assert r.status_code == 200, r.text
    assert r.json() | {"reply": ""} == {"sent": True, "requests": 1, "to": "zoe.lefevre@etu.example", "reply": ""}
    assert any("requests_report" in p.name for p in api.site.outbox_files())


@pytest.mark.parametrize("who, patron, body, status, fields", [
    ("desk", "P1", {"email": "zoe@new.example", "phone": "+33556000000"}, 200, []),   # stored E.164 (test_phones)
    ("desk", "P1", {"last_name": "Martin"}, 422, ["last_name"]),           # a supervisor's field
    ("boss", "P1", {"last_name": "Lefèvre-Martin"}, 200, []),
    ("desk", "P4", {"email": "ines@new.example"}, 422, ["email"]),          # owned by the source
    ("desk", "P1", {"email": "not an address", "city": "Talence"}, 422, ["email"]),
    ("desk", "P1", {"patron_id": "P9"}, 422, ["patron_id"]),                # not a field one patches
    ("desk", "P1", {}, 422, [""]),
])
def test_edit_a_patron_all_or_nothing(api, who, patron, body, status, fields):
    before = api.get("desk", f"/api/patrons/{patron}").json()
    r = api.call(who, "PATCH", f"/api/patrons/{patron}", json=body)
    assert r.status_code == status, r.text
    if status == 200:
        values = {f["field"]: f["value"] for f in r.json()["patron"]["fields"]}
        assert all(values[k] == v for k, v in body.items())
        with api.store.engine.connect() as conn:
            assert {row.actor for row in conn.execute(select(patron_audit))} == {f"api:{who}"}
    else:
        assert [e["field"] for e in r.json()["errors"]] == fields
        assert api.get("desk", f"/api/patrons/{patron}").json() == before


def test_the_owned_field_refusal_gives_the_hint(api):
    r = api.call("desk", "PATCH", "/api/patrons/P4", json={"email": "ines@new.example"})
    assert "owned by the student information system" in r.json()["errors"][0]["message"]
    assert "update through the campus registrar" in r.json()["errors"][0]["message"]


def test_confirm_sends_what_the_flood_guard_held(tmp_path, db_url, smtp_server):
    api = ApiSite(tmp_path, db_url, extra=f'delivery:\n  email: {{url: "{smtp_server.url}"}}\n'
                                          f'flood_guard: {{max_per_run: 1, per_second: null}}\n')
    try:
        # the run of 02:00 was held: two emails would leave, more than max_per_run; nothing was sent
        held = api.get("overdue", "/api/day/attention").json()
        assert len(held["held"]) == 3 and "flood guard held 3" in held["held_reason"], held
        assert smtp_server.messages == []
        r = api.call("overdue", "POST", "/api/day/confirm", json={"on": "2026-11-23"})
        assert r.status_code == 200, r.text
        assert sorted(o["status"] for o in r.json()["outcomes"]) == ["sent", "sent", "sent"]
        assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
            "droit-contentieux@univ.example", "p3@etu.example", "zoe.lefevre@etu.example"]
        assert api.get("overdue", "/api/day/attention").json()["held"] == []
        assert api.call("overdue", "POST", "/api/day/confirm", json={"on": "2026-11-24"}).status_code == 422
        assert api.call("overdue", "POST", "/api/day/confirm", json={"on": "0001-01-01"}).json()["errors"][0][
            "field"] == "on"
    finally:
        api.close()


# --- facts pushed by the library system ------------------------------------------------------------

LOAN = {"patron_id": "P1", "library": "SCI", "due_date": "2026-11-16", "item_barcode": "B-L9", "title": "Germinal"}


def test_a_pushed_loan_gets_its_notice_in_a_dry_run(api):
    r = api.call("koha", "PUT", "/api/loans/L9", json=LOAN)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "inserted" and r.json()["loan"]["days_overdue"] == 7
    assert api.call("koha", "PUT", "/api/loans/L9", json=LOAN).json()["outcome"] == "unchanged"
    plan = pipeline.plan_for(api.store, api.site.policy, dt.date(2026, 11, 23))
    assert [(n.stage, n.loan_ids) for n in plan.notices if "L9" in n.loan_ids] == [("first_reminder", ("L9",))]


def test_a_return_cancels_the_pending_notice(api):
    api.call("koha", "PUT", "/api/loans/L9", json={**LOAN, "due_date": "2026-11-17"})
    api.site.decide_only(dt.date(2026, 11, 24))          # decided, not yet delivered: pending
    [pending] = [n for n in api.get("desk", "/api/notices?status=pending").json()["notices"]]
    assert pending["loan_ids"] == ["L9"]
    r = api.call("koha", "POST", "/api/loans/L9/return", json={"returned_on": "2026-11-24T09:12:00+01:00"})
    assert r.status_code == 200 and r.json()["loan"]["returned_on"] == "2026-11-24"
    pipeline.dispatch(api.store, api.site.policy, api.site.templates, api.site.router(), dt.date(2026, 11, 24),
                      now=at("2026-11-24 10:00"))
    after = api.get("desk", f"/api/notices/{pending['key']}").json()
    assert after["status"] == "cancelled" and after["attempts"] == []


def test_a_renewal_moves_the_due_date(api):
    r = api.call("koha", "POST", "/api/loans/L1/renew", json={"due_date": "2026-12-14"})
    assert r.status_code == 200 and (r.json()["outcome"], r.json()["loan"]["due_date"]) == ("changed", "2026-12-14")
    assert api.get("desk", "/api/patrons/P1/loans").json()["loans"][0]["days_overdue"] == 0


@pytest.mark.parametrize("method, path, body, errors", [
    ("PUT", "/api/loans/L9", {**LOAN, "due_date": "2026-02-30", "library": "NOPE"},
     [("due_date", "due_date '2026-02-30' is not a date (YYYY-MM-DD or an ISO 8601 timestamp)"),
      ("library", "library 'NOPE' is not a library of the policy (DROIT, SCI)")]),
    ("PUT", "/api/loans/L9", {**LOAN, "patron_id": "P404"},
     [("patron_id", "unknown patron 'P404' (import patrons first)")]),
    ("PUT", "/api/loans/L9", {**LOAN, "title": "two\nlines"}, [("title", "title contains a line break")]),
    ("PUT", "/api/loans/L9", {"patron_id": "P1", "library": "SCI"}, [("due_date", "Field required")]),
    ("PUT", "/api/loans/L9", {**LOAN, "colour": "red"}, [("colour", "Extra inputs are not permitted")]),
    ("POST", "/api/loans/L1/return", {"returned_on": "tomorrow"},
     [("returned_on", "returned_on 'tomorrow' is not a date (YYYY-MM-DD or an ISO 8601 timestamp)")]),
    # a timestamp whose local date would be before year 1: a bad date, as in a CSV row (not a crash)
    ("POST", "/api/loans/L1/renew", {"due_date": "0001-01-01T00:00:00+14:00"},
     [("due_date", "due_date '0001-01-01T00:00:00+14:00' is not a date (YYYY-MM-DD or an ISO 8601 timestamp)")]),
    ("POST", "/api/loans/L404/renew", {"due_date": "2026-12-14"}, [("loan", "no loan L404")]),
    ("PUT", "/api/patrons/P9", {"barcode": "2900P1", "account_type": "staff", "record_type": "public",
                                "email": "x@"},
     [("email", "email 'x@' is not an email address"),
      ("account_type", "account_type 'staff' is not one of internal, external"),
      ("barcode", "barcode '2900P1' already belongs to patron 'P1'")]),
])
def test_a_bad_push_names_each_field_and_changes_nothing(api, method, path, body, errors):
    before = api.get("desk", "/api/patrons/P1/loans").json()
    r = api.call("koha", method, path, json=body)
    assert r.status_code in (404, 422) and r.headers["content-type"] == "application/json"
    assert sorted((e["field"], e["message"]) for e in r.json()["errors"]) == sorted(errors)
    assert api.get("desk", "/api/patrons/P1/loans").json() == before
    assert api.get("desk", "/api/patrons/P9").status_code == 404


def test_a_pushed_patron_is_inserted_then_changed(api):
    body = {"barcode": "2900P9", "account_type": "internal", "record_type": "public", "first_name": "Noé",
            "last_name": HOSTILE}
    r = api.call("koha", "PUT", "/api/patrons/P9", json=body)
    assert r.status_code == 200 and r.json()["outcome"] == "inserted" and r.json()["patron"]["name"] == f"Noé {HOSTILE}"
    r = api.call("koha", "PUT", "/api/patrons/P9", json={**body, "city": "Pau"})
    assert r.json()["outcome"] == "changed"


def test_pushes_count_as_fresh_facts(tmp_path, db_url):
    api = ApiSite(tmp_path, db_url, extra="max_facts_age_hours: 26\n")
    try:
        assert facts.age_of_loans(api.store, api.site.policy, None, NOW).stale        # never imported
        for n in range(3):
            api.call("koha", "PUT", f"/api/loans/L9{n}", json=LOAN)
        api.call("koha", "POST", "/api/loans/L90/return", json={"returned_on": "2026-11-23"})
        age = facts.age_of_loans(api.store, api.site.policy, None, NOW + dt.timedelta(hours=25))
        assert not age.stale and (age.mode, age.source) == ("push", "api:koha")
        with api.store.engine.connect() as conn:     # one row per client and kind: the latest push
            assert conn.execute(select(fact_imports.c.kind, fact_imports.c.mode)).all() == [("loans", "push")]
        assert facts.age_of_loans(api.store, api.site.policy, None, NOW + dt.timedelta(hours=27)).stale
    finally:
        api.close()
