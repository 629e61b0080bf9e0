"""Jinja's immutable sandbox with limits: a template may not take more than its share of memory or time.

The sandbox already keeps a template away from Python's internals; an administrator's typing
mistake can still ask for a billion characters (``{{ 'x' * 10**9 }}``), a 10 MB body or a hundred
million loop turns. Here each rendering of a part (subject, text, HTML…) has a budget, the
policy's ``templates:`` (engine/limits.py): its size (max_part_bytes) and its time
(max_render_seconds). String and list multiplication, ``**``, ``%`` formatting and any call or
filter given a number past the size limit are refused before they run; every loop turn and every
piece of output is counted against the deadline and the size. Over budget: ``TemplateLimit``, at
lint (the template's file and line) as at send time.
"""
from __future__ import annotations

import functools
import operator
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass

from jinja2 import Template, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.limits import TemplateLimits

__all__ = ["LimitedSandbox", "TemplateLimit"]

LOOP_GUARD = "rappel_loop_guard"      # the filter every {% for %} iterates through
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(\*|\d{7,})|\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")


class TemplateLimit(Exception):
    """A template rendering past its size or time budget (the policy's templates:)."""


@dataclass
class _Budget:
    limits: TemplateLimits
    deadline: float

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimit(f"rendering took longer than {self.limits.max_render_seconds:g} s "
                                f"(templates.max_render_seconds in reminders.yaml)")

    def check_size(self, size: int) -> None:
        if size > self.limits.max_part_bytes:
            raise TemplateLimit(f"the rendered text would be longer than {self.limits.max_part_bytes:,} bytes "
                                f"(templates.max_part_bytes in reminders.yaml)")


_budget: ContextVar[_Budget | None] = ContextVar("rappel_template_budget", default=None)


class _LimitedTemplate(Template):
    def render(self, *args, **kwargs) -> str:
        ctx = self.new_context(dict(*args, **kwargs))
        budget = _Budget(self.environment.limits, time.monotonic() + self.environment.limits.max_render_seconds)
        token = _budget.set(budget)
        try:
            # a character is at most 4 bytes: the bytes are counted once the text could be too long
            out, chars, size, bound = [], 0, None, budget.limits.max_part_bytes // 4
            deadline = budget.deadline
            for chunk in self.root_render_func(ctx):
                if size is None:
                    chars += len(chunk)
                    if chars > bound:
                        size = sum(len(c.encode("utf-8", "surrogatepass")) for c in out)
                if size is not None:
                    size += len(chunk.encode("utf-8", "surrogatepass"))
                    budget.check_size(size)
                if time.monotonic() > deadline:
                    budget.check_time()
                out.append(chunk)
            return self.environment.concat(out)
        except Exception:
            self.environment.handle_exception()
        finally:
            _budget.reset(token)

    def make_module(self, vars=None, shared=False, locals=None):
        budget = _Budget(self.environment.limits, time.monotonic() + self.environment.limits.max_render_seconds)
        token = _budget.set(budget)
        try:
            return super().make_module(vars, shared, locals)
        finally:
            _budget.reset(token)


def _guarded(iterable):
    budget = _budget.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.check_time()
        yield item


def _size_of(value) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, each rendering within ``limits`` (see the module's doc)."""

    template_class = _LimitedTemplate
    intercepted_binops = frozenset(["*", "**", "%"])

    def __init__(self, *args, limits: TemplateLimits | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits or TemplateLimits()
        self.filters = {name: self._bounded(f) for name, f in self.filters.items()}
        self.filters[LOOP_GUARD] = _guarded

    def _parse(self, source, name, filename):
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):      # every loop turn counted against the deadline
            loop.iter = nodes.Filter(loop.iter, LOOP_GUARD, [], [], None, None, lineno=loop.iter.lineno)
        return tree

    def _refuse_numbers(self, values) -> None:
        for value in values:
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > self.limits.max_part_bytes:
                raise TemplateLimit(f"{value:,} is more than a template may ask for "
                                    f"(templates.max_part_bytes: {self.limits.max_part_bytes:,})")
            if isinstance(value, str) and _WIDE_FORMAT.search(value):
                raise TemplateLimit("a format width of millions of characters")

    def _bounded(self, f):
        skip = 2 if getattr(f, "jinja_pass_arg", None) else 1      # the context, and the filtered value

        @functools.wraps(f)
        def bounded(*args, **kwargs):
            self._refuse_numbers(args[skip:])
            self._refuse_numbers(kwargs.values())
            return f(*args, **kwargs)
        return bounded

    def call_binop(self, context, op, left, right):
        budget = _budget.get()
        if budget is not None:
            budget.check_time()
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                if _size_of(seq) and isinstance(times, int) and _size_of(seq) * times > self.limits.max_part_bytes:
                    raise TemplateLimit(f"a text or list {_size_of(seq):,} × {times:,} long is more than "
                                        f"templates.max_part_bytes ({self.limits.max_part_bytes:,})")
        elif op == "**" and isinstance(right, int) and right > 64 and left not in (0, 1, -1):
            raise TemplateLimit(f"** {right}: powers of at most 64")
        elif op == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise TemplateLimit("a format width of millions of characters")
        return {"*": operator.mul, "**": operator.pow, "%": operator.mod}[op](left, right)

    def wrap_str_format(self, value):
        if isinstance(getattr(value, "__self__", None), str) and _WIDE_FORMAT.search(value.__self__):
            def refused(*args, **kwargs):
                raise TemplateLimit("a format width of millions of characters")
            return refused
        return super().wrap_str_format(value)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        budget = _budget.get()
        if budget is not None:
            budget.check_time()
        __self._refuse_numbers(args)
        __self._refuse_numbers(kwargs.values())
        return super().call(__context, __obj, *args, **kwargs)
