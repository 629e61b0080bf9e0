"""The environment guard: a database delivers only from the installation it belongs to.

The database holds one installation id (the ``installation`` table); each machine keeps the id of
the installation it belongs to in a local state file (``<state dir>/installation-id``) or in
``$RAPPEL_INSTALLATION_ID``. They must agree before anything is delivered. So a copy of the
production database restored onto a test machine refuses to mail patrons about old loans until an
operator says otherwise (``rappel confirm-installation``).

- First use: a database without an id takes this machine's (created if need be).
- ``confirm-installation``: the database takes this machine's id. Machines holding the old id now
  refuse: the copy has become an installation of its own.
- ``confirm-installation --join``: this machine takes the database's id (a second machine of the
  same installation, e.g. a standby daemon).
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from adapters.store.schema import installation

__all__ = ["Guard", "Verdict", "default_state_dir", "ENV_ID", "ENV_STATE_DIR"]

ENV_ID = "RAPPEL_INSTALLATION_ID"
ENV_STATE_DIR = "RAPPEL_STATE_DIR"
ID_FILE = "installation-id"


def default_state_dir() -> Path:
    """$RAPPEL_STATE_DIR, else systemd's $STATE_DIRECTORY, else ~/.local/state/rappel."""
    for name in (ENV_STATE_DIR, "STATE_DIRECTORY"):
        value = os.environ.get(name)
        if value:
            return Path(value.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rappel"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    database_id: str | None
    local_id: str | None
    detail: str


class Guard:
    def __init__(self, engine: Engine, state_dir: Path | None = None, env: dict | None = None):
        self.engine = engine
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.env = os.environ if env is None else env

    @property
    def id_file(self) -> Path:
        return self.state_dir / ID_FILE

    # --- this machine --------------------------------------------------------------------------
    def local_id(self) -> str | None:
        if self.env.get(ENV_ID):
            return self.env[ENV_ID].strip()
        try:
            value = self.id_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return value or None

    def _write_local(self, value: str) -> None:
        if self.env.get(ENV_ID):
            if self.env[ENV_ID].strip() != value:
                raise GuardError(f"{ENV_ID} is set to {self.env[ENV_ID]!r}; set it to {value!r} instead")
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.id_file.with_suffix(".tmp")
        tmp.write_text(value + "\n", encoding="utf-8")
        os.replace(tmp, self.id_file)

    def _local_or_new(self) -> str:
        value = self.local_id()
        if value is None:
            value = uuid.uuid4().hex
            self._write_local(value)
        return value

    # --- the database --------------------------------------------------------------------------
    def database_row(self):
        with self.engine.connect() as conn:
            return conn.execute(select(installation).where(installation.c.id == 1)).first()

    def check(self, *, claim: bool = True) -> Verdict:
        """May this machine deliver from this database? A database without an id is claimed."""
        row = self.database_row()
        if row is None and claim:
            mine = self._local_or_new()
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(installation).values(id=1, installation_id=mine,
                                                             hostname=socket.gethostname(), confirmed_by="first use"))
            except IntegrityError:
                pass     # another instance claimed it at the same moment: judge by its id
            row = self.database_row()
        local = self.local_id()
        if row is None:
            return Verdict(False, None, local, "the database has no installation id yet (the daemon's first start "
                                               "sets it)")
        if local == row.installation_id:
            return Verdict(True, row.installation_id, local, f"installation {row.installation_id}")
        where = f"first used on {row.hostname}" if row.hostname else "set elsewhere"
        mine = f"this machine's is {local}" if local else f"this machine has none ({self.id_file} or ${ENV_ID})"
        return Verdict(False, row.installation_id, local,
                       f"this database belongs to installation {row.installation_id} ({where}); {mine}. "
                       f"A restored copy does not deliver: if this machine is now where the database lives, run "
                       f"`rappel confirm-installation` (a second machine of the same installation: "
                       f"`rappel confirm-installation --join`)")

    def confirm(self, *, join: bool = False, by: str = "") -> str:
        """The operator's word: the database takes this machine's id (or, joining, the reverse)."""
        row = self.database_row()
        if join:
            if row is None:
                raise GuardError("the database has no installation id to join yet; run "
                                 "`rappel confirm-installation` without --join")
            self._write_local(row.installation_id)
            return row.installation_id
        mine = self._local_or_new()
        who = by or f"confirmed on {socket.gethostname()}"
        with self.engine.begin() as conn:
            if row is None:
                conn.execute(insert(installation).values(id=1, installation_id=mine, hostname=socket.gethostname(),
                                                         confirmed_by=who))
            else:
                conn.execute(update(installation).where(installation.c.id == 1).values(
                    installation_id=mine, hostname=socket.gethostname(), confirmed_by=who))
        return mine


class GuardError(Exception):
    pass
