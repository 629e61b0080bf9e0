"""Signing in and out, and the language switch: the only pages open without a session.

The sign-in form carries a CSRF token of its own (a cookie and the same value in the form: a page
of another site cannot read it); a sign-in always makes a new session, and the one the browser
presented, if any, is ended (no fixation). Failed sign-ins are rate-limited (429)."""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from adapters.web import i18n
from adapters.web.security import COOKIE, LOGIN_CSRF, Staff, context, set_session_cookie
from adapters.web.views import page
from service import staff

router = APIRouter(include_in_schema=False)


def _safe_next(value: str | None) -> str:
    """Only a path of this site (never //other.example or a scheme)."""
    if not value or not value.startswith("/") or value.startswith("//") or urlsplit(value).scheme:
        return "/"
    return value


def _login_page(request: Request, status: int = 200, error: str = "", name: str = "", nxt: str = "/") -> Response:
    token = request.cookies.get(LOGIN_CSRF) or secrets.token_urlsafe(32)
    response = page(request, "login.html", status, csrf=token, error=error, name=name, next=_safe_next(nxt))
    response.set_cookie(LOGIN_CSRF, token, httponly=True, secure=context(request).secure_cookies,
                        samesite="strict", path="/login")
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/"):
    return _login_page(request, nxt=next)


@router.post("/login")
async def login(request: Request):
    form = await request.form()
    ctx = context(request)
    tr = i18n.translations(i18n.language_of(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language")))
    expected = request.cookies.get(LOGIN_CSRF, "")
    sent = form.get("csrf_token", "")
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    if not expected or not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
        return _login_page(request, 403, tr.gettext("The form's security token is missing or stale: try again."),
                           name, nxt)
    address = request.client.host if request.client else ""
    store = ctx.store()

    def attempt():
        old = staff.find_session(store, request.cookies.get(COOKIE, ""), at=ctx.clock(), limits=ctx.limits)
        if old is not None:
            staff.end_session(store, old)
        return staff.sign_in(store, name, password, at=ctx.clock(), address=address, limits=ctx.limits)

    try:
        session = await run_in_threadpool(attempt)
    except staff.RateLimited:
        return _login_page(request, 429, tr.gettext("Too many failed sign-ins: wait 15 minutes, then try again."),
                           name, nxt)
    except staff.SignInRefused:
        return _login_page(request, 401, tr.gettext("Wrong name or password."), name, nxt)
    response = RedirectResponse(nxt, status_code=303)
    set_session_cookie(response, ctx, session.token)
    response.delete_cookie(LOGIN_CSRF, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, who: Staff):
    staff.end_session(context(request).store(), who)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "/"):
    response = RedirectResponse(_safe_next(next), status_code=303)
    if code in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, code, max_age=365 * 86400, samesite="lax", path="/",
                            secure=context(request).secure_cookies)
    return response
