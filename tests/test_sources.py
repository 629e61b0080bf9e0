"""rules/sources.yaml: validated like the other rule files (file, line and key of each problem),
secrets only from the environment, the presets' databases, and what `rappel lint` and `rappel
schema --sources` say of it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.sources.presets import PRESETS, preset_info
from cli import app
from engine.sources import parse_sources
from engine.yamlsource import InputError
from service.sources import expanded_url, load_sources

try:
    from tests.daemon_cases import copy_rules
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from daemon_cases import copy_rules

ROOT = Path(__file__).resolve().parents[1]
KOHA = 'sources:\n  koha:\n    preset: koha\n    url: "mysql+pymysql://rappel_ro:${KOHA_DB_PASSWORD}@koha-db/koha"\n'


def problems_of(text: str) -> list[str]:
    with pytest.raises(InputError) as caught:
        parse_sources(text, "sources.yaml", preset_info())
    return [str(p) for p in caught.value.problems]


def test_a_koha_source_pulls_every_kind_of_its_preset_as_a_snapshot_by_default():
    sources = parse_sources(KOHA, "sources.yaml", preset_info())
    koha = sources.sources["koha"]
    assert (sources.max_facts_age_hours, koha.snapshot, koha.returned_days, koha.libraries) == (26, True, 7, None)
    assert koha.pulled(preset_info()) == ("patrons", "loans", "requests")
    own = parse_sources('sources:\n  sis:\n    url: "postgresql+psycopg://ro@db/sis"\n    queries:\n'
                        '      patrons: "SELECT 1"\n', "sources.yaml", preset_info())
    assert own.sources["sis"].pulled(preset_info()) == ("patrons",)


@pytest.mark.parametrize("text, expected", [
    pytest.param(KOHA.replace("${KOHA_DB_PASSWORD}", "s3cret"),
                 "sources.yaml:4: sources.koha.url: the password must come from the environment", id="literal password"),
    pytest.param(KOHA.replace('koha-db/koha"', 'koha-db/koha?password=s3cret"').replace(":${KOHA_DB_PASSWORD}", ""),
                 "sources.yaml:4: sources.koha.url: the password must come from the environment", id="password="),
    pytest.param(KOHA.replace("preset: koha", "preset: kooha"),
                 "sources.yaml:3: sources.koha.preset: unknown preset 'kooha' (known: koha, evergreen)", id="preset"),
    pytest.param(KOHA.replace("mysql+pymysql", "postgresql+psycopg"),
                 "sources.yaml:4: sources.koha.url: the koha preset reads a Koha database (mysql or mariadb), "
                 "not postgresql", id="dialect"),
    pytest.param(KOHA.replace("mysql+pymysql://rappel_ro:${KOHA_DB_PASSWORD}@koha-db/koha", "sqlite:///koha.db"),
                 "sources.yaml:4: sources.koha.url: rappel opens only MariaDB/MySQL", id="sqlite"),
    pytest.param(KOHA.replace("${KOHA_DB_PASSWORD}", "${KOHA DB}"),
                 "sources.yaml:4: sources.koha.url: a ${...} reference must be ${NAME}", id="bad reference"),
    pytest.param('sources:\n  sis:\n    url: "postgresql://ro@db/sis"\n    kinds: [loans]\n',
                 "sources.yaml:4: sources.sis.kinds: nothing says how to pull loans: give queries.loans", id="kinds"),
    pytest.param(KOHA + "    kinds: [loans]\n    queries:\n      patrons: SELECT 1\n",
                 "sources.yaml:6: sources.koha.queries: patrons not pulled (kinds: loans)", id="unused query"),
    pytest.param(KOHA + "    snapshots: false\n",
                 "sources.yaml:5: sources.koha.snapshots: unknown key", id="unknown key"),
    pytest.param(KOHA + "    returned_days: 400\n",
                 "sources.yaml:5: sources.koha.returned_days: Input should be less than or equal to 366", id="days"),
    pytest.param("max_facts_age_hours: 0\n" + KOHA,
                 "sources.yaml:1: max_facts_age_hours: Input should be greater than 0", id="age"),
    pytest.param(KOHA + "  koha:\n    preset: evergreen\n",
                 "sources.yaml:5: sources.koha: key given twice", id="twice"),
])
def test_every_problem_names_the_file_the_line_and_the_key(text, expected):
    assert any(p.startswith(expected) for p in problems_of(text)), problems_of(text)


def test_the_environment_fills_the_url_percent_encoded_and_a_missing_variable_is_named():
    url, problems = expanded_url("mysql+pymysql://ro:${KOHA_DB_PASSWORD}@db/koha", {"KOHA_DB_PASSWORD": "p@ss/w:rd"})
    assert (url, problems) == ("mysql+pymysql://ro:p%40ss%2Fw%3Ard@db/koha", [])
    assert expanded_url("${KOHA_URL}", {"KOHA_URL": "mysql+pymysql://ro:p@ss@db/koha"}) == (
        "mysql+pymysql://ro:p@ss@db/koha", [])                        # a whole URL is taken as it is
    assert expanded_url("${KOHA_URL}", {"KOHA_URL": "sqlite:///x.db"})[1][0].startswith(
        "${KOHA_URL}: rappel opens only MariaDB/MySQL")
    assert expanded_url("mysql+pymysql://ro:${KOHA_DB_PASSWORD}@db/koha", {"KOHA_DB_PASSWORD": ""})[1] == [
        "environment variable KOHA_DB_PASSWORD is empty (this setting takes it: "
        "mysql+pymysql://ro:${KOHA_DB_PASSWORD}@db/koha)"]


def lint(rules: Path, env: dict | None = None):
    return CliRunner().invoke(app, ["lint", "--rules", str(rules), "--outbox", str(rules.parent / "outbox")],
                              env=env)


def test_lint_checks_sources_yaml_and_its_environment(tmp_path):
    rules = copy_rules(tmp_path)
    (rules / "sources.yaml").write_text(KOHA, encoding="utf-8")
    result = lint(rules, {"KOHA_DB_PASSWORD": ""})
    assert result.exit_code == 2
    assert f"error: {rules}/sources.yaml:4: sources.koha.url: environment variable KOHA_DB_PASSWORD is empty" \
           in result.output
    result = lint(rules, {"KOHA_DB_PASSWORD": "x"})
    assert result.exit_code == 0, result.output
    assert f"{rules}/sources.yaml: ok (1 source(s): koha (koha preset: patrons, loans, requests); loans older " \
           f"than 26 hours are not decided on)" in result.stdout


@pytest.mark.parametrize("policy_edit, sources, expected", [
    pytest.param(("schedule:", "max_facts_age_hours: 30\nschedule:"), "max_facts_age_hours: 20\n" + KOHA,
                 "sources.yaml:1: max_facts_age_hours: also set in reminders.yaml", id="limit twice"),
    pytest.param(None, KOHA + "    libraries: [SCI, LETTRES]\n",
                 "sources.yaml:5: sources.koha.libraries: not a library of the policy: LETTRES", id="libraries"),
    pytest.param(("retry_minutes: 5", "retry_minutes: 5\n  pull_before: true"), None,
                 "reminders.yaml: schedule.pull_before: true, but there is no", id="pull_before"),
])
def test_sources_yaml_agrees_with_the_policy(tmp_path, policy_edit, sources, expected):
    text = (ROOT / "rules" / "reminders.yaml").read_text(encoding="utf-8")
    if "schedule:" not in text:
        text += "schedule:\n  at: \"02:00\"\n  retry_minutes: 5\n"
    rules = copy_rules(tmp_path)
    if policy_edit:
        text = text.replace(*policy_edit, 1)
    (rules / "reminders.yaml").write_text(text, encoding="utf-8")
    if sources:
        (rules / "sources.yaml").write_text(sources, encoding="utf-8")
    result = lint(rules, {"KOHA_DB_PASSWORD": "x"})
    assert result.exit_code == 2
    assert expected in result.output


def test_without_sources_yaml_lint_says_it_is_absent_and_nothing_is_loaded(tmp_path):
    rules = copy_rules(tmp_path)
    assert load_sources(rules) is None
    assert f"{rules}/sources.yaml: absent" in lint(rules).stdout


def test_the_json_schema_of_sources_yaml_names_the_presets():
    result = CliRunner().invoke(app, ["schema", "--sources"])
    schema = json.loads(result.stdout)
    assert schema["title"] == "rappel fact sources (rules/sources.yaml)"
    preset = schema["$defs"]["Source"]["properties"]["preset"]["anyOf"][0]
    assert preset["enum"] == ["koha", "evergreen"]
    assert set(schema["$defs"]["Source"]["properties"]) == {"preset", "url", "kinds", "queries", "snapshot",
                                                            "libraries", "returned_days"}


def test_the_readme_grants_select_on_every_table_each_preset_reads():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    koha = set(re.findall(r"GRANT SELECT ON koha_library\.(\w+) TO", readme))
    assert koha == set(PRESETS["koha"].tables)
    grant = re.search(r"^GRANT SELECT ON ((?:[a-z_.]+,\s*)*[a-z_.]+)\s+TO rappel_ro;", readme, re.M).group(1)
    assert {t.strip() for t in grant.split(",")} == set(PRESETS["evergreen"].tables)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_query_returns_exactly_rappels_columns_by_name(name):
    from adapters.store.schema import LOAN_FIELDS, PATRON_FIELDS, REQUEST_FIELDS

    fields = {"patrons": PATRON_FIELDS, "loans": LOAN_FIELDS, "requests": REQUEST_FIELDS}
    for kind, query in PRESETS[name].queries.items():
        select_list = query.split("\nSELECT ", 1)[1].split("\n  FROM ", 1)[0]
        named = re.findall(r"\bAS (\w+),?\s*$", select_list, re.M)
        assert named == list(fields[kind]), (name, kind)     # item_type and loan_policy included


def test_the_daemon_sees_an_edit_of_sources_yaml_and_reads_its_own_copy(tmp_path):
    from adapters.channels.memory import MemoryChannel
    from service.rules import load_rules, policy_fingerprint

    rules = copy_rules(tmp_path)
    before = policy_fingerprint(rules)
    (rules / "sources.yaml").write_text(KOHA, encoding="utf-8")
    assert policy_fingerprint(rules) != before                  # adding it is an edit the daemon picks up
    loaded = load_rules(rules, lambda policy, templates: MemoryChannel())
    try:
        assert loaded.sources is not None and loaded.sources.path == rules / "sources.yaml"
        assert (loaded.snapshot / "sources.yaml").read_text(encoding="utf-8") == KOHA
    finally:
        loaded.discard()
    (rules / "sources.yaml").write_text(KOHA.replace("preset: koha", "preset: kooha"), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_rules(rules, lambda policy, templates: MemoryChannel())
    assert str(caught.value.problems[0]).startswith(f"{rules}/sources.yaml:3: sources.koha.preset: unknown preset")
