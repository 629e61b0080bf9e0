"""A notice at the desk: what was sent, every attempt and reply, the exact message (an email's
text, its HTML only inside a sandboxed frame; a letter's PDF), and resend / cancel / retry, each
audited with the staff member's name (service/notices.py, as `rappel notices`)."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapters.render.stored import html_part
from adapters.store.sent import EMAIL_TYPE
from adapters.web.security import SANDBOX_CSP, Staff, allow, context
from adapters.web.views import page
from engine.yamlsource import InputError
from service import notices
from service.session import Refused

router = APIRouter(include_in_schema=False)


def _detail(request: Request, key: str):
    try:
        return notices.show(context(request).store(), key)
    except InputError:
        return None


@router.get("/notice")
def notice(request: Request, who: Staff, key: str):
    return _notice_page(request, who, key)


def _notice_page(request: Request, who, key: str, error: str = "", status: int = 200):
    allow(request, who, "notices.view")
    detail = _detail(request, key)
    if detail is None:
        return page(request, "error.html", 404, message=f"no notice {key!r}")
    return page(request, "notice.html", status, detail=detail, v=detail.notice, r=detail.notice.row,
                readable=detail.readable(), error=error,
                has_html=detail.data is not None and detail.notice.message["media_type"] == EMAIL_TYPE
                and html_part(detail.data) is not None)


@router.get("/notice/message.html")
def notice_html(request: Request, who: Staff, key: str):
    """The email's HTML part, for the notice page's sandboxed frame only: no script runs, nothing
    is fetched (Content-Security-Policy: sandbox)."""
    allow(request, who, "notices.view")
    detail = _detail(request, key)
    html = html_part(detail.data) if detail is not None and detail.data is not None \
        and detail.notice.message["media_type"] == EMAIL_TYPE else None
    if html is None:
        return Response("no HTML part", status_code=404, media_type="text/plain")
    return HTMLResponse(html, headers={"Content-Security-Policy": SANDBOX_CSP, "X-Frame-Options": "SAMEORIGIN"})


@router.get("/notice/message.pdf")
def notice_pdf(request: Request, who: Staff, key: str):
    allow(request, who, "notices.view")
    detail = _detail(request, key)
    if detail is None or detail.data is None or detail.notice.message["media_type"] != "application/pdf":
        return Response("no letter kept", status_code=404, media_type="text/plain")
    name = (detail.notice.message["filename"] or "letter.pdf").replace('"', "")
    return Response(detail.data, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _act(request: Request, who, action: str):
    allow(request, who, "notices.act")
    ctx = context(request)
    form = request.state.form
    key, why, to = str(form.get("key", "")), str(form.get("why", "")), str(form.get("to", "")).strip() or None
    back = str(form.get("back", ""))
    try:
        if action == "resend":
            with ctx.installation(channel=True, guard=True) as inst:
                result = notices.resend(inst.store, inst.policy, inst.channel, key, actor=who.name, why=why,
                                        at=ctx.clock(), to=to)
            if not result.delivery.ok:
                raise Refused(f"resent and recorded, but not delivered: {result.delivery.detail}")
        elif action == "cancel":
            notices.cancel(ctx.store(), key, actor=who.name, why=why, at=ctx.clock())
        else:
            policy = ctx.rules().policy
            report = notices.retry(ctx.store(), policy, keys=[key], actor=who.name, why=why, at=ctx.clock(),
                                   as_of=ctx.clock().astimezone(policy.tz).date())
            if report.skipped:
                raise Refused("; ".join(reason for _, reason in report.skipped))
    except (InputError, Refused) as exc:
        text = "; ".join(str(p.message) for p in exc.problems) if isinstance(exc, InputError) else str(exc)
        return _notice_page(request, who, key, error=text, status=409)
    done = {"resend": "resent", "cancel": "cancelled", "retry": "retried"}[action]
    if back.startswith("/") and not back.startswith("//"):
        return RedirectResponse(f"{back}{'&' if '?' in back else '?'}done={done}", status_code=303)
    return RedirectResponse(f"/notice?key={quote(key, safe='')}", status_code=303)


@router.post("/notice/resend")
def resend(request: Request, who: Staff):
    return _act(request, who, "resend")


@router.post("/notice/cancel")
def cancel(request: Request, who: Staff):
    return _act(request, who, "cancel")


@router.post("/notice/retry")
def retry(request: Request, who: Staff):
    return _act(request, who, "retry")
