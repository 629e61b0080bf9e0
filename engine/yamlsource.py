"""YAML text → Python data, keeping each value's line so errors can say where they are."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where, and what."""

    source: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        place = f"{self.source}:{self.line}" if self.line else self.source
        return f"{place}: {self.where}: {self.message}" if self.where else f"{place}: {self.message}"


class InputError(Exception):
    """Bad input (policy, template, CSV): carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Loader(yaml.SafeLoader):
    pass


class YamlDocument:
    """Parsed YAML plus its node tree, to look up the line of any path."""

    def __init__(self, text: str, source: str):
        self.source = source
        try:
            self.root = yaml.compose(text, Loader=_Loader)
            self.data: Any = yaml.load(text, Loader=_Loader) if self.root is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise InputError([Problem(source, line, "", f"not valid YAML: {exc.problem or exc}")]) from None
        except ValueError as exc:  # a value PyYAML recognises but cannot build, e.g. the date 2026-11-31
            found = _unbuildable(self.root, ())
            if found is None:
                raise InputError([Problem(source, None, "", str(exc))]) from None
            node, path = found
            raise InputError([Problem(source, node.start_mark.line + 1, _dotted(path),
                                      f"{node.value!r}: {exc}")]) from None
        self.duplicates = list(self._find_duplicates(self.root, ()))

    def _find_duplicates(self, node, path):
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    yield Problem(self.source, key.start_mark.line + 1, _dotted(path + (name,)),
                                  "key given twice (the second would silently win)")
                seen.add(name)
                yield from self._find_duplicates(value, path + (name,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                yield from self._find_duplicates(item, path + (i,))

    def line_of(self, path: tuple) -> int | None:
        """Line (1-based) of the deepest node reachable along ``path``."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in path:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if str(key.value) == str(part):
                        line = key.start_mark.line + 1
                        node = value
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def problem(self, path: tuple, message: str) -> Problem:
        return Problem(self.source, self.line_of(path), _dotted(path), message)


def _unbuildable(node, path: tuple):
    """The first scalar node (and its path) that PyYAML's safe constructor refuses, e.g. 2026-11-31."""
    if isinstance(node, yaml.ScalarNode):
        try:
            _Loader("").construct_object(node, deep=True)
        except ValueError:
            return node, path
        return None
    if isinstance(node, yaml.MappingNode):
        children = [(key, path) for key, _ in node.value] + [(value, path + (str(key.value),))
                                                             for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [(item, path + (i,)) for i, item in enumerate(node.value)]
    else:
        children = []
    for child, child_path in children:
        found = _unbuildable(child, child_path)
        if found is not None:
            return found
    return None


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_problems(doc: YamlDocument, error) -> list[Problem]:
    """Turn a pydantic ValidationError into problems with file, line and key."""
    problems = []
    for item in error.errors():
        path = tuple(p for p in item["loc"] if p not in ("__root__",))
        # pydantic puts the name of a failing union/validator step in loc; keep real keys only
        path = tuple(p for p in path if not (isinstance(p, str) and p.startswith("function-")))
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling, or remove it)"
        elif item["type"] == "missing":
            msg = "required key is missing"
        problems.append(doc.problem(path, msg.removeprefix("Value error, ")))
    return problems
