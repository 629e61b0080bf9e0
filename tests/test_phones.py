"""Patrons' phone numbers: read for their country, stored E.164, refused with the number and the country.

The SMS channel hands a provider only what an import or an edit wrote: E.164 (+33612345678). A
number written the national way is read in the patron's country (an ISO code, or its name in
English, French, Spanish or German), else in the policy's sms.country; what the phonenumbers
library does not take as a valid number there is refused at its CSV row or at the edited field.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.sources.csvfiles import import_csv
from adapters.store.database import Store
from adapters.store.schema import PATRON_FIELDS, patrons
from engine.phones import PhoneProblem, is_e164, normalise
from engine.yamlsource import InputError
from service import patrons as services

from conftest import RULES

AT = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("number, country, default, e164", [
    # as written                 patron's country   sms.country   stored
    ("06 12 34 56 78",           "France",          None,         "+33612345678"),
    ("06.12.34.56.78",           "FR",              None,         "+33612345678"),
    ("05 56 00 00 03",           "france",          None,         "+33556000003"),   # a landline is a number too
    ("+33 6 12 34 56 78",        "",                None,         "+33612345678"),
    ("0033 6 12 34 56 78",       "",                None,         "+33612345678"),
    ("+34 612 34 56 78",         "France",          None,         "+34612345678"),   # its own code wins
    ("612 34 56 78",             "Espagne",         None,         "+34612345678"),   # a name in French
    ("612 34 56 78",             "España",          None,         "+34612345678"),
    ("(514) 555-0199",           "Canada",          None,         "+15145550199"),
    ("030 1234567",              "Deutschland",     None,         "+49301234567"),
    ("06 12 34 56 78",           "",                "FR",         "+33612345678"),   # sms.country
    ("07911 123456",             "UK",              None,         "+447911123456"),  # UK as written for GB
    ("07911 123456",             "United Kingdom",  None,         "+447911123456"),
    ("07911 123456",             "",                "UK",         "+447911123456"),
    ("691 234 5678",             "EL",              None,         "+306912345678"),  # the EU's code for Greece
    ("",                         "France",          None,         ""),               # no number: nothing to check
])
def test_a_number_is_stored_as_e164(number, country, default, e164):
    assert normalise(number, country, default) == e164
    assert e164 == "" or is_e164(e164)


@pytest.mark.parametrize("number, country, default, says", [
    ("06 12",                "France",   None, "phone '06 12' is not a valid number in France"),
    ("06 12 34 56 78 90 12", "France",   None, "phone '06 12 34 56 78 90 12' is not a valid number in France"),
    ("bonjour",              "France",   None, "phone 'bonjour' is not a phone number in France: it is not a number"),
    ("06 12 34 56 78",       "",         None, "phone '06 12 34 56 78': no country to read it in (the patron's "
                                               "country, or sms.country in reminders.yaml); write it with its "
                                               "country code (+33 …)"),
    ("06 12 34 56 78",       "Atlantis", "FR", "phone '06 12 34 56 78': country 'Atlantis' is not one rappel knows"),
    ("+999 1234567",         "",         None, "phone '+999 1234567' is not a phone number: its country code is "
                                               "unknown"),
])
def test_a_number_that_is_not_one_for_its_country_is_refused_saying_which(number, country, default, says):
    with pytest.raises(PhoneProblem) as err:
        normalise(number, country, default)
    assert str(err.value).startswith(says), str(err.value)


def patron_line(patron_id: str, phone: str, country: str = "France") -> str:
    values = {"patron_id": patron_id, "barcode": f"20000{patron_id}", "first_name": "Zoé", "last_name": "Lefèvre",
              "account_type": "internal", "record_type": "public", "address_line1": "12 rue des Écoles",
              "postal_code": "33000", "city": "Bordeaux", "country": country, "phone": phone}
    return ",".join(values.get(name, "") for name in PATRON_FIELDS)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([",".join(PATRON_FIELDS), *lines]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


def phones(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        return {r.patron_id: r.phone for r in conn.execute(select(patrons.c.patron_id, patrons.c.phone))}


def test_an_import_stores_e164_and_refuses_a_bad_number_at_its_row(store, policy, tmp_path):
    good = write(tmp_path / "patrons.csv", [patron_line("P1", "06 12 34 56 78"), patron_line("P2", ""),
                                            patron_line("P3", "612 34 56 78", "España")])
    import_csv(store, policy, "patrons", good)
    assert phones(store) == {"P1": "+33612345678", "P2": "", "P3": "+34612345678"}

    bad = write(tmp_path / "patrons-2.csv", [patron_line("P1", "06 98 76 54 32"),           # line 2: good
                                             patron_line("P4", "06 12", "France"),          # line 3
                                             patron_line("P5", "06 12 34 56 78", "")])      # line 4: no country
    with pytest.raises(InputError) as err:
        import_csv(store, policy, "patrons", bad)
    assert [str(p) for p in err.value.problems] == [
        f"{bad}:3: row 2: phone '06 12' is not a valid number in France",
        f"{bad}:4: row 3: phone '06 12 34 56 78': no country to read it in (the patron's country, or sms.country "
        f"in reminders.yaml); write it with its country code (+33 …)"]
    assert phones(store)["P1"] == "+33612345678"                      # nothing of the file was written


def test_sms_country_reads_numbers_of_patrons_without_a_country(store, tmp_path):
    from engine.policy import parse_policy
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8") + "sms: {country: FR}\n"
    import_csv(store, parse_policy(text), "patrons", write(tmp_path / "p.csv", [patron_line("P5", "0612345678", "")]))
    assert phones(store) == {"P5": "+33612345678"}


def test_an_edit_stores_e164_and_refuses_a_bad_number_at_its_field(store, policy, tmp_path):
    import_csv(store, policy, "patrons", write(tmp_path / "patrons.csv", [patron_line("P1", "")]))
    accounts = services.load_accounts(RULES)
    result = services.edit(store, accounts, "20000P1", "circulation_desk", "marie", {"phone": "06 12 34 56 78"}, AT,
                           policy)
    assert result.changed == [("phone", "", "+33612345678")]
    with pytest.raises(services.EditRefused) as err:
        services.edit(store, accounts, "20000P1", "circulation_desk", "marie", {"phone": "06 12"}, AT, policy)
    assert err.value.problems == {"phone": "phone '06 12' is not a valid number in France"}
    assert phones(store) == {"P1": "+33612345678"}


def test_a_pull_keeps_a_number_it_cannot_read_as_written(policy):
    """A library system's record is not refused for its phone: the number stays as written, and
    the patron is not reachable by SMS (engine.preferences: not E.164)."""
    from adapters.sources.records import RowChecker
    raw = dict.fromkeys(PATRON_FIELDS, "") | {"patron_id": "P1", "barcode": "B1", "account_type": "internal",
                                              "record_type": "public", "country": "France"}
    strict, lenient = RowChecker("patrons", policy), RowChecker("patrons", policy, strict_phones=False)
    assert strict.row(raw | {"phone": "06 12"})[1] == ["phone '06 12' is not a valid number in France"]
    assert lenient.row(raw | {"phone": "06  12"}) == ({**lenient.row(raw)[0], "phone": "06 12"}, [])
    assert lenient.row(raw | {"phone": "06 12 34 56 78"})[0]["phone"] == "+33612345678"


@pytest.mark.parametrize("code, read", [("FR", "FR"), ("UK", "UK"), ("ZZ", None)])
def test_sms_country_must_be_one_whose_numbers_rappel_reads(code, read):
    from engine.policy import parse_policy
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8") + f"\nsms: {{country: {code}}}\n"
    if read is None:
        with pytest.raises(InputError, match=rf"r\.yaml:\d+: sms\.country: {code} is not a country whose phone "
                                             rf"numbers rappel can read"):
            parse_policy(text, "r.yaml")
    else:
        assert parse_policy(text, "r.yaml").sms.country == read
