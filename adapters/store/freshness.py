"""When each kind of fact was last imported or pulled (the ``fact_imports`` table)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from adapters.store.runs import to_utc
from adapters.store.schema import fact_imports

__all__ = ["last_imports"]


def last_imports(engine: Engine) -> dict[str, dict]:
    """kind → the latest successful import or pull of it: finished_at (UTC), source, mode, rows."""
    latest = (select(fact_imports.c.kind, func.max(fact_imports.c.id).label("id"))
              .group_by(fact_imports.c.kind).subquery())
    query = select(fact_imports).join(latest, latest.c.id == fact_imports.c.id)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return {r["kind"]: {"finished_at": to_utc(r["finished_at"]), "source": r["source"], "mode": r["mode"],
                        "rows": r["rows"], "facts_date": r["facts_date"]} for r in rows}
