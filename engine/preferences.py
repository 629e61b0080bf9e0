"""A patron's own say: the channels they prefer, in order, and the optional stages they opted out of.

The policy decides what may be chosen: a stage's ``channels:`` lists the channels it may go out on
(its ``channel:`` first, the policy's order), ``preferences: {optional: [...]}`` lets patrons opt
out of those stages, and ``preferences: {mandatory: [...]}`` sends those on their own channel
whatever a patron prefers (a final letter that must be posted). A patron's ``channels`` ("sms email") puts the stage's channels in their order;
the first they can be reached on goes (engine.decide.route), and one refused for good at delivery
falls back to the next (engine.delivery.fallback). Opt-outs are decided with the stage rules
(engine.rules, engine.reference: the ``opt_out`` condition), for optional stages only.

The value checks here are the import's (a CSV row, a pull) and a patron edit's: one wording.
"""
from __future__ import annotations

import re
from collections.abc import Collection

from engine.channels import NAME_PATTERN, ChannelSpec
from engine.contact import is_email_address
from engine.phones import is_e164
from engine.facts import OPT_OUT_ALL, Patron, split_names
from engine.policy import Policy, Stage

__all__ = ["channels_problem", "has_contact", "lacking", "opt_out_problem", "preference_problems", "route_order"]


def route_order(policy: Policy, stage: Stage, patron: Patron) -> tuple[str, ...]:
    """The channels a due stage is tried on for this patron, in order: those of the stage's
    channels they prefer, in their order, then the stage's others in the policy's order; only its
    own channel when the stage is mandatory."""
    if policy.is_mandatory(stage.id):
        return (stage.channel,)
    routes = stage.routes
    if not patron.channels:        # no preference of their own: the policy's order
        return routes
    preferred = [name for name in patron.preferred_channels if name in routes]
    return (*preferred, *[name for name in routes if name not in preferred])


def has_contact(patron: Patron, contact: str) -> bool:
    """Whether the patron has the contact a channel needs: one valid email address, a postal address,
    a phone number in E.164 (as an import or an edit writes it, engine.phones); a channel that needs
    none reaches everyone."""
    if contact == "email":
        return is_email_address(patron.email)
    if contact == "postal":
        return patron.has_postal_address
    if contact == "phone":
        return is_e164(patron.phone)
    return True


def lacking(patron: Patron, spec: ChannelSpec) -> str:
    """Why the patron cannot be reached on a channel (has_contact was false), in a few words."""
    if spec.contact == "email":
        return f"email {patron.email!r} is not one valid address" if patron.email else "no email address"
    if spec.contact == "postal":
        return f"no postal address for {'a letter' if spec.renders == 'letter' else spec.name}"
    if spec.contact == "phone":
        return (f"phone {patron.phone!r} is not an E.164 number for {spec.name}" if patron.phone.strip()
                else f"no phone number for {spec.name}")
    return f"no contact for {spec.name}"


def channels_problem(value: str, channels: Collection[str]) -> str | None:
    """What is wrong with a patron's ``channels`` value, if anything: each a channel rappel knows."""
    for name in split_names(value):
        if not re.fullmatch(NAME_PATTERN, name):
            return f"channels: {name!r} is not a channel name (the channels in order, e.g. \"sms email\")"
        if name not in channels:
            return f"channels: {name!r} is not a channel rappel knows ({', '.join(channels)})"
    return None


def opt_out_problem(value: str, policy: Policy) -> str | None:
    """What is wrong with a patron's ``opt_out`` value, if anything: each an optional stage, or "all"."""
    stages = (*policy.stages, *policy.request_stages)
    optional = [stage.id for stage in stages if policy.is_optional(stage.id)]
    may = f"optional stages: {', '.join(optional)}, or {OPT_OUT_ALL}" if optional else "the policy has no optional stage"
    for name in split_names(value):
        if name == OPT_OUT_ALL:
            continue
        if name not in {stage.id for stage in stages}:
            return f"opt_out: {name!r} is not a stage of the policy ({may})"
        if name not in optional:
            return f"opt_out: {name} is not optional: patrons cannot opt out of it ({may})"
    return None


def preference_problems(policy: Policy, changes: dict[str, str], channels: Collection[str]) -> dict[str, str]:
    """field → what is wrong, for the preference fields among a patron edit's ``changes``."""
    problems = {}
    if changes.get("channels"):
        problem = channels_problem(changes["channels"], channels)
        if problem:
            problems["channels"] = problem.split(": ", 1)[1]
    if changes.get("opt_out"):
        problem = opt_out_problem(changes["opt_out"], policy)
        if problem:
            problems["opt_out"] = problem.split(": ", 1)[1]
    return problems
