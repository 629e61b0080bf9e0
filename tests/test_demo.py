"""`rappel demo`: the bundled sample (service/sample/) run over a few days, checked message by message.

The demo policy (service/sample/reminders.yaml): the default timeline (courtesy D-3, first reminder
D+7, second D+21, letter D+35, 2-day catch-up), lost and claimed_returned excluded, three
libraries, `languages: [fr, en, es]` (P04, Lucía García, prefers es: her notices are in Spanish;
everyone else's in French), and `restart: {resumed_on: 2026-11-22}`. Runs on Sunday 22, Monday 23, Wednesday 25 and
Thursday 26 November 2026 (twice): the 24th is skipped and caught up on the 25th.

The sample, loan by loan (R = 2026-11-22), as read from service/sample/*.csv:
    L01 P01 SCI     due 11-25          courtesy 11-22                        → 22: email
    L02 P01 DROIT   due 2026-11-26T18:00+01:00, local 11-26: courtesy 11-23 → 23: email
    L03 P02 SCI     due 11-15          first 11-22                           → 22: one email with L17
    L17 P02 LETTRES due 11-15          first 11-22                           → 22: with L03
    L04 P02 DROIT   due 11-16          first 11-23                           → 23: email
    L05 P03 SCI     due 11-17          first 11-24 (skipped) → 25; P03 has no email: a letter, SCI
    L06 P03 LETTRES due 11-27          courtesy 11-24 → 25, but no email: not sent (cancelled)
    L07 P04 SCI     due 11-01 (staff)  first 11-08 < R; second 11-22         → 22: email
    L08 P04 SCI     due 11-04          first 11-11 < R; second 11-25         → 25: email
    L09 P05 DROIT   due 10-18          second 11-08 < R; letter 11-22        → 22: letter, DROIT
    L10 P05 DROIT   due 10-20          letter 11-24 (skipped) → 25           → 25: letter, DROIT
    L11 P06 SCI     due 10-10          letter 11-14 < R: never
    L12 P06 SCI     due 10-25          second 11-15 < R; letter 11-29: after the demo
    L13 P07 LETTRES due 11-15          a contact: never
    L14 P02 SCI     due 11-15          returned 11-20: never
    L15 P08 SCI     due 11-15          lost: never
    L16 P08 SCI     due 11-16          first 11-23                           → 23: email
"""
from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default as mail_policy

from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from adapters.store.schema import ledger, notices
from cli import app


def email(stage, patron, *loans):
    return (stage, "email", patron, None, tuple(loans))


def letter(stage, patron, library, *loans):
    return (stage, "letter", patron, library, tuple(loans))


EXPECTED = {
    "2026-11-22": [email("courtesy", "P01", "L01"),
                   email("first_reminder", "P02", "L03", "L17"),
                   email("second_reminder", "P04", "L07"),
                   letter("letter", "P05", "DROIT", "L09")],
    "2026-11-23": [email("courtesy", "P01", "L02"),
                   email("first_reminder", "P02", "L04"),
                   email("first_reminder", "P08", "L16")],
    "2026-11-25": [letter("first_reminder", "P03", "SCI", "L05"),
                   email("second_reminder", "P04", "L08"),
                   letter("letter", "P05", "DROIT", "L10")],
    "2026-11-26": [],
}

LEDGER = {
    ("L01", "courtesy"): "sent", ("L02", "courtesy"): "sent",
    ("L03", "first_reminder"): "sent", ("L17", "first_reminder"): "sent", ("L04", "first_reminder"): "sent",
    ("L16", "first_reminder"): "sent", ("L05", "first_reminder"): "sent",
    ("L07", "second_reminder"): "sent", ("L08", "second_reminder"): "sent",
    ("L09", "letter"): "sent", ("L10", "letter"): "sent",
    ("L06", "courtesy"): "cancelled",
}

RUN = re.compile(r"^== run for (\d{4}-\d\d-\d\d)\b.*: (\d+) message\(s\)$")
# Each email of the outbox: (date, recipient) -> (Content-Language, Subject). P04 prefers es.
EMAILS = {
    ("2026-11-22", "camille.durand@etu.univ.example"): ("fr", "Vos documents sont à rendre dans quelques jours"),
    ("2026-11-22", "thomas.lefevre@etu.univ.example"): ("fr", "Premier rappel : documents en retard"),
    ("2026-11-22", "lucia.garcia@univ.example"):       ("es", "Segundo aviso: ejemplares con retraso"),
    ("2026-11-23", "camille.durand@etu.univ.example"): ("fr", "Vos documents sont à rendre dans quelques jours"),
    ("2026-11-23", "thomas.lefevre@etu.univ.example"): ("fr", "Premier rappel : documents en retard"),
    ("2026-11-23", "elodie.roux@etu.univ.example"):    ("fr", "Premier rappel : documents en retard"),
    ("2026-11-25", "lucia.garcia@univ.example"):       ("es", "Segundo aviso: ejemplares con retraso"),
}
MESSAGE = re.compile(r"^\s+(\w+)\s+(email|letter)\s+(P\d+)\s+loans (.+?)\s+→ (\S+)(?: \((\w+)\) for .*)?$")


def parse(output: str) -> dict[str, list[tuple]]:
    """The demo's printed runs as {date: [(stage, channel, patron, library, loans)]}; a date run twice
    is listed under one key with both runs' messages."""
    days: dict[str, list[tuple]] = {}
    current = None
    for line in output.splitlines():
        run = RUN.match(line)
        if run:
            current = run.group(1)
            days.setdefault(current, [])
            continue
        msg = MESSAGE.match(line)
        if msg and current:
            stage, channel, patron, loans, where, library = msg.groups()
            days[current].append((stage, channel, patron, library, tuple(x.strip() for x in loans.split(","))))
        elif not line.startswith(" "):
            current = None
    return days


def test_the_demo_runs_and_sends_what_the_sample_calls_for(tmp_path):
    workdir = tmp_path / "demo"
    # leftovers of an earlier demo: the demo starts afresh, they must not count
    (workdir / "outbox" / "email" / "2026-11-22").mkdir(parents=True)
    (workdir / "outbox" / "email" / "2026-11-22" / "old.eml").write_text("From: old\n\nold\n")
    (workdir / "rappel-demo.db").write_text("not a database")
    result = CliRunner().invoke(app, ["demo", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output

    # 1. what it prints, day by day
    printed = parse(result.stdout)
    assert printed == EXPECTED
    assert result.stdout.count("== run for 2026-11-26") == 2   # the second run of a day sends nothing
    assert "(L06 courtesy: cancelled: no email address" in result.stdout
    assert f"loans L05       → outbox:{workdir / 'outbox'}/ (SCI) for Jeanne Moreau" in result.stdout
    assert "[no] restart: trigger 2026-11-11 is before the restart on 2026-11-22: never sent" in result.stdout

    # 2. what the database says went out
    engine = create_engine(f"sqlite:///{workdir / 'rappel-demo.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(notices)).all()
            entries = conn.execute(select(ledger)).all()
    finally:
        engine.dispose()
    assert {(e.loan_id, e.stage): e.status for e in entries} == LEDGER
    from_db: dict[str, list[tuple]] = {day: [] for day in EXPECTED}
    for n in rows:
        assert n.status == "sent", (n.key, n.status, n.last_error)
        assert n.destination == f"outbox:{workdir / 'outbox'}/"      # recorded where it went: the outbox
        loans = tuple(sorted(e.loan_id for e in entries if e.notice_key == n.key))
        from_db[n.run_date.isoformat()].append((n.stage, n.channel, n.patron_id, n.library, loans))
    assert {day: sorted(ms) for day, ms in from_db.items()} == {day: sorted(ms) for day, ms in EXPECTED.items()}

    # 3. and the outbox: one .eml per email, one PDF per letter, under its library and date
    outbox = workdir / "outbox"
    files = sorted(p.relative_to(outbox).as_posix() for p in outbox.rglob("*") if p.is_file())
    expected_files = sorted(
        [f"email/{day}/" for day, ms in EXPECTED.items() for m in ms if m[1] == "email"]
        + [f"letters/{m[3]}/{day}/" for day, ms in EXPECTED.items() for m in ms if m[1] == "letter"])
    assert [f.rsplit("/", 1)[0] + "/" for f in files] == expected_files
    assert all(f.endswith(".eml") if f.startswith("email/") else f.endswith(".pdf") for f in files)
    assert all((outbox / f).read_bytes().startswith(b"%PDF") for f in files if f.endswith(".pdf"))

    # 4. each email in its patron's language: Lucía García (es) reads Spanish, the others French
    languages = {}
    for path in sorted((outbox / "email").rglob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=mail_policy)
        languages[(path.parent.name, message["To"].addresses[0].addr_spec)] = (message["Content-Language"],
                                                                               message["Subject"])
    assert languages == EMAILS
