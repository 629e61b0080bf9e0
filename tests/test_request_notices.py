"""Request notices: "your hold is ready", "pickup deadline", "your request expired".

The shipped policy's request stages (rules/reminders.yaml), window 2 days:

    hold_ready       the day the status becomes on_hold_shelf (ready_on)     email
    pickup_deadline  2 days before expires_on (while it can be picked up)     email
    hold_expired     1 day after expires_on (still on the shelf, or expired)  email

once per request and stage; a request picked up (fulfilled) or cancelled gets nothing more.
"""
from __future__ import annotations

import csv
import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import select

from adapters.sources.csvfiles import import_csv
from adapters.store.requests import request_ledger
from adapters.store.schema import REQUEST_FIELDS, ledger, loans, patrons
from engine.facts import Patron, Status
from engine.request_notices import explain_request, plan_requests, recheck_requests
from engine.requests import Request, RequestCandidate
from engine.yamlsource import InputError
from engine.policy import parse_policy

try:
    from tests.delivery_site import Site
    from tests.engine_cases import d, default_policy, policy_variant, reminders_text
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from delivery_site import Site
    from engine_cases import d, default_policy, policy_variant, reminders_text

READY, DONE = "on_hold_shelf", "fulfilled"
P = Patron("P1", email="p1@etu.univ.example")


def req(status=READY, ready=None, expires=None, rid="R1", placed="2026-11-20") -> Request:
    return Request(rid, "P1", "SCI", "SCI", d(placed), status, d(expires) if expires else None,
                   d(ready) if ready else None, "Titre")


TABLE = [
    # status     ready_on      expires_on    recorded                 run on        → notice
    (READY,     "2026-12-02", "2026-12-09", (),                      "2026-12-02", "hold_ready"),
    (READY,     "2026-12-02", "2026-12-09", (),                      "2026-12-01", None),          # not ready yet
    (READY,     "2026-12-02", "2026-12-09", (),                      "2026-12-04", "hold_ready"),  # caught up 2 days late
    (READY,     "2026-12-02", "2026-12-09", (),                      "2026-12-05", None),          # 3 days: stale
    (READY,     "2026-12-02", "2026-12-09", ("hold_ready",),         "2026-12-02", None),          # once
    ("active",  "2026-12-02", "2026-12-09", (),                      "2026-12-02", None),          # not on the shelf
    (READY,     None,         "2026-12-09", (),                      "2026-12-02", None),          # no ready_on
    (READY,     "2026-12-02", "2026-12-09", ("hold_ready",),         "2026-12-07", "pickup_deadline"),
    (READY,     "2026-12-02", "2026-12-09", ("hold_ready",),         "2026-12-09", "pickup_deadline"),  # 2 late
    (READY,     "2026-12-02", "2026-12-09", ("pickup_deadline",),    "2026-12-09", None),
    (DONE,      "2026-12-02", "2026-12-09", ("hold_ready",),         "2026-12-07", None),          # picked up
    ("cancelled", "2026-12-02", "2026-12-09", ("hold_ready",),       "2026-12-07", None),
    (READY,     "2026-12-02", None,         ("hold_ready",),         "2026-12-07", None),          # no expiry
    (READY,     "2026-12-02", "2026-12-09", ("pickup_deadline",),    "2026-12-10", "hold_expired"),  # still on shelf
    ("expired", "2026-12-02", "2026-12-09", ("pickup_deadline",),    "2026-12-10", "hold_expired"),
    ("expired", None,         "2026-12-09", (),                      "2026-12-11", "hold_expired"),  # never ready
    ("expired", None,         "2026-12-09", (),                      "2026-12-13", None),          # stale
    (DONE,      "2026-12-02", "2026-12-09", ("pickup_deadline",),    "2026-12-10", None),          # picked up
    ("expired", "2026-12-02", "2026-12-09", ("hold_expired",),       "2026-12-11", None),          # once
    # ready with 2 days to go: the deadline is due the same day, and only it goes (ready superseded)
    (READY,     "2026-12-02", "2026-12-04", (),                      "2026-12-02", "pickup_deadline"),
    # ready after its deadline passed (a late export): nothing but the expired notice
    (READY,     "2026-12-10", "2026-12-09", (),                      "2026-12-10", "hold_expired"),
]


@pytest.mark.parametrize("status, ready, expires, recorded, on, expected", TABLE)
def test_request_table(status, ready, expires, recorded, on, expected):
    policy = default_policy()
    cand = RequestCandidate(req(status, ready, expires), frozenset(recorded))
    plan = plan_requests(policy, [cand], {"P1": P}, d(on))
    sent = [(n.stage, n.loan_ids) for n in plan.notices]
    assert sent == ([(expected, ("R1",))] if expected else [])
    pending = [x for x in plan.decisions if x.status == Status.PENDING]
    assert [(x.loan_id, x.stage, x.due_date, x.kind) for x in pending] == \
        ([("R1", expected, d("2026-11-20"), "request")] if expected else [])


def test_a_patron_without_email_gets_no_request_notice_and_the_ledger_says_why():
    plan = plan_requests(default_policy(), [RequestCandidate(req(ready="2026-12-02", expires="2026-12-09"))],
                         {"P1": Patron("P1")}, d("2026-12-02"))
    assert plan.notices == []
    [row] = plan.decisions
    assert (row.stage, row.status, row.reason) == ("hold_ready", Status.CANCELLED,
                                                   "no email address: a request notice of hold_ready goes out by email only")


def test_one_email_per_patron_stage_and_day():
    cands = [RequestCandidate(req(ready="2026-12-02", expires="2026-12-09", rid=r)) for r in ("R2", "R1")]
    plan = plan_requests(default_policy(), cands, {"P1": P}, d("2026-12-02"))
    assert [(n.stage, n.loan_ids, n.entries) for n in plan.notices] == [
        ("hold_ready", ("R1", "R2"), (("R1", d("2026-11-20")), ("R2", d("2026-11-20"))))]


RECHECK = [
    # the request at delivery                         delivered on  → dropped as
    (req(ready="2026-12-02", expires="2026-12-09"),   "2026-12-02", None),
    (req(DONE, "2026-12-02", "2026-12-09"),           "2026-12-02", "cancelled"),   # picked up meanwhile
    (req(ready="2026-12-02", expires="2026-12-09"),   "2026-12-05", "expired"),     # past its window
    (req(ready="2026-12-02", expires="2026-12-03"),   "2026-12-04", "expired"),     # past the deadline
    (req(ready="2026-12-02", placed="2026-11-25"),    "2026-12-02", "cancelled"),   # another request now
    (None,                                            "2026-12-02", "cancelled"),   # gone
]


@pytest.mark.parametrize("now, on, dropped", RECHECK)
def test_the_send_time_recheck(now, on, dropped):
    policy = default_policy()
    plan = plan_requests(policy, [RequestCandidate(req(ready="2026-12-02", expires="2026-12-09"))], {"P1": P},
                         d("2026-12-02"))
    [notice] = plan.notices
    got = recheck_requests(policy, notice, {"R1": now} if now else {}, d(on))
    assert [x.status for x in got.values()] == ([dropped] if dropped else [])


@pytest.mark.parametrize("edit, message", [
    (("  - {id: hold_ready, when: ready, channel: email}", "  - {id: courtesy, when: ready, channel: email}"),
     "request_stages[0].id: courtesy is also a loan stage"),
    (("  - {id: hold_expired, when: expired, offset_days: 1, channel: email}",
      "  - {id: hold_expired, when: expired, offset_days: 0, channel: email}"),
     "request_stages[2].offset_days: an expired notice goes at least 1 day after"),
    (("  - {id: hold_ready, when: ready, channel: email}", "  - {id: hold_ready, when: ready, channel: letter}"),
     "a request notice goes to the patron themselves (email): 'letter' is a letter set out per library"),
    (("  - {id: pickup_deadline, when: expires, offset_days: 2, channel: email}",
      "  - {id: pickup_deadline, when: expired, offset_days: 2, channel: email}"),
     "request_stages[2]: request stages go in the order they trigger"),
])
def test_bad_request_stages_are_refused_with_their_line(edit, message):
    text = reminders_text()
    assert text.count(edit[0]) == 1
    with pytest.raises(InputError) as err:
        parse_policy(text.replace(*edit), "reminders.yaml")
    assert message in str(err.value) and "reminders.yaml:" in str(err.value)


def test_explain_a_request():
    policy = default_policy()
    lines = explain_request(policy, req(ready="2026-12-02", expires="2026-12-09"), P,
                            [{"stage": "hold_ready", "due_date": d("2026-11-20"), "status": "sent",
                              "decided_on": d("2026-12-02"), "reason": ""}], d("2026-12-07"))
    text = "\n".join(lines)
    assert "- hold_ready (when ready, offset 0 days, window 2 days, email): not due" in text
    assert "[no] ledger: hold_ready already in the ledger for request R1" in text
    assert "- pickup_deadline (when expires, offset 2 days, window 2 days, email): DUE → email" in text
    assert "[no] window: triggers on 2026-12-10, 3 day(s) after 2026-12-07" in text


def test_no_request_stages_no_request_notice():
    policy = policy_variant(("  - {id: hold_ready, when: ready, channel: email}\n", ""),
                            ("  - {id: pickup_deadline, when: expires, offset_days: 2, channel: email}\n", ""),
                            ("  - {id: hold_expired, when: expired, offset_days: 1, channel: email}\n", ""),
                            ("request_stages:\n", "request_stages: []\n"))
    assert policy.request_stages == []
    assert plan_requests(policy, [RequestCandidate(req(ready="2026-12-02"))], {"P1": P}, d("2026-12-02")).notices == []


# --- thirty days against a real SMTP server -------------------------------------------------------

STAGES = """\
requests: {ready_status: on_hold_shelf, expired_statuses: [expired]}
request_stages:
  - {id: hold_ready, when: ready, channel: email}
  - {id: pickup_deadline, when: expires, offset_days: 2, channel: email}
  - {id: hold_expired, when: expired, offset_days: 1, channel: email}
"""
START, DAYS = d("2026-12-01"), 30
OUTAGE = {d("2026-12-12"), d("2026-12-13")}       # no run (the nightly import still runs)

PATRONS = {"P01": "p01@etu.univ.example", "P02": "p02@etu.univ.example", "P03": "p03@etu.univ.example",
           "P04": "p04@etu.univ.example", "P05": "p05@etu.univ.example", "P06": "",
           "P07": "p07@etu.univ.example", "P08": "p08@etu.univ.example"}

# request: patron, placed on, and its (status, expires_on) from a day on, as the library system exports it
REQUESTS = {
    "R01": ("P01", "2026-11-20", {"2026-12-01": ("active", ""), "2026-12-02": (READY, "2026-12-09"),
                                  "2026-12-05": (DONE, "2026-12-09")}),
    "R02": ("P02", "2026-11-21", {"2026-12-01": ("active", ""), "2026-12-03": (READY, "2026-12-10"),
                                  "2026-12-11": ("expired", "2026-12-10")}),
    "R03": ("P02", "2026-11-22", {"2026-12-01": ("active", ""), "2026-12-03": (READY, "2026-12-10"),
                                  "2026-12-09": (DONE, "2026-12-10")}),
    "R04": ("P03", "2026-11-23", {"2026-12-01": ("active", ""), "2026-12-11": (READY, "2026-12-14"),
                                  "2026-12-16": ("expired", "2026-12-14")}),
    "R05": ("P04", "2026-11-24", {"2026-12-01": ("in_process", ""), "2026-12-12": (READY, "2026-12-20"),
                                  "2026-12-21": ("expired", "2026-12-20")}),
    "R06": ("P05", "2026-11-25", {"2026-12-01": (READY, "2026-12-03"), "2026-12-03": (DONE, "2026-12-03")}),
    "R07": ("P06", "2026-11-26", {"2026-12-01": ("active", ""), "2026-12-05": (READY, "2026-12-12"),
                                  "2026-12-08": (DONE, "2026-12-12")}),
    "R08": ("P07", "2026-11-27", {"2026-12-01": ("active", "2026-12-20"), "2026-12-21": ("expired", "2026-12-20")}),
    "R09": ("P08", "2026-11-28", {"2026-12-01": ("active", ""), "2026-12-22": (READY, "2026-12-29"),
                                  "2026-12-23": ("cancelled", "2026-12-29")}),
}

# Written by hand from the rules above: (stage, patron, requests) sent on each day
EXPECTED = {
    "2026-12-01": [("pickup_deadline", "P05", ("R06",))],      # ready with 2 days to go: the deadline only
    "2026-12-02": [("hold_ready", "P01", ("R01",))],           # picked up 12-05: no deadline notice
    "2026-12-03": [("hold_ready", "P02", ("R02", "R03"))],     # one email for both
    "2026-12-08": [("pickup_deadline", "P02", ("R02", "R03"))],
    "2026-12-11": [("hold_expired", "P02", ("R02",)),          # R03 was picked up on 12-09
                   ("hold_ready", "P03", ("R04",))],
    # 12-12 and 12-13: no run. R04's deadline (12-12) and R05's ready (12-12) are caught up on 12-14
    "2026-12-14": [("pickup_deadline", "P03", ("R04",)), ("hold_ready", "P04", ("R05",))],
    "2026-12-15": [("hold_expired", "P03", ("R04",))],         # still on the shelf the day after its deadline
    "2026-12-18": [("pickup_deadline", "P04", ("R05",))],
    "2026-12-21": [("hold_expired", "P04", ("R05",)), ("hold_expired", "P07", ("R08",))],  # R08 never ready
    "2026-12-22": [("hold_ready", "P08", ("R09",))],           # cancelled 12-23: nothing more
}
SUBJECTS = {"hold_ready": "Votre réservation est disponible",
            "pickup_deadline": "Votre réservation vous attend encore quelques jours",
            "hold_expired": "Votre réservation a expiré",
            "courtesy": "Vos documents sont à rendre dans quelques jours"}


def _export(site: Site, day: dt.date) -> None:
    """The library system's nightly export of requests, imported (dated ``day``: ready_on)."""
    path = site.dir / "requests.csv"
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=REQUEST_FIELDS)
        writer.writeheader()
        for rid, (patron, placed, states) in REQUESTS.items():
            status, expires = [s for since, s in sorted(states.items()) if d(since) <= day][-1]
            writer.writerow({"request_id": rid, "patron_id": patron, "title": f"Réservation {rid}", "library": "SCI",
                             "pickup_library": "DROIT", "placed_on": placed, "status": status, "expires_on": expires})
    import_csv(site.store, site.policy, "requests", path, facts_date=day)


def test_thirty_days_of_holds_against_a_real_smtp_server(tmp_path, db_url, smtp_server):
    site = Site(tmp_path, extra=STAGES + f'delivery:\n  email: {{url: "{smtp_server.url}"}}\n', db_url=db_url)
    try:
        for pid, address in PATRONS.items():
            site.patron(pid, address)
        # a loan with the id of a request: its own courtesy notice, the two never mixed up in the ledger
        site.loan("R02", "P02", "2026-12-20", title="Prêt R02")
        expected = {day: list(notices) for day, notices in EXPECTED.items()}
        expected["2026-12-17"] = [("courtesy", "P02", ("R02",))]
        got: dict[str, list] = {}
        seen = 0
        for i in range(DAYS):
            day = START + dt.timedelta(days=i)
            if day == d("2026-12-19"):          # the loan is returned
                with site.store.engine.begin() as conn:
                    conn.execute(loans.update().where(loans.c.loan_id == "R02").values(returned_on=day))
            _export(site, day)
            if day in OUTAGE:
                continue
            result = site.run(day)
            sent = sorted((n.stage, n.patron_id, n.loan_ids) for n in result.plan.notices)
            outcomes = {o.key: o.status for o in result.outcomes}
            assert all(outcomes[n.key] == "sent" for n in result.plan.notices), (day, outcomes)
            if sent:
                got[day.isoformat()] = sent
            mail = smtp_server.messages[seen:]
            seen = len(smtp_server.messages)
            assert sorted((m.rcpt_tos[0], m.message["Subject"]) for m in mail) == sorted(
                (PATRONS[p], SUBJECTS[s]) for s, p, _ in expected.get(day.isoformat(), [])), day
            for m in mail:       # each email names its requests, and only those
                text = m.message.get_body(("plain",)).get_content()
                stage, _, ids = next(x for x in expected[day.isoformat()] if PATRONS[x[1]] == m.rcpt_tos[0]
                                     and SUBJECTS[x[0]] == m.message["Subject"])
                if stage != "courtesy":
                    assert sorted(r for r in REQUESTS if f"Réservation {r}" in text) == list(ids)
                    assert "Bibliothèque de droit" in text          # where to pick it up
        assert got == {day: sorted(n) for day, n in expected.items()}
        # every notice exactly once: a (request, stage) in one sent email, never two
        with site.store.engine.connect() as conn:
            rows = conn.execute(select(ledger.c.loan_id, ledger.c.stage, ledger.c.status, ledger.c.kind)).all()
        sent_rows = Counter((r.loan_id, r.stage) for r in rows if r.status == "sent" and r.kind == "request")
        assert set(sent_rows.values()) == {1}
        assert len(smtp_server.messages) == sum(len(n) for n in expected.values())
        # R06's ready notice was superseded by its deadline; R07's patron has no email
        requests_rows = {(r.loan_id, r.stage): r.status for r in rows if r.kind == "request"}
        assert requests_rows[("R06", "hold_ready")] == "superseded"
        assert requests_rows[("R07", "hold_ready")] == "cancelled"
        assert {(r.loan_id, r.stage) for r in rows if r.kind == "loan"} == {("R02", "courtesy")}
        assert [r["stage"] for r in request_ledger(site.store.engine, "R02")] == \
            ["hold_ready", "pickup_deadline", "hold_expired"]
        # a second run of a day sends nothing new
        again = site.run(d("2026-12-22"))
        assert again.plan.notices == [] and len(smtp_server.messages) == seen
    finally:
        site.close()


def test_a_request_picked_up_between_decision_and_delivery_is_not_sent(tmp_path, db_url, smtp_server):
    site = Site(tmp_path, extra=STAGES + f'delivery:\n  email: {{url: "{smtp_server.url}"}}\n', db_url=db_url)
    try:
        site.patron("P01", "p01@etu.univ.example")
        path = site.dir / "requests.csv"

        def export(status: str, day: dt.date):
            with open(path, "w", newline="", encoding="utf-8") as out:
                writer = csv.DictWriter(out, fieldnames=REQUEST_FIELDS)
                writer.writeheader()
                writer.writerow({"request_id": "R01", "patron_id": "P01", "title": "T", "library": "SCI",
                                 "pickup_library": "SCI", "placed_on": "2026-11-20", "status": status,
                                 "expires_on": "2026-12-09"})
            import_csv(site.store, site.policy, "requests", path, facts_date=day)
        export(READY, d("2026-12-02"))
        plan = site.decide_only(d("2026-12-02"))           # the run stops after committing its decisions
        assert [n.stage for n in plan.notices] == ["hold_ready"]
        export(DONE, d("2026-12-02"))                        # picked up before delivery
        result = site.run(d("2026-12-02"))
        assert [o.status for o in result.outcomes] == ["cancelled"]
        assert smtp_server.messages == []
        assert site.ledger()[("R01", "hold_ready")][0] == "cancelled"
    finally:
        site.close()


# --- rappel explain --request, rappel run ---------------------------------------------------------

def test_rappel_explain_request_and_run(tmp_path, monkeypatch):
    try:
        from tests.test_cli import PATRONS_CSV, Install
    except ModuleNotFoundError:
        from test_cli import PATRONS_CSV, Install
    monkeypatch.setenv("RAPPEL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RAPPEL_INSTALLATION_ID", raising=False)
    site = Install(tmp_path)
    assert site("import", "patrons", site.csv("patrons.csv", PATRONS_CSV)).exit_code == 0
    header = ",".join(REQUEST_FIELDS)
    rows = [header, "Q1,P1,Chimie organique,SCI,DROIT,2026-11-20,on_hold_shelf,2026-12-09",
            "Q2,P2,Physique,SCI,SCI,2026-11-21,on_hold_shelf,2026-12-09"]      # P2 has no email
    result = site("import", "requests", site.csv("requests.csv", rows), "--on", "2026-12-02")
    assert result.exit_code == 0, result.stderr
    result = site("explain", "--request", "Q1", "--on", "2026-12-02")
    assert result.exit_code == 0, result.stderr
    assert "ready on 2026-12-02, expires 2026-12-09" in result.stdout
    assert "- hold_ready (when ready, offset 0 days, window 2 days, email): DUE → email" in result.stdout
    assert "    [no] window: triggers on 2026-12-07, 5 day(s) after 2026-12-02" in result.stdout
    result = site("run", "--on", "2026-12-02", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "hold_ready" in result.stdout and "no email address: a request notice of hold_ready goes out by email only" \
        in result.stdout, result.stdout
    result = site("run", "--on", "2026-12-02", "--outbox", tmp_path / "outbox")
    assert result.exit_code == 0, result.stderr
    [eml] = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert "hold_ready" in eml.name
    result = site("explain", "--request", "Q1", "--on", "2026-12-03")
    assert "[no] ledger: hold_ready already in the ledger for request Q1" in result.stdout
    assert "hold_ready for the request placed 2026-11-20: sent (decided 2026-12-02" in result.stdout
    for args, message in ((("--request", "Q9"), "no request 'Q9'"),
                          ((), "give one of --loan ID or --request ID"),
                          (("--request", "Q1", "--loan", "L1"), "give one of --loan ID or --request ID")):
        result = site("explain", *args, "--on", "2026-12-03")
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)


@pytest.mark.parametrize("edit, expected", [
    (("{{ request.title }}", "{{ request.titel }}"), "undefined variable: request.titel"),
    (("{% block intro %}{% endblock %}", "{% block intro %}{% endblock %}{% if 0 %}{{ loan.title }}{% endif %}"),
     "undefined variable: loan:"),
])
def test_lint_reports_a_name_a_request_template_is_not_given(tmp_path, edit, expected):
    import shutil
    from pathlib import Path
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parent.parent / "rules", rules)
    path = rules / "templates" / "en" / "_request_base.txt.j2"
    text = path.read_text(encoding="utf-8")
    assert text.count(edit[0]) == 1
    path.write_text(text.replace(*edit), encoding="utf-8")
    line = next(i for i, t in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if edit[1] in t)
    from adapters.render import Templates
    from engine.policy import parse_policy as parse
    templates = Templates(rules, parse((rules / "reminders.yaml").read_text(encoding="utf-8")))
    problems = [str(p) for p in templates.lint()]
    assert any(f"{path}:{line}" in p and expected in p for p in problems), problems


def test_lint_reports_a_missing_request_template(tmp_path):
    import shutil
    from pathlib import Path
    from adapters.render import Templates
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parent.parent / "rules", rules)
    (rules / "templates" / "es" / "hold_expired.html.j2").unlink()
    templates = Templates(rules, parse_policy((rules / "reminders.yaml").read_text(encoding="utf-8")))
    problems = [str(p) for p in templates.lint()]
    assert any("es/hold_expired.html.j2" in p and "template file is missing (request stage hold_expired)" in p
               for p in problems), problems


def test_labels_may_name_request_stages():
    from engine.presentation import stage_label
    policy = policy_variant(('    stages: {courtesy: "Due soon",', '    stages: {hold_ready: "Ready for pickup", courtesy: "Due soon",'))
    assert stage_label(policy, "hold_ready", "en") == "Ready for pickup"
    with pytest.raises(InputError, match="no stage 'hold_redy' in stages"):
        policy_variant(('    stages: {courtesy: "Due soon",', '    stages: {hold_redy: "Ready", courtesy: "Due soon",'))


def test_a_refused_address_fails_the_request_notice_and_a_retry_sends_it(tmp_path, smtp_server):
    from service import notices as staff
    site = Site(tmp_path, extra=STAGES + f'delivery:\n  email: {{url: "{smtp_server.url}"}}\n')
    try:
        site.patron("P01", "p01@etu.univ.example")
        path = site.dir / "requests.csv"
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=REQUEST_FIELDS)
            writer.writeheader()
            writer.writerow({"request_id": "R01", "patron_id": "P01", "title": "T", "library": "SCI",
                             "pickup_library": "SCI", "placed_on": "2026-11-20", "status": READY,
                             "expires_on": "2026-12-09"})
        import_csv(site.store, site.policy, "requests", path, facts_date=d("2026-12-02"))
        smtp_server.refuse["p01@etu.univ.example"] = "550 5.1.1 User unknown"
        result = site.run(d("2026-12-02"))
        [outcome] = result.outcomes
        assert outcome.status == "failed" and "no other channel for hold_ready (its channels: email)" in outcome.detail
        del smtp_server.refuse["p01@etu.univ.example"]
        at = dt.datetime(2026, 12, 3, 9, tzinfo=site.policy.tz)
        report = staff.retry(site.store, site.policy, actor="marie", why="address fixed", at=at, as_of=d("2026-12-03"))
        assert report.requeued == [outcome.key] and report.skipped == []
        result = site.run(d("2026-12-03"))
        assert [o.status for o in result.outcomes] == ["sent"]
        assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["p01@etu.univ.example"]
        # past its window, a retry is refused unless forced
        report = staff.retry(site.store, site.policy, actor="marie", why="again", at=at, as_of=d("2026-12-05"))
        assert report.requeued == []
    finally:
        site.close()


@pytest.mark.parametrize("ready, on, expected", [
    # restart on 2026-12-02: a hold ready before it gets no ready notice, even within the window
    ("2026-12-01", "2026-12-02", None),
    ("2026-12-02", "2026-12-02", "hold_ready"),
])
def test_no_request_notice_triggered_before_the_restart(ready, on, expected):
    policy = policy_variant(("# restart: {resumed_on: 2026-11-22}", "restart: {resumed_on: 2026-12-02}"))
    plan = plan_requests(policy, [RequestCandidate(req(ready=ready, expires="2026-12-20"))], {"P1": P}, d(on))
    assert [n.stage for n in plan.notices] == ([expected] if expected else [])


# --- thirty days by email and SMS: the SMTP server and the SMS gateway (a local HTTP server) -------

SMS_STAGES = STAGES.replace("channel: email}", "channel: email, channels: [email, sms]}")
PHONES = {"P02": "+33612345602", "P03": "+33612345603", "P04": "+33612345604", "P08": ""}   # they prefer sms
REFUSED = "+33612345603"              # the gateway refuses P03's number for good: email instead, same run
SMS_WORDS = {"hold_ready": "à retirer à", "pickup_deadline": "vous attendent à", "hold_expired": "ont expiré",
             "courtesy": "à rendre le"}


def _by_sms(patron: str) -> bool:
    return bool(PHONES.get(patron)) and PHONES[patron] != REFUSED


def test_thirty_days_of_holds_by_email_and_sms(tmp_path, db_url, smtp_server, http_site, monkeypatch):
    """The same thirty days, the request stages and the courtesy offered by email or SMS: P02 and P04
    prefer SMS and get every notice by SMS; P03 prefers it but the gateway refuses the number, so
    each of theirs goes by email in the same run; P08 prefers it without a phone: email. Every
    notice reaches one place once: the SMTP server or the gateway."""
    try:
        from tests import delivery_site
    except ModuleNotFoundError:
        import delivery_site
    shipped = "  - {{id: courtesy, offset_days: -3, channel: email}}\n"
    assert shipped in delivery_site.POLICY
    monkeypatch.setattr(delivery_site, "POLICY", delivery_site.POLICY.replace(
        shipped, "  - {{id: courtesy, offset_days: -3, channel: email, channels: [email, sms]}}\n"))
    http_site.refuse[REFUSED] = 400
    extra = SMS_STAGES + (f'delivery:\n  email: {{url: "{smtp_server.url}"}}\n'
                          f'  channels:\n    sms: {{url: "json://{http_site.base}/sms?:to={{to}}"}}\n')
    site = delivery_site.Site(tmp_path, extra=extra, db_url=db_url)
    try:
        for pid, address in PATRONS.items():
            site.patron(pid, address)
            if pid in PHONES:
                with site.store.engine.begin() as conn:
                    conn.execute(patrons.update().where(patrons.c.patron_id == pid)
                                 .values(phone=PHONES[pid], channels="sms email"))
        site.loan("R02", "P02", "2026-12-20", title="Prêt R02")
        expected = {day: list(notices) for day, notices in EXPECTED.items()}
        expected["2026-12-17"] = [("courtesy", "P02", ("R02",))]
        smtp_seen = http_seen = 0
        for i in range(DAYS):
            day = START + dt.timedelta(days=i)
            if day == d("2026-12-19"):
                with site.store.engine.begin() as conn:
                    conn.execute(loans.update().where(loans.c.loan_id == "R02").values(returned_on=day))
            _export(site, day)
            if day in OUTAGE:
                continue
            site.run(day)
            mail, smtp_seen = smtp_server.messages[smtp_seen:], len(smtp_server.messages)
            texts = [r for r in http_site.received()[http_seen:] if r.status_ok]
            http_seen = len(http_site.received())
            today = expected.get(day.isoformat(), [])
            assert sorted((m.rcpt_tos[0], m.message["Subject"]) for m in mail) == sorted(
                (PATRONS[p], SUBJECTS[s]) for s, p, _ in today if not _by_sms(p)), day
            assert sorted((r.json["to"], next(s for s, w in SMS_WORDS.items() if w in r.json["message"]))
                          for r in texts) == sorted((PHONES[p], s) for s, p, _ in today if _by_sms(p)), day
            for r in texts:       # one SMS names how many requests it is for
                stage, _, ids = next(x for x in today if PHONES.get(x[1]) == r.json["to"])
                if stage != "courtesy":
                    assert f"{len(ids)} réservation(s)" in r.json["message"]
                if stage in ("hold_ready", "pickup_deadline"):      # where to pick it up
                    assert "Bibliothèque de droit" in r.json["message"]
        total = sum(len(n) for n in expected.values())
        by_sms = sum(1 for n in expected.values() for _, p, _ in n if _by_sms(p))
        assert len(smtp_server.messages) == total - by_sms and by_sms == 7      # P02 4, P04 3
        refused = [r for r in http_site.received() if not r.status_ok]
        assert refused and {r.json["to"] for r in refused} == {REFUSED}
        with site.store.engine.connect() as conn:
            rows = conn.execute(select(ledger.c.loan_id, ledger.c.stage, ledger.c.status, ledger.c.kind)).all()
        sent_rows = Counter((r.loan_id, r.stage, r.kind) for r in rows if r.status == "sent")
        assert set(sent_rows.values()) == {1} and len(sent_rows) == sum(
            len(ids) for n in expected.values() for _, _, ids in n)
        again = site.run(d("2026-12-22"))
        assert again.plan.notices == [] and len(smtp_server.messages) == smtp_seen
        assert len(http_site.received()) == http_seen
    finally:
        site.close()


# --- which channel a request notice goes out on --------------------------------------------------

def _with_sms(hold_ready: str):
    """The shipped policy, its hold_ready stage as given, parsed with the channels rappel registers."""
    from adapters.channels.registry import REGISTRY
    text = reminders_text()
    assert text.count("  - {id: hold_ready, when: ready, channel: email}") == 1
    return parse_policy(text.replace("  - {id: hold_ready, when: ready, channel: email}", hold_ready),
                        "variant.yaml", REGISTRY.specs())


ROUTES = [
    # stage's channels   patron's channels  email                    phone           → channel, reason
    ("[email, sms]",     "",                "p1@etu.univ.example",   "+33612345678", "email", ""),
    ("[email, sms]",     "sms email",       "p1@etu.univ.example",   "+33612345678", "sms", ""),
    ("[email, sms]",     "sms email",       "p1@etu.univ.example",   "",             "email",
     "no phone number for sms: email instead"),
    ("[email, sms]",     "sms",             "",                      "+33612345678", "sms", ""),
    ("[email, sms]",     "",                "",                      "+33612345678", "sms",
     "no email address: sms instead"),
    ("[email, sms]",     "sms email",       "not-an-address",        "06 12",        None,
     "phone '06 12' is not an E.164 number for sms; email 'not-an-address' is not one valid address: a request "
     "notice of hold_ready goes out by sms or email only"),
    ("[email]",          "sms email",       "p1@etu.univ.example",   "+33612345678", "email", ""),   # not offered
]


@pytest.mark.parametrize("offered, prefers, email, phone, channel, reason", ROUTES)
def test_the_channel_of_a_request_notice(offered, prefers, email, phone, channel, reason):
    from adapters.channels.registry import REGISTRY
    from engine.request_notices import route_request
    policy = _with_sms(f"  - {{id: hold_ready, when: ready, channel: email, channels: {offered}}}")
    patron = Patron("P1", email=email, phone=phone, channels=prefers)
    assert route_request(policy, policy.request_stages[0], patron, REGISTRY.specs()) == (channel, reason)
    plan = plan_requests(policy, [RequestCandidate(req(ready="2026-12-02", expires="2026-12-09"))], {"P1": patron},
                         d("2026-12-02"), REGISTRY.specs())
    assert [(n.channel, n.destination) for n in plan.notices] == \
        ([(channel, phone if channel == "sms" else email)] if channel else [])


def test_a_refused_sms_falls_back_to_the_next_channel_the_patron_has():
    from adapters.channels.registry import REGISTRY
    from engine.request_notices import fallback_request
    policy = _with_sms("  - {id: hold_ready, when: ready, channel: email, channels: [email, sms]}")
    request = req(ready="2026-12-02", expires="2026-12-09")
    zoe = Patron("P1", email="p1@etu.univ.example", phone="+33612345678", channels="sms email")
    [sms] = plan_requests(policy, [RequestCandidate(request)], {"P1": zoe}, d("2026-12-02"), REGISTRY.specs()).notices
    [email] = fallback_request(policy, sms, zoe, [request], REGISTRY.specs()).letters
    assert (sms.channel, email.channel, email.destination, email.entries) == \
        ("sms", "email", "p1@etu.univ.example", sms.entries)
    no_email = Patron("P1", phone="+33612345678", channels="sms email")
    assert fallback_request(policy, sms, no_email, [request], REGISTRY.specs()).why_not == \
        "no other channel the patron can be reached on (no email address)"
    assert fallback_request(policy, email, zoe, [request], REGISTRY.specs()).why_not == \
        "no other channel for hold_ready (its channels: sms, email)"


def test_lint_measures_a_request_sms_in_every_language(tmp_path):
    import shutil
    from pathlib import Path
    from adapters.channels.registry import REGISTRY
    from adapters.render import Templates
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parent.parent / "rules", rules)
    text = (rules / "reminders.yaml").read_text(encoding="utf-8").replace(
        "  - {id: hold_ready, when: ready, channel: email}",
        "  - {id: hold_ready, when: ready, channel: email, channels: [email, sms]}")

    def lint():
        policy = parse_policy(text, str(rules / "reminders.yaml"), REGISTRY.specs())
        return [str(p) for p in Templates(rules, policy).lint()]
    assert lint() == []
    sms = rules / "templates" / "es" / "hold_ready.sms.j2"
    sms.write_text(sms.read_text(encoding="utf-8").rstrip("\n") + " Gracias." * 40 + "\n", encoding="utf-8")
    problems = lint()
    assert len(problems) == 1 and str(sms) in problems[0] and "request stage hold_ready" in problems[0] \
        and "language es: the SMS takes" in problems[0] and "more than sms.max_segments (2)" in problems[0], problems
    sms.unlink()
    assert any(str(sms) in p and "template file is missing (request stage hold_ready)" in p for p in lint())


def test_the_daemon_decides_the_request_stages_in_a_child_process_as_well():
    """The daemon evaluates in a short-lived child process (adapters/isolation.py): the request
    stages too, with the same decisions as in this process."""
    from adapters import isolation
    from engine import rules
    policy = default_policy()
    cands = [RequestCandidate(req(status, ready, expires, rid=f"R{i}"), frozenset(recorded))
             for i, (status, ready, expires, recorded, _, _) in enumerate(TABLE)]
    pairs = [(ci, si) for ci in range(len(cands)) for si in range(len(policy.request_stages))]
    for day in ("2026-12-02", "2026-12-07", "2026-12-10"):
        here = rules.evaluate_requests_here(policy, cands, d(day), pairs)
        assert here and isolation.evaluate_requests_in_child(policy, cands, d(day), pairs) == here
    assert isolation.for_requests(isolation.evaluate_in_child) is isolation.evaluate_requests_in_child
    assert isolation.for_requests(None) is None
    in_child = plan_requests(policy, cands, {"P1": P}, d("2026-12-10"), evaluate=isolation.evaluate_requests_in_child)
    assert in_child.notices and in_child == plan_requests(policy, cands, {"P1": P}, d("2026-12-10"))


# --- opting out of a request stage the policy marks optional --------------------------------------

OPT_OUTS = [
    # patron's opt_out          run on        → notice (pickup_deadline optional, the others not)
    ("",                        "2026-12-07", "pickup_deadline"),
    ("pickup_deadline",         "2026-12-07", None),
    ("all",                     "2026-12-07", None),
    ("courtesy",                "2026-12-07", "pickup_deadline"),      # a loan stage's opt-out: not this one
    ("pickup_deadline",         "2026-12-02", "hold_ready"),           # not optional: sent
    ("all",                     "2026-12-10", "hold_expired"),
]


@pytest.mark.parametrize("opt_out, on, expected", OPT_OUTS)
def test_a_patron_may_opt_out_of_an_optional_request_stage(opt_out, on, expected):
    policy = policy_variant(("  optional: [courtesy]", "  optional: [courtesy, pickup_deadline]"))
    patron = Patron("P1", email="p1@etu.univ.example", opt_out=opt_out)
    recorded = {"2026-12-07": ("hold_ready",), "2026-12-10": ("hold_ready",)}.get(on, ())
    cand = RequestCandidate(req(ready="2026-12-02", expires="2026-12-09"), frozenset(recorded), patron.opted_out)
    plan = plan_requests(policy, [cand], {"P1": patron}, d(on))
    assert [n.stage for n in plan.notices] == ([expected] if expected else [])
    lines = "\n".join(explain_request(policy, cand.request, patron, [
        {"stage": s, "due_date": d("2026-11-20"), "status": "sent", "decided_on": d("2026-12-02"), "reason": ""}
        for s in recorded], d(on)))
    if expected is None:
        assert "[no] opt_out: the patron opted out of pickup_deadline (an optional stage)" in lines


def test_opting_out_of_a_request_stage_is_checked_like_a_loan_stage():
    from engine.preferences import opt_out_problem
    policy = policy_variant(("  optional: [courtesy]", "  optional: [courtesy, pickup_deadline]"))
    assert opt_out_problem("pickup_deadline courtesy", policy) is None
    assert opt_out_problem("hold_ready", policy) == ("opt_out: hold_ready is not optional: patrons cannot opt out "
                                                     "of it (optional stages: courtesy, pickup_deadline, or all)")
    with pytest.raises(InputError, match="preferences.optional: 'hold_redy' is not a stage"):
        policy_variant(("  optional: [courtesy]", "  optional: [courtesy, hold_redy]"))
