"""What every route of the JSON API shares: the client behind the token, the role's actions, and
error bodies. Every error is JSON, ``{"errors": [{"field": …, "message": …}]}``: 401 without a valid
token, 403 for a role without the action, 404 for what does not exist, 409 when the installation
refuses (the guard, the lease, stale facts, a notice in the wrong state), 422 for a body, query or
path that is wrong (FastAPI's own validation errors reshaped to the same body).

The routes use ``ApiRoute``, which turns the service's exceptions into those answers: a route
raises what the service raises, never builds an error itself.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.store.database import DatabaseNotReady, Store
from adapters.store.patrons import AmbiguousPatron, UnknownPatron
from adapters.web.api_models import Errors
from engine.yamlsource import InputError
from service import api_clients, session
from service.api_clients import Client
from service.notices import UnknownNotice
from service.patrons import EditRefused
from service.pushes import PushRefused, UnknownLoan

__all__ = ["ApiError", "ApiRoute", "Call", "ERRORS", "caller"]

bearer = HTTPBearer(auto_error=False, description="A client's token (rappel api-client add NAME --role ROLE)")


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str = "", *, errors: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.errors = errors if errors is not None else [{"field": field, "message": message}]


def _body(status: int, errors: list[dict]) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


def _where(loc) -> str:
    """FastAPI's location of a validation error (("body", "due_date"), ("query", "limit")) as a field name."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts)


def _answer(exc: Exception) -> JSONResponse | None:
    if isinstance(exc, ApiError):
        return _body(exc.status, exc.errors)
    if isinstance(exc, RequestValidationError):
        return _body(422, [{"field": _where(e.get("loc", ())), "message": e.get("msg", "invalid")}
                           for e in exc.errors()])
    if isinstance(exc, PushRefused):
        return _body(422, [e.as_dict() for e in exc.errors])
    if isinstance(exc, EditRefused):
        errors = [{"field": d.request.field, "message": f"refused: {d.reason}" + (f" ({d.where})" if d.where else "")}
                  for d in exc.decisions if not d.allowed]
        errors += [{"field": name, "message": message} for name, message in exc.problems.items()]
        return _body(422, errors)
    if isinstance(exc, (UnknownPatron, UnknownLoan)):
        status = 409 if isinstance(exc, AmbiguousPatron) else 404
        what = "loan" if isinstance(exc, UnknownLoan) else "patron"
        return _body(status, [{"field": what, "message": str(exc) if what == "patron" else f"no loan {exc}"}])
    if isinstance(exc, UnknownNotice):
        return _body(409 if exc.ambiguous else 404, [{"field": "key", "message": exc.problems[0].message}])
    if isinstance(exc, InputError):
        return _body(422, [_problem(p) for p in exc.problems])
    if isinstance(exc, session.Refused):
        return _body(422 if exc.code == 2 else 409, [{"field": "", "message": str(exc)}])
    if isinstance(exc, DatabaseNotReady):
        return _body(503, [{"field": "", "message": str(exc)}])
    return None


def _problem(p) -> dict:
    """A service's Problem as an error item: the command line's option (--status) is the query's
    field (status); a notice key or a patron given is the path's."""
    if p.source.startswith("--"):
        return {"field": p.where or p.source[2:], "message": p.message}
    return {"field": p.where if p.where and not p.where.startswith("row ") else "",
            "message": p.message if p.source in ("", p.where) else f"{p.source}: {p.message}"}


def _has_nul(request: Request, body: bytes) -> bool:
    """A NUL character anywhere (PostgreSQL keeps none in text): refused before it reaches a query."""
    values = [*request.query_params.values(), *map(str, request.path_params.values())]
    return any("\x00" in v for v in values) or b"\\u0000" in body or b"\x00" in body


class ApiRoute(APIRoute):
    """A route whose errors are the API's JSON bodies (see the module's doc)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request):
            try:
                body = await request.body()
                if _has_nul(request, body):
                    return _body(422, [{"field": "", "message": "a NUL character (\\u0000) is never a valid value"}])
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - the service's refusals as JSON; the rest goes on up
                response = _answer(exc)
                if response is None:
                    raise
                return response

        return answer


@dataclass
class Call:
    """One authenticated request: the client, the rules as they are now, the clock, the store."""

    request: Request
    client: Client
    rules: session.Rules
    store: Store
    now: dt.datetime

    @property
    def context(self):
        return self.request.app.state.rappel

    @property
    def policy(self):
        return self.rules.policy

    @property
    def accounts(self):
        return self.rules.accounts

    @property
    def actor(self) -> str:
        return self.client.actor

    @property
    def today(self) -> dt.date:
        return self.now.astimezone(self.policy.tz).date()

    @contextmanager
    def installation(self, *, guard: bool = False, lease: bool = False) -> Iterator[session.Installation]:
        """The store with the policy's channels (and the guard, the lease), as the command line opens them."""
        c = self.context
        with session.installation(self.rules, c.db_url, channel=True, outbox=c.outbox, guard=guard, lease=lease,
                                  state_dir=c.state_dir, env=c.env, clock=c.clock, nothing="nothing sent") as inst:
            yield inst


def _store(request: Request) -> Store:
    """The application's database: the one the pages use too (WebContext.store)."""
    return request.app.state.rappel.store()


def close(app) -> None:
    """Close the database of ``app`` (its tests; a server ends with its process)."""
    app.state.rappel.close()


def caller(action: str) -> Callable:
    """The dependency of a route doing ``action`` (accounts.yaml's may:): 401 without an enabled
    client's token, 403 when its role may not."""

    def dependency(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Call:
        context = request.app.state.rappel
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise ApiError(401, "give a client's token: Authorization: Bearer <token>", "Authorization")
        store = _store(request)
        now = context.clock()
        client = api_clients.authenticate(store, credentials.credentials, now)
        if client is None:
            raise ApiError(401, "this token is not an enabled client's (rappel api-client list)", "Authorization")
        try:
            rules = context.rules()     # read again when a file of the folder changed
        except InputError as exc:
            raise ApiError(503, f"the rules cannot be read, nothing done: {exc.problems[0]}") from None
        if not rules.accounts.may(client.role, action):
            raise ApiError(403, f"the role {client.role} may not {action} (accounts.yaml, roles: "
                                f"{client.role}: may:)")
        return Call(request, client, rules, store, now)

    dependency.__name__ = f"may_{action.replace('.', '_')}"
    return dependency


ERRORS = {status: {"model": Errors, "description": text} for status, text in (
    (401, "No valid token"), (403, "The client's role may not do this"), (404, "No such thing"),
    (409, "Refused as things are"), (422, "A field is wrong"))}
