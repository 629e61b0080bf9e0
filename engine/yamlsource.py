"""YAML text → Python data, keeping each value's line so errors can say where they are."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from engine import limits


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


# libyaml's parser, where PyYAML was built with it: the same nodes and lines, ten times faster. A
# document it refuses is read again by the pure-Python one, so that every error reads the same.
_FastLoader = type("_FastLoader", (yaml.CSafeLoader,), {}) if getattr(yaml, "__with_libyaml__", False) else None


def _compose(text: str):
    """The document's node tree (None for an empty one)."""
    if _FastLoader is not None:
        try:
            return yaml.compose(text, Loader=_FastLoader)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=_Loader)


MAX_EXPANDED_NODES = 100_000     # values of a document once its aliases (*name) are expanded


class YamlDocument:
    """Parsed YAML plus its node tree, to look up the line of any path."""

    def __init__(self, text: str, source: str):
        self.source = source
        try:
            self.root = _compose(text)
            _check_expanded_size(self.root, source)
            # the values built from that tree (parsed once)
            self.data: Any = _Loader("").construct_document(self.root) if self.root is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise InputError([Problem(source, line, "", f"not valid YAML: {exc.problem or exc}")]) from None
        except yaml.reader.ReaderError as exc:    # a control character: its line, and which one it is
            line = text.count("\n", 0, exc.position) + 1
            raise InputError([Problem(source, line, "", f"not valid YAML: the character U+{exc.character:04X} (a "
                                                        f"control character) is not allowed; remove it")]) from None
        except yaml.YAMLError as exc:             # any other refusal of PyYAML's, on one line
            raise InputError([Problem(source, None, "", f"not valid YAML: {' '.join(str(exc).split())}")]) from None
        except ValueError as exc:  # a value PyYAML recognises but cannot build, e.g. the date 2026-11-31
            found = _unbuildable(self.root, ())
            if found is None:
                raise InputError([Problem(source, None, "", str(exc))]) from None
            node, path = found
            raise InputError([Problem(source, node.start_mark.line + 1, _dotted(path),
                                      f"{node.value!r}: {exc}")]) from None
        self.duplicates = list(self._find_duplicates(self.root, (), set()))
        # dates and numbers past any plausible value (engine/limits.py), before they reach date arithmetic
        self.out_of_range = [self.problem(path, message) for path, message in limits.value_problems(self.data)]

    def _find_duplicates(self, node, path, seen_nodes: set[int]):
        if id(node) in seen_nodes:       # an alias of a node already looked at: its keys were checked there
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    yield Problem(self.source, key.start_mark.line + 1, _dotted(path + (name,)),
                                  "key given twice (the second would silently win)")
                seen.add(name)
                yield from self._find_duplicates(value, path + (name,), seen_nodes)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                yield from self._find_duplicates(item, path + (i,), seen_nodes)

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

    def bounded(self, problems: list[Problem]) -> list[Problem]:
        """``problems`` (a validation's), and each value out of range at a key they do not name."""
        named = {p.where for p in problems}
        return problems + [p for p in self.out_of_range if p.where not in named]

    def check_bounds(self) -> None:
        """InputError when a value is out of range (after a validation that passed: none named it)."""
        if self.out_of_range:
            raise InputError(self.out_of_range)

    def overflowed(self, exc: OverflowError) -> InputError:
        """A validation that overflowed (a date past the calendar): the values out of range say where."""
        return InputError(self.out_of_range or [Problem(self.source, None, "", f"a value out of range: {exc}")])


def _check_expanded_size(root, source: str) -> None:
    """Refuse a document whose aliases expand it beyond MAX_EXPANDED_NODES (a few aliases of aliases
    nested a few levels deep make billions of values out of a kilobyte): each node is sized once."""
    sizes: dict[int, int] = {}
    stack = [(root, False)] if root is not None else []
    while stack:                       # post-order without recursion: a node's size once its children's are known
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        size = 1 + sum(sizes[id(child)] for child in children)
        sizes[id(node)] = size
        if size > MAX_EXPANDED_NODES:
            raise InputError([Problem(source, node.start_mark.line + 1, "",
                                      f"aliases (*name) expand this value to more than {MAX_EXPANDED_NODES:,} "
                                      f"values; write it out, or alias less deeply")])


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _unbuildable(node, path: tuple, seen: set[int] | None = None):
    """The first scalar node (and its path) that PyYAML's safe constructor refuses, e.g. 2026-11-31."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return None
    seen.add(id(node))
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
        found = _unbuildable(child, child_path, seen)
        if found is not None:
            return found
    return None


def dotted_path(dotted: str) -> tuple | None:
    """("stages", 2, "id") for "stages[2].id"; None for anything that is not such a path."""
    if not re.fullmatch(r"[a-z_]+(\[\d+\])?(\.[A-Za-z0-9_-]+(\[\d+\])?)*", dotted):
        return None
    out: list = []
    for part in dotted.split("."):
        name, _, index = part.partition("[")
        out.append(name)
        if index:
            out.append(int(index.rstrip("]")))
    return tuple(out)


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
