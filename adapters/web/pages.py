"""The staff's pages (server-rendered, Jinja2): one router of the sign-in (auth.py), the desk
(desk.py, notices.py) and the overdue service's day (day.py); what a page answers when no one is
signed in or the role may not (``install``)."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse

from adapters.web import auth, day, desk, notices
from adapters.web.security import Forbidden, NotSignedIn
from adapters.web.views import page

router = APIRouter(include_in_schema=False)
for module in (auth, desk, notices, day):
    router.include_router(module.router)


def install(app: FastAPI) -> None:
    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn):
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return PlainTextResponse("sign in first", status_code=403)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return page(request, "error.html", 403, message=str(exc))
