"""The policy's plain sections and their base model (engine/policy.py builds the policy from them)."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from engine.limits import ImportDates

__all__ = ["Imports", "Preferences", "Schedule", "Share", "Sms"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Routed(_Strict):
    """What a loan stage and a request stage share: its ``channel``, the ``channels:`` a patron may
    have it on instead (its own among them), and its templates' name (``template``, else its ``id``)."""

    @model_validator(mode="after")
    def _routing(self):
        if self.channels is not None and self.channel not in self.channels:
            raise ValueError(f"channels: must include the stage's channel ({self.channel})")
        return self

    @property
    def routes(self) -> tuple[str, ...]:
        """The channels it may go out on, in the policy's order: its own channel first."""
        return (self.channel, *[c for c in self.channels or () if c != self.channel])

    @property
    def template_name(self) -> str:
        return self.template or self.id


class Schedule(_Strict):
    """When `rappel daemon` evaluates and delivers the day, in the policy's time zone."""

    at: str = Field(default="02:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                    description="Local time of the daily run, HH:MM in `timezone`. On a daylight-saving day a "
                                "time that does not exist runs when the clocks have moved on (02:30 → 03:30), "
                                "and a time that occurs twice runs once")
    retry_minutes: int = Field(default=5, ge=1, le=1440,
                               description="How often the daemon looks for deliveries to retry between daily "
                                           "runs (each message's own wait is delivery.retry)")
    pull_before: bool = Field(default=False, description="Pull from every source of rules/sources.yaml before "
                                                         "each day's evaluation; a failed pull: nothing decided "
                                                         "on stale facts, tried again after retry_minutes")

    @property
    def hour(self) -> int:
        return int(self.at[:2])

    @property
    def minute(self) -> int:
        return int(self.at[3:])


def _share(value: Any) -> Any:
    """A share written as a fraction (0.2) or a percentage ("20%", "20 %")."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1].strip()) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage (e.g. 20%)") from None
    return value


Share = Annotated[float, Field(ge=0, le=1), BeforeValidator(_share), WithJsonSchema(
    {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1},
               {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$"}]})]


class Imports(_Strict):
    """What an import of the library system's exports may do without being confirmed."""

    max_closed_share: Share = Field(
        default=0.2, description="A snapshot (a full export: rappel import --snapshot) that would close more "
                                 "than this share of the open loans of its libraries, as a fraction (0.2) or a "
                                 "percentage (\"20%\"), changes nothing and exits 1 unless --confirm: a "
                                 "truncated export must not return every loan it lost")
    dates: ImportDates = Field(default=ImportDates(), description="The dates an imported record may hold")


class Preferences(_Strict):
    """What a patron may choose of their notices: the stages they may opt out of (their ``opt_out``),
    and those sent on their own channel whatever they prefer (their ``channels``)."""

    optional: list[str] = Field(default=[], description="Stages a patron may opt out of (their opt_out: the "
                                                        "stage ids, or all), e.g. the courtesy notice")
    mandatory: list[str] = Field(default=[], description="Stages sent on their own channel whatever a patron "
                                                         "prefers, and never opted out of, e.g. the final letter")


class Sms(_Strict):
    """Patrons' phone numbers and the SMS channel's texts."""

    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$",
                                description="The country (ISO 3166 code: FR) a phone number written without its "
                                            "country code is read in when the patron's record gives no country")
    max_segments: int = Field(default=2, ge=1, le=10,
                              description="The most SMS segments a rendered <stage>.sms.j2 may take, in every "
                                          "language (160 GSM-7 characters for one, 153 each for more; 70 and 67 "
                                          "when a character is outside GSM-7): rappel lint measures it")

    @field_validator("country")
    @classmethod
    def _known_country(cls, code: str | None) -> str | None:
        from engine.phones import region_of       # phonenumbers' data: read only for a policy that names one
        if code is not None and region_of(code) is None:
            raise ValueError(f"{code} is not a country whose phone numbers rappel can read (an ISO 3166 code: "
                             f"FR, GB, ES…)")
        return code
