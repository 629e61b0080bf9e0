"""Every name a template uses is checked against what rappel gives it, in every branch (issue 15, 6).

Rendering a made-up notice only reaches the branches the sample takes: a name in a branch for
loans more than 30 days late, or for patrons without an email, passed lint and failed at send time.
The check reads each template's syntax tree (adapters/render/names_check.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.render import Templates
from adapters.render.report import lint_report_templates
from cli import app
from engine.policy import parse_policy

RULES = Path(__file__).resolve().parent.parent / "rules"
LATE = "{% if loan.days_overdue > 300 %}"     # a branch the sample notice (40 days late at most) never takes


@pytest.fixture(scope="module")
def policy():
    return parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8"), str(RULES / "reminders.yaml"))


def rules_with(tmp_path: Path, file: str, text: str) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "templates" / file).write_text(text, encoding="utf-8")
    return rules


@pytest.mark.parametrize("file, text, line, names", [
    # a top-level name, a field of rappel's dicts, a field of a loop's items, in branches no sample takes
    ("fr/courtesy.txt.j2",
     '{% extends "_base.txt.j2" %}\n{% block intro %}\n{% if patron.email == "" %}\n{{ nickname }}\n'
     '{% endif %}\n{% endblock %}\n', 4, ["nickname"]),
    ("en/first_reminder.html.j2",
     '{% extends "_base.html.j2" %}\n{% block intro %}\n{% if not patron.email %}{{ patron.phone }}{% endif %}\n'
     '{% endblock %}\n', 3, ["patron.phone"]),
    ("es/second_reminder.txt.j2",
     '{% extends "_base.txt.j2" %}\n{% block intro %}\n{% for loan in triggered %}\n'
     f'{LATE}{{{{ loan.titel }}}}{{% endif %}}\n{{% endfor %}}\n{{% endblock %}}\n', 4, ["loan.titel"]),
    # through two loops: stages, then each stage's loans; several names on one line are one problem
    ("fr/letter.txt.j2",
     '{% extends "_base.txt.j2" %}\n{% block intro %}\n{% for group in stages %}{% for loan in group.loans %}\n'
     f'{LATE}{{{{ group.labl }}}} {{{{ loan.received_stage }}}}{{% endif %}}\n{{% endfor %}}{{% endfor %}}\n'
     '{% endblock %}\n', 4, ["stage.labl", "loan.received_stage"]),
    # under a name of the template's own
    ("en/courtesy.subject.j2", 'Reminder\n{% set who = patron %}{% if who.email == "" %}{{ who.nick }}{% endif %}', 2,
     ["patron.nick"]),
    # in a shared frame, and in the letter's wording (which also gets `subject`)
    ("fr/_letter.j2",
     '{% set date_line = "Le " ~ as_of|date %}\n{% set subject_line = "Objet : " ~ subject %}\n'
     '{% set columns = ["Titre", "Code-barres", "Échéance", "Jours de retard"] %}\n'
     '{% set table_date = "dd/MM/y" %}\n{% set no_due = "-" %}\n'
     '{% set page = "page" if library.code != "ZZZ" else library.fax %}\n', 6, ["library.fax"]),
])
def test_a_name_rappel_does_not_give_is_reported_with_its_line_whatever_the_branch(policy, tmp_path, file, text,
                                                                                   line, names):
    rules = rules_with(tmp_path, file, text)
    problems = Templates(rules, policy).lint()
    assert [(Path(p.source).relative_to(rules / "templates").as_posix(), p.line) for p in problems] == [(file, line)]
    [problem] = problems
    assert problem.message.startswith("undefined variable")
    assert all(name in problem.message for name in names), problem.message


@pytest.mark.parametrize("text", [
    # what a template may do with names of its own, and with the values rappel gives
    '{% set who = patron %}{{ who.full_name }}{% set n = {"a": 1} %}{% if false %}{{ n.b }}{% endif %}',
    '{% for key, value in patron.items() %}{{ key }}={{ value }}{% endfor %}',
    '{% macro line(patron) %}{{ patron.whatever }}{% endmacro %}{{ line({"whatever": 1}) }}',
    '{% for loan in triggered|sort(attribute="due_date") %}{{ loan.due_date.year }}{{ loop.index }}{% endfor %}',
    '{% for library in recap %}{% for loan in library.loans %}{% for e in loan.received %}{{ e.stage }}'
    '{% endfor %}{% endfor %}{% endfor %}',
    '{% for x in range(3) %}{{ x.real }}{% endfor %}{{ patron["full_name"] }}',
    '{% if stage.offset_days < 0 %}{{ loan_count if false else "" }}{% endif %}',
])
def test_what_rappel_gives_and_what_a_template_names_itself_are_not_reported(policy, tmp_path, text):
    expected = [] if "loan_count" not in text else ["loan_count"]    # the last row's name is the mailbox's only
    rules = rules_with(tmp_path, "fr/courtesy.subject.j2", "Rappel " + text)
    problems = Templates(rules, policy).lint()
    assert [name for name in expected if any(name in p.message for p in problems)] == expected
    assert len(problems) == len(expected), problems


def test_the_requests_report_is_checked_against_its_own_names(policy, tmp_path):
    rules = rules_with(tmp_path, "es/requests_report.txt.j2",
                       'Hola {{ patron.full_name }}\n{% for r in requests %}\n'
                       '{% if r.status == "suspended" %}{{ r.titel }}{% endif %}\n{% endfor %}\n')
    problems = lint_report_templates(policy, rules)
    assert [(Path(p.source).name, p.line) for p in problems] == [("requests_report.txt.j2", 3)]
    assert "request.titel" in problems[0].message


def test_rappel_lint_exits_2_on_a_name_only_a_rare_branch_uses(tmp_path):
    rules = rules_with(tmp_path, "en/courtesy.txt.j2",
                       '{% extends "_base.txt.j2" %}\n{% block intro %}\n'
                       '{% if patron.postal_lines|length > 5 %}{{ patron.nickname }}{% endif %}\n{% endblock %}\n')
    result = CliRunner().invoke(app, ["lint", "--rules", str(rules)])
    assert result.exit_code == 2, result.output
    path = rules / "templates" / "en" / "courtesy.txt.j2"
    assert any(line.startswith(f"error: {path}:3:") and "patron.nickname" in line
               for line in result.stderr.splitlines()), result.stderr
