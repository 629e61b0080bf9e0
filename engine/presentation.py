"""What people read about the policy's stages and libraries: per-language labels, each library's
contact details, and who a notice is from (``sender:`` per library or per stage).

The models are parts of the policy (engine/policy.py uses them); the functions are pure lookups.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Contact", "LanguageLabels", "StageSender", "label_problems", "library_label", "sender_for",
           "stage_label"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Contact(_Strict):
    """How patrons reach a library, for the templates (``library.phone``, …)."""

    phone: str = Field(default="", description="The library's telephone number, as it is written")
    email: str = Field(default="", description="The library's email address for patrons")
    hours_url: str = Field(default="", description="The page of its opening hours")
    website: str = Field(default="", description="Its web site")


class LanguageLabels(_Strict):
    """The names shown to people in one language: of stages (by id) and of libraries (by code)."""

    stages: dict[str, str] = Field(default={}, description="Stage id → its name, e.g. first_reminder: Premier rappel")
    libraries: dict[str, str] = Field(default={}, description="Library code → its name in this language "
                                                              "(default: the library's name)")


StageSender = Literal["library", "service"]
"""A stage's sender: ``library`` (the library's own sender: courtesy notices) or ``service`` (the
policy's sender, the overdue service: reminders)."""


def stage_label(policy, stage_id: str, language: str) -> str:
    """A stage's name in ``language``: its label there, else in the default language, else its id
    with spaces (lint warns about a missing one)."""
    for code in (language, policy.language):
        label = policy.labels.get(code, LanguageLabels()).stages.get(stage_id)
        if label:
            return label
    return stage_id.replace("_", " ")


def library_label(policy, code: str, language: str) -> str:
    """A library's name in ``language``: its label there, else its ``name``, else its code."""
    label = policy.labels.get(language, LanguageLabels()).libraries.get(code)
    if label:
        return label
    lib = policy.libraries.get(code)
    return lib.name if lib else code


def sender_for(policy, stage_id: str, libraries: Iterable[str]):
    """Who a notice is from: the stage's ``sender`` when it names one (service: the policy's), else
    the library's own ``sender`` when all its loans are of one library that has one, else the
    policy's sender."""
    stage = policy.stage(stage_id)
    if stage.sender == "service":
        return policy.sender
    codes = set(libraries)
    if len(codes) == 1:
        lib = policy.libraries.get(next(iter(codes)))
        if lib is not None and lib.sender is not None:
            return lib.sender
    return policy.sender


def label_problems(policy) -> list[tuple[tuple, str]]:
    """(path, message) for labels naming a stage or library the policy does not have."""
    stages = {s.id for s in policy.stages} | {s.id for s in getattr(policy, "request_stages", ())}
    libraries = set(policy.libraries)
    out = []
    for language, labels in policy.labels.items():
        out += [(("labels", language, "stages", s), f"no stage {s!r} in stages") for s in labels.stages
                if s not in stages]
        out += [(("labels", language, "libraries", c), f"no library {c!r} in libraries") for c in labels.libraries
                if c not in libraries]
    return out
