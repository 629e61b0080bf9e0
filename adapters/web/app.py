"""The application: ``create_app(context)`` for uvicorn (`rappel serve`) and for tests."""
from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from adapters.web import api, i18n, pages
from adapters.web.context import WebContext, networks
from adapters.web.security import headers

STATIC = Path(__file__).parent / "static"


SETTINGS = "RAPPEL_SERVE_SETTINGS"    # what `rappel serve --workers N` hands to each worker process


def settings_of(context: WebContext) -> str:
    """The context's settings as one environment value (no secret: the database URL as given, which is
    None when it comes from $RAPPEL_DB_URL, read again by each worker)."""
    return json.dumps({"rules_dir": str(context.rules_dir), "db_url": context.db_url, "outbox": str(context.outbox),
                       "state_dir": None if context.state_dir is None else str(context.state_dir),
                       "sso_header": context.sso_header, "trusted_proxies": [str(n) for n in context.trusted_proxies],
                       "secure_cookies": context.secure_cookies})


def from_environment() -> FastAPI:
    """The application of one worker process of `rappel serve --workers N` (uvicorn's factory)."""
    given = json.loads(os.environ[SETTINGS])
    context = WebContext(Path(given["rules_dir"]), given["db_url"], Path(given["outbox"]),
                         None if given["state_dir"] is None else Path(given["state_dir"]),
                         sso_header=given["sso_header"], trusted_proxies=networks(given["trusted_proxies"]),
                         secure_cookies=given["secure_cookies"])
    return create_app(context)


def create_app(context: WebContext) -> FastAPI:
    i18n.load_all()

    @asynccontextmanager
    async def lifespan(_app):
        yield
        context.close()

    app = FastAPI(title="rappel", summary="Loan reminders for libraries: the staff interface and its JSON API",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.rappel = context
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)
    pages.install(app)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        headers(request, response)
        return response

    return app
