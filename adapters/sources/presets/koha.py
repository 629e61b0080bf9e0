"""Koha (MariaDB/MySQL), written against its published schema, installer/data/mysql/kohastructure.sql
(Koha-Community/Koha, commit 00545f8780390d735dad664d76d09cc67f42fdaa).

- patrons: ``borrowers``; ``patron_id`` is borrowernumber, ``barcode`` cardnumber (a patron
  without one: ``borrowernumber:N``, rappel needs a barcode), ``user_group`` categorycode; record type staff for categories of type S (``categories.category_type``), else
  public; every Koha patron is an internal account (Koha is where it is kept). ``lang`` 'default'
  is no preference. A patron flagged ``gonenoaddress`` has no postal address for rappel (letters
  to an address the library knows is wrong are not sent).
- loans: the open checkouts (``issues``) and those returned in the last ``returned_days``
  (``old_issues``, with their return date); ``library`` is the branch of the checkout
  (``issues.branchcode``, else the item's home branch), as Koha's own overdue notices by default.
  Status ``claimed_returned`` when an unresolved ``return_claims`` row names the checkout, else
  ``lost`` when the item is lost (``items.itemlost`` not 0, whatever its LOST value), else empty.
  ``date_due`` is a DATETIME without a zone: read in the policy's time zone.
- requests: the holds (``reserves``; cancelled and filled ones have moved to ``old_reserves``):
  ``on_hold_shelf`` when waiting (found W), ``in_process`` in transit or processing (T, P),
  ``suspended``, else ``active``; expiring on ``expirationdate`` (else the patron's date);
  ``library`` the held item's home branch, else the pickup branch.
"""
from __future__ import annotations

SCHEMA = ("Koha-Community/Koha installer/data/mysql/kohastructure.sql "
          "(commit 00545f8780390d735dad664d76d09cc67f42fdaa)")
TABLES = ("borrowers", "categories", "issues", "old_issues", "items", "biblio", "return_claims",
          "reserves")


def one_line(expr: str) -> str:
    """A text column on one line: line breaks typed into Koha's free-text fields become spaces."""
    return f"TRIM(REPLACE(REPLACE(COALESCE({expr}, ''), CHAR(13), ''), CHAR(10), ' '))"


def address(expr: str) -> str:
    """A postal address field, empty for a patron whose address the library marked as wrong."""
    return f"CASE WHEN b.gonenoaddress = 1 THEN '' ELSE {one_line(expr)} END"


# 245$a as Koha keeps it ends with ISBD punctuation ("Introduction à l'algèbre /"): not in a notice
TITLE = f"REGEXP_REPLACE({one_line('bib.title')}, '[[:space:]]*[/:;=,][[:space:]]*$', '')"

PATRONS = f"""
SELECT b.borrowernumber AS patron_id,
       COALESCE(NULLIF(b.cardnumber, ''), CONCAT('borrowernumber:', b.borrowernumber)) AS barcode,
       {one_line('b.firstname')} AS first_name,
       {one_line('b.surname')} AS last_name,
       TRIM(b.email) AS email,
       CASE WHEN b.lang IS NULL OR b.lang = 'default' THEN '' ELSE b.lang END AS preferred_language,
       'internal' AS account_type,
       CASE WHEN c.category_type = 'S' THEN 'staff' ELSE 'public' END AS record_type,
       b.categorycode AS user_group,
       {address("CONCAT_WS(' ', NULLIF(b.streetnumber, ''), b.address)")} AS address_line1,
       {address('b.address2')} AS address_line2,
       {address('b.zipcode')} AS postal_code,
       {address('b.city')} AS city,
       {address('b.country')} AS country,
       {one_line("COALESCE(NULLIF(b.phone, ''), b.mobile)")} AS phone,
       -- channels and opt-outs are rappel's own (rappel patron edit, the desk), not the source's
       '' AS channels,
       '' AS opt_out
  FROM borrowers b
  LEFT JOIN categories c ON c.categorycode = b.categorycode
"""

LOANS = f"""
SELECT i.issue_id AS loan_id,
       i.borrowernumber AS patron_id,
       it.barcode AS item_barcode,
       {TITLE} AS title,
       COALESCE(i.branchcode, it.homebranch) AS library,
       i.date_due AS due_date,
       i.returndate AS returned_on,
       CASE WHEN EXISTS (SELECT 1 FROM return_claims rc
                          WHERE rc.itemnumber = i.itemnumber AND rc.issue_id = i.issue_id
                            AND rc.resolution IS NULL) THEN 'claimed_returned'
            WHEN it.itemlost <> 0 THEN 'lost'
            ELSE '' END AS status,
       COALESCE(it.itype, '') AS item_type,
       '' AS loan_policy
  FROM issues i
  JOIN items it ON it.itemnumber = i.itemnumber
  LEFT JOIN biblio bib ON bib.biblionumber = it.biblionumber
UNION ALL
SELECT o.issue_id, o.borrowernumber, it.barcode, {TITLE}, COALESCE(o.branchcode, it.homebranch),
       o.date_due, o.returndate, '', COALESCE(it.itype, ''), ''
  FROM old_issues o
  JOIN borrowers b ON b.borrowernumber = o.borrowernumber
  LEFT JOIN items it ON it.itemnumber = o.itemnumber
  LEFT JOIN biblio bib ON bib.biblionumber = it.biblionumber
 WHERE o.returndate >= :returned_since
"""

REQUESTS = f"""
SELECT r.reserve_id AS request_id,
       r.borrowernumber AS patron_id,
       {TITLE} AS title,
       COALESCE(it.homebranch, r.branchcode) AS library,
       r.branchcode AS pickup_library,
       COALESCE(r.reservedate, DATE(r.timestamp)) AS placed_on,
       CASE WHEN r.found = 'W' THEN 'on_hold_shelf'
            WHEN r.found IN ('T', 'P') THEN 'in_process'
            WHEN r.suspend = 1 THEN 'suspended'
            ELSE 'active' END AS status,
       COALESCE(r.expirationdate, r.patron_expiration_date) AS expires_on
  FROM reserves r
  LEFT JOIN biblio bib ON bib.biblionumber = r.biblionumber
  LEFT JOIN items it ON it.itemnumber = r.itemnumber
"""

QUERIES = {"patrons": PATRONS, "loans": LOANS, "requests": REQUESTS}
