"""Evergreen (PostgreSQL), written against its published schema, Open-ILS/src/sql/Pg/
005.schema.actors.sql, 006.schema.permissions.sql, 040.schema.asset.sql, 090.schema.action.sql and
reporter-schema.sql (evergreen-library-system/Evergreen, commit
921164cbfe938ca0ea3865f8cabaa4bc21a88e35).

- patrons: ``actor.usr`` (not deleted); ``barcode`` the active card (``actor.card`` through
  ``usr.card``; a user without one: ``usr:ID``), the preferred names when set, ``preferred_language`` the
  locale (fr-CA…), ``user_group`` the profile's name (``permission.grp_tree``); record type staff
  when the profile is the Staff group (application_perm group_application.user.staff) or below
  it, else public; internal accounts. The postal address is the mailing address (else the billing
  one), when Evergreen holds it valid.
- loans: circulations (``action.circulation``) not checked in, and those checked in during the
  last ``returned_days`` with their check-in date; ``library`` the circulating library's short
  name (``actor.org_unit.shortname``); the status from ``stop_fines``: LOST and LONGOVERDUE lost
  (the item is billed), CLAIMSRETURNED and CLAIMSNEVERCHECKEDOUT claimed_returned (the patron
  disputes the loan), anything else none: the statuses the shipped policy excludes. A renewal is a new circulation in Evergreen: rappel sees the old one
  returned (on the day of the renewal) and a new loan with the new due date. The title is the
  record's (``reporter.materialized_simple_record``), a pre-catalogued item's own dummy title.
- requests: holds (``action.hold_request``) neither fulfilled nor cancelled: ``on_hold_shelf``
  once on the shelf (until ``shelf_expire_time``), ``in_process`` captured and in transit,
  ``suspended`` when frozen, else ``active`` (until ``expire_time``); ``library`` the held item's
  circulating library, else the pickup library.
"""
from __future__ import annotations

SCHEMA = ("evergreen-library-system/Evergreen Open-ILS/src/sql/Pg/*.sql "
          "(commit 921164cbfe938ca0ea3865f8cabaa4bc21a88e35)")
TABLES = ("actor.usr", "actor.card", "actor.usr_address", "actor.org_unit", "permission.grp_tree",
          "action.circulation", "asset.copy", "asset.call_number", "reporter.materialized_simple_record",
          "action.hold_request")


def one_line(expr: str) -> str:
    """A text column on one line: line breaks in free-text fields become spaces."""
    return f"btrim(translate(COALESCE({expr}, ''), chr(13) || chr(10), '  '))"


def address(expr: str) -> str:
    return one_line(f"CASE WHEN a.valid THEN {expr} END")


PATRONS = f"""
WITH RECURSIVE staff_groups AS (
    SELECT id FROM permission.grp_tree WHERE application_perm = 'group_application.user.staff'
    UNION
    SELECT g.id FROM permission.grp_tree g JOIN staff_groups s ON g.parent = s.id
)
SELECT u.id AS patron_id,
       COALESCE(c.barcode, 'usr:' || u.id) AS barcode,
       {one_line("COALESCE(NULLIF(u.pref_first_given_name, ''), u.first_given_name)")} AS first_name,
       {one_line("COALESCE(NULLIF(u.pref_family_name, ''), u.family_name)")} AS last_name,
       btrim(u.email) AS email,
       u.locale AS preferred_language,
       'internal' AS account_type,
       CASE WHEN u.profile IN (SELECT id FROM staff_groups) THEN 'staff' ELSE 'public' END AS record_type,
       grp.name AS user_group,
       {address('a.street1')} AS address_line1,
       {address('a.street2')} AS address_line2,
       {address('a.post_code')} AS postal_code,
       {address('a.city')} AS city,
       {address('a.country')} AS country,
       {one_line("COALESCE(NULLIF(u.day_phone, ''), NULLIF(u.evening_phone, ''), u.other_phone)")} AS phone,
       -- channels and opt-outs are rappel's own (rappel patron edit, the desk), not the source's
       '' AS channels,
       '' AS opt_out
  FROM actor.usr u
  LEFT JOIN actor.card c ON c.id = u.card
  LEFT JOIN permission.grp_tree grp ON grp.id = u.profile
  LEFT JOIN actor.usr_address a ON a.id = COALESCE(u.mailing_address, u.billing_address)
 WHERE NOT u.deleted
"""

LOANS = f"""
WITH circ AS (
    SELECT * FROM action.circulation WHERE checkin_time IS NULL
    UNION ALL
    SELECT * FROM action.circulation WHERE checkin_time >= :returned_since
)
SELECT circ.id AS loan_id,
       circ.usr AS patron_id,
       acp.barcode AS item_barcode,
       {one_line('COALESCE(rmsr.title, acp.dummy_title)')} AS title,
       aou.shortname AS library,
       circ.due_date AS due_date,
       circ.checkin_time AS returned_on,
       CASE circ.stop_fines WHEN 'LOST' THEN 'lost'
                            WHEN 'CLAIMSRETURNED' THEN 'claimed_returned'
                            WHEN 'LONGOVERDUE' THEN 'lost'
                            WHEN 'CLAIMSNEVERCHECKEDOUT' THEN 'claimed_returned'
                            ELSE '' END AS status,
       COALESCE(acp.circ_modifier, '') AS item_type,
       circ.duration_rule AS loan_policy
  FROM circ
  JOIN actor.usr u ON u.id = circ.usr AND NOT u.deleted
  JOIN asset.copy acp ON acp.id = circ.target_copy
  JOIN actor.org_unit aou ON aou.id = circ.circ_lib
  LEFT JOIN asset.call_number acn ON acn.id = acp.call_number
  LEFT JOIN reporter.materialized_simple_record rmsr ON rmsr.id = acn.record
"""

REQUESTS = f"""
SELECT ahr.id AS request_id,
       ahr.usr AS patron_id,
       {one_line('rmsr.title')} AS title,
       COALESCE(held_at.shortname, pickup.shortname) AS library,
       pickup.shortname AS pickup_library,
       ahr.request_time AS placed_on,
       CASE WHEN ahr.shelf_time IS NOT NULL THEN 'on_hold_shelf'
            WHEN ahr.capture_time IS NOT NULL THEN 'in_process'
            WHEN ahr.frozen THEN 'suspended'
            ELSE 'active' END AS status,
       CASE WHEN ahr.shelf_time IS NOT NULL THEN ahr.shelf_expire_time ELSE ahr.expire_time END AS expires_on
  FROM action.hold_request ahr
  JOIN actor.usr u ON u.id = ahr.usr AND NOT u.deleted
  JOIN actor.org_unit pickup ON pickup.id = ahr.pickup_lib
  LEFT JOIN asset.copy acp
         ON acp.id = COALESCE(ahr.current_copy, CASE WHEN ahr.hold_type IN ('C', 'F', 'R') THEN ahr.target END)
  LEFT JOIN actor.org_unit held_at ON held_at.id = acp.circ_lib
  LEFT JOIN asset.call_number acn
         ON acn.id = CASE WHEN ahr.hold_type = 'V' THEN ahr.target ELSE acp.call_number END
  LEFT JOIN reporter.materialized_simple_record rmsr
         ON rmsr.id = CASE WHEN ahr.hold_type = 'T' THEN ahr.target ELSE acn.record END
 WHERE ahr.cancel_time IS NULL AND ahr.fulfillment_time IS NULL
"""

QUERIES = {"patrons": PATRONS, "loans": LOANS, "requests": REQUESTS}
