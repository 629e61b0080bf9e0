"""Checking a rules directory's templates before anything goes out (``Templates.lint()``).

Every stage's templates exist in every language of the policy (in its own folder when the policy
lists several: the shared folder's file would mix languages in one message), compile and
render a made-up notice in every language, for every channel the stage can go out on; the letter wording and the mailbox email too
when letters are possible; and the letters' font can set French and Spanish text. Each problem
says the file, the line when known, and where (stage, language).
"""
from __future__ import annotations

import datetime as dt
import traceback
from pathlib import Path

from jinja2 import TemplateSyntaxError, UndefinedError

from adapters.render.context import KINDS, MAILBOX, RENDERS, NoticeContext, template_file
from adapters.render.document import sms_text
from adapters.render.segments import segments
from adapters.render.fonts import NO_FONT, find_font, font_problem
from adapters.render.formats import one_line
from adapters.render.letter_names import LETTER_WORDING
from adapters.render.names_check import unknown_names
from adapters.render.variables import LIST_ITEMS, MAILBOX_VARIABLES, REPORT_TEMPLATE, TEMPLATE_VARIABLES
from engine.decide import Notice
from engine.facts import Loan, Patron
from adapters.render.requests import request_template_names
from engine.policy import Policy, Stage
from engine.timeline import timeline
from engine.yamlsource import Problem

__all__ = ["lint_templates", "sample_letter", "sample_notice", "stage_channels"]

SMS_KIND = "sms"                 # <stage>.sms.j2: the text of an SMS


def lint_templates(templates) -> list[Problem]:
    """The problems of a ``Templates`` (adapters/render/templates.py); [] when all is well."""
    t, policy = templates, templates.policy
    problems: list[Problem] = []
    bad: set[tuple[str, str]] = set()
    several = len(policy.available_languages) > 1
    for language in policy.available_languages:
        for name in _required(t, language):
            found = _find(t, language, name)
            if found is None:
                bad.add((language, name))
                problems.append(Problem(str(t.directory / language / name), None, f"language {language}",
                                        "template file is missing"))
            elif several and found.parent != t.directory / language:
                # the shared folder's file is in one language: a letter would mix it with this one's frame
                bad.add((language, name))
                listed = ", ".join(policy.available_languages)
                problems.append(Problem(str(t.directory / language / name), None, f"language {language}",
                                        f"template file is missing: the policy lists {listed}, and "
                                        f"{found.relative_to(t.directory)} is not in {language}"))
    for language in policy.available_languages:   # every file, the shared frames too
        env = t.environment(language)
        for name in env.list_templates(extensions=["j2"]):
            if "/" in name:    # another language's folder: checked in its own language
                continue
            try:
                env.get_template(name)
            except TemplateSyntaxError as exc:
                bad.add((language, name))
                problems.append(_syntax_problem(t, exc))
    if _letters_possible(policy):    # before anything is printed in a font that would change the words
        font = find_font()
        trouble = ("fonts", NO_FONT) if font is None else font_problem(font)
        if trouble:
            problems.append(Problem(str(trouble[0]), None, "letters", trouble[1]))
    for language in policy.available_languages:
        for stage in policy.stages:
            for channel in stage_channels(policy, stage):
                problems += _render_problems(t, stage, channel, bad, language)
        if (language, LETTER_WORDING) not in bad and _letters_possible(policy):
            problems += _check(t, language, LETTER_WORDING, "letter wording", lambda: t.letter_wording(
                sample_notice(policy, policy.stages[-1], "letter", language), "Objet", language))
    if _mailboxes(policy) and not any((policy.language, name) in bad for name in MAILBOX):
        problems += _check(t, policy.language, MAILBOX[1], "mailbox email",
                           lambda: t.mailbox_email(sample_letter(policy), b"%PDF-1.4", "a.pdf"))
    # one problem per place: the same line failing for the email and for the letter is one mistake
    first: dict[tuple, Problem] = {}
    for problem in problems:
        first.setdefault((problem.source, problem.line, problem.where), problem)
    # then the names the sample's branches did not reach, each line once (a rendering error says more)
    seen = {(p.source, p.line) for p in first.values()}
    for problem in _name_problems(t, bad):
        if (problem.source, problem.line) not in seen:
            seen.add((problem.source, problem.line))
            first[(problem.source, problem.line, "")] = problem
    return list(first.values())


def _name_problems(t, bad: set) -> list[Problem]:
    """Every name a notice's template uses that rappel does not give it, in any branch."""
    problems = []
    request_templates = request_template_names(t.policy)
    for language in t.policy.available_languages:
        env = t.environment(language)
        for name in env.list_templates(extensions=["j2"]):
            if "/" in name or (language, name) in bad or name.startswith(REPORT_TEMPLATE + ".") \
                    or name.split(".", 1)[0] in request_templates:     # adapters/render/requests.py checks those
                continue
            known = set(MAILBOX_VARIABLES) if name in MAILBOX else \
                set(TEMPLATE_VARIABLES) | ({"subject"} if name == LETTER_WORDING else set())
            try:
                found = unknown_names(env, name, known, LIST_ITEMS)
            except TemplateSyntaxError:
                continue     # reported as a syntax error already
            lines: dict[tuple, list[str]] = {}
            for source, line, dotted in found:
                lines.setdefault((source, line), []).append(dotted)
            problems += [Problem(source, line, f"language {language}",
                                 f"undefined variable{'s' if len(names) > 1 else ''}: {', '.join(names)}: not "
                                 f"given to this template by rappel, whatever the branch (in {language}; README, "
                                 "\"One envelope a day, and what templates see\")") for (source, line), names in lines.items()]
    return problems


def stage_channels(policy: Policy, stage: Stage) -> list[str]:
    """The channels a stage can go out on: its own and its ``channels:``, plus letters for patrons
    without email; and those a library's own timeline gives it (``libraries.CODE.stages``)."""
    index = next((i for i, s in enumerate(policy.stages) if s.id == stage.id), None)
    variants = [v for _, v in timeline(policy).variants(index)] if index is not None else [stage]
    out: list[str] = []
    for variant in variants:
        out += [c for c in _channels_of(policy, variant) if c not in out]
    return out


def _channels_of(policy: Policy, stage: Stage) -> list[str]:
    routes = list(stage.routes)
    if "email" not in routes:
        return routes
    nomail = policy.no_email
    as_letter = nomail.courtesy_by_letter if stage.offset_days < 0 else nomail.letters_after_due
    as_letter = as_letter or policy.fallback.email == "letter"
    return routes + ["letter"] if as_letter and "letter" not in routes else routes


def _kinds(stage: Stage, channel: str) -> tuple[str, ...]:
    """The templates a stage renders for a channel: an SMS its ``.sms.j2``; its own channel all
    three; a letter or a webhook document, the subject and the text."""
    if RENDERS.get(channel) == "text":
        return (SMS_KIND,)
    return KINDS if channel == stage.channel and RENDERS.get(channel) != "json" else ("subject", "txt")


def _required(t, language: str) -> list[str]:
    names = [template_file(stage, kind) for stage in t.policy.stages for kind in KINDS]
    names += [template_file(stage, SMS_KIND) for stage in t.policy.stages
              if any(RENDERS.get(c) == "text" for c in stage_channels(t.policy, stage))]
    if _letters_possible(t.policy):
        names.append(LETTER_WORDING)
    if language == t.policy.language and _mailboxes(t.policy):
        names += MAILBOX
    return names


def _find(t, language: str, name: str) -> Path | None:
    for folder in (t.directory / language, t.directory):
        if (folder / name).is_file():
            return folder / name
    return None


def _letters_possible(policy: Policy) -> bool:
    return any("letter" in stage_channels(policy, stage) for stage in policy.stages)


def _mailboxes(policy: Policy) -> bool:
    return any(lib.letters.mailbox for lib in policy.libraries.values())


def _check(t, language: str, name: str, what: str, render) -> list[Problem]:
    try:
        render()
    except TemplateSyntaxError as exc:
        return [_syntax_problem(t, exc)]
    except Exception as exc:   # noqa: BLE001 - anything a template can raise is a problem
        source, line = _where(exc, str(_find(t, language, name) or t.directory / language / name))
        detail = f"undefined variable: {exc}" if isinstance(exc, UndefinedError) else f"{type(exc).__name__}: {exc}"
        return [Problem(source, line, f"language {language}", f"{detail} (rendering the {what})")]
    return []


def _render_problems(t, stage: Stage, channel: str, bad: set, language: str) -> list[Problem]:
    values = t.variables(sample_notice(t.policy, stage, channel, language))
    kinds = _kinds(stage, channel)
    env = t.environment(language)
    problems = []
    for kind in kinds:
        name = template_file(stage, kind)
        if (language, name) in bad:
            continue
        try:
            out = env.get_template(name).render(values)
        except TemplateSyntaxError as exc:
            problems.append(_syntax_problem(t, exc))
            continue
        except Exception as exc:   # noqa: BLE001 - anything a template can raise is a problem
            source, line = _where(exc, str(_find(t, language, name) or t.directory / name))
            what = f"undefined variable: {exc}" if isinstance(exc, UndefinedError) else \
                f"{type(exc).__name__}: {exc}"
            problems.append(Problem(source, line, f"stage {stage.id}",
                                    f"{what} (rendering the {channel} in {language})"))
            continue
        if kind == "subject" and not one_line(out):
            problems.append(Problem(str(_find(t, language, name)), None, f"stage {stage.id}",
                                    f"the subject is empty (in {language})"))
        if kind == SMS_KIND:
            problems += _segment_problems(t, stage, name, out, language)
    return problems


def _segment_problems(t, stage: Stage, name: str, out: str, language: str) -> list[Problem]:
    """An SMS longer than sms.max_segments (or empty), measured on the sample notice's text."""
    text, most = sms_text(out), t.policy.sms.max_segments
    measured = segments(text)
    if not text:
        return [Problem(str(_find(t, language, name)), None, f"stage {stage.id}", f"the SMS is empty (in {language})")]
    if measured.count <= most:
        return []
    return [Problem(str(_find(t, language, name)), None, f"stage {stage.id}",
                    f"language {language}: the SMS takes {measured.describe()}, more than sms.max_segments "
                    f"({most}) in reminders.yaml")]


def _syntax_problem(t, exc: TemplateSyntaxError) -> Problem:
    source = exc.filename or str(t.directory / (exc.name or "?"))
    return Problem(source, exc.lineno, "", f"syntax error: {exc.message}")


def _where(exc: BaseException, path: str) -> tuple[str, int | None]:
    """File and line of the innermost template frame of a rendering error."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return frame.filename, frame.lineno
    return path, None


# -- made-up notices -----------------------------------------------------------------------------

def sample_notice(policy: Policy, stage: Stage, channel: str, language: str | None = None) -> NoticeContext:
    """A made-up notice for checking templates: two libraries, a triggered and an older loan."""
    as_of = dt.date(2026, 11, 23)
    codes = list(policy.libraries)
    own, other = codes[0], codes[-1]
    patron = Patron("P-SAMPLE", barcode="0000000", first_name="Camille", last_name="Exemple",
                    email="camille.exemple@example.org", preferred_language=language or policy.language,
                    address_line1="1 rue de l'Exemple", postal_code="33000", city="Bordeaux", country="France")
    due = as_of - dt.timedelta(days=stage.offset_days)
    triggered = Loan("L-1", patron.patron_id, own, due, "B0001", "Titre d'exemple")
    older = Loan("L-2", patron.patron_id, other, as_of - dt.timedelta(days=40), "B0002", "Autre titre")
    library = own if channel == "letter" else None
    notice = Notice(f"{as_of}/{stage.id}/{channel}/{patron.patron_id}/{library or '-'}", as_of, stage.id,
                    channel, patron.patron_id, library, ("L-1",), patron.email, patron.email)
    return NoticeContext.build(policy, notice, patron, [triggered, older], as_of)


def sample_letter(policy: Policy) -> Notice:
    """A made-up letter for a library's mailbox, for checking the mailbox email's templates."""
    code = next((c for c, lib in policy.libraries.items() if lib.letters.mailbox), next(iter(policy.libraries)))
    lib = policy.libraries[code]
    stage = policy.stages[-1]
    return Notice(f"2026-11-23/{stage.id}/letter/P-SAMPLE/{code}", dt.date(2026, 11, 23), stage.id, "letter",
                  "P-SAMPLE", code, ("L-1",), "Camille Exemple, 1 rue de l'Exemple, 33000 Bordeaux",
                  lib.letters.destination)
