"""Installable anywhere: the default rules ship in the package, `rappel init` writes a starter
rules folder that passes `rappel lint`, and a plain (not editable) `pip install .` into a fresh
virtual environment runs `rappel init`, `rappel lint` and `rappel demo` in an empty folder.

The shipped defaults are the repository's rules/ folder, installed as the package rappel_rules
(pyproject.toml's package-dir); the demo's sample is service/sample/.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from service.starter import init_rules, shipped_rules

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
LANGUAGES = ("fr", "en", "es")
STAGES = ("courtesy", "first_reminder", "second_reminder", "letter", "requests_report")


def rappel(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def repository_rules() -> list[str]:
    """The files of rules/ that are rules (not Python's), relative to it."""
    return sorted(p.relative_to(RULES).as_posix() for p in RULES.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc"))


# --- the package's configuration -----------------------------------------------------------------

def test_every_package_of_the_tree_is_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for top in ("cli", "engine", "service", "adapters") for init in (ROOT / top).rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | {"rappel_rules"}
    assert config["package-dir"] == {"rappel_rules": "rules"}


def test_the_shipped_rules_are_the_repository_rules_folder():
    shipped = shipped_rules()
    for relative in repository_rules():
        assert shipped.joinpath(relative).read_bytes() == (RULES / relative).read_bytes(), relative


# --- rappel init ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("stage", STAGES)
def test_init_writes_each_stage_template_in_each_language(tmp_path, stage, lang):
    init_rules(tmp_path / "rules")
    for kind in ("subject", "txt", "html"):
        written = tmp_path / "rules" / "templates" / lang / f"{stage}.{kind}.j2"
        assert written.read_bytes() == (RULES / "templates" / lang / f"{stage}.{kind}.j2").read_bytes()


def _starter() -> list[str]:
    """The starter files rappel init writes: the policy, the accounts and every shipped template."""
    return [n for n in repository_rules() if n in ("reminders.yaml", "accounts.yaml") or n.startswith("templates/")]


def test_init_writes_the_policy_and_the_accounts_and_nothing_else(tmp_path):
    written = init_rules(tmp_path / "site")
    names = sorted(p.relative_to(tmp_path / "site").as_posix() for p in written)
    assert names == _starter() and len(names) > 100
    assert "reminders.yaml" in names and "accounts.yaml" in names
    assert not (tmp_path / "site" / "__init__.py").exists()


def test_the_starter_folder_passes_lint(tmp_path):
    folder = tmp_path / "rules"
    result = rappel("init", folder)
    assert result.exit_code == 0, result.output
    assert f"{folder}: {len(_starter())} files written" in result.stdout
    linted = rappel("lint", "--rules", folder, "--outbox", tmp_path / "outbox")
    assert linted.exit_code == 0, linted.output
    assert f"{folder}/reminders.yaml: ok (4 stages, 2 libraries)" in linted.stdout
    assert f"{folder}/accounts.yaml: ok (5 roles;" in linted.stdout


def test_init_writes_into_rules_of_the_current_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = rappel("init")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rules" / "reminders.yaml").read_bytes() == (RULES / "reminders.yaml").read_bytes()


def test_init_refuses_to_overwrite_and_names_what_exists(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "reminders.yaml").write_text("# the site's own policy\n", encoding="utf-8")
    (folder / "templates" / "fr").mkdir(parents=True)
    (folder / "templates" / "fr" / "courtesy.subject.j2").write_text("Bientôt\n", encoding="utf-8")
    (folder / "notes.txt").write_text("mine\n", encoding="utf-8")

    result = rappel("init", folder)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {folder}/reminders.yaml: already exists: not overwritten "
        f"(rappel init --force overwrites the starter files)",
        f"error: {folder}/templates: 1 of the {len(_starter()) - 2} starter templates already exist (fr/courtesy.subject.j2): "
        f"not overwritten (rappel init --force overwrites the starter files)",
    ]
    assert (folder / "reminders.yaml").read_text(encoding="utf-8") == "# the site's own policy\n"
    assert not (folder / "accounts.yaml").exists()          # all or nothing

    forced = rappel("init", folder, "--force")
    assert forced.exit_code == 0, forced.output
    assert (folder / "reminders.yaml").read_bytes() == (RULES / "reminders.yaml").read_bytes()
    assert (folder / "templates" / "fr" / "courtesy.subject.j2").read_bytes() == \
        (RULES / "templates" / "fr" / "courtesy.subject.j2").read_bytes()
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine\n"     # not a starter file: kept


def test_init_into_a_file_is_bad_input(tmp_path):
    (tmp_path / "rules").write_text("", encoding="utf-8")
    result = rappel("init", tmp_path / "rules")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'rules'}: exists and is not a folder\n"


# --- a plain install, in a fresh virtual environment ---------------------------------------------

# what a checkout has that is not the project (pip builds from a copy without them)
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    ".hypothesis", ".ruff_cache", "demo-run", "outbox", "*.db", "bench-*")


def _run(args, cwd, env, timeout=900):
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """rappel installed with `pip install <copy of the repository>` (not editable) into a new venv."""
    base = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if sys.version_info >= (3, 13):       # durable-rules 2.0.28 calls PyEval_CallObject (as the Makefile says)
        env["CPPFLAGS"] = f"-DPyEval_CallObject=PyObject_CallObject {env.get('CPPFLAGS', '')}".strip()
    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", venv], base, env, timeout=300)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # the package index: what `pip install .` needs (setuptools to build); a machine without it skips
    probe = _run([python, "-m", "pip", "download", "--no-deps", "--retries", "1", "--timeout", "20",
                  "-d", base / "probe", "setuptools>=77"], base, env, timeout=300)
    if probe.returncode != 0:
        pytest.skip("the package index cannot be reached, so `pip install .` cannot run here: "
                    + (probe.stderr.strip().splitlines() or ["no message"])[-1])
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    install = _run([python, "-m", "pip", "install", "--quiet", source], base, env)
    assert install.returncode == 0, install.stdout + install.stderr
    shutil.rmtree(source)                 # nothing may be read from the source tree from now on
    return venv, env


@pytest.mark.install
def test_a_plain_install_runs_init_lint_and_demo_in_an_empty_folder(installed, tmp_path):
    venv, env = installed
    rappel_cmd = venv / "bin" / "rappel"
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run([venv / "bin" / "python", "-c", "import rappel_rules, service; print(rappel_rules.__file__); "
                  "print(service.__file__)"], empty, env)
    assert where.returncode == 0, where.stderr
    assert all(Path(line).is_relative_to(venv) for line in where.stdout.split()), where.stdout

    init = _run([rappel_cmd, "init"], empty, env)
    assert init.returncode == 0, init.stdout + init.stderr
    assert f"rules: {len(_starter())} files written" in init.stdout

    lint = _run([rappel_cmd, "lint"], empty, env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "rules/reminders.yaml: ok (4 stages, 2 libraries)" in lint.stdout

    demo = _run([rappel_cmd, "demo"], empty, env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "ledger: cancelled 1, sent 11" in demo.stdout
    outbox = empty / "demo-run" / "outbox"
    written = sorted(p.relative_to(outbox).parent.as_posix() for p in outbox.rglob("*") if p.is_file())
    assert written == ["email/2026-11-22"] * 3 + ["email/2026-11-23"] * 3 + ["email/2026-11-25"] \
        + ["letters/DROIT/2026-11-22", "letters/DROIT/2026-11-25", "letters/SCI/2026-11-25"]
    assert all(pdf.read_bytes().startswith(b"%PDF") for pdf in outbox.rglob("*.pdf"))
