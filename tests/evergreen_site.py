"""An Evergreen-shaped database on the test PostgreSQL server, for the pulls.

The tables are a subset of Evergreen's published schema with its real schema, table and column
names and types: Open-ILS/src/sql/Pg/005.schema.actors.sql (actor.usr, actor.card, actor.org_unit,
actor.usr_address), 006.schema.permissions.sql (permission.grp_tree), 040.schema.asset.sql
(asset.copy, asset.call_number), 080.schema.money.sql (money.billable_xact, which
action.circulation inherits), 090.schema.action.sql (action.circulation, action.hold_request) and
reporter-schema.sql (reporter.materialized_simple_record), of evergreen-library-system/Evergreen at
commit 921164cbfe938ca0ea3865f8cabaa4bc21a88e35: the columns rappel's preset reads and the NOT NULL
ones it must fill; references to tables left out (config.*) are dropped. The database is the
test's own (CREATE DATABASE, dropped after), so the schemas keep Evergreen's names.
"""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import create_engine, text

try:
    from tests.conftest import server_database
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from conftest import server_database

EVERGREEN_COMMIT = "921164cbfe938ca0ea3865f8cabaa4bc21a88e35"

DDL = """
CREATE SCHEMA actor;
CREATE SCHEMA permission;
CREATE SCHEMA asset;
CREATE SCHEMA money;
CREATE SCHEMA action;
CREATE SCHEMA reporter;

CREATE TABLE permission.grp_tree (
	id			SERIAL	PRIMARY KEY,
	name			TEXT	NOT NULL UNIQUE,
	parent			INT	REFERENCES permission.grp_tree (id) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED,
	usergroup		BOOL	NOT NULL DEFAULT TRUE,
	perm_interval		INTERVAL DEFAULT '3 years'::interval NOT NULL,
	description		TEXT,
	application_perm	TEXT
);

CREATE TABLE actor.org_unit (
	id		SERIAL	PRIMARY KEY,
	parent_ou	INT	REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
	ou_type		INT	NOT NULL,
	mailing_address	INT,
	shortname	TEXT	NOT NULL UNIQUE,
	name		TEXT	NOT NULL UNIQUE,
	email		TEXT,
	opac_visible	BOOL	NOT NULL DEFAULT TRUE
);

CREATE TABLE actor.usr (
	id			SERIAL				PRIMARY KEY,
	card			INT				UNIQUE, -- active card
	profile			INT				NOT NULL, -- patron profile
	usrname			TEXT				NOT NULL UNIQUE,
	email			TEXT,
	passwd			TEXT,
	standing		INT				NOT NULL DEFAULT 1,
	ident_type		INT				NOT NULL,
	first_given_name	TEXT				NOT NULL,
	second_given_name	TEXT,
	family_name		TEXT				NOT NULL,
	pref_first_given_name TEXT,
	pref_family_name TEXT,
	day_phone		TEXT,
	evening_phone		TEXT,
	other_phone		TEXT,
	mailing_address		INT,
	billing_address		INT,
	home_ou			INT				NOT NULL,
	active			BOOL				NOT NULL DEFAULT TRUE,
	barred			BOOL				NOT NULL DEFAULT FALSE,
	deleted			BOOL				NOT NULL DEFAULT FALSE,
	juvenile		BOOL				NOT NULL DEFAULT FALSE,
	claims_returned_count	INT				NOT NULL DEFAULT 0,
	create_date		TIMESTAMP WITH TIME ZONE	NOT NULL DEFAULT now(),
	expire_date		TIMESTAMP WITH TIME ZONE	NOT NULL DEFAULT (now() + '3 years'::INTERVAL),
	locale                  TEXT
);

CREATE TABLE actor.card (
	id	SERIAL	PRIMARY KEY,
	usr	INT	NOT NULL REFERENCES actor.usr (id) DEFERRABLE INITIALLY DEFERRED,
	barcode	TEXT	NOT NULL UNIQUE,
	active	BOOL	NOT NULL DEFAULT TRUE
);

CREATE TABLE actor.usr_address (
	id			SERIAL	PRIMARY KEY,
	valid			BOOL	NOT NULL DEFAULT TRUE,
	within_city_limits	BOOL	NOT NULL DEFAULT TRUE,
	address_type		TEXT	NOT NULL DEFAULT 'MAILING',
	usr			INT	NOT NULL REFERENCES actor.usr (id) DEFERRABLE INITIALLY DEFERRED,
	street1			TEXT	NOT NULL,
	street2			TEXT,
	city			TEXT	NOT NULL,
	county			TEXT,
	state			TEXT,
	country			TEXT	NOT NULL,
	post_code		TEXT	NOT NULL,
	pending         BOOL    NOT NULL DEFAULT FALSE
);

CREATE TABLE asset.call_number (
	id		bigserial PRIMARY KEY,
	creator		BIGINT				NOT NULL,
	editor		BIGINT				NOT NULL,
	record		bigint				NOT NULL,
	owning_lib	INT				    NOT NULL,
	label		TEXT				NOT NULL,
	deleted		BOOL				NOT NULL DEFAULT FALSE,
	label_class	BIGINT				NOT NULL
);

CREATE TABLE asset.copy (
	id		BIGSERIAL			PRIMARY KEY,
	circ_lib	INT				NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
	creator		BIGINT				NOT NULL,
	call_number	BIGINT				NOT NULL,
	editor		BIGINT				NOT NULL,
	status		INT				NOT NULL DEFAULT 0,
	location	INT				NOT NULL DEFAULT 1,
	loan_duration	INT				NOT NULL CHECK ( loan_duration IN (1,2,3) ),
	fine_level	INT				NOT NULL CHECK ( fine_level IN (1,2,3) ),
	barcode		TEXT				NOT NULL,
	dummy_title	TEXT,
	dummy_author	TEXT,
	circ_modifier	TEXT,
	deleted		BOOL				NOT NULL DEFAULT FALSE
);

CREATE TABLE money.billable_xact (
	id          BIGSERIAL			PRIMARY KEY,
	usr         INT				NOT NULL, -- actor.usr.id
	xact_start  TIMESTAMP WITH TIME ZONE	NOT NULL DEFAULT NOW(),
	xact_finish TIMESTAMP WITH TIME ZONE,
    unrecovered BOOL
);

CREATE TABLE action.circulation (
	target_copy		BIGINT				NOT NULL, -- asset.copy.id
	circ_lib		INT				NOT NULL, -- actor.org_unit.id
	circ_staff		INT				NOT NULL, -- actor.usr.id
	checkin_staff		INT,					  -- actor.usr.id
	checkin_lib		INT,					  -- actor.org_unit.id
	renewal_remaining	INT				NOT NULL, -- derived from "circ duration" rule
    grace_period           INTERVAL             NOT NULL, -- derived from "circ fine" rule
	due_date		TIMESTAMP WITH TIME ZONE,
	stop_fines_time		TIMESTAMP WITH TIME ZONE,
	checkin_time		TIMESTAMP WITH TIME ZONE,
	create_time		TIMESTAMP WITH TIME ZONE    NOT NULL DEFAULT NOW(),
	duration		INTERVAL,				  -- derived from "circ duration" rule
	duration_rule		TEXT				NOT NULL, -- name of "circ duration" rule
	recurring_fine_rule	TEXT				NOT NULL, -- name of "circ fine" rule
	max_fine_rule		TEXT				NOT NULL, -- name of "max fine" rule
	stop_fines		TEXT				CHECK (stop_fines IN (
	                                       'CHECKIN','CLAIMSRETURNED','LOST','MAXFINES','RENEW','LONGOVERDUE','CLAIMSNEVERCHECKEDOUT')),
	copy_location	INT				NOT NULL DEFAULT 1
) INHERITS (money.billable_xact);
ALTER TABLE action.circulation ADD PRIMARY KEY (id);
ALTER TABLE action.circulation
       ADD COLUMN parent_circ BIGINT
       REFERENCES action.circulation( id )
       DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX circ_outstanding_idx ON action.circulation (usr) WHERE checkin_time IS NULL;
CREATE INDEX circ_checkin_time ON "action".circulation (checkin_time) WHERE checkin_time IS NOT NULL;

CREATE TABLE action.hold_request (
	id			SERIAL				PRIMARY KEY,
	request_time		TIMESTAMP WITH TIME ZONE	NOT NULL DEFAULT NOW(),
	capture_time		TIMESTAMP WITH TIME ZONE,
	fulfillment_time	TIMESTAMP WITH TIME ZONE,
	checkin_time		TIMESTAMP WITH TIME ZONE,
	expire_time		TIMESTAMP WITH TIME ZONE,
	cancel_time		TIMESTAMP WITH TIME ZONE,
	target			BIGINT				NOT NULL, -- see hold_type
	current_copy		BIGINT,
	request_lib		INT				NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
	requestor		INT				NOT NULL REFERENCES actor.usr (id) DEFERRABLE INITIALLY DEFERRED,
	usr			INT				NOT NULL REFERENCES actor.usr (id) DEFERRABLE INITIALLY DEFERRED,
	selection_ou		INT				NOT NULL REFERENCES actor.org_unit (id) DEFERRABLE INITIALLY DEFERRED,
	selection_depth		INT				NOT NULL DEFAULT 0,
	pickup_lib		INT				NOT NULL REFERENCES actor.org_unit DEFERRABLE INITIALLY DEFERRED,
	hold_type		TEXT,
	email_notify		BOOL				NOT NULL DEFAULT FALSE,
	frozen			BOOL				NOT NULL DEFAULT FALSE,
	thaw_date		TIMESTAMP WITH TIME ZONE,
	shelf_time		TIMESTAMP WITH TIME ZONE,
	shelf_expire_time TIMESTAMPTZ,
	current_shelf_lib INT REFERENCES actor.org_unit DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE reporter.materialized_simple_record (
	id		BIGINT PRIMARY KEY,
	fingerprint	TEXT,
	quality		INT,
	tcn_source	TEXT,
	tcn_value	TEXT,
	title		TEXT,
	author		TEXT,
	publisher	TEXT,
	pubdate		TEXT,
	isbn		TEXT[],
	issn		TEXT[]
);
"""

# Evergreen's seed values (950.data.seed-values.sql): the Users tree, its Patrons and Staff groups.
SEED = """
INSERT INTO permission.grp_tree (id, name, parent, usergroup, application_perm) VALUES
  (1, 'Users', NULL, FALSE, 'group_application.user'),
  (2, 'Patrons', 1, TRUE, 'group_application.user.patron'),
  (3, 'Staff', 1, FALSE, 'group_application.user.staff'),
  (5, 'Circulators', 3, TRUE, 'group_application.user.staff.circ');
INSERT INTO actor.org_unit (id, parent_ou, ou_type, shortname, name) VALUES (1, NULL, 1, 'CONS', 'Example Consortium');
INSERT INTO asset.call_number (id, creator, editor, record, owning_lib, label, label_class)
  VALUES (-1, 1, 1, -1, 1, '##URI##', 1);
"""


class Evergreen:
    """Writes Evergreen's rows the way Evergreen does (the test's side: rappel only reads)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        self._next = 1000

    def sql(self, statement: str, **params):
        with self.engine.begin() as conn:
            return conn.execute(text(statement), params)

    def create(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(DDL)
            conn.exec_driver_sql(SEED)

    def _id(self) -> int:
        self._next += 1
        return self._next

    def library(self, ou: int, shortname: str, name: str) -> None:
        self.sql("INSERT INTO actor.org_unit (id, parent_ou, ou_type, shortname, name) VALUES (:i, 1, 3, :s, :n)",
                 i=ou, s=shortname, n=name)

    def patron(self, usr: int, barcode: str, first: str, last: str, *, email: str | None = None, profile: int = 2,
               home: int = 101, locale: str | None = None, street1: str | None = "12 rue des Facultés",
               post_code: str = "33000", city: str = "Bordeaux", valid: bool = True, phone: str | None = None,
               pref_first: str | None = None, deleted: bool = False) -> None:
        self.sql("INSERT INTO actor.usr (id, profile, usrname, email, ident_type, first_given_name, family_name, "
                 "pref_first_given_name, day_phone, home_ou, locale, deleted) VALUES (:u, :p, :name, :e, 1, :f, :l, "
                 ":pf, :phone, :home, :loc, :deleted)", u=usr, p=profile, name=f"user{usr}", e=email, f=first,
                 l=last, pf=pref_first, phone=phone, home=home, loc=locale, deleted=deleted)
        card = self._id()
        self.sql("INSERT INTO actor.card (id, usr, barcode) VALUES (:c, :u, :b)", c=card, u=usr, b=barcode)
        self.sql("UPDATE actor.usr SET card = :c WHERE id = :u", c=card, u=usr)
        if street1:
            address = self._id()
            self.sql("INSERT INTO actor.usr_address (id, valid, usr, street1, city, country, post_code) "
                     "VALUES (:a, :v, :u, :s, :c, 'France', :pc)", a=address, v=valid, u=usr, s=street1, c=city,
                     pc=post_code)
            self.sql("UPDATE actor.usr SET mailing_address = :a WHERE id = :u", a=address, u=usr)

    def copy(self, barcode: str, title: str | None, circ_lib: int, *, dummy_title: str | None = None,
             circ_modifier: str | None = None) -> int:
        copy = self._id()
        if title is None:      # a pre-catalogued item: the -1 call number, its own title
            call_number = -1
        else:
            call_number = record = self._id()
            self.sql("INSERT INTO reporter.materialized_simple_record (id, title) VALUES (:r, :t)", r=record, t=title)
            self.sql("INSERT INTO asset.call_number (id, creator, editor, record, owning_lib, label, label_class) "
                     "VALUES (:c, 1, 1, :r, :o, 'QA 1', 1)", c=call_number, r=record, o=circ_lib)
        self.sql("INSERT INTO asset.copy (id, circ_lib, creator, call_number, editor, loan_duration, fine_level, "
                 "barcode, dummy_title, circ_modifier) VALUES (:i, :lib, 1, :cn, 1, 2, 2, :b, :dt, :cm)", i=copy,
                 lib=circ_lib, cn=call_number, b=barcode, dt=dummy_title, cm=circ_modifier)
        return copy

    def checkout(self, circ: int, *, usr: int, barcode: str, title: str | None, circ_lib: int, due: str,
                 dummy_title: str | None = None, parent: int | None = None, circ_modifier: str | None = None,
                 rule: str = "default") -> int:
        copy = self.copy(barcode, title, circ_lib, dummy_title=dummy_title, circ_modifier=circ_modifier)
        self.sql("INSERT INTO action.circulation (id, usr, xact_start, target_copy, circ_lib, circ_staff, "
                 "renewal_remaining, grace_period, due_date, duration, duration_rule, recurring_fine_rule, "
                 "max_fine_rule, parent_circ) VALUES (:i, :u, '2026-10-01 10:00+02', :c, :lib, 1, 2, '1 day', "
                 ":due, '21 days', :rule, 'default', 'default', :parent)", i=circ, u=usr, c=copy, lib=circ_lib,
                 due=due, parent=parent, rule=rule)
        return copy

    def check_in(self, circ: int, at: str, stop_fines: str = "CHECKIN") -> None:
        self.sql("UPDATE action.circulation SET checkin_time = :at, checkin_lib = circ_lib, stop_fines = :sf, "
                 "stop_fines_time = :at, xact_finish = :at WHERE id = :i", i=circ, at=at, sf=stop_fines)

    def renew(self, circ: int, new_circ: int, due: str, at: str) -> None:
        """Evergreen's renewal: the circulation is closed (stop_fines RENEW) and a new one opened."""
        row = self.sql("SELECT usr, target_copy, circ_lib FROM action.circulation WHERE id = :i", i=circ).one()
        self.check_in(circ, at, "RENEW")
        self.sql("INSERT INTO action.circulation (id, usr, xact_start, target_copy, circ_lib, circ_staff, "
                 "renewal_remaining, grace_period, due_date, duration, duration_rule, recurring_fine_rule, "
                 "max_fine_rule, parent_circ) VALUES (:i, :u, :at, :c, :lib, 1, 1, '1 day', :due, '21 days', "
                 "'default', 'default', 'default', :parent)", i=new_circ, u=row.usr, at=at, c=row.target_copy,
                 lib=row.circ_lib, due=due, parent=circ)

    def stop_fines(self, circ: int, why: str) -> None:
        """LOST, CLAIMSRETURNED, LONGOVERDUE…: the circulation stays open."""
        self.sql("UPDATE action.circulation SET stop_fines = :w, stop_fines_time = '2026-11-20 09:00+01' "
                 "WHERE id = :i", i=circ, w=why)

    def hold(self, hold: int, *, usr: int, title: str, pickup: int, placed: str, hold_type: str = "T",
             copy_at: int | None = None, barcode: str | None = None, shelf: str | None = None,
             shelf_expire: str | None = None, expire: str | None = None, frozen: bool = False) -> None:
        copy = self.copy(barcode, title, copy_at) if copy_at else None
        record = self._id() if copy is None else None
        if record is not None:
            self.sql("INSERT INTO reporter.materialized_simple_record (id, title) VALUES (:r, :t)", r=record, t=title)
        target = record if hold_type == "T" and record is not None else \
            self.sql("SELECT record FROM asset.call_number cn JOIN asset.copy c ON c.call_number = cn.id "
                     "WHERE c.id = :c", c=copy).scalar()
        self.sql("INSERT INTO action.hold_request (id, request_time, capture_time, target, current_copy, "
                 "request_lib, requestor, usr, selection_ou, pickup_lib, hold_type, frozen, shelf_time, "
                 "shelf_expire_time, expire_time, current_shelf_lib) VALUES (:h, :placed, :shelf, :t, :copy, "
                 ":pickup, :u, :u, :pickup, :pickup, :ht, :frozen, :shelf, :sx, :exp, :shelf_lib)",
                 h=hold, placed=placed, shelf=shelf, t=target, copy=copy, pickup=pickup, u=usr, ht=hold_type,
                 frozen=frozen, sx=shelf_expire, exp=expire, shelf_lib=pickup if shelf else None)

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def evergreen_database():
    """A fresh Evergreen-shaped database (dropped after); the test skips without a PostgreSQL server."""
    with server_database("postgresql", "rappel_evergreen") as url:
        evergreen = Evergreen(url)
        try:
            evergreen.create()
            yield evergreen
        finally:
            evergreen.close()
