"""The queries rappel ships for library systems, one module each: koha (MariaDB/MySQL), evergreen
(PostgreSQL). A preset returns rappel's CSV columns for each kind, the library system's branch
codes as ``library``, and loan statuses the shipped policy declares; sources.yaml may replace any
of its queries (``queries: {loans: …}``).

Each query may use ``:returned_since`` (a date: loans returned since then are pulled with their
return date; the source's ``returned_days`` before the facts' date).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from adapters.sources.presets import evergreen, koha
from engine.sources import PresetInfo

__all__ = ["PRESETS", "Preset", "preset_info"]


@dataclass(frozen=True)
class Preset:
    name: str
    system: str                       # the library system, as its users call it
    dialects: tuple[str, ...]         # the SQLAlchemy dialects of its database
    queries: Mapping[str, str]        # kind → SQL
    tables: tuple[str, ...]           # what its read-only database user needs SELECT on
    schema: str                       # the published schema the queries were written against

    def info(self) -> PresetInfo:
        return PresetInfo(self.name, self.system, tuple(self.queries), self.dialects)


PRESETS: Mapping[str, Preset] = MappingProxyType({
    "koha": Preset("koha", "Koha", ("mysql", "mariadb"), MappingProxyType(koha.QUERIES), koha.TABLES, koha.SCHEMA),
    "evergreen": Preset("evergreen", "Evergreen", ("postgresql",), MappingProxyType(evergreen.QUERIES),
                        evergreen.TABLES, evergreen.SCHEMA),
})


def preset_info() -> dict[str, PresetInfo]:
    """The presets as the engine sees them (plain facts), for validating sources.yaml."""
    return {name: preset.info() for name, preset in PRESETS.items()}
