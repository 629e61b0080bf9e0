"""The channels configured by one apprise URL (sms, webhook): their settings model and builder."""
from __future__ import annotations

from urllib.parse import urlsplit

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from engine.environ import _no_literal_secret, _templated

__all__ = ["UrlSettings", "by_url", "shown_url"]


class UrlSettings(BaseModel):
    """delivery.channels.sms and delivery.channels.webhook: one apprise URL."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, AfterValidator(_templated), AfterValidator(_no_literal_secret)] = Field(
        min_length=1, description="The apprise URL, secrets as ${NAME}: for sms with {to} where the "
                                               "patron's number goes; for webhook a json:// or jsons:// URL")


def by_url(kind):
    """The builder of a channel whose one setting is its URL (registry.Registration.build)."""
    def build(settings: UrlSettings, site):
        path = ("delivery", "channels", kind.name, "url")
        url = site.value(settings.url, path, url=True)
        if site.problems:
            return None
        try:
            return kind(url, label=".".join(path))
        except ValueError as exc:
            site.invalid(path, str(exc).split(": ", 1)[-1])
            return None
    return build


def shown_url(url: str) -> str:
    """A URL for people: its scheme, host and path, without credentials or query (which may hold tokens)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
