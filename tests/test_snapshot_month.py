"""A month of nightly snapshots: loans are returned by disappearing from the export.

The library system exports its *current* loans every night, of every library; rappel imports
each export with --snapshot --libraries all before the day's run. A loan absent from the export of day X was returned: it is closed
on X ("absent from the export of X"), a notice of it still pending is cancelled at dispatch, and no
stage applies to it again. On 2026-12-18 the export is truncated (half its rows): refused, nothing
changed, and the loans it lost keep their notices.

The shipped policy with `restart: {resumed_on: 2026-12-01}`: courtesy D-3 (email), first reminder
D+7, second D+21, letter D+35; caught up within 2 days. Twenty loans due in March 2027 (X01-X20)
stay on loan all month, so that one return is a small share of the open loans.

EXPECTED was written by hand from these rules and the table of disappearances.
"""
from __future__ import annotations

import csv
import datetime as dt

import pytest
from sqlalchemy import func, select

from adapters.store.schema import LOAN_FIELDS, fact_imports, loans
from service import imports
from service.session import Refused

try:
    from tests.engine_cases import d, with_restart
    from tests.test_pipeline import World
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import d, with_restart
    from test_pipeline import World

START, END = "2026-12-01", "2026-12-31"
TRUNCATED = "2026-12-18"

LOANS = [
    # loan library due          absent from the export of   timeline (C courtesy, F first, S second, L letter)
    ("A", "SCI",   "2026-12-05", None),          # C 12-02; F 12-12; S 12-26 (its letter is in January)
    ("B", "SCI",   "2026-12-05", "2026-12-10"),  # C 12-02; F 12-12: returned before
    ("C", "SCI",   "2026-12-10", "2026-12-07"),  # C 12-07: the export of that morning no longer has it
    ("D", "SCI",   "2026-11-20", "2026-12-20"),  # F 11-27 before the restart; S 12-11; L 12-25: returned
    ("E", "SCI",   "2026-12-08", "2026-12-06"),  # C 12-05 decided, the run stops before delivering it;
                                                 # the 12-06 run cancels it at dispatch; F 12-15: none
    ("F", "SCI",   "2026-12-01", "2026-12-03"),  # absent 12-03 to 12-05, listed again from 12-06:
                                                 # F 12-08 and S 12-22 are sent (the patron has it)
    ("G", "SCI",   "2026-12-15", "2026-12-14"),  # C 12-12; F 12-22: returned before
    ("I", "DROIT", "2026-12-03", "2026-12-16"),  # C 11-30 before the restart; F 12-10; S 12-24: returned
]
BACK = {"F": "2026-12-06"}          # listed again in the export of that day
CRASH = "2026-12-05"                # the run decides, then stops before delivering
ALL = ("SCI", "DROIT")              # the export covers every library (--libraries all): I, the last
                                    # loan of DROIT, is closed when it disappears

EXPECTED = {   # day → (stage, loan) of every email sent that day
    "2026-12-02": [("courtesy", "A"), ("courtesy", "B")],
    "2026-12-08": [("first_reminder", "F")],
    "2026-12-10": [("first_reminder", "I")],
    "2026-12-11": [("second_reminder", "D")],
    "2026-12-12": [("courtesy", "G"), ("first_reminder", "A")],
    "2026-12-22": [("second_reminder", "F")],
    "2026-12-26": [("second_reminder", "A")],
}


def days():
    day = d(START)
    while day <= d(END):
        yield day
        day += dt.timedelta(days=1)


def on_loan(loan_id: str, day: dt.date) -> bool:
    """What the library system says that night: the loan is in its export."""
    gone = next(g for lid, _, _, g in LOANS if lid == loan_id)
    if gone is None or day < d(gone):
        return True
    return loan_id in BACK and day >= d(BACK[loan_id])


def export(world: World, day: dt.date, *, truncated: bool = False):
    rows = [row for lid, row in world.loans.items() if lid.startswith("X") or on_loan(lid, day)]
    if truncated:
        rows = rows[:len(rows) // 2]      # the fillers come first: every loan A-I is lost
    path = world.dir / f"loans-{day}.csv"
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=LOAN_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_the_table_names_each_loan_once():
    assert len({row[0] for row in LOANS}) == len(LOANS)
    assert all(START <= day <= END for day in EXPECTED)


@pytest.fixture
def world(tmp_path, db_url):
    w = World(tmp_path, db_url, "memory", policy=with_restart(d(START)))
    yield w
    w.close()


def test_a_month_of_nightly_snapshots(world):
    for n in range(1, 21):
        world.patron(f"PX{n:02d}")
        world.loan(f"X{n:02d}", f"PX{n:02d}", "2027-03-01")
    for loan_id, library, due, _ in LOANS:
        world.patron(f"P{loan_id}")
        world.loan(loan_id, f"P{loan_id}", due, library)
    world.sync()

    sent: dict[str, list] = {}
    for day in days():
        path = export(world, day, truncated=day.isoformat() == TRUNCATED)
        if day.isoformat() == TRUNCATED:
            before = loans_table(world)
            with pytest.raises(Refused) as refused:
                imports.import_file(world.store, world.policy, "loans", path, snapshot=True, facts_date=day,
                                        libraries=ALL)
            assert refused.value.code == 1
            assert "would close 12 of the 23 open loans of DROIT, SCI (52.2 %)" in str(refused.value)
            assert loans_table(world) == before
        else:
            imports.import_file(world.store, world.policy, "loans", path, snapshot=True, facts_date=day,
                                libraries=ALL)
        if day.isoformat() == CRASH:
            world.decide_only(day.isoformat())
            continue
        messages = world.run(day.isoformat())
        if messages:
            sent[day.isoformat()] = sorted((stage, loan_id) for stage, _, _, _, ids in messages for loan_id in ids)

    assert sent == EXPECTED
    # the rule itself: nothing for a loan on or after the day it disappeared, unless it came back
    for day, messages in sent.items():
        for _, loan_id in messages:
            assert on_loan(loan_id, d(day)), (day, loan_id)

    # E's courtesy, decided on 12-05, was cancelled on 12-06 with the reason
    assert world.ledger()[("E", "2026-12-08", "courtesy")] == "cancelled"
    assert world.ledger_reason("E", "courtesy") == "closed on 2026-12-06: absent from the export of 2026-12-06"
    assert not any(loan_id == "E" and stage != "courtesy" for loan_id, _, stage in world.ledger())

    # each loan as it stands: closed on the day it disappeared, with the reason; F open again
    stored = {lid: (r, why) for lid, r, why in loans_table(world) if not lid.startswith("X")}
    assert stored == {
        "A": (None, None),
        "B": ("2026-12-10", "absent from the export of 2026-12-10"),
        "C": ("2026-12-07", "absent from the export of 2026-12-07"),
        "D": ("2026-12-20", "absent from the export of 2026-12-20"),
        "E": ("2026-12-06", "absent from the export of 2026-12-06"),
        "F": (None, None),
        "G": ("2026-12-14", "absent from the export of 2026-12-14"),
        "I": ("2026-12-16", "absent from the export of 2026-12-16"),
    }
    # one fact_imports row per accepted export (30: the truncated one is not), one closing each day
    with world.store.engine.connect() as conn:
        recorded = conn.execute(select(fact_imports.c.facts_date, fact_imports.c.closed)
                                .where(fact_imports.c.mode == "snapshot").order_by(fact_imports.c.id)).all()
        assert conn.execute(select(func.count()).select_from(fact_imports)).scalar_one() == 2 + 30   # + sync()
    closed = {day.isoformat(): n for day, n in recorded if n}
    assert closed == {"2026-12-03": 1, "2026-12-06": 1, "2026-12-07": 1, "2026-12-10": 1, "2026-12-14": 1,
                      "2026-12-16": 1, "2026-12-20": 1}
    assert TRUNCATED not in {day.isoformat() for day, _ in recorded}


def loans_table(world: World) -> list[tuple]:
    with world.store.engine.connect() as conn:
        rows = conn.execute(select(loans.c.loan_id, loans.c.returned_on, loans.c.closed_reason)
                            .order_by(loans.c.loan_id)).all()
    return [(lid, r.isoformat() if r else None, why) for lid, r, why in rows]
