"""Every route of the staff application as (method, path), for the security tests that walk them
all (tests/test_web_security.py for the pages, tests/test_api_security.py for the API): a route
added without a row in their tables fails them."""
from __future__ import annotations


def _walk(routes):
    """FastAPI may keep an included router as one entry of app.routes (its routes built lazily, as
    mounted, by ``effective_candidates``), or copy its routes there: both are followed."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from _walk(route.effective_candidates())
        else:
            yield route


def app_routes(app) -> set[tuple[str, str]]:
    out = set()
    for route in _walk(app.routes):
        path = getattr(route, "path", "")
        methods = getattr(getattr(route, "original_route", route), "methods", None) or ()
        out.update((method, path) for method in methods)
    return out
