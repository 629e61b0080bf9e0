"""The application: ``create_app(context)`` for uvicorn (`rappel serve`) and for tests."""
from __future__ import annotations

from fastapi import FastAPI

from adapters.web import api, pages
from adapters.web.context import WebContext


def create_app(context: WebContext) -> FastAPI:
    app = FastAPI(title="rappel", summary="Loan reminders for libraries: the staff interface and its JSON API")
    app.state.rappel = context
    app.include_router(pages.router)
    app.include_router(api.router)
    return app
