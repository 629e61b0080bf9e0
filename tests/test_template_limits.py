"""Templates within limits (adapters/render/sandbox.py, the policy's templates:): a part's size
and render time are bounded at lint (the template's file and line, exit 2) and at send time."""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.render.lint import sample_notice
from adapters.render.sandbox import LimitedSandbox, TemplateLimit
from adapters.render.templates import Templates
from cli import app
from engine.limits import TemplateLimits
from engine.policy import parse_policy

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
FAST = "\ntemplates: {max_render_seconds: 0.5}\n"


def rules_with(tmp_path: Path, name: str, text: str, extra: str = FAST) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "templates" / "fr" / name).write_text(text, encoding="utf-8")
    with (rules / "reminders.yaml").open("a", encoding="utf-8") as f:
        f.write(extra)
    return rules


HOSTILE = [   # (template file, its text, what lint says)
    ("courtesy.subject.j2", "{{ 'x' * 10**9 }}\n",
     "TemplateLimit: a text or list 1 × 1,000,000,000 long is more than templates.max_part_bytes (1,000,000)"),
    ("courtesy.subject.j2", "{{ [1, 2] * 10**8 }}\n", "a text or list 2 × 100,000,000 long"),
    ("courtesy.txt.j2", "{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}\n",
     "TemplateLimit: the rendered text would be longer than 1,000,000 bytes (templates.max_part_bytes"),
    ("courtesy.txt.j2", "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}\n",
     "TemplateLimit: rendering took longer than 0.5 s (templates.max_render_seconds in reminders.yaml)"),
    ("courtesy.txt.j2", "{% for c in 'x' * 100000 %}{% for d in 'x' * 100000 %}{% endfor %}{% endfor %}\n",
     "rendering took longer than 0.5 s"),
    ("courtesy.subject.j2", "{{ 'x'.ljust(10**9) }}\n", "1,000,000,000 is more than a template may ask for"),
    ("courtesy.subject.j2", "{{ 'x'|center(10**9) }}\n", "1,000,000,000 is more than a template may ask for"),
    ("courtesy.subject.j2", "{{ '%1000000000d' % 1 }}\n", "a format width of millions of characters"),
    ("courtesy.subject.j2", "{{ '{:>1000000000}'.format(1) }}\n", "a format width of millions of characters"),
    ("courtesy.subject.j2", "{{ 7 ** (10 ** 8) }}\n", "** 100000000: powers of at most 64"),
]


@pytest.mark.parametrize("name, text, message", HOSTILE)
def test_lint_refuses_a_template_past_its_limits_quickly_and_says_where(tmp_path, name, text, message):
    rules = rules_with(tmp_path, name, text)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["lint", "--rules", str(rules), "--outbox", str(tmp_path / "outbox")])
    assert time.monotonic() - started < 15
    assert result.exit_code == 2, result.output
    # the line where the template asked for it; the whole part's size has no line
    where = f"{rules}/templates/fr/{name}" + ("" if "rendered text" in message else ":1")
    assert f"{where}: stage courtesy: " in result.output, result.output
    assert message in result.output, result.output


def test_a_ten_megabyte_template_file_is_refused(tmp_path):
    rules = rules_with(tmp_path, "courtesy.html.j2", "<p>" + "z" * 10_000_000 + "</p>\n")
    result = CliRunner().invoke(app, ["lint", "--rules", str(rules), "--outbox", str(tmp_path / "outbox")])
    assert result.exit_code == 2, result.output
    assert "longer than 1,000,000 bytes" in result.output


def test_the_limits_are_the_policys_and_bounded():
    policy = parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8")
                          + "\ntemplates: {max_part_bytes: 5000, max_render_seconds: 1}\n")
    assert policy.templates == TemplateLimits(max_part_bytes=5000, max_render_seconds=1)
    assert parse_policy((RULES / "reminders.yaml").read_text(encoding="utf-8")).templates == TemplateLimits()


def test_the_shipped_templates_render_within_the_limits(policy):
    assert Templates(RULES, policy).lint() == []


def test_at_send_a_long_title_past_the_limit_is_refused_not_sent(tmp_path, policy):
    """Lint's sample title is short; a real loan's title of 100,000 characters repeated 20 times is not."""
    rules = rules_with(tmp_path, "courtesy.txt.j2", "{% for loan in triggered %}{{ loan.title * 20 }}{% endfor %}\n",
                       extra="")
    templates = Templates(rules, policy)
    assert templates.lint() == []
    ctx = sample_notice(policy, policy.stage("courtesy"), "email")
    long = dataclasses.replace(ctx, triggered=[dataclasses.replace(ctx.triggered[0], title="T" * 100_000)])
    assert len(templates.render(ctx, ("txt",))["txt"]) < 1000
    with pytest.raises(TemplateLimit, match="max_part_bytes"):
        templates.render(long, ("txt",))
    with pytest.raises(TemplateLimit):
        templates.email(long)


def test_ordinary_templates_are_not_hindered():
    env = LimitedSandbox(limits=TemplateLimits(max_part_bytes=2000))
    assert env.from_string("{{ '-' * 40 }}|{{ 2 ** 10 }}|{{ '%05d' % 42 }}|{{ '{:>6}'.format('a') }}|"
                           "{% for i in range(3) %}{{ loop.index }}{% endfor %}|{{ 'ab'|center(6) }}").render() == \
        "-" * 40 + "|1024|00042|     a|123|  ab  "
