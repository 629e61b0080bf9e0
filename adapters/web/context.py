"""What every page and API route of one `rappel serve` shares: the rules folder, the database, the
outbox, the clock. Routes reach it as ``request.app.state.rappel`` (see ``app.create_app``)."""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from service import session


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class WebContext:
    rules_dir: Path
    db_url: str | None = None                   # None: $RAPPEL_DB_URL, else sqlite:///rappel.db
    outbox: Path = Path("outbox")
    state_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    clock: Callable[[], dt.datetime] = _utc_now  # aware UTC; tests pass a fixed clock

    def rules(self) -> session.Rules:
        """The policy, templates and accounts policy as they are on disk now (read per request: an
        edited policy is in force at the next request, a broken one is an error, never half-used)."""
        return session.load_rules(self.rules_dir, templates=True, accounts=True)

    @contextmanager
    def installation(self, *, channel: bool = False, writes: bool = True) -> Iterator[session.Installation]:
        """The rules, the store and (``channel=True``) the policy's channels, closed at the end."""
        with session.installation(self.rules(), self.db_url, writes=writes, channel=channel,
                                  outbox=self.outbox, state_dir=self.state_dir, env=self.env,
                                  clock=self.clock) as inst:
            yield inst
