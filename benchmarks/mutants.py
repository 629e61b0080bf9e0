"""Targeted mutation testing of the decisions: does the suite see each of these changes of behaviour?

Each mutant is one deliberate bug (one or more exact text edits) in engine/ or the delivery
decisions. The script copies the project's files (git ls-files, tracked and new) into a temporary
folder, applies one mutant at a time, runs the tests that guard that code, and counts the mutant
*killed* when they fail, *survived* when they pass. Mutants of the compiled rules alone are caught
by the cross-check with the reference; the "both" mutants change the rules and the reference the
same way, so only tests that state the policy's expected answer can see them.

    .venv/bin/python benchmarks/mutants.py                  # every mutant (about 30-40 min on 2 cores)
    .venv/bin/python benchmarks/mutants.py --only B1,D5     # some of them
    .venv/bin/python benchmarks/mutants.py --list           # what each one changes

It prints one line per mutant and the score; exit 1 if one survived (or an edit no longer
applies: the mutant list must follow the code), 0 otherwise.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENGINE_TESTS = ("tests/test_semantics.py", "tests/test_engine_crosscheck.py", "tests/test_boundaries.py",
                "tests/test_preferences.py", "tests/test_restart.py", "tests/test_calendar.py",
                "tests/test_policy.py")
DELIVERY_TESTS = ("tests/test_delivery_decisions.py", "tests/test_boundaries.py", "tests/test_dispatch.py",
                  "tests/test_preferences.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]     # (file, exact text, replacement)
    tests: tuple[str, ...] = ENGINE_TESTS


RULES, REFERENCE = "engine/rules.py", "engine/reference.py"

MUTANTS = (
    # -- the compiled rules alone (the cross-check with the reference must see each) --
    Mutant("R1", "a trigger date today is not yet due", ((RULES, '{"$gte": {"lt": 0}}', '{"$gte": {"lt": 1}}'),)),
    Mutant("R2", "the window's last day excluded", ((RULES, '{"$lte": {"lt": window}}', '{"$lt": {"lt": window}}'),)),
    Mutant("R3", "the stage itself in the ledger does not stop it",
           ((RULES, '{"$lt": {"lr": index}}', '{"$lte": {"lr": index}}'),)),
    Mutant("R4", "the restart day itself excluded",
           ((RULES, '{"$gte": {"tr": policy.resumed_on.toordinal()}}', '{"$gt": {"tr": policy.resumed_on.toordinal()}}'),)),
    Mutant("R5", "a stage before the due date also on the due date",
           ((RULES, '{"$lt": {"el": 0}}', '{"$lte": {"el": 0}}'),)),
    Mutant("R6", "letters go out on closed days", ((RULES, 'conds.append({"od": 1})', 'pass'),)),
    Mutant("R7", "excluded statuses get notices", ((RULES, '{"$neq": {"st": status}}', '{"$neq": {"st": status + "_"}}'),)),
    Mutant("R8", "opt-outs ignored", ((RULES, 'conds.append({"oo": 0})', 'pass'),)),
    Mutant("R9", "record types ignored", ((RULES, 'conds.append(_one_of("rt", aud.record_types))', 'pass'),)),
    Mutant("R10", "a library's own rule applies to every library",
           ((RULES, 'conds.append({"lib": library})', 'pass'),)),
    Mutant("R11", "returned loans are candidates", ((RULES, '        {"open": 1},\n', ''),)),
    # -- the rules and the reference changed alike (only the policy's stated answers can see them) --
    Mutant("B1", "an empty audience list (user_groups: []) means everybody (truthiness), in both",
           ((RULES, "        if values is not None:\n            conds.append(_one_of(field, values))",
             "        if values:\n            conds.append(_one_of(field, values))"),
            (REFERENCE, "if aud.user_groups is not None and", "if aud.user_groups and"),
            (REFERENCE, "if aud.item_types is not None and loan", "if aud.item_types and loan"),
            (REFERENCE, "if aud.libraries is not None and loan", "if aud.libraries and loan"))),
    Mutant("B2", "the window's last day excluded, in both",
           ((RULES, '{"$lte": {"lt": window}}', '{"$lt": {"lt": window}}'),
            (REFERENCE, "elif late > window:", "elif late >= window:"))),
    Mutant("B3", "the restart day itself excluded, in both",
           ((RULES, '{"$gte": {"tr": policy.resumed_on.toordinal()}}', '{"$gt": {"tr": policy.resumed_on.toordinal()}}'),
            (REFERENCE, "if t < resumed:", "if t <= resumed:"))),
    Mutant("B4", "a courtesy notice also on the due date, in both",
           ((RULES, '{"$lt": {"el": 0}}', '{"$lte": {"el": 0}}'),
            (REFERENCE, "if as_of < due:", "if as_of <= due:"))),
    Mutant("B5", "opt-outs ignored, in both",
           ((RULES, 'conds.append({"oo": 0})', 'pass'),
            (REFERENCE, "if cand.opted_out_of(stage.id):", "if False:"))),
    Mutant("B6", "a street alone is a postal address",
           (("engine/facts.py", "and (self.postal_code or self.city))", ")"),)),
    Mutant("B7", "a postal address needs both the postal code and the town",
           (("engine/facts.py", "(self.postal_code or self.city)", "(self.postal_code and self.city)"),)),
    # -- the delivery decisions --
    Mutant("D1", "the re-check lets a courtesy notice go out on the due date",
           (("engine/delivery.py", "offset_days < 0 and as_of >= due:", "offset_days < 0 and as_of > due:"),),
           DELIVERY_TESTS),
    Mutant("D2", "the re-check sends returned loans",
           (("engine/delivery.py", "elif loan.returned_on is not None:", "elif False:"),), DELIVERY_TESTS),
    Mutant("D3", "the re-check sends renewed loans",
           (("engine/delivery.py", "elif loan.due_date != due:", "elif False:"),), DELIVERY_TESTS),
    Mutant("D4", "the flood guard holds a pass of exactly max_per_run",
           (("engine/delivery.py", "if confirm or messages <= limit:", "if confirm or messages < limit:"),),
           DELIVERY_TESTS),
    Mutant("D5", "the flood guard's second count counts what the re-check drops",
           (("service/dispatch.py", "len(recheck(policy, p, loans, as_of)) < len(p.entries)",
             "len(recheck(policy, p, loans, as_of)) <= len(p.entries)"),), DELIVERY_TESTS),
    Mutant("D6", "fallback letters may take the pass one past the limit",
           (("engine/delivery.py", "self.used + len(self.reserved) < self.limit",
             "self.used + len(self.reserved) <= self.limit"),), DELIVERY_TESTS),
    Mutant("D7", "the retry wait does not double",
           (("engine/delivery.py", "retry.first_minutes * 2 ** min(attempts_before, 20)",
             "retry.first_minutes * 1 ** min(attempts_before, 20)"),), DELIVERY_TESTS),
    Mutant("D8", "a refused email becomes a letter without a postal address",
           (("engine/delivery.py", "    if not patron.has_postal_address:\n        return Fallback(why_not=",
             "    if False:\n        return Fallback(why_not="),), DELIVERY_TESTS),
)


def project_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line and (ROOT / line).is_file()]


def copy_project(into: Path) -> None:
    for name in project_files():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def apply(copy: Path, mutant: Mutant) -> dict[Path, str]:
    """Apply the mutant's edits; the files' original texts, to restore. SystemExit if an edit no longer applies."""
    originals: dict[Path, str] = {}
    for file, old, new in mutant.edits:
        path = copy / file
        text = originals.get(path) or path.read_text(encoding="utf-8")
        current = path.read_text(encoding="utf-8")
        if current.count(old) != 1:
            restore(originals)
            raise SystemExit(f"{mutant.name}: {old!r} occurs {current.count(old)} times in {file}, not once: "
                             f"update benchmarks/mutants.py to follow the code")
        originals.setdefault(path, text)
        path.write_text(current.replace(old, new), encoding="utf-8")
    return originals


def restore(originals: dict[Path, str]) -> None:
    for path, text in originals.items():
        path.write_text(text, encoding="utf-8")


def run(copy: Path, mutant: Mutant, timeout: float) -> tuple[str, float, str]:
    originals = apply(copy, mutant)
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                 *mutant.tests],
                                cwd=copy, capture_output=True, text=True, timeout=timeout)
        verdict = "survived" if result.returncode == 0 else "killed"
        failed = next((line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))), "")
    except subprocess.TimeoutExpired:
        verdict, failed = "killed", f"timeout after {timeout:.0f} s"
    finally:
        restore(originals)
    return verdict, time.perf_counter() - start, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated mutant names (R1,B1,D5…)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant's tests")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only.split(",")]
    if args.list:
        for m in chosen:
            print(f"{m.name:4} {m.what}  [{', '.join(sorted({f for f, _, _ in m.edits}))}]")
        return 0
    with tempfile.TemporaryDirectory(prefix="rappel-mutants-") as tmp:
        copy = Path(tmp)
        copy_project(copy)
        for m in chosen:                     # every edit applies before anything runs
            restore(apply(copy, m))
        survived = []
        for m in chosen:
            verdict, seconds, failed = run(copy, m, args.timeout)
            print(f"{m.name:4} {verdict:8} {seconds:6.1f}s  {m.what}" + (f"  <- {failed}" if failed else ""),
                  flush=True)
            if verdict == "survived":
                survived.append(m.name)
    killed = len(chosen) - len(survived)
    print(f"mutation score: {killed}/{len(chosen)} killed ({100 * killed / max(len(chosen), 1):.0f} %)"
          + (f"; survived: {', '.join(survived)}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
