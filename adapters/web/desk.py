"""Patron services at the desk: search by barcode or name, the patron's page (identity, account
and record type, each field editable or owned by the source, loans, requests, notices), the edit
(all or nothing, through service.patrons.edit: the engine's decisions, as at the command line),
and the requests report through the policy's delivery."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from adapters.store import staff as staff_rows
from adapters.store.patrons import UnknownPatron
from adapters.web.security import Staff, allow, context
from adapters.web.views import page
from engine.yamlsource import InputError
from service import lookup, patrons
from service.session import Refused

router = APIRouter(include_in_schema=False)

DONE = ("saved", "report", "nothing", "resent", "cancelled", "retried")


def today(ctx):
    return ctx.clock().astimezone(ctx.rules().policy.tz).date()


@router.get("/")
def search(request: Request, who: Staff, q: str = ""):
    allow(request, who, "patrons.view")
    ctx = context(request)
    found, more = lookup.search(ctx.store(), q, 50) if q.strip() else ([], False)
    if q.strip() and len(found) == 1 and not more:
        return RedirectResponse(f"/patrons/{quote(found[0].barcode, safe='')}", status_code=303)
    return page(request, "search.html", q=q, found=found, more=more)


def _patron_page(request: Request, who, ident: str, *, status: int = 200, errors: dict | None = None,
                 values: dict | None = None, message: str = "", done: str = ""):
    allow(request, who, "patrons.view")
    ctx = context(request)
    rules = ctx.rules()
    try:
        view = patrons.show(ctx.store(), rules.accounts, ident, today(ctx), who.role, decide=ctx.decide_edits)
    except UnknownPatron as exc:
        return page(request, "error.html", 404, message=str(exc))
    notices_view = rules.accounts.may(who.role, "notices.view")
    return page(request, "patron.html", status, view=view, p=view.patron, errors=errors or {},
                values=values or {}, message=message, done=done if done in DONE else "",
                show_notices=notices_view, hint=rules.accounts.external.hint, n=request.query_params.get("n", ""))


@router.get("/patrons/{ident}")
def patron(request: Request, who: Staff, ident: str, done: str = ""):
    return _patron_page(request, who, ident, done=done)


@router.post("/patrons/{ident}/edit")
def edit(request: Request, who: Staff, ident: str):
    allow(request, who, "patrons.edit")
    ctx = context(request)
    rules = ctx.rules()
    form = request.state.form
    store = ctx.store()
    try:
        current = patrons.show(store, rules.accounts, ident, today(ctx), decide=ctx.decide_edits)
    except UnknownPatron as exc:
        return page(request, "error.html", 404, message=str(exc))
    asked = {f.name: str(form.get(f"field.{f.name}")) for f in current.fields
             if f.ownership != "identity" and form.get(f"field.{f.name}") is not None}
    changes = {name: value for name, value in asked.items() if value.strip() != getattr(current.patron, name)}
    if not changes:
        return RedirectResponse(f"/patrons/{quote(current.patron.barcode, safe='')}?done=nothing", status_code=303)
    try:
        result = patrons.edit(store, rules.accounts, ident, who.role, who.name, changes, ctx.clock(),
                                  policy=rules.policy)
    except patrons.EditRefused as exc:
        errors = {d.request.field: f"{d.reason} — {d.where}" for d in exc.decisions if not d.allowed}
        errors.update(exc.problems)
        return _patron_page(request, who, ident, status=422, errors=errors, values=asked)
    except InputError as exc:
        errors = {p.where or "form": p.message for p in exc.problems}
        return _patron_page(request, who, ident, status=422, errors=errors, values=asked)
    return RedirectResponse(f"/patrons/{quote(result.patron.barcode, safe='')}?done=saved&n={len(result.changed)}",
                            status_code=303)


@router.post("/patrons/{ident}/requests-report")
def requests_report(request: Request, who: Staff, ident: str):
    allow(request, who, "requests.report")
    ctx = context(request)
    try:
        with ctx.installation(channel=True, guard=True) as inst:
            at = ctx.clock().astimezone(inst.policy.tz)
            result = patrons.requests_report(inst.store, inst.policy, inst.accounts, inst.rules.folder, inst.channel,
                                             ident, today(ctx), at)
            if result.notice is not None:
                staff_rows.audit(inst.store, at=at, actor=who.name, action="requests_report",
                                 patron_id=result.patron.patron_id,
                                 detail=f"{len(result.requests)} request(s) to {result.patron.email}: "
                                        f"{'sent' if result.delivery.ok else result.delivery.detail}")
    except UnknownPatron as exc:
        return page(request, "error.html", 404, message=str(exc))
    except (InputError, Refused) as exc:
        text = "; ".join(p.message for p in exc.problems) if isinstance(exc, InputError) else str(exc)
        return _patron_page(request, who, ident, status=409, message=text)
    if result.notice is None:
        return RedirectResponse(f"/patrons/{quote(result.patron.barcode, safe='')}?done=nothing", status_code=303)
    if not result.delivery.ok:
        return _patron_page(request, who, ident, status=502, message=result.delivery.detail)
    return RedirectResponse(f"/patrons/{quote(result.patron.barcode, safe='')}?done=report&n={len(result.requests)}",
                            status_code=303)
