"""Hostile and out-of-range input: each gets a clear answer (file:line:key, row), exit 2, quickly.

Aliases nested to billions of values, dates and numbers out of any plausible range, empty or
mis-delimited CSV files, bytes that are not UTF-8."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.accounts import parse_accounts
from engine.policy import parse_policy
from engine.yamlsource import InputError

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
RAPPEL = [sys.executable, "-m", "cli"]


def laughs(depth: int, key: str = "junk") -> str:
    """``depth`` + 1 anchors, each 9 aliases of the one before, under ``key``: 9**(depth + 1) values."""
    lines = [f"{key}:", "  l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, depth + 1):
        lines.append(f"  l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def problems(exc: InputError) -> list[tuple[int | None, str, str]]:
    return [(p.line, p.where, p.message) for p in exc.problems]


@pytest.mark.parametrize("parse, name", [(parse_policy, "reminders.yaml"), (parse_accounts, "accounts.yaml")])
def test_aliases_nested_8_deep_are_refused_at_their_line_in_well_under_a_second(parse, name):
    text = (RULES / name).read_text(encoding="utf-8") + laughs(8)
    assert len(laughs(8)) < 1100
    started = time.process_time()
    with pytest.raises(InputError) as info:
        parse(text, f"rules/{name}")
    assert time.process_time() - started < 1
    (line, _, message), = problems(info.value)
    first = len((RULES / name).read_text(encoding="utf-8").splitlines()) + 1
    assert first < line <= first + 9           # the level whose expansion passes the cap
    assert "aliases (*name) expand this value to more than 100,000 values" in message


@pytest.mark.parametrize("parse, name", [(parse_policy, "reminders.yaml"), (parse_accounts, "accounts.yaml")])
def test_aliases_below_the_cap_cost_their_size_once(parse, name):
    """9**5 = 59,049 values under an unknown key: the unknown key is reported, at once."""
    text = (RULES / name).read_text(encoding="utf-8") + laughs(4)
    started = time.process_time()
    with pytest.raises(InputError) as info:
        parse(text, f"rules/{name}")
    assert time.process_time() - started < 1
    assert [where for _, where, _ in problems(info.value)] == ["junk"]
    assert "unknown key" in problems(info.value)[0][2]


def test_a_duplicate_key_inside_an_aliased_mapping_is_reported_once():
    text = (RULES / "reminders.yaml").read_text(encoding="utf-8") + (
        "junk:\n  a: &a {k: 1, k: 2}\n  b: [*a, *a, *a]\n")
    with pytest.raises(InputError) as info:
        parse_policy(text, "rules/reminders.yaml")
    assert [(where, message) for _, where, message in problems(info.value)] == [
        ("junk.a.k", "key given twice (the second would silently win)")]


def lint_process(rules: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*RAPPEL, "lint", "--rules", str(rules)], capture_output=True, text=True, timeout=60,
                          cwd=rules.parent)


def test_rappel_lint_answers_the_laughing_policy_in_seconds(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    with (rules / "reminders.yaml").open("a", encoding="utf-8") as f:
        f.write(laughs(8))
    started = time.monotonic()
    done = lint_process(rules)
    assert time.monotonic() - started < 20       # the interpreter's start included; minutes before
    assert done.returncode == 2, done.stderr
    assert "reminders.yaml:" in done.stderr and "expand this value to more than 100,000 values" in done.stderr
