"""The policy file: the shipped one parses, and every mistake is reported with file, line and key."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import yaml

from engine.policy import Policy, parse_policy, policy_json_schema
from engine.yamlsource import InputError

try:
    from tests.engine_cases import REMINDERS, default_policy, reminders_text
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from engine_cases import REMINDERS, default_policy, reminders_text

SOURCE = "rules/reminders.yaml"

# A small valid policy; the line numbers in the tests below refer to it.
GOOD = """\
timezone: Europe/Paris
sender:
  from: "Service du contentieux <contentieux@univ.example>"
  reply_to: contentieux@univ.example
max_delay_days: 2
stages:
  - id: courtesy
    offset_days: -3
    channel: email
  - id: first_reminder
    offset_days: 7
    channel: email
libraries:
  SCI:
    name: Sciences
    letters: {printer: bu-sciences}
"""
#  1 timezone            5 max_delay_days     9 channel (courtesy)      13 libraries
#  2 sender              6 stages            10 - id: first_reminder    14 SCI
#  3 from                7 - id: courtesy    11 offset_days: 7          15 name
#  4 reply_to            8 offset_days: -3   12 channel                 16 letters


def edited(*replacements: tuple[str, str]) -> str:
    text = GOOD
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def problems_of(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(InputError) as info:
        parse_policy(text, SOURCE)
    return [(p.line, p.where, p.message) for p in info.value.problems]


def test_good_fixture_parses():
    policy = parse_policy(GOOD, SOURCE)
    assert [(s.id, s.offset_days, s.channel) for s in policy.stages] == [
        ("courtesy", -3, "email"), ("first_reminder", 7, "email")]
    assert policy.sender.from_ == "Service du contentieux <contentieux@univ.example>"


def test_shipped_policy_parses():
    policy = parse_policy(reminders_text(), str(REMINDERS))
    assert policy == default_policy()
    assert policy.timezone == "Europe/Paris"
    assert policy.tz.key == "Europe/Paris"
    assert [(s.id, s.offset_days, s.channel, policy.window(s)) for s in policy.stages] == [
        ("courtesy", -3, "email", 2),
        ("first_reminder", 7, "email", 2),
        ("second_reminder", 21, "email", 2),
        ("letter", 35, "letter", 2),
    ]
    assert policy.exclude_statuses == ["lost", "claimed_returned"]
    assert policy.resumed_on is None
    assert policy.no_email.letters_after_due is True and policy.no_email.courtesy_by_letter is False
    for stage in policy.stages:
        assert stage.audience.record_types == ["staff", "public"]   # contacts never, by default
        assert stage.audience.user_groups is None
        assert stage.template_name == stage.id
    assert {k: lib.letters.destination for k, lib in policy.libraries.items()} == {
        "SCI": "printer:bu-sciences", "DROIT": "mailbox:droit-contentieux@univ.example"}
    assert policy.sender.reply_to == "contentieux@univ.example"


def test_restart_section():
    policy = parse_policy(GOOD + "restart: {resumed_on: 2026-11-22}\n", SOURCE)
    assert policy.resumed_on == dt.date(2026, 11, 22)
    [(line, where, message)] = problems_of(GOOD + "restart: {resumed_on: 22/11/2026}\n")
    assert (line, where) == (17, "restart.resumed_on") and "valid date" in message
    assert problems_of(GOOD + "restart: {resumed: 2026-11-22}\n") == [
        (17, "restart.resumed_on", "required key is missing"),
        (17, "restart.resumed", "unknown key (check its spelling, or remove it)")]


@pytest.mark.parametrize("day", ["2026-11-31", "2026-13-01"])
def test_impossible_restart_date_is_an_input_error(day):
    assert problems_of(GOOD + f"restart: {{resumed_on: {day}}}\n")[0][:2] == (17, "restart.resumed_on")


# --- unknown keys


def test_unknown_top_level_key():
    problems = problems_of(edited(("stages:", "stagez:")))
    assert (6, "stagez", "unknown key (check its spelling, or remove it)") in problems
    assert (1, "stages", "required key is missing") in problems


def test_unknown_key_in_a_stage():
    problems = problems_of(edited(("    offset_days: 7", "    ofset_days: 7")))
    assert problems == [
        (10, "stages[1].offset_days", "required key is missing"),
        (11, "stages[1].ofset_days", "unknown key (check its spelling, or remove it)"),
    ]


def test_unknown_key_message_names_file_line_and_key():
    with pytest.raises(InputError) as info:
        parse_policy(edited(("    channel: email\n  - id: first", "    chanel: email\n  - id: first")), SOURCE)
    text = str(info.value)
    assert "rules/reminders.yaml:9: stages[0].chanel: unknown key" in text
    assert "rules/reminders.yaml:7: stages[0].channel: required key is missing" in text


def test_unknown_key_in_sender_and_library():
    problems = problems_of(edited(("  reply_to:", "  replyto:"), ("    name: Sciences", "    nom: Sciences")))
    assert (4, "sender.replyto", "unknown key (check its spelling, or remove it)") in problems
    assert (15, "libraries.SCI.nom", "unknown key (check its spelling, or remove it)") in problems
    assert len(problems) == 4   # plus the two required keys now missing


def test_typo_in_shipped_policy_points_at_its_line():
    text = reminders_text()
    lines = text.splitlines()
    target = next(i for i, line in enumerate(lines, 1) if line.startswith("exclude_statuses:"))
    bad = text.replace("exclude_statuses:", "exclude_status:")
    with pytest.raises(InputError) as info:
        parse_policy(bad, str(REMINDERS))
    [problem] = info.value.problems
    assert (problem.line, problem.where) == (target, "exclude_status")
    assert problem.source == str(REMINDERS)
    assert "unknown key" in problem.message


# --- values checked by the model


def test_duplicate_stage_ids():
    assert problems_of(edited(("  - id: first_reminder", "  - id: courtesy"))) == [
        (10, "stages[1].id", "stage ids must be unique; courtesy is also stage 1")]


def test_offsets_must_increase():
    assert problems_of(edited(("offset_days: 7", "offset_days: -3"))) == [
        (11, "stages[1].offset_days", "offsets must be strictly increasing; first_reminder (-3) comes after courtesy (-3)")]
    assert problems_of(edited(("offset_days: 7", "offset_days: -5"))) == [
        (11, "stages[1].offset_days", "offsets must be strictly increasing; first_reminder (-5) comes after courtesy (-3)")]


def test_bad_timezone():
    assert problems_of(edited(("Europe/Paris", "Europe/Bordeaux"))) == [
        (1, "timezone", "unknown time zone 'Europe/Bordeaux'")]


@pytest.mark.parametrize("line, old, new, where", [
    (4, "reply_to: contentieux@univ.example", "reply_to: contentieux-at-univ", "sender.reply_to"),
    (3, 'from: "Service du contentieux <contentieux@univ.example>"', 'from: "Service <nobody>"', "sender.from"),
    (3, 'from: "Service du contentieux <contentieux@univ.example>"', 'from: "a@b.example\\nBcc: x@y.example"',
     "sender.from"),
])
def test_bad_sender_address(line, old, new, where):
    [(got_line, got_where, message)] = problems_of(edited((old, new)))
    assert (got_line, got_where) == (line, where)
    assert "not an email address" in message or "one line" in message


@pytest.mark.parametrize("letters", ["{printer: bu-sciences, mailbox: sci@univ.example}", "{}"])
def test_letters_exactly_one_of_printer_or_mailbox(letters):
    assert problems_of(edited(("letters: {printer: bu-sciences}", f"letters: {letters}"))) == [
        (16, "libraries.SCI.letters", "give exactly one of printer or mailbox")]


def test_letters_mailbox_must_be_an_address():
    [(line, where, message)] = problems_of(edited(("letters: {printer: bu-sciences}", "letters: {mailbox: sci}")))
    assert (line, where) == (16, "libraries.SCI.letters.mailbox")
    assert "not an email address" in message


def test_bad_channel_and_negative_window():
    problems = problems_of(edited(("    channel: email\n  - id: first", "    channel: sms\n  - id: first"),
                                  ("max_delay_days: 2", "max_delay_days: -1")))
    assert [(line, where) for line, where, _ in problems] == [(5, "max_delay_days"), (9, "stages[0].channel")]


def test_every_field_problem_is_reported_not_just_the_first():
    problems = problems_of(edited(("    offset_days: 7", "    ofset_days: 7"),
                                  ("  reply_to:", "  replyto:"),
                                  ("    channel: email\n  - id: first", "    channel: fax\n  - id: first")))
    assert sorted(line for line, _, _ in problems) == [2, 4, 9, 10, 11]


# --- YAML itself


def test_duplicate_yaml_key():
    assert problems_of(edited(("max_delay_days: 2\n", "max_delay_days: 2\nmax_delay_days: 3\n"))) == [
        (6, "max_delay_days", "key given twice (the second would silently win)")]


def test_duplicate_yaml_key_in_a_stage():
    assert problems_of(edited(("    offset_days: 7\n", "    offset_days: 7\n    offset_days: 8\n"))) == [
        (12, "stages[1].offset_days", "key given twice (the second would silently win)")]


@pytest.mark.parametrize("old, new, line", [
    ("    letters: {printer: bu-sciences}", "    letters: {printer: bu-sciences", 17),   # unclosed, at EOF
    ("  reply_to: contentieux@univ.example", "  reply_to: [contentieux@univ.example", 5),
    ("    channel: email\n  - id: first", "\tchannel: email\n  - id: first", 9),       # a tab
    ('  from: "Service', '  from: Service: "Service', 3),
])
def test_invalid_yaml_reports_a_line(old, new, line):
    [(got_line, where, message)] = problems_of(edited((old, new)))
    assert got_line == line
    assert where == ""
    assert message.startswith("not valid YAML: ")


@pytest.mark.parametrize("text, line", [("- a\n- b\n", 1), ("", None), ("# only a comment\n", None),
                                        ("just a string\n", 1)])
def test_policy_must_be_a_mapping(text, line):
    [(got_line, _, message)] = problems_of(text)
    assert got_line == line
    assert message.startswith("the policy must be a mapping")


def test_missing_required_key():
    assert problems_of(edited(("timezone: Europe/Paris\n", ""))) == [(1, "timezone", "required key is missing")]


# --- JSON schema


def _check(schema: dict, defs: dict, value, path="") -> list[str]:
    """A small JSON Schema checker (the keywords pydantic emits), enough to validate a policy."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return _check(defs[name], defs, value, path)
    if "anyOf" in schema:
        results = [_check(s, defs, value, path) for s in schema["anyOf"]]
        return [] if any(not r for r in results) else [f"{path}: matches none of anyOf"]
    errors = []
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
             "boolean": bool, "null": type(None)}
    if kind and not isinstance(value, types[kind]) or (kind in ("integer", "number") and isinstance(value, bool)):
        return [f"{path}: expected {kind}, got {type(value).__name__}"]
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} != {schema['const']!r}")
    if kind == "object":
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key}: required")
        for key, item in value.items():
            if key in props:
                errors += _check(props[key], defs, item, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}.{key}: not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _check(schema["additionalProperties"], defs, item, f"{path}.{key}")
    if kind == "array":
        errors += [e for i, item in enumerate(value) for e in _check(schema.get("items", {}), defs, item,
                                                                      f"{path}[{i}]")]
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
    return errors


def _as_json(data):
    return json.loads(json.dumps(data, default=lambda v: v.isoformat()))


def test_json_schema_shape():
    schema = policy_json_schema()
    json.dumps(schema)                                    # plain JSON
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert {"timezone", "sender", "stages", "libraries", "restart", "max_delay_days",
            "exclude_statuses", "no_email"} <= set(schema["properties"])
    assert {"timezone", "sender", "stages", "libraries"} <= set(schema["required"])
    sender = schema["$defs"]["Sender"]
    assert set(sender["properties"]) == {"from", "reply_to"}     # the alias, not from_
    assert "from" in sender["required"]
    stage = schema["$defs"]["Stage"]
    assert {"id", "offset_days", "channel", "max_delay_days", "audience", "template"} <= set(stage["properties"])
    assert stage["properties"]["channel"]["enum"] == ["email", "letter"]


def test_shipped_policy_validates_against_the_schema():
    schema = policy_json_schema()
    data = _as_json(yaml.safe_load(reminders_text()))
    assert _check(schema, schema["$defs"], data) == []


def test_schema_rejects_what_the_parser_rejects():
    schema = policy_json_schema()
    data = _as_json(yaml.safe_load(reminders_text()))
    data["stages"][1]["ofset_days"] = data["stages"][1].pop("offset_days")
    data["sender"]["from_"] = data["sender"].pop("from")
    data["stages"][0]["channel"] = "sms"
    errors = _check(schema, schema["$defs"], data)
    assert ".stages[1].offset_days: required" in errors
    assert ".stages[1].ofset_days: not allowed" in errors
    assert ".sender.from: required" in errors and ".sender.from_: not allowed" in errors
    assert any(e.startswith(".stages[0].channel:") for e in errors)


def test_policy_is_frozen():
    policy = default_policy()
    with pytest.raises(Exception):
        policy.max_delay_days = 5  # type: ignore[misc]
    assert isinstance(policy, Policy)


# --- loan statuses and imports -------------------------------------------------------------------

def test_statuses_declare_what_each_status_means():
    policy = parse_policy(GOOD + 'statuses: {"": on_loan, lost: exclude, perdu: exclude, recalled: on_loan}\n',
                          SOURCE)
    assert policy.declared_statuses == ("", "lost", "perdu", "recalled")
    assert policy.excluded_statuses == {"lost", "perdu"}
    assert parse_policy(GOOD, SOURCE).declared_statuses is None      # not declared: any status goes in


def test_exclude_statuses_keeps_working_beside_statuses():
    policy = parse_policy(GOOD + 'exclude_statuses: [lost, missing]\nstatuses: {"": on_loan, lost: exclude}\n',
                          SOURCE)
    assert policy.excluded_statuses == {"lost", "missing"}
    assert policy.declared_statuses == ("", "lost", "missing")


@pytest.mark.parametrize("extra, line, where, message", [
    ('statuses: {"": on_loan, lost: gone}\n', 17, "statuses.lost", "'on_loan' or 'exclude'"),
    ('exclude_statuses: [lost]\nstatuses: {"": on_loan, lost: on_loan}\n', 17, "exclude_statuses",
     "'lost' is declared on_loan in statuses"),
    ("imports: {max_closed_share: 120%}\n", 17, "imports.max_closed_share", "less than or equal to 1"),
    ("imports: {max_closed_share: 20}\n", 17, "imports.max_closed_share", "less than or equal to 1"),
    ("imports: {max_closed_share: a lot%}\n", 17, "imports.max_closed_share", "is not a percentage"),
])
def test_bad_statuses_and_imports_point_at_their_line(extra, line, where, message):
    [(got_line, got_where, got_message)] = problems_of(GOOD + extra)
    assert (got_line, got_where) == (line, where) and message in got_message, got_message


@pytest.mark.parametrize("written, share", [("0.2", 0.2), ("20%", 0.2), ('"12.5 %"', 0.125), ("1", 1.0)])
def test_max_closed_share_as_a_fraction_or_a_percentage(written, share):
    assert parse_policy(GOOD + f"imports: {{max_closed_share: {written}}}\n", SOURCE).imports.max_closed_share == share
    assert parse_policy(GOOD, SOURCE).imports.max_closed_share == 0.2


def test_the_schema_describes_statuses_and_imports():
    schema = policy_json_schema()
    statuses = schema["properties"]["statuses"]
    assert "on_loan" in json.dumps(statuses) and "exclude" in json.dumps(statuses)
    assert "max_closed_share" in json.dumps(schema["$defs"]["Imports"])
