"""Rendering a page: the Jinja2 templates of adapters/web/templates (autoescaped), in the request's
language, with what every page shows (who is signed in, what their role may open, the CSRF token)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import quote

from babel.dates import format_date, format_datetime
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from adapters.web import i18n
from adapters.web.security import LOGIN_CSRF, context

TEMPLATES = Path(__file__).parent / "templates"
ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(("html", "xml"), default=True),
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ENV.filters["q"] = lambda value: quote(str(value), safe="")

__all__ = ["ENV", "language", "page"]


def language(request: Request) -> str:
    return i18n.language_of(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))


def page(request: Request, template: str, status: int = 200, **values) -> HTMLResponse:
    lang = language(request)
    tr = i18n.translations(lang)
    ctx = context(request)
    who = getattr(request.state, "staff", None)
    tz = dt.timezone.utc
    may = set()
    try:
        rules = ctx.rules()
        tz = rules.policy.tz
        if who is not None:
            may = {a for a in ("patrons.view", "notices.view", "day.view", "day.act", "notices.act", "patrons.edit",
                               "requests.report") if rules.accounts.may(who.role, a)}
    except Exception:  # noqa: BLE001 - a broken policy: the page says so itself
        pass

    def when(value) -> str:
        if value is None:
            return "–"
        if isinstance(value, dt.datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
            return format_datetime(aware.astimezone(tz), "yyyy-MM-dd HH:mm", locale=lang)
        if isinstance(value, dt.date):
            return format_date(value, "medium", locale=lang)
        return str(value)

    def gettext(text: str, **values) -> str:
        done = tr.gettext(text)
        return done % values if values else done

    base = dict(_=gettext, ngettext=tr.ngettext, lang=lang, languages=i18n.LANGUAGES, who=who, may=may,
                when=when, csrf=who.csrf_token if who is not None else request.cookies.get(LOGIN_CSRF, ""),
                path=request.url.path, query=str(request.url.query))
    body = ENV.get_template(template).render({**base, **values})
    return HTMLResponse(body, status_code=status)
