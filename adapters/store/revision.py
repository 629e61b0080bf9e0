"""The schema's revision without loading alembic: the head read from the migration files, the
database's from its alembic_version table. A database already at the head needs no alembic at all
(most runs): ``rappel run``, a dry run or lint start faster. A database behind, or migration files
that do not make one line (alembic knows what to do with those), goes through alembic."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from adapters.store.errors import DatabaseNotReady

__all__ = ["MIGRATIONS", "DatabaseNotReady", "current", "head", "migrate", "require_current_schema"]

MIGRATIONS = Path(__file__).parent / "migrations"
VERSIONS = MIGRATIONS / "versions"
_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*=\s*(?:None|['\"]([^'\"]+)['\"])", re.M)


@lru_cache(maxsize=1)
def head() -> str | None:
    """The last revision of the migration files when they make one line (each revising the one
    before), else None (let alembic say)."""
    revisions: dict[str, str | None] = {}
    for path in VERSIONS.glob("*.py"):
        if path.name == "__init__.py":
            continue
        source = path.read_text(encoding="utf-8")
        rev, down = _REVISION.search(source), _DOWN.search(source)
        if rev is None or down is None:
            return None
        revisions[rev.group(1)] = down.group(1)
    heads = set(revisions) - {down for down in revisions.values() if down}
    roots = [rev for rev, down in revisions.items() if down is None]
    return next(iter(heads)) if len(heads) == 1 and len(roots) == 1 else None


def current(conn: Connection) -> str | None:
    """The database's revision (alembic_version), None when it has none (a new database)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def _alembic_config():
    from alembic.config import Config       # alembic: loaded only to create or upgrade a database

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to this version's; nothing to do (and no alembic) when it is there."""
    at_head = head()
    if at_head is not None:
        with engine.connect() as conn:
            if current(conn) == at_head:
                return
    from alembic import command

    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def require_current_schema(engine: Engine, url: str) -> None:
    """DatabaseNotReady unless the database is at this version's schema (a command that changes nothing)."""
    expected = head()
    if expected is None:            # migration files that do not make one line: alembic's own reading
        from alembic.script import ScriptDirectory
        expected = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as conn:
        found = current(conn)
    if found is None:
        raise DatabaseNotReady(f"{url}: no rappel database here (nothing imported yet? `rappel import` creates it)")
    if found != expected:
        raise DatabaseNotReady(f"{url}: the database is at schema revision {found}, this rappel expects {expected}; "
                               f"a command that writes (rappel run, rappel import, the daemon) upgrades it")
