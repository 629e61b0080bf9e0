"""Where facts come from (rules/sources.yaml): the library system's databases, read-only.

    max_facts_age_hours: 26          # a run on older loans refuses to decide
    sources:
      koha:
        preset: koha                 # the queries rappel ships for Koha (or evergreen), each overridable
        url: "mysql+pymysql://rappel_ro:${KOHA_DB_PASSWORD}@koha-db.example/koha_library"

A source is a SQLAlchemy URL whose secrets come from the environment as ``${NAME}`` (a password
written in the file is refused), and one query per kind (patrons, loans, requests) returning
rappel's CSV columns. The presets are plain facts handed in by the caller (the kinds each has, the
databases it reads), like the channels: the engine never imports adapters.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from engine.yamlsource import InputError, YamlDocument, validation_problems

__all__ = ["DEFAULT_MAX_AGE_HOURS", "KINDS", "PresetInfo", "Source", "Sources", "check_url", "environment_names",
           "parse_sources", "sources_json_schema", "url_dialect"]

KINDS = ("patrons", "loans", "requests")       # in the order a pull imports them (loans need their patrons)
Kind = Literal["patrons", "loans", "requests"]
DEFAULT_MAX_AGE_HOURS = 26                      # a nightly pull, and two hours to spare
READ_ONLY_DIALECTS = ("mysql", "mariadb", "postgresql")   # the databases rappel knows how to open read-only

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"


@dataclass(frozen=True)
class PresetInfo:
    """What the engine needs of a shipped preset: its name, its kinds, the databases it reads."""

    name: str
    system: str                      # "Koha", "Evergreen"
    kinds: tuple[str, ...]
    dialects: tuple[str, ...]        # SQLAlchemy dialect names: ("mysql", "mariadb"), ("postgresql",)


def url_dialect(url: str) -> str:
    """The SQLAlchemy dialect of a URL: "mysql" for mysql+pymysql://…, "postgresql" for postgresql://…"""
    return url.partition("://")[0].partition("+")[0].lower()


def _source_url(url: str, *, from_environment: bool = False) -> str:
    """A source's URL as sources.yaml gives it (``from_environment``: the value of a ${NAME} that
    was the whole URL, which may hold its password)."""
    if "\n" in url or "\r" in url:
        raise ValueError("must be on one line")
    if not re.match(r"^[A-Za-z][A-Za-z0-9]*(\+[A-Za-z0-9_]+)?://", url) and not _VAR.fullmatch(url):
        raise ValueError("a SQLAlchemy database URL, e.g. mysql+pymysql://rappel:${KOHA_DB_PASSWORD}@koha-db/koha "
                         "or postgresql+psycopg://rappel:${EG_DB_PASSWORD}@evergreen-db/evergreen")
    if "${" in _VAR.sub("", url):
        raise ValueError("a ${...} reference must be ${NAME}: letters, digits and _, not starting with a digit")
    if _VAR.fullmatch(url):
        return url                   # the whole URL from the environment: checked when it is expanded
    dialect = url_dialect(url)
    if dialect not in READ_ONLY_DIALECTS:
        raise ValueError(f"rappel opens only MariaDB/MySQL (mysql+pymysql://) and PostgreSQL "
                         f"(postgresql+psycopg://) databases read-only, not {dialect!r}")
    password = _password(url)
    if password and not _VAR.fullmatch(password) and not from_environment:
        raise ValueError("the password must come from the environment, e.g. mysql+pymysql://rappel:"
                         "${KOHA_DB_PASSWORD}@koha-db/koha; secrets are never written here")
    return url


def _password(url: str) -> str:
    """The password a URL carries, in its user part or as a password= parameter ("" for none)."""
    netloc = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    for pair in url.partition("?")[2].split("&"):
        name, _, value = pair.partition("=")
        if name.lower() in ("password", "passwd", "pass", "pwd") and value:
            password = value
    return password


SourceUrl = Annotated[str, AfterValidator(_source_url)]


def environment_names(url: str) -> list[str]:
    """The ${NAME} references of a source's URL, in order."""
    return _VAR.findall(url)


def check_url(url: str) -> None:
    """A URL that came whole from the environment (it may hold its password): ValueError if rappel
    cannot open it read-only."""
    _source_url(url, from_environment=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """One library system's database."""

    preset: str | None = Field(default=None, description="The queries rappel ships for a library system: koha "
                                                         "(MariaDB/MySQL) or evergreen (PostgreSQL); none: "
                                                         "give every query")
    url: SourceUrl = Field(description="SQLAlchemy URL of the library system's database, opened read-only; "
                                       "secrets as ${NAME} from the environment")
    kinds: list[Kind] | None = Field(default=None, description="What is pulled, in the order patrons, loans, "
                                                               "requests (default: every kind with a query)")
    queries: dict[Kind, str] = Field(default={}, description="A query per kind, replacing the preset's; it "
                                                             "returns rappel's CSV columns for that kind")
    snapshot: bool = Field(default=True, description="A pull is the whole truth: open loans it no longer has "
                                                     "are closed (as a snapshot import)")
    libraries: list[str] | None = Field(default=None, min_length=1,
                                        description="The libraries (branch codes) whose open loans and active "
                                                    "requests this source is the complete list of, for its "
                                                    "snapshot (default: every library of the policy)")
    returned_days: int = Field(default=7, ge=0, le=366,
                               description="Loans returned in the last N days are pulled with their return "
                                           "date (the queries' :returned_since)")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo):
        presets: Mapping[str, PresetInfo] = (info.context or {}).get("presets", {})
        preset = None
        if self.preset is not None:
            preset = presets.get(self.preset)
            if preset is None:
                raise ValueError(f"preset: unknown preset {self.preset!r} (known: {', '.join(presets) or 'none'})")
            dialect = url_dialect(self.url)
            if not _VAR.fullmatch(self.url) and dialect not in preset.dialects:
                raise ValueError(f"url: the {preset.name} preset reads a {preset.system} database "
                                 f"({' or '.join(preset.dialects)}), not {dialect}")
        available = set(preset.kinds if preset else ()) | set(self.queries)
        for kind in self.kinds or ():
            if kind not in available:
                raise ValueError(f"kinds: nothing says how to pull {kind}: give queries.{kind}"
                                 + ("" if preset is None else f" (the {preset.name} preset has none)"))
        if self.kinds is not None:
            if len(set(self.kinds)) != len(self.kinds):
                raise ValueError("kinds: a kind is listed twice")
            unused = [k for k in self.queries if k not in self.kinds]
            if unused:
                raise ValueError(f"queries: {', '.join(unused)} not pulled (kinds: {', '.join(self.kinds)})")
        if not available:
            raise ValueError("queries: give a preset (koha, evergreen) or a query per kind")
        for kind, query in self.queries.items():
            if not query.strip():
                raise ValueError(f"queries: the {kind} query is empty")
        return self

    def pulled(self, presets: Mapping[str, PresetInfo]) -> tuple[str, ...]:
        """The kinds this source pulls, in import order."""
        if self.kinds is not None:
            chosen = set(self.kinds)
        else:
            chosen = set(self.queries) | set(presets[self.preset].kinds if self.preset else ())
        return tuple(k for k in KINDS if k in chosen)


class Sources(_Strict):
    max_facts_age_hours: float = Field(default=DEFAULT_MAX_AGE_HOURS, gt=0,
                                       description="A run whose loans were imported or pulled longer ago than "
                                                   "this refuses to decide (rappel run --accept-stale-facts)")
    sources: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Source] = Field(
        min_length=1, description="The library system's databases, by name (`rappel pull NAME`)")


def parse_sources(text: str, source: str, presets: Mapping[str, PresetInfo]) -> Sources:
    """Validate sources.yaml text; InputError naming file, line and key of every problem."""
    doc = YamlDocument(text, source)
    if doc.duplicates:
        raise InputError(doc.duplicates)
    if not isinstance(doc.data, dict):
        raise InputError([doc.problem((), "sources.yaml must be a mapping of keys (max_facts_age_hours, sources)")])
    try:
        sources = Sources.model_validate(doc.data, context={"presets": presets})
    except OverflowError as exc:
        raise doc.overflowed(exc) from None
    except ValidationError as exc:
        fixed = []
        for problem in validation_problems(doc, exc):
            # a model-level message names its key ("preset: unknown preset …"): point at that key's line
            head, sep, rest = problem.message.partition(": ")
            parts = tuple(p for p in problem.where.replace("[", ".").replace("]", "").split(".") if p)
            if sep and head.isidentifier() and doc.line_of(parts + (head,)) != doc.line_of(parts):
                problem = doc.problem(parts + (head,), rest)
            fixed.append(problem)
        raise InputError(doc.bounded(fixed)) from None
    doc.check_bounds()
    return sources


def sources_json_schema(presets: Mapping[str, PresetInfo] | None = None) -> dict:
    schema = Sources.model_json_schema()
    if presets:
        schema["$defs"]["Source"]["properties"]["preset"]["anyOf"][0]["enum"] = list(presets)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rappel fact sources (rules/sources.yaml)"
    return schema
