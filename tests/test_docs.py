"""README.md is tested like the code (as datasette's tests/test_docs.py tests its documentation).

- Every ```yaml block passes `rappel lint`: a whole policy (it has `stages:`) as reminders.yaml,
  a block opening with `# rules/sources.yaml` as sources.yaml, a fragment (`delivery:`,
  `schedule:`…) merged into the shipped policy; both with the shipped
  templates and accounts.yaml (what `rappel init` writes), and a dummy value for each ${NAME}.
- Every `rappel …` command line it shows, in a fenced block or inline, names a command that
  exists, with options that exist (and a value for each option that takes one); a command line of
  a fenced block also has the arguments and options the command requires.
- Every command of `rappel --help` is shown somewhere, and every `make` target it shows exists.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from cli import app
from service.starter import init_rules

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
COMMAND = typer.main.get_command(app)     # the click command typer builds (typer may carry its own click)


def _is_group(command) -> bool:
    return hasattr(command, "commands")


def _runs_alone(command) -> bool:
    """A group that does something itself when no command follows (typer's invoke_without_command)."""
    return bool(getattr(command, "invoke_without_command", False)) and command is not COMMAND


def fenced(*languages: str) -> list[tuple[int, str, str]]:
    """(line of the opening fence, language, text) of each fenced block in those languages."""
    return [(README.count("\n", 0, m.start()) + 1, m.group(1), m.group(2))
            for m in FENCE.finditer(README) if m.group(1) in languages]


# --- the YAML blocks -----------------------------------------------------------------------------

@pytest.mark.parametrize("line, text", [pytest.param(line, text, id=f"README.md:{line}")
                                        for line, _, text in fenced("yaml")])
def test_every_yaml_block_passes_lint(line, text, tmp_path, monkeypatch):
    rules = tmp_path / "rules"
    init_rules(rules)                       # the shipped policy, accounts.yaml and templates
    block = yaml.safe_load(text)
    assert isinstance(block, dict) and block, f"README.md:{line}: not a YAML mapping"
    if text.startswith("# rules/sources.yaml"):     # the sources, beside the shipped policy
        (rules / "sources.yaml").write_text(text, encoding="utf-8")
    elif "stages" in block:                 # a whole policy, linted as written
        (rules / "reminders.yaml").write_text(text, encoding="utf-8")
    else:                                   # a fragment: its sections replace the shipped policy's
        policy = yaml.safe_load((rules / "reminders.yaml").read_text(encoding="utf-8"))
        policy.update(block)
        (rules / "reminders.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False),
                                              encoding="utf-8")
    for name in re.findall(r"\$\{(\w+)\}", text):
        monkeypatch.setenv(name, f"example-{name.lower()}")
    result = CliRunner().invoke(app, ["lint", "--rules", str(rules), "--outbox", str(tmp_path / "outbox")])
    assert result.exit_code == 0, f"README.md:{line}:\n{result.output}"
    assert f"{rules}/reminders.yaml: ok" in result.stdout


def test_the_readme_has_a_whole_policy_and_fragments():
    kinds = ["policy" if "stages" in yaml.safe_load(text) else "fragment" for _, _, text in fenced("yaml")]
    assert kinds.count("policy") >= 1 and kinds.count("fragment") >= 2


# --- the command lines ---------------------------------------------------------------------------

OPERATOR = re.compile(r"^[();<>|&]+$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
MENTION = re.compile(r"(^|[\s/;&|])rappel(\s|$)")


def command_lines(text: str) -> list[list[str]]:
    """The arguments of each `rappel` command in a shell text: a command's first word (after
    NAME=value assignments, at a line's start or after ; && || |) is rappel or a path to it."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        if not MENTION.search(line):        # not a shell line about rappel (a plain block's prose)
            continue
        lexer = shlex.shlex(line.replace("[", " ").replace("]", " "), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for token in [*lexer, ";"]:
            if not OPERATOR.match(token):
                command.append(token)
                continue
            words = command
            while words and ASSIGNMENT.match(words[0]):
                words = words[1:]
            if words and (words[0] == "rappel" or words[0].endswith("/rappel")):
                found.append(words[1:])
            command = []
    return found


def _shown_commands() -> list[tuple[str, list[str], bool]]:
    """(where, arguments, complete) of every rappel command the README shows: in ```sh and plain
    fenced blocks (complete command lines), and inline in `backticks` (a mention: options only)."""
    shown = [(f"README.md:{line}", args, True) for line, _, text in fenced("sh", "")
             for args in command_lines(text)]
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), README)
    for m in re.finditer(r"`(rappel [^`]+)`", prose):
        shown.append((f"README.md:{prose.count(chr(10), 0, m.start()) + 1}", shlex.split(m.group(1))[1:], False))
    return shown


SHOWN = _shown_commands()


def problems_of(args: list[str], complete: bool) -> list[str]:
    """What is wrong with `rappel ARGS` for the command line app: unknown command or option, an
    option without its value, too many arguments; missing required ones when ``complete``."""
    command, path, args = COMMAND, ["rappel"], list(args)
    while _is_group(command):
        if (not args or args[0].startswith("-")) and _runs_alone(command):
            break                           # a group that is also a command (`rappel notices --patron P`)
        if not args or args[0].startswith("-"):
            return [f"`{' '.join(path)}` needs a command"] if complete else []
        name = args.pop(0)
        if name not in command.commands:
            return [f"`{' '.join(path)} {name}`: no such command"]
        command, path = command.commands[name], path + [name]
    options = {opt: p for p in command.params if p.param_type_name == "option" for opt in p.opts + p.secondary_opts}
    problems, given, positional = [], set(), 0
    while args:
        token = args.pop(0)
        if token.startswith("-") and token != "-":
            name, has_value, _ = token.partition("=")
            param = options.get(name)
            if param is None:
                problems.append(f"`{' '.join(path)}` has no option {name}")
                continue
            given.add(param.name)
            if not (param.is_flag or param.count or has_value):
                if not args or args[0].startswith("-"):
                    problems.append(f"`{' '.join(path)} {name}` needs a value")
                else:
                    args.pop(0)
        else:
            positional += 1
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if not any(p.nargs < 0 for p in arguments) and positional > sum(p.nargs for p in arguments):
        problems.append(f"`{' '.join(path)}` takes {sum(p.nargs for p in arguments)} argument(s), {positional} shown")
    if complete:
        required = sum(p.nargs for p in arguments if p.required and p.nargs > 0)
        if positional < required:
            problems.append(f"`{' '.join(path)}` needs {required} argument(s), {positional} shown")
        problems += [f"`{' '.join(path)}` needs {p.opts[0]}" for p in command.params
                     if p.param_type_name == "option" and p.required and p.name not in given]
    return problems


@pytest.mark.parametrize("where, args, complete", [pytest.param(w, a, c, id=f"{w} rappel {' '.join(a)}"[:90])
                                                   for w, a, c in SHOWN])
def test_every_command_shown_exists_with_its_options(where, args, complete):
    assert problems_of(args, complete) == [], where


@pytest.mark.parametrize("args, complete, expected", [
    (["run", "--on", "2026-11-23", "--dry-run"], True, []),
    (["run", "--today"], False, ["`rappel run` has no option --today"]),
    (["run", "--on"], False, ["`rappel run --on` needs a value"]),
    (["patron", "edit", "2000000003", "--by", "marie", "--set", "city=Pau"], True, ["`rappel patron edit` needs --as"]),
    (["patron", "edit", "2000000003", "--by", "marie"], False, []),
    (["import", "patrons"], True, ["`rappel import` needs 2 argument(s), 1 shown"]),
    (["schema", "extra"], False, ["`rappel schema` takes 0 argument(s), 1 shown"]),
    (["patron"], True, ["`rappel patron` needs a command"]),
    (["notices", "--patron", "2000000002", "--json"], True, []),           # a group that lists by itself
    (["notices", "--frobnicate"], False, ["`rappel notices` has no option --frobnicate"]),
    (["notices", "cancel", "KEY", "--by", "marie"], True, ["`rappel notices cancel` needs --why"]),
    (["patron", "delete", "2000000002"], True, ["`rappel patron delete`: no such command"]),
    (["patron", "edit", "2000000003", "--as", "circulation_desk", "--by", "marie", "--set", "postal_code=33000"],
     True, []),
    (["frobnicate"], False, ["`rappel frobnicate`: no such command"]),
])
def test_the_command_check_itself(args, complete, expected):
    assert problems_of(args, complete) == expected


@pytest.mark.parametrize("text, expected", [
    ("rappel lint --rules /etc/rappel/rules", [["lint", "--rules", "/etc/rappel/rules"]]),
    ("rappel schema > reminders.schema.json  # for your editor", [["schema"]]),
    ("cd /opt && RAPPEL_STATE_DIR=/var/lib/rappel /opt/rappel/.venv/bin/rappel status >/tmp/s || mail root",
     [["status"]]),
    ("0 * * * * rappel cd /var/lib/rappel", []),                  # a crontab's user field, not a command
    ("useradd --system --home /var/lib/rappel rappel", []),
    ("rappel patron show 2000000002 [--as circulation_desk] [--json]",
     [["patron", "show", "2000000002", "--as", "circulation_desk", "--json"]]),
    ('rappel patron edit 3 --as desk \\\n    --set address_line1="12 rue Judaïque"',
     [["patron", "edit", "3", "--as", "desk", "--set", "address_line1=12 rue Judaïque"]]),
])
def test_command_lines_are_found_as_a_shell_reads_them(text, expected):
    assert command_lines(text) == expected


def test_every_command_of_the_app_is_shown():
    def leaves(command, path):
        if _is_group(command):
            alone = [path] if _runs_alone(command) else []
            return alone + [leaf for name, sub in command.commands.items() for leaf in leaves(sub, path + [name])]
        return [path]

    shown = {tuple(args[:2]) for _, args, _ in SHOWN} | {tuple(args[:1]) for _, args, _ in SHOWN}
    assert [" ".join(p) for p in leaves(COMMAND, []) if tuple(p) not in shown] == []


def test_every_make_target_shown_exists():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    shown = {m.group(1) for _, _, text in fenced("sh") for m in re.finditer(r"^make (\w+)", text, re.M)}
    shown |= set(re.findall(r"`make (\w+)`", README))
    assert {"demo", "test"} <= shown
    assert shown <= targets


# --- every template variable -----------------------------------------------------------------------

def _variables_block() -> list[str]:
    head = README.index("**Every variable.**")
    [(_, _, text)] = [(line, lang, text) for line, lang, text in fenced("text")
                      if README.index(text) > head][:1]
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def test_the_readme_lists_every_template_variable_once_in_the_tables_order():
    from adapters.render.variables import MAILBOX_VARIABLES, TEMPLATE_VARIABLES
    assert _variables_block() == list(TEMPLATE_VARIABLES)
    mailbox = README[README.index("The email that carries a letter to a library's mailbox"):]
    mailbox = mailbox[:mailbox.index("\n\n")]
    assert {name for name in MAILBOX_VARIABLES if "." not in name} == set(re.findall(r"`(\w+)`", mailbox))


def test_the_variables_table_is_what_templates_get():
    """Every name a template can see is in TEMPLATE_VARIABLES, and every name there is seen: an email,
    a letter, and a combined notice whose loans received earlier notices."""
    import datetime as dt

    from adapters.render import Templates
    from adapters.render.context import NoticeContext, mailbox_variables
    from adapters.render.lint import sample_letter, sample_notice
    from adapters.render.variables import MAILBOX_VARIABLES, TEMPLATE_VARIABLES, variable_names
    from engine.envelope import Earlier
    from engine.policy import parse_policy

    policy = parse_policy((ROOT / "rules" / "reminders.yaml").read_text(encoding="utf-8"))
    templates = Templates(ROOT / "rules", policy)
    seen: set[str] = set()
    for channel in ("email", "letter"):
        ctx = sample_notice(policy, policy.stages[2], channel)
        combined = NoticeContext.build(
            policy, dataclasses.replace(ctx.notice, loan_ids=("L-1", "L-2"), loan_stages=(("L-2", "letter"),)),
            ctx.patron, [*ctx.triggered, *ctx.overdue], ctx.as_of,
            history={"L-1": (Earlier("first_reminder", dt.date(2026, 11, 9), "email"),)})
        for one in (ctx, combined):
            names = variable_names(templates.variables(one, "fr"))
            assert names <= set(TEMPLATE_VARIABLES), names - set(TEMPLATE_VARIABLES)
            seen |= names
    assert seen == set(TEMPLATE_VARIABLES), set(TEMPLATE_VARIABLES) - seen
    names = variable_names(mailbox_variables(policy, sample_letter(policy), "a.pdf"))
    assert names == set(MAILBOX_VARIABLES), names ^ set(MAILBOX_VARIABLES)
