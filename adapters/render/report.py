"""The email listing a patron's active requests (``rappel patron requests``), in their language.

Its templates are ``requests_report.subject.j2``, ``.txt.j2`` and ``.html.j2`` in the rules
directory's templates, rendered in the same sandbox as the notices (adapters/render/templates.py);
``lint_report_templates`` renders them for a made-up patron in every language of the policy.
"""
from __future__ import annotations

import datetime as dt
import traceback
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

from adapters.render.names_check import unknown_names
from adapters.render.templates import Templates
from adapters.render.variables import REPORT_TEMPLATE, variable_names
from engine.facts import Patron
from engine.policy import Policy
from engine.yamlsource import Problem

__all__ = ["REPORT_TEMPLATE", "lint_report_templates", "render_report", "report_variables"]

REPORT_LISTS = {"requests": "request"}
"""What the items of the report's lists are named (``request.title``…), for the check of names."""


def render_report(policy: Policy, rules_dir: Path, patron: Patron, active: list[dict], language: str,
                  as_of: dt.date, at: dt.datetime) -> EmailMessage:
    env = Templates(Path(rules_dir), policy).environment(language)
    values = report_variables(policy, patron, active, language, as_of)
    subject = " ".join(env.get_template(f"{REPORT_TEMPLATE}.subject.j2").render(values).split())
    text = env.get_template(f"{REPORT_TEMPLATE}.txt.j2").render(values).strip() + "\n"
    html = env.get_template(f"{REPORT_TEMPLATE}.html.j2").render(values).strip() + "\n"
    msg = EmailMessage()
    msg["From"] = " ".join(policy.sender.from_.split())
    msg["Reply-To"] = " ".join(policy.sender.reply_to.split())
    msg["To"] = Address(display_name=" ".join(patron.full_name.split()), addr_spec=patron.email.strip())
    msg["Subject"] = subject
    msg["Date"] = format_datetime(at)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    msg["Content-Language"] = language
    return msg


def report_variables(policy: Policy, patron: Patron, active: list[dict], language: str, as_of: dt.date) -> dict:
    def library(code: str) -> str:
        lib = policy.libraries.get(code)
        return lib.name if lib else code

    from_name, _ = parseaddr(policy.sender.from_)
    _, reply_address = parseaddr(policy.sender.reply_to)
    return {
        "patron": {"patron_id": patron.patron_id, "barcode": patron.barcode, "first_name": patron.first_name,
                   "last_name": patron.last_name, "full_name": patron.full_name, "email": patron.email},
        "requests": [{"title": r["title"], "library_code": r["library"], "library_name": library(r["library"]),
                      "pickup_library_code": r["pickup_library"], "pickup_library_name": library(r["pickup_library"]),
                      "placed_on": r["placed_on"], "expires_on": r["expires_on"], "status": r["status"]}
                     for r in active],
        "sender": {"from": policy.sender.from_, "reply_to": policy.sender.reply_to,
                   "name": from_name or reply_address, "address": reply_address},
        "language": language,
        "as_of": as_of,
    }


def lint_report_templates(policy: Policy, rules_dir: Path) -> list[Problem]:
    """The requests report renders in every language of the policy with a sample patron."""
    sample = Patron("P-SAMPLE", barcode="0000000", first_name="Camille", last_name="Exemple",
                    email="camille.exemple@example.org")
    code = next(iter(policy.libraries))
    active = [{"title": "Titre d'exemple", "library": code, "pickup_library": code, "placed_on": dt.date(2026, 11, 2),
               "expires_on": dt.date(2026, 12, 2), "status": "active"},
              {"title": "Autre titre", "library": code, "pickup_library": code, "placed_on": dt.date(2026, 11, 3),
               "expires_on": None, "status": "active"}]
    problems = []
    for language in dict.fromkeys([policy.language, *getattr(policy, "available_languages", [])]):
        try:
            render_report(policy, rules_dir, sample, active, language, dt.date(2026, 11, 23),
                          dt.datetime(2026, 11, 23, 9, 0, tzinfo=policy.tz))
        except Exception as exc:   # noqa: BLE001 - anything a template can raise is a problem
            source, line = _template_place(exc, Path(rules_dir) / "templates" / language / f"{REPORT_TEMPLATE}.*.j2")
            problems.append(Problem(source, line, f"language {language}",
                                    f"requests report: {type(exc).__name__}: {exc}"))
            continue
        # the names no branch of the sample reached: every name a report template uses is one it gets
        env = Templates(Path(rules_dir), policy).environment(language)
        known = variable_names(report_variables(policy, sample, active, language, dt.date(2026, 11, 23)), REPORT_LISTS)
        for kind in ("subject", "txt", "html"):
            for source, line, dotted in unknown_names(env, f"{REPORT_TEMPLATE}.{kind}.j2", known, REPORT_LISTS):
                problems.append(Problem(source, line, f"language {language}", f"requests report: undefined "
                                        f"variable: {dotted}: not given to this template, whatever the branch"))
    return problems


def _template_place(exc: BaseException, default: Path) -> tuple[str, int | None]:
    """File and line of a template error: its own (syntax), else the innermost template frame."""
    if getattr(exc, "filename", None):
        return exc.filename, getattr(exc, "lineno", None)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return frame.filename, frame.lineno
    return str(default), None
