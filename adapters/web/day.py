"""The overdue service's day: the last runs and the next, the day's notices by stage and channel,
the failed, retrying and held ones with their reasons (confirm past the flood guard, retry,
cancel), the letters to print as one PDF, a dry run of any date with the explanation of a loan,
and the policy's timeline drawn."""
from __future__ import annotations

import datetime as dt
from collections import Counter

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from adapters.web.security import Staff, allow, context
from adapters.web.views import page
from engine.requests import window as req_window
from engine.yamlsource import InputError
from service import checks, day as days, dayview, letters, notices, session, status
from service.session import Refused

router = APIRouter(include_in_schema=False)


def _date(text: str | None, default: dt.date) -> dt.date:
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return default


def _timeline(policy, lang: str) -> str | None:
    try:
        from adapters.render.timeline import timeline_svg
    except ImportError:       # drawn by adapters/render/timeline.py where it is present
        return None
    return timeline_svg(policy, lang=lang)


@router.get("/day")
def day_page(request: Request, who: Staff, on: str = "", done: str = "", error: str = ""):
    allow(request, who, "day.view")
    ctx = context(request)
    rules = ctx.rules()
    store = ctx.store()
    now = ctx.clock()
    today = now.astimezone(rules.policy.tz).date()
    shown = _date(on, today)
    report = status.status_report(store, rules.folder, now, state_dir=ctx.state_dir, env=ctx.env)
    listed = notices.listing(store, since=shown, until=shown, limit=2000).notices
    counts = Counter((v.row["stage"], v.row["channel"], v.row["status"]) for v in listed)
    by_stage: dict[tuple[str, str], dict[str, int]] = {}
    for (stage, channel, state), n in sorted(counts.items()):
        by_stage.setdefault((stage, channel), {})[state] = n
    failed = notices.listing(store, status="failed", limit=100).notices
    pending = notices.listing(store, status="pending", limit=200).notices
    retrying = [v for v in pending if v.row["attempts"]]
    held_by_guard = any("flood guard" in a for a in report["alerts"])
    waiting = [v for v in pending if not v.row["attempts"]]
    from adapters.web.views import language
    to_print = letters.letters_to_print(store, on=shown, tz=rules.policy.tz)
    libraries = sorted({x.library or "" for x in to_print})
    return page(request, "day.html", report=report, shown=shown, today=today, by_stage=by_stage,
                failed=failed, retrying=retrying, waiting=waiting, held_by_guard=held_by_guard,
                to_print=to_print, libraries=libraries, timeline=_timeline(rules.policy, language(request)),
                stages=rules.policy.stages,
                request_stages=[(s, req_window(rules.policy, s)) for s in rules.policy.request_stages], done=done if done in ("confirmed",) else "", error=error)


@router.get("/day/letters.pdf")
def letters_pdf(request: Request, who: Staff, on: str = "", library: str = ""):
    allow(request, who, "day.view")
    ctx = context(request)
    policy = ctx.rules().policy
    shown = _date(on, ctx.clock().astimezone(policy.tz).date())
    refs = letters.letters_to_print(ctx.store(), on=shown, library=library or None, tz=policy.tz)
    if not refs:
        return page(request, "error.html", 404, message=f"no letter handed over on {shown}"
                                                        + (f" for {library}" if library else ""))
    data = letters.merged_letters_pdf(ctx.store(), [x.key for x in refs])
    name = f"letters-{shown}{'-' + library if library else ''}.pdf".replace('"', "")
    return Response(data, media_type="application/pdf", headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/day/confirm")
def confirm(request: Request, who: Staff):
    """Past the flood guard: today's run, confirmed (`rappel run --confirm`), under the daemon's lease."""
    allow(request, who, "day.act")
    ctx = context(request)
    rules = ctx.rules()
    why = str(request.state.form.get("why", "")).strip()
    if not why:
        return day_page(request, who, error="say why, for the audit trail")
    as_of = ctx.clock().astimezone(rules.policy.tz).date()
    from adapters.store import staff as staff_rows
    try:
        with session.installation(rules, ctx.db_url, channel=True, outbox=ctx.outbox, guard=True, lease=True,
                                  state_dir=ctx.state_dir, env=ctx.env, clock=ctx.clock) as inst:
            result = days.run_recorded(inst.store, inst.policy, inst.templates, inst.channel, as_of, clock=ctx.clock,
                                       holder=inst.lease.holder, confirm=True)
        sent = sum(o.status == "sent" for o in result.outcomes)
        staff_rows.audit(ctx.store(), at=ctx.clock(), actor=who.name, action="confirm", why=why,
                         detail=f"run of {as_of} confirmed past the flood guard: {sent} of "
                                f"{len(result.outcomes)} sent")
    except (Refused, InputError) as exc:
        return day_page(request, who, error=str(exc))
    return RedirectResponse("/day?done=confirmed", status_code=303)


@router.get("/day/dry-run")
def dry_run(request: Request, who: Staff, on: str = "", loan: str = ""):
    allow(request, who, "day.view")
    ctx = context(request)
    policy = ctx.rules().policy
    store = ctx.store()
    shown = _date(on, ctx.clock().astimezone(policy.tz).date())
    plan = days.plan_for(store, policy, shown)
    sent = dayview.messages(plan, lambda n: n.destination)
    others = dayview.not_sent(policy, plan)
    explained, error = None, ""
    if loan.strip():
        try:
            explained = checks.explain_loan(store, policy, loan.strip(), shown)
        except Refused as exc:
            error = str(exc)
    return page(request, "dryrun.html", shown=shown, sent=sent, others=others, loan=loan,
                summary=dayview.summary(policy, [*sent, *others]), explained=explained, error=error,
                over=sum(1 for m in sent if not m.destination.startswith("outbox:")) > policy.flood_guard.max_per_run)
