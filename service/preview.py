"""`rappel preview`: a stage's messages rendered exactly as a run would send them, recording nothing.

The way to check a template edit. The notices are made by the engine as a run makes them
(engine.decide: ``plan_day`` for a patron's real loans, ``route`` and ``make_notice`` for the
sample), and rendered by the dispatch's own calls (``NoticeContext.for_delivery``, then
``Templates.message``; the email carrying a letter to a library's mailbox by
``Templates.mailbox_email``), so a preview differs from the message sent only by its Date (the
time it is made) and what depends on it.

- ``--patron ID``: the patron's open loans in the database on the date, selected as a run selects
  them, the ledger aside (as if nothing had been sent yet: a preview after the day's run still
  shows its message). When the stage is due for none of them that day, the preview takes the
  nearest date it is (each loan's trigger date, the closest first) and says so. When it is due on
  no date (no open loan, a record type the stage does not reach, no contact the stage can use…),
  nothing is written and ``NothingToPreview`` says why (exit 1).
- ``--sample``: a made-up patron (email and postal address, in the stage's audience) with a loan
  triggering the stage that day in the policy's first library and an older overdue one in its
  last (the recap), no database needed; the letter a patron without email would get too, when the
  stage goes out on paper for them.
- ``language``: the templates' language instead of the patron's (one of the policy's languages).

Files, named like the outbox's (``safe_name`` of the notice key), in the folder given: an email
as ``.eml`` (the bytes the outbox writes and SMTP sends) and its HTML part as ``.html``; a letter
as ``.pdf``, and the email that carries it to its library's mailbox as ``.mailbox.eml``.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path

from adapters.channels.outbox import safe_name, write_atomic
from adapters.channels.registry import REGISTRY
from adapters.render import NoticeContext, Templates, wire_bytes
from adapters.render.requests import RequestContext, request_message
from adapters.store import patrons as records
from adapters.store.database import Store
from engine import reference
from engine.decide import Notice, make_notice, plan_day, route
from engine.facts import Candidate, Loan, Patron
from engine.policy import Policy, Stage
from engine.request_notices import make_request_notice
from engine.requests import Request, RequestStage, stage_by_id
from engine.yamlsource import InputError, Problem
from service.dispatch import letter_name

__all__ = ["NothingToPreview", "Previewed", "check_request_preview", "preview", "sample_facts"]

TRIES = 20           # trigger dates tried, nearest first, when the stage is not due on the date asked


class NothingToPreview(Exception):
    """The pipeline would send this patron nothing at this stage, on any date near the one asked."""


@dataclass
class Previewed:
    on: dt.date                      # the date the messages are made for
    notices: list[Notice]
    files: list[Path]
    note: str = ""                   # why the date is not the one asked


def preview(policy: Policy, templates: Templates, stage_id: str, on: dt.date, at: dt.datetime, out: Path, *,
            store: Store | None = None, patron_id: str | None = None, language: str | None = None) -> Previewed:
    """Render the stage's messages for a patron of ``store`` (``patron_id``) or the sample (no
    ``patron_id``), dated ``at``, into ``out``. InputError for an unknown stage, patron or language;
    NothingToPreview when the patron gets nothing at this stage. A request stage previews its sample."""
    asked = stage_by_id(policy, stage_id)
    stage = _stage(policy, stage_id) if asked is None else None
    if language is not None and language not in policy.available_languages:
        raise InputError([Problem("--lang", None, "", f"no templates for language {language!r} (the policy's "
                                                      f"languages: {', '.join(policy.available_languages)})")])
    if asked is not None:
        check_request_preview(policy, stage_id, patron_id)
        return _request_sample(policy, templates, asked, on, at, Path(out), language)
    if patron_id is None:
        patron, loans = sample_facts(policy, stage, on)
        made = _sample_notices(policy, stage, patron, loans, on)
        recap = {n.key: [loan for loan in loans if loan.due_date < on] for n, _, _ in made}
        note = ""
    else:
        if store is None:
            raise ValueError("a patron's preview reads the database: give the store")
        patron, on, made, note = _patron_notices(store, policy, stage, patron_id, on)
        overdue = store.overdue_loans({patron.patron_id}, on).get(patron.patron_id, [])
        recap = {n.key: overdue for n, _, _ in made}
    files: list[Path] = []
    for notice, who, triggered in made:
        if language is not None:
            who = replace(who, preferred_language=language)
        ctx = NoticeContext.for_delivery(policy, notice, who, triggered, recap[notice.key], on, at)
        files += _write(templates, notice, ctx, at, Path(out))
    return Previewed(on, [n for n, _, _ in made], files, note)


def _stage(policy: Policy, stage_id: str) -> Stage:
    try:
        return policy.stage(stage_id)
    except KeyError:
        ids = [s.id for s in (*policy.stages, *policy.request_stages)]
        raise InputError([Problem("--stage", None, "", f"no stage {stage_id!r} in the policy (its stages: "
                                                       f"{', '.join(ids)})")]) from None


def _write(templates: Templates, notice: Notice, ctx: NoticeContext, at: dt.datetime, out: Path) -> list[Path]:
    """The notice's message rendered as the dispatch renders it, written as the outbox writes it."""
    return _write_message(templates, notice, templates.message(ctx, REGISTRY.spec(notice.channel).renders), at, out)


def _write_message(templates: Templates, notice: Notice, message, at: dt.datetime, out: Path) -> list[Path]:
    name = safe_name(notice.key)
    if isinstance(message, str):                     # an SMS
        written = [(out / f"{name}.sms.txt", message.encode("utf-8"))]
    elif isinstance(message, dict):                  # a webhook's JSON document
        written = [(out / f"{name}.json", json.dumps(message, ensure_ascii=False, indent=2).encode("utf-8"))]
    elif isinstance(message, bytes):                 # a letter's PDF
        written = [(out / f"{name}.pdf", message)]
        if notice.destination.startswith("mailbox:"):
            cover = templates.mailbox_email(notice, message, letter_name(notice), at)
            written.append((out / f"{name}.mailbox.eml", wire_bytes(cover)))
    else:
        html = message.get_body(("html",))
        written = [(out / f"{name}.eml", wire_bytes(message)),
                   (out / f"{name}.html", html.get_content().encode("utf-8"))]
    for path, data in written:
        write_atomic(path, data)
    return [path for path, _ in written]


# --- a request stage's sample ---------------------------------------------------------------------

def check_request_preview(policy: Policy, stage_id: str, patron_id: str | None) -> None:
    """InputError for a patron's preview of a request stage (it previews its sample only)."""
    if patron_id is not None and stage_by_id(policy, stage_id) is not None:
        raise InputError([Problem("--patron", None, "", f"{stage_id} is a request stage: preview it with "
                                                        f"--sample (a patron's preview takes their loans)")])


def _request_sample(policy: Policy, templates: Templates, stage: RequestStage, on: dt.date, at: dt.datetime,
                    out: Path, language: str | None) -> Previewed:
    """The request stage's notice for a made-up patron (email and phone) with two requests that
    trigger it on ``on``, on each of the stage's channels, rendered as the dispatch renders them."""
    patron = Patron("P-SAMPLE", barcode="0000000", first_name="Camille", last_name="Exemple",
                    email="camille.exemple@example.org", phone="+33612345678",
                    preferred_language=language or policy.language)
    first, last = next(iter(policy.libraries)), list(policy.libraries)[-1]
    if stage.when == "ready":
        ready, expires = on - dt.timedelta(days=stage.offset_days), on + dt.timedelta(days=7)
    elif stage.when == "expires":
        expires = on + dt.timedelta(days=stage.offset_days)
        ready = min(on, expires - dt.timedelta(days=7))
    else:
        expires = on - dt.timedelta(days=stage.offset_days)
        ready = expires - dt.timedelta(days=7)
    status = policy.requests.ready_status
    reqs = [Request("R-SAMPLE-1", patron.patron_id, first, first, ready - dt.timedelta(days=10), status, expires,
                    ready, "Titre d'exemple"),
            Request("R-SAMPLE-2", patron.patron_id, last, first, ready - dt.timedelta(days=9), status, expires,
                    ready, "Autre titre")]
    notices, files = [], []
    for name in stage.routes:
        spec = REGISTRY.spec(name)
        notice = make_request_notice(on, stage.id, spec, patron, reqs)
        message = request_message(templates, RequestContext(policy, notice, patron, reqs, on, at), spec.renders)
        notices.append(notice)
        files += _write_message(templates, notice, message, at, out)
    return Previewed(on, notices, files)


# --- a patron of the database ------------------------------------------------------------------------

def _patron_notices(store: Store, policy: Policy, stage: Stage, patron_id: str, on: dt.date):
    """(patron, the date used, [(notice, patron, its loans)], note): the stage's notices for the
    patron on ``on``, else on the nearest date the stage is due for one of their loans."""
    with records.reading(store) as db:
        patron = store.patron(patron_id)
        if patron is None:
            raise InputError([Problem("--patron", None, "", f"no patron {patron_id!r} in the database")])
        loans = db.open_loans(patron_id)
    if not loans:
        raise NothingToPreview(f"patron {patron_id} has no open loan")
    index = policy.stages.index(stage)
    why = ""
    for day in _dates(policy, stage, loans, on):
        made, reason = _due_on(policy, stage, index, patron, loans, day)
        if made:
            note = "" if day == on else (f"{stage.id} is due for none of patron {patron_id}'s loans on {on}; "
                                         f"shown for {day}, the nearest date it is")
            return patron, day, made, note
        why = why or reason
    if not why:
        cand = Candidate.of(loans[0], patron)
        audience = next(c for c in reference.checks(policy, index, cand, on) if c.name == "audience")
        why = audience.detail if not audience.ok else f"{stage.id} is due for none of their loans near {on}"
    raise NothingToPreview(f"patron {patron_id} gets no {stage.id}: {why}")


def _dates(policy: Policy, stage: Stage, loans: list[Loan], on: dt.date) -> list[dt.date]:
    """The date asked, then each open loan's trigger date for the stage, nearest first (the later of
    two as near), a few of them."""
    index = policy.stages.index(stage)
    triggers = {reference.trigger_of(policy, index, loan) for loan in loans   # its library's rule and calendar
                if loan.status not in policy.excluded_statuses}
    triggers.discard(on)
    triggers.discard(None)
    return [on, *sorted(triggers, key=lambda d: (abs((d - on).days), d < on))][:TRIES]


def _due_on(policy: Policy, stage: Stage, index: int, patron: Patron, loans: list[Loan], day: dt.date):
    """The stage's notices for the patron on ``day`` as plan_day makes them, the ledger aside; and
    the reason of a decision that sends nothing, if any."""
    candidates = [Candidate.of(loan, patron) for loan in loans]
    plan = plan_day(policy, candidates, {patron.patron_id: patron}, day, REGISTRY.specs())
    by_id = {loan.loan_id: loan for loan in loans}
    made = [(n, patron, [by_id[i] for i in n.loan_ids]) for n in plan.notices if n.stage == stage.id]
    reason = next((d.reason for d in plan.decisions if d.stage == stage.id and d.notice_key is None), "")
    return made, reason


# --- the sample -------------------------------------------------------------------------------------

def sample_facts(policy: Policy, stage: Stage, on: dt.date) -> tuple[Patron, list[Loan]]:
    """A made-up patron the stage reaches, with a loan that triggers it on ``on`` (first library)
    and an older overdue one (last library), for the recap."""
    audience = stage.audience
    patron = Patron("P-SAMPLE", barcode="0000000", first_name="Camille", last_name="Exemple",
                    email="camille.exemple@example.org", preferred_language=policy.language,
                    record_type=audience.record_types[0], user_group=(audience.user_groups or [""])[0],
                    address_line1="1 rue de l'Exemple", postal_code="33000", city="Bordeaux", country="France")
    codes = list(audience.libraries or policy.libraries)
    due = on - dt.timedelta(days=stage.offset_days)
    return patron, [Loan("L-SAMPLE-1", patron.patron_id, codes[0], due, "B0001", "Titre d'exemple",
                         item_type=(audience.item_types or [""])[0]),
                    Loan("L-SAMPLE-2", patron.patron_id, codes[-1], min(due, on) - dt.timedelta(days=40), "B0002",
                         "Autre titre")]


def _sample_notices(policy: Policy, stage: Stage, patron: Patron, loans: list[Loan], on: dt.date):
    """The stage's notice for the sample patron, and the one it would be without an email address
    (a letter, when the policy sends one), routed and made as plan_day routes and makes them."""
    index = policy.stages.index(stage)
    specs = REGISTRY.specs()
    triggered = loans[:1]
    made, seen = [], set()
    for who in (patron, replace(patron, email="")):
        channel, _ = route(policy, index, who, specs)
        if channel is None or channel in seen:
            continue
        seen.add(channel)
        spec = specs[channel]
        library = triggered[0].library if spec.per_library else None
        made.append((make_notice(policy, spec, on, stage.id, who, library, triggered), who, triggered))
    return made
