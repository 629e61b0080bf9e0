"""Who is asking, and may they: the session cookie (or the trusted proxy's single sign-on header),
the CSRF token of every POST, the role's ``may`` (accounts.yaml), and the headers every response
carries. The JSON API under /api/ authenticates by its own tokens: nothing here signs it in."""
from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from adapters.web.context import WebContext
from service import staff
from service.staff import WebSession

COOKIE = "rappel_session"
LOGIN_CSRF = "rappel_login_csrf"

__all__ = ["COOKIE", "Forbidden", "NotSignedIn", "Staff", "allow", "context", "headers", "set_session_cookie",
           "signed_in"]

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
# the HTML part of a kept email, framed by the notice page only, with nothing it may run or fetch
SANDBOX_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


class NotSignedIn(Exception):
    """No live session (a page answers with the sign-in page, a POST with 403)."""


class Forbidden(Exception):
    """Signed in, but the role may not do this (or the form's CSRF token is wrong): 403."""

    def __init__(self, message: str):
        super().__init__(message)


def context(request: Request) -> WebContext:
    return request.app.state.rappel


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _lookup(request: Request) -> WebSession | None:
    ctx = context(request)
    at = ctx.clock()
    store = ctx.store()
    found = staff.find_session(store, request.cookies.get(COOKIE, ""), at=at, limits=ctx.limits)
    if ctx.sso_header and ctx.trusts(_address(request)):
        name = request.headers.get(ctx.sso_header, "").strip()
        if name and (found is None or found.name != name):
            if found is not None:
                staff.end_session(store, found)
            try:
                found = staff.sign_in_by_header(store, name, at=at, address=_address(request), limits=ctx.limits)
            except staff.SignInRefused as exc:
                raise Forbidden(str(exc)) from None
            request.state.new_session = found
    return found


async def signed_in(request: Request) -> WebSession:
    """The dependency of every page: the live session, and for a POST its CSRF token checked (the
    form's ``csrf_token`` field); the form is left in ``request.state.form``."""
    who = await run_in_threadpool(_lookup, request)
    if who is None:
        raise NotSignedIn()
    request.state.staff = who
    if request.method == "POST":
        form = await request.form()
        request.state.form = form
        sent = form.get("csrf_token") or request.headers.get("x-csrf-token") or ""
        if not isinstance(sent, str) or not secrets.compare_digest(sent, who.csrf_token):
            raise Forbidden("the form's security token is missing or stale: reload the page and try again")
    return who


Staff = Annotated[WebSession, Depends(signed_in)]


def allow(request: Request, who: WebSession, action: str) -> None:
    """Forbidden unless the role may ``action`` (accounts.yaml ``may:``, AccountsPolicy.may)."""
    if not context(request).rules().accounts.may(who.role, action):
        raise Forbidden(f"the role {who.role} may not do this ({action})")


def set_session_cookie(response, ctx: WebContext, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, secure=ctx.secure_cookies, samesite="strict", path="/",
                        max_age=int(ctx.limits.absolute.total_seconds()))


def headers(request: Request, response) -> None:
    """The headers of every response; pages with personal data are never cached."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if not request.url.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    new = getattr(request.state, "new_session", None)
    if new is not None and new.token:
        set_session_cookie(response, context(request), new.token)
