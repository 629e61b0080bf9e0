"""rules/sources.yaml as every use case loads it: the library system's databases, and how old the
loans may be before rappel refuses to decide on them (``max_facts_age_hours``).

The age limit is sources.yaml's (26 hours unless it says otherwise) when there is a sources.yaml,
else reminders.yaml's ``max_facts_age_hours`` (for an installation fed by CSV files; no limit when
absent). Written in both files, it is an error: one place says it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from adapters.sources.presets import PRESETS, preset_info
from engine.policy import Policy
from engine.sources import Source, Sources, check_url, environment_names, parse_sources
from engine.yamlsource import InputError, Problem, YamlDocument

__all__ = ["SOURCES_FILE", "LoadedSources", "check_environment", "environment_problems", "expanded_url", "facts_age_limit", "load_sources",
           "query_for"]

SOURCES_FILE = "sources.yaml"


@dataclass(frozen=True)
class LoadedSources:
    path: Path
    sources: Sources
    document: YamlDocument

    def problem(self, path: tuple, message: str) -> Problem:
        return self.document.problem(path, message)

    def url(self, name: str, env: Mapping[str, str]) -> str:
        """The source's URL with its ${NAME}s from the environment; InputError when one is missing."""
        url, problems = expanded_url(self.sources.sources[name].url, env)
        if problems:
            raise InputError([self.problem(("sources", name, "url"), p) for p in problems])
        return url

    def kinds(self, name: str) -> tuple[str, ...]:
        return self.sources.sources[name].pulled(preset_info())

    def describe(self) -> str:
        parts = []
        for name, src in self.sources.sources.items():
            how = f"{src.preset} preset" if src.preset else "own queries"
            own = [k for k in src.queries if src.preset]
            parts.append(f"{name} ({how}{', own ' + ', '.join(own) + ' query' if own else ''}: "
                         f"{', '.join(self.kinds(name))})")
        return (f"{self.path}: ok ({len(parts)} source(s): {'; '.join(parts)}; loans older than "
                f"{self.sources.max_facts_age_hours:g} hours are not decided on)")


def load_sources(rules_dir: Path, policy: Policy | None = None, *, shown_as: Path | None = None
                 ) -> LoadedSources | None:
    """rules/sources.yaml, validated (and checked against the policy when given); None when absent.
    ``shown_as``: the path errors name (the daemon reads a private copy of the rules)."""
    path = Path(rules_dir) / SOURCES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if policy is not None and policy.schedule.pull_before:
            raise InputError([Problem(str(Path(rules_dir) / "reminders.yaml"), None, "schedule.pull_before",
                                      f"true, but there is no {path} to pull from")]) from None
        return None
    except OSError as exc:
        raise InputError([Problem(str(path), None, "", f"cannot read the sources: {exc.strerror}")]) from None
    shown = shown_as or path
    sources = parse_sources(text, str(shown), preset_info())
    loaded = LoadedSources(shown, sources, YamlDocument(text, str(shown)))
    problems = [loaded.problem(("sources", name, "libraries"), f"not a library of the policy: {', '.join(unknown)} "
                                                              f"({', '.join(sorted(policy.libraries))})")
                for name, src in sources.sources.items() if policy is not None
                for unknown in [sorted(set(src.libraries or ()) - set(policy.libraries))] if unknown]
    if problems:
        raise InputError(problems)
    if policy is not None and policy.max_facts_age_hours is not None and "max_facts_age_hours" in loaded.document.data:
        raise InputError([loaded.problem(("max_facts_age_hours",), "also set in reminders.yaml: say it in one "
                                                                   "place (here, when there are sources)")])
    return loaded


def expanded_url(url: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """(the URL with each ${NAME} from ``env``, percent-encoded inside a URL; the problems: variables
    not set or empty, a URL from the environment that is not one rappel can open)."""
    names = environment_names(url)
    whole = len(names) == 1 and url == f"${{{names[0]}}}"
    problems, out = [], url
    for name in names:
        value = env.get(name)
        if value is None or value == "":
            problems.append(f"environment variable {name} {'is not set' if value is None else 'is empty'} "
                            f"(this setting takes it: {url})")
            continue
        out = out.replace(f"${{{name}}}", value if whole else quote(value, safe=""))
    if whole and not problems:
        try:
            check_url(out)
        except ValueError as exc:
            problems.append(f"${{{names[0]}}}: {exc}")
    return out, problems


def environment_problems(loaded: LoadedSources | None, env: Mapping[str, str]) -> list[Problem]:
    """Every source URL that cannot be used as the environment stands (file, line, key)."""
    out: list[Problem] = []
    for name, src in (loaded.sources.sources.items() if loaded else ()):
        out += [loaded.problem(("sources", name, "url"), p) for p in expanded_url(src.url, env)[1]]
    return out


def check_environment(loaded: LoadedSources | None, env: Mapping[str, str]) -> None:
    """Every source URL usable as the environment stands; InputError naming each missing variable."""
    problems = environment_problems(loaded, env)
    if problems:
        raise InputError(problems)


def facts_age_limit(policy: Policy, loaded: LoadedSources | None) -> float | None:
    """How old (hours) the loans may be for a run to decide; None: no limit."""
    if loaded is not None:
        return loaded.sources.max_facts_age_hours
    return policy.max_facts_age_hours


def query_for(source: Source, kind: str) -> tuple[str, tuple]:
    """(the query pulling ``kind`` from ``source``, the sources.yaml path that says so)."""
    if kind in source.queries:
        return source.queries[kind], ("queries", kind)
    return PRESETS[source.preset].queries[kind], ("preset",)
