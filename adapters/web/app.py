"""The application: ``create_app(context)`` for uvicorn (`rappel serve`) and for tests."""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from adapters.web import api, i18n, pages
from adapters.web.context import WebContext
from adapters.web.security import headers

STATIC = Path(__file__).parent / "static"


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
