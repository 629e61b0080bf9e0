"""The database tables (SQLAlchemy Core). Changes go through a new alembic migration."""
from __future__ import annotations

from sqlalchemy import (Column, Date, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, MetaData,
                        PrimaryKeyConstraint, String, Table, Text, func)

from engine.facts import PATRON_FIELDS

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

LOAN_FIELDS = ("loan_id", "patron_id", "item_barcode", "title", "library", "due_date", "returned_on", "status",
               "item_type", "loan_policy")
OPTIONAL_FIELDS = frozenset({"item_type", "loan_policy", "channels", "opt_out"})   # columns an export may leave out: "" then
REQUEST_FIELDS = ("request_id", "patron_id", "title", "library", "pickup_library", "placed_on", "status",
                  "expires_on")
# columns whose values many rows share: the day's candidates keep each value once (Store.candidates)
SHARED_VALUES = frozenset({"library", "due_date", "status", "item_type", "loan_policy", "title", "preferred_language",
                           "account_type", "record_type", "user_group", "postal_code", "city", "country",
                           "channels", "opt_out"})

patrons = Table(
    "patrons", metadata,
    Column("patron_id", String(64), primary_key=True),
    Column("barcode", String(64), nullable=False, unique=True),
    *(Column(name, String(255), nullable=False, server_default="") for name in PATRON_FIELDS[2:]),
)
assert tuple(patrons.c.keys()) == PATRON_FIELDS, "the patrons table has one column per Patron field, in order"

loans = Table(
    "loans", metadata,
    Column("loan_id", String(64), primary_key=True),
    Column("patron_id", String(64), ForeignKey("patrons.patron_id"), nullable=False, index=True),
    Column("item_barcode", String(64), nullable=False, server_default=""),
    Column("title", Text, nullable=False, server_default=""),
    Column("library", String(32), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("returned_on", Date, nullable=True),
    Column("status", String(64), nullable=False, server_default=""),
    # facts (migration 0005): why rappel closed the loan itself, e.g. "absent from the export of 2026-12-01"
    Column("closed_reason", Text, nullable=True),
    # policy (migration 0007): the item's type and the loan rule of the library system, for
    # audiences and per-library timelines; "" when the source does not give them
    Column("item_type", String(64), nullable=False, server_default=""),
    Column("loan_policy", String(64), nullable=False, server_default=""),
)
# The daily pre-filter: open loans by due date.
Index("ix_loans_open_due", loans.c.due_date,
      sqlite_where=loans.c.returned_on.is_(None), postgresql_where=loans.c.returned_on.is_(None))

requests = Table(
    "requests", metadata,
    Column("request_id", String(64), primary_key=True),
    Column("patron_id", String(64), ForeignKey("patrons.patron_id"), nullable=False, index=True),
    Column("title", Text, nullable=False, server_default=""),
    Column("library", String(32), nullable=False),
    Column("pickup_library", String(32), nullable=False),
    Column("placed_on", Date, nullable=False),
    Column("status", String(64), nullable=False, server_default=""),
    Column("expires_on", Date, nullable=True),
    # request notices (migration 0011): the day its status became the policy's ready status, set by
    # the import (adapters/store/requests.py)
    Column("ready_on", Date, nullable=True),
)

notices = Table(
    "notices", metadata,
    Column("key", String(255), primary_key=True),
    Column("run_date", Date, nullable=False),
    Column("stage", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("patron_id", String(64), nullable=False),
    Column("library", String(32), nullable=True),
    Column("recipient", Text, nullable=False),
    Column("destination", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("reference", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # delivery (migration 0003): the server's last reply, when a transient failure is retried, and
    # the notices that replaced this one when it failed for good (an email that became letters)
    Column("reply", Text, nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("replaced_by", Text, nullable=True),
)
Index("ix_notices_status", notices.c.status)

ledger = Table(
    "ledger", metadata,
    Column("loan_id", String(64), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("stage", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("notice_key", String(255), ForeignKey("notices.key"), nullable=True, index=True),
    Column("decided_on", Date, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # migration 0011: what loan_id names, a loan or a request (whose row is (request, stage, placed_on);
    # request stage ids differ from loan stage ids, so the key never mixes them up)
    Column("kind", String(8), nullable=False, server_default="loan"),
    PrimaryKeyConstraint("loan_id", "due_date", "stage"),
)

# -- patron services (migration 0002) ------------------------------------------------------------

# Every change to a patron record, by a member of staff (source "edit") or a synchronisation ("sync").
patron_audit = Table(
    "patron_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patron_id", String(64), nullable=False, index=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("role", String(64), nullable=False, server_default=""),
    Column("source", String(16), nullable=False),
    Column("field", String(64), nullable=False),
    Column("old_value", Text, nullable=False, server_default=""),
    Column("new_value", Text, nullable=False, server_default=""),
)

# Protected fields of external accounts edited locally: synchronisations keep these values.
patron_local_edits = Table(
    "patron_local_edits", metadata,
    Column("patron_id", String(64), ForeignKey("patrons.patron_id"), nullable=False),
    Column("field", String(64), nullable=False),
    Column("edited_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    PrimaryKeyConstraint("patron_id", "field"),
)

# --- operations (migration 0004): the daemon's lease, its run history, the installation guard -------

installation = Table(
    "installation", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),   # always 1: one row
    Column("installation_id", String(64), nullable=False),
    Column("hostname", String(255), nullable=False, server_default=""),
    Column("claimed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("confirmed_by", String(255), nullable=False, server_default=""),
)

leases = Table(
    "leases", metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),   # +1 at every change of holder
    Column("acquired_at", Float, nullable=False),   # database clock, seconds since the epoch
    Column("renewed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),          # day | deliver | reload
    Column("run_date", Date, nullable=True),              # the date evaluated (day) or delivered on
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("outcome", String(16), nullable=False),        # running | ok | failed | interrupted | skipped | rejected
    Column("holder", String(255), nullable=False, server_default=""),
    Column("decided", Integer, nullable=False, server_default="0"),
    Column("sent", Integer, nullable=False, server_default="0"),
    Column("retrying", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("dropped", Integer, nullable=False, server_default="0"),    # cancelled or expired at delivery
    Column("held", Integer, nullable=False, server_default="0"),       # held by the flood guard
    Column("errors", Text, nullable=False, server_default=""),
)
Index("ix_runs_kind_date", runs.c.kind, runs.c.run_date)
# A day is evaluated by one run at a time and completed once.
Index("ux_runs_day", runs.c.run_date, unique=True,
      sqlite_where=(runs.c.kind == "day") & runs.c.outcome.in_(("running", "ok")),
      postgresql_where=(runs.c.kind == "day") & runs.c.outcome.in_(("running", "ok")))

# --- facts (migration 0005): every successful import or pull, for the freshness guard ---------------

fact_imports = Table(
    "fact_imports", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),            # patrons | loans | requests
    Column("source", Text, nullable=False),                # a file's path, or a source's name in sources.yaml
    Column("mode", String(16), nullable=False),            # import | snapshot | pull
    Column("facts_date", Date, nullable=True),             # the export's date (what "absent" is dated)
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("rows", Integer, nullable=False, server_default="0"),
    Column("inserted", Integer, nullable=False, server_default="0"),
    Column("changed", Integer, nullable=False, server_default="0"),
    Column("unchanged", Integer, nullable=False, server_default="0"),
    Column("closed", Integer, nullable=False, server_default="0"),
)
Index("ix_fact_imports_kind_finished", fact_imports.c.kind, fact_imports.c.finished_at)

# --- notices (migration 0006): the message as sent, every attempt, every staff action ---------------

# The exact message of a delivered notice (the email as sent, the letter's PDF), zlib-compressed.
messages = Table(
    "messages", metadata,
    Column("notice_key", String(255), ForeignKey("notices.key"), primary_key=True),
    Column("media_type", String(64), nullable=False),       # message/rfc822 | application/pdf
    Column("filename", String(255), nullable=False, server_default=""),
    Column("body", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),                # uncompressed bytes
    Column("stored_at", DateTime(timezone=True), nullable=False),
)

# One row per delivery attempt: when, through which channel, to where, and what the server answered.
attempts = Table(
    "attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notice_key", String(255), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False, server_default="send"),   # send | resend
    Column("channel", String(16), nullable=False),
    Column("destination", Text, nullable=False, server_default=""),
    Column("outcome", String(16), nullable=False),          # sent | retrying | failed
    Column("reply", Text, nullable=False, server_default=""),
    Column("reference", Text, nullable=False, server_default=""),   # print job id, outbox file, message id
    Column("actor", String(255), nullable=False, server_default=""),  # who asked (a resend); "" for a run
)

# Every action of a member of staff on a notice or a patron: who, when, why.
staff_actions = Table(
    "staff_actions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(32), nullable=False),           # resend | cancel | retry | forget | purge
    Column("notice_key", String(255), nullable=True, index=True),
    Column("patron_id", String(64), nullable=True, index=True),
    Column("why", Text, nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
)

# --- staff interface (migration 0008): staff accounts, web sessions, login failures, API clients -----

# A member of staff who may sign in to `rappel serve` with a password (argon2 hash) or through the
# reverse proxy's single sign-on. The role is one of accounts.yaml's roles.
staff = Table(
    "staff", metadata,
    Column("name", String(255), primary_key=True),
    Column("role", String(64), nullable=False),
    Column("password_hash", Text, nullable=False, server_default=""),   # "" = single sign-on only
    Column("disabled", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=True),
    Column("last_login_at", DateTime(timezone=True), nullable=True),
)

# A signed-in browser. Only a hash of the cookie's token is stored; the CSRF token goes with it.
web_sessions = Table(
    "web_sessions", metadata,
    Column("token_hash", String(128), primary_key=True),
    Column("staff_name", String(255), nullable=False, index=True),
    Column("role", String(64), nullable=False),
    Column("csrf_token", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("address", String(64), nullable=False, server_default=""),
    Column("via", String(16), nullable=False, server_default="password"),   # password | header
)

# Failed sign-ins, for the rate limit (by name and by address); purged as they age.
login_failures = Table(
    "login_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, server_default=""),
    Column("address", String(64), nullable=False, server_default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)
Index("ix_login_failures_at", login_failures.c.at)

# A client of the JSON API (the library system pushing facts, a discovery layer reading): a token
# shown once at creation, stored as a hash, with the role it acts as.
api_clients = Table(
    "api_clients", metadata,
    Column("name", String(255), primary_key=True),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("role", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled", Integer, nullable=False, server_default="0"),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

# --- migration 0009 ------------------------------------------------------------------------------

# The desk's name search: every word of a patron's first and last name, folded (case, accents) by
# adapters/store/names.py, so that "dupré", "Dupre" and "DUPRÉ" find the same patron by an index range
# instead of a scan of the patrons table. Written with every change of a patron's name.
patron_name_words = Table(
    "patron_name_words", metadata,
    Column("word", String(64), nullable=False),
    Column("patron_id", String(64), nullable=False, index=True),
    PrimaryKeyConstraint("word", "patron_id"),
)

# What the daemon is actually running, recorded by the daemon itself at every (re)load of its policy,
# so that `rappel status` and the staff interface report that and not the files on disk.
daemon_state = Table(
    "daemon_state", metadata,
    Column("name", String(64), primary_key=True),            # "daemon": one row per daemon role
    Column("holder", String(255), nullable=False, server_default=""),
    Column("policy_fingerprint", String(128), nullable=False, server_default=""),
    Column("policy_loaded_at", DateTime(timezone=True), nullable=True),
    Column("policy_summary", Text, nullable=False, server_default=""),   # JSON: stages, channels, libraries
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
