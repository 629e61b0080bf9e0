"""Every name a template uses, checked without rendering it: whatever the branch.

Rendering a sample notice (adapters/render/lint.py) only reaches the branches the sample takes: an
``{% if loan.days_overdue > 30 %}{{ patron.nickname }}{% endif %}`` renders fine for the sample
and fails for the patron whose loan is 31 days late. This walk reads the template's syntax tree
instead and names every variable it uses that rappel does not give it — a top-level name
(``nickname``) or a field of one of rappel's dicts (``patron.nickname``), also through a loop over
one of its lists (``{% for loan in triggered %}{{ loan.titel }}``) — with its line.

Names the template sets itself (``{% set %}`` of its own values, loop variables over anything else,
macro arguments) are its own business: only what comes from rappel is checked, also under another
name (``{% set who = patron %}``).
"""
from __future__ import annotations

from jinja2 import meta, nodes

from adapters.render.sandbox import LOOP_GUARD

__all__ = ["unknown_names"]

_IMPLICIT = {"loop", "self", "super", "caller", "varargs", "kwargs"}
_DICT_METHODS = {"items", "keys", "values", "get"}
_SAME_LIST = {"sort", "reverse", "list", "selectattr", "rejectattr", "unique", LOOP_GUARD}   # they keep the items


def unknown_names(env, name: str, known: set[str], lists: dict[str, str]) -> list[tuple[str, int, str]]:
    """(file, line, dotted name) of every name template ``name`` of ``env`` uses that is not ``known``.

    ``known``: the dotted names rappel gives the template (TEMPLATE_VARIABLES' keys…); ``lists``:
    the lists among them and what their items are named (LIST_ITEMS). A syntax error raises
    TemplateSyntaxError (lint reports those already)."""
    source, filename, _ = env.loader.get_source(env, name)
    tree = env.parse(source, name, filename)
    walk = _Walk(known, lists, meta.find_undeclared_variables(tree), set(env.globals) | _IMPLICIT)
    walk.resolve(tree, {})
    return [(filename or name, line, dotted) for line, dotted in dict.fromkeys(walk.found)]


class _Walk:
    def __init__(self, known: set[str], lists: dict[str, str], undeclared: set[str], allowed: set[str]):
        self.known, self.lists, self.undeclared, self.allowed = known, lists, undeclared, allowed
        self.dicts = {n.rsplit(".", 1)[0] for n in known if "." in n}   # names whose fields are known
        self.found: list[tuple[int, str]] = []

    def resolve(self, node: nodes.Node, scope: dict) -> str | None:
        """The dotted name ``node`` stands for (``patron``, ``loan.title``), None when not rappel's;
        reports the unknown ones on the way."""
        if isinstance(node, nodes.Name):
            return self._name(node, scope)
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            return self._field(node, scope)
        if isinstance(node, nodes.For):
            return self._for(node, scope)
        if isinstance(node, (nodes.Macro, nodes.CallBlock)):
            inner = dict(scope)
            for arg in getattr(node, "args", []):
                inner[arg.name] = None
            for child in node.iter_child_nodes():
                self.resolve(child, inner)
            return None
        if isinstance(node, (nodes.Assign, nodes.AssignBlock)):
            value = None
            for child in node.iter_child_nodes(exclude=("target",)):
                value = self.resolve(child, scope)
            for target in _names(node.target):
                scope[target.name] = None
            if isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
                scope[node.target.name] = value     # {% set who = patron %}: who.nickname is patron.nickname
            return None
        if isinstance(node, nodes.Filter) and node.name in _SAME_LIST and node.node is not None:
            for arg in [*node.args, *node.kwargs]:
                self.resolve(arg, scope)
            return self.resolve(node.node, scope)
        for child in node.iter_child_nodes():
            self.resolve(child, scope)
        return None

    def _name(self, node: nodes.Name, scope: dict) -> str | None:
        if node.ctx != "load":
            return None
        if node.name in scope:
            return scope[node.name]
        if node.name not in self.undeclared or node.name in self.allowed:
            return None          # the template's own (a {% set %} elsewhere), or Jinja's
        if node.name in self.known:
            return node.name
        self.found.append((node.lineno, node.name))
        return None

    def _field(self, node, scope: dict) -> str | None:
        if isinstance(node, nodes.Getitem):
            self.resolve(node.arg, scope)
            if not (isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)):
                self.resolve(node.node, scope)
                return None
            attr = node.arg.value
        else:
            attr = node.attr
        base = self.resolve(node.node, scope)
        if base is None or base not in self.dicts or attr in _DICT_METHODS:
            return None          # not rappel's, or a value whose own attributes are Python's (a date's .year)
        dotted = f"{base}.{attr}"
        if dotted not in self.known:
            self.found.append((node.lineno, dotted))
            return None
        return dotted

    def _for(self, node: nodes.For, scope: dict) -> None:
        items = self.resolve(node.iter, scope)
        inner = dict(scope)
        for target in _names(node.target):
            inner[target.name] = None
        if isinstance(node.target, nodes.Name) and items in self.lists:
            inner[node.target.name] = self.lists[items]
        for child in (*node.body, *([node.test] if node.test else [])):
            self.resolve(child, inner)
        for child in node.else_:
            self.resolve(child, scope)
        return None


def _names(target: nodes.Node) -> list[nodes.Name]:
    """The names a target (``loan``, ``key, value``) binds."""
    return [target] if isinstance(target, nodes.Name) else list(target.find_all(nodes.Name))
