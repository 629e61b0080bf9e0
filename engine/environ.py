"""Settings that may name the environment: ``${NAME}`` references (secrets live in the environment,
never in the YAML) and the check that a URL carries no literal password."""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["Templated", "environment_names"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def environment_names(value: str) -> list[str]:
    """The ${NAME} references of a delivery setting, in order."""
    return _VAR.findall(value)


def _templated(value: str) -> str:
    """A setting that may take ${NAME} from the environment (secrets live there, not in YAML)."""
    if "\n" in value or "\r" in value:
        raise ValueError("must be on one line")
    rest = _VAR.sub("", value)
    if "${" in rest:
        raise ValueError("a ${...} reference must be ${NAME}: letters, digits and _, not starting with a digit")
    return value


Templated = Annotated[str, AfterValidator(_templated)]


def _no_literal_secret(url: str) -> str:
    """A URL's password is given as ${NAME} (taken from the environment), never written in the policy."""
    netloc = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    userinfo, at, _ = netloc.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    query = url.partition("?")[2]
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name.lower() in ("pass", "password", "pwd") and value:
            password = value
    if password and not _VAR.fullmatch(password):
        raise ValueError("the password must come from the environment, e.g. "
                         "mailtos://user:${SMTP_PASSWORD}@smtp.example.org; secrets are never written here")
    return url
