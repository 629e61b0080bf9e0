"""`rappel init`: a starter rules folder written from the defaults shipped in the package.

The defaults are the repository's rules/ folder, installed as the package ``rappel_rules``
(pyproject.toml maps it), and the demo's sample, installed with ``service``: both read through
importlib.resources, so they are found in a plain ``pip install .`` as in an editable one.
"""
from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from engine.yamlsource import InputError, Problem

__all__ = ["STARTER_FILES", "copy_tree", "init_rules", "sample", "shipped_rules"]

STARTER_FILES = ("reminders.yaml", "accounts.yaml", "templates")


def shipped_rules() -> Traversable:
    """The default rules folder as installed: reminders.yaml, accounts.yaml, templates/<lang>/."""
    return files("rappel_rules")


def sample() -> Traversable:
    """The demo's policy and CSV exports (service/sample/)."""
    return files("service").joinpath("sample")


def _walk(source: Traversable, prefix: str = ""):
    """(relative path, file) for every file below ``source``, sorted, skipping Python's own files."""
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__" or entry.name.endswith((".py", ".pyc")):
            continue
        relative = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _walk(entry, relative + "/")
        else:
            yield relative, entry


def copy_tree(source: Traversable, dest: Path) -> list[Path]:
    """Copy every file below ``source`` into ``dest`` (created); returns the files written."""
    written = []
    for relative, entry in _walk(source):
        target = Path(dest) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(entry.read_bytes())
        written.append(target)
    return written


def _starter_files() -> list[tuple[str, Traversable]]:
    root = shipped_rules()
    found = []
    for name in STARTER_FILES:
        entry = root.joinpath(name)
        if entry.is_dir():
            found += [(f"{name}/{relative}", file) for relative, file in _walk(entry)]
        else:
            found.append((name, entry))
    return found


def init_rules(dest: Path, *, force: bool = False) -> list[Path]:
    """Write reminders.yaml, accounts.yaml and templates/ (fr, en, es) into ``dest``; returns the
    files written. Refuses (InputError naming each file) to overwrite a file that exists, unless
    ``force``; files of ``dest`` that are not starter files are left as they are."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise InputError([Problem(str(dest), None, "", "exists and is not a folder")])
    starter = _starter_files()
    if not force:
        existing = [relative for relative, _ in starter if (dest / relative).exists()]
        if existing:
            raise InputError(_refusals(dest, existing, sum(r.startswith("templates/") for r, _ in starter)))
    written = []
    for relative, entry in starter:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(entry.read_bytes())
        written.append(target)
    return written


def _refusals(dest: Path, existing: list[str], templates: int) -> list[Problem]:
    """One problem per existing policy file, one for the templates that exist (a few named)."""
    why = "already exists: not overwritten (rappel init --force overwrites the starter files)"
    problems = [Problem(str(dest / relative), None, "", why) for relative in existing
                if not relative.startswith("templates/")]
    clashing = [relative.removeprefix("templates/") for relative in existing if relative.startswith("templates/")]
    if clashing:
        named = ", ".join(clashing[:3]) + (", …" if len(clashing) > 3 else "")
        problems.append(Problem(str(dest / "templates"), None, "",
                                f"{len(clashing)} of the {templates} starter templates already exist ({named}): "
                                f"not overwritten (rappel init --force overwrites the starter files)"))
    return problems
