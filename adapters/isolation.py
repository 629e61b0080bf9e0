"""Rules evaluations in a short-lived child process, for long-running processes (the daemon).

durable-rules' C core keeps some memory of every ruleset and event it saw, even after the ruleset
is deleted, and a fault in it could take the whole process down. A child process per evaluation
returns that memory, and a crash, to the operating system: the parent sees an EngineFault and
decides nothing.

``evaluate_in_child`` is an evaluation to pass in: ``plan_day(..., evaluate=evaluate_in_child)``,
``service.day.run_day(..., evaluate=...)``, ``service.daemon.Settings(evaluate=...)``; the request
stages' goes with it (``evaluate_requests_in_child``, ``for_requests``).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from engine import rules

_ROOT = str(Path(__file__).resolve().parent.parent)


def evaluate_in_child(policy, candidates, as_of, pairs) -> set[tuple[int, int]]:
    """engine.rules.evaluate_here, run in a fresh Python process; arguments and result pickled."""
    return _in_child("loans", policy, candidates, as_of, pairs)


def evaluate_requests_in_child(policy, candidates, as_of, pairs) -> set[tuple[int, int]]:
    """engine.rules.evaluate_requests_here (the request stages), run in a fresh Python process."""
    return _in_child("requests", policy, candidates, as_of, pairs)


def for_requests(evaluate):
    """The request stages' evaluation that goes with a loans' one: in a child process with
    evaluate_in_child, else in this process (None)."""
    return evaluate_requests_in_child if evaluate is evaluate_in_child else None


_EVALUATIONS = {"loans": rules.evaluate_here, "requests": rules.evaluate_requests_here}


def _in_child(what: str, policy, candidates, as_of, pairs) -> set[tuple[int, int]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-c", "import adapters.isolation as i; i._child_main()"],
                          input=pickle.dumps((what, policy, candidates, as_of, pairs)), capture_output=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise rules.EngineFault(f"the rules engine's process failed (exit {proc.returncode}): {tail[0]}")
    kind, value = pickle.loads(proc.stdout)
    if kind == "fault":
        raise rules.EngineFault(value)
    return value


def _child_main() -> None:
    """The child's entry point: pickled arguments on stdin, pickled result on stdout."""
    what, policy, candidates, as_of, pairs = pickle.load(sys.stdin.buffer)
    try:
        result = ("ok", _EVALUATIONS[what](policy, candidates, as_of, pairs))
    except rules.EngineFault as exc:
        result = ("fault", str(exc))
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.flush()
