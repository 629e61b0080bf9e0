"""The desk's name search follows every write of a name: an import, a snapshot re-import, an edit at
the desk, a synchronisation of external accounts, an erasure. Words are found by their beginning,
whatever the case and the accents (adapters/store/names.py, adapters/store/search.py).

The patrons (imported from a CSV export, SQLite; PostgreSQL too when configured):
    P1 Thomas Lefèvre      P2 Jeanne Moreau      P3 Marc Fournier      P4 Lucía García
"""
from __future__ import annotations

import datetime as dt

import pytest

from adapters.sources.csvfiles import import_csv
from adapters.store.database import Store
from adapters.store.names import fold, name_words
from adapters.store.schema import PATRON_FIELDS
from adapters.store.search import search_patrons
from service import patrons as services
from service.retention import forget
from service.rules import load_policy

from conftest import RULES

AT = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.timezone.utc)
ROWS = {
    "P1": "P1,2000000001,Thomas,Lefèvre,t.lefevre@etu.example,fr,internal,public,graduate,4 allée des Œillets,,33400,Talence,France,",
    "P2": "P2,2000000002,Jeanne,Moreau,,fr,internal,public,reader,8 place Gambetta,,33000,Bordeaux,France,",
    "P3": "P3,2000000003,Marc,Fournier,m.fournier@etu.example,fr,internal,public,reader,1 rue X,,33000,Bordeaux,France,",
    "P4": "P4,2000000004,Lucía,García,l.garcia@etu.example,es,internal,public,reader,2 rue Y,,33000,Bordeaux,France,",
}


def found(store: Store, text: str) -> list[str]:
    return [p.patron_id for p in search_patrons(store, text)[0]]


def export(tmp_path, rows, name="patrons.csv"):
    path = tmp_path / name
    path.write_text("\n".join([",".join(PATRON_FIELDS), *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def store(db_url, tmp_path):
    s = Store(db_url)
    import_csv(s, load_policy(RULES), "patrons", export(tmp_path, ROWS.values()))
    yield s
    s.close()


@pytest.mark.parametrize("word, folded", [
    ("Lefèvre", "lefevre"), ("GARCÍA", "garcia"), ("Straße", "strasse"), ("Œillet", "œillet"),
    ("ǅemal", "dzemal"),
])
def test_a_word_is_folded_for_case_and_accents(word, folded):
    assert fold(word) == folded


def test_a_compound_name_gives_its_parts_and_the_parts_joined():
    assert name_words("Jean-Paul", "Le Goff") == {"jean", "paul", "jeanpaul", "le", "goff", "legoff"}


@pytest.mark.parametrize("typed, patrons", [
    ("lefèvre", ["P1"]), ("LEFEVRE", ["P1"]), ("lef", ["P1"]), ("thomas lef", ["P1"]),
    ("garcia", ["P4"]), ("LUCIA", ["P4"]), ("luc gar", ["P4"]),
    ("evre", []),                          # the middle of a word is not its beginning
    ("thomas moreau", []),                 # every word typed must match the same patron
    ("2000000002", ["P2"]),                # a barcode
    ("P3", ["P3"]),                        # a patron_id
    ("%", []), ("_", []),
])
def test_imported_patrons_are_found_by_the_beginnings_of_their_names(store, typed, patrons):
    assert found(store, typed) == patrons


def test_a_snapshot_that_renames_a_patron_moves_the_words(store, tmp_path):
    renamed = {**ROWS, "P2": ROWS["P2"].replace("Jeanne,Moreau", "Jeanne,Moreau-Dupré")}
    import_csv(store, load_policy(RULES), "patrons", export(tmp_path, renamed.values(), "again.csv"))
    assert found(store, "dupre") == ["P2"]
    assert found(store, "moreaudupre") == ["P2"]
    renamed["P2"] = ROWS["P2"].replace("Jeanne,Moreau", "Jeanne,Durand")
    import_csv(store, load_policy(RULES), "patrons", export(tmp_path, renamed.values(), "third.csv"))
    assert (found(store, "dupre"), found(store, "moreau"), found(store, "durand")) == ([], [], ["P2"])


def test_an_edit_at_the_desk_moves_the_words(store):
    accounts = services.load_accounts(RULES)
    services.edit(store, accounts, "2000000003", "user_manager", "amelie", {"last_name": "Fournier-Ngô"}, AT)
    assert found(store, "ngo") == ["P3"] and found(store, "fournier") == ["P3"]
    services.edit(store, accounts, "2000000003", "user_manager", "amelie", {"last_name": "Blanc"}, AT)
    assert (found(store, "fournier"), found(store, "blanc")) == ([], ["P3"])


def test_an_erased_patron_is_no_longer_found_by_name(store):
    forget(store, load_policy(RULES), "2000000003", by="dpo", why="request of 2026-11-20", at=AT)
    assert found(store, "fournier") == []
