"""A Koha-shaped database on the test MariaDB server, for the pulls.

The tables are a subset of Koha's published schema with its real table and column names and types:
installer/data/mysql/kohastructure.sql of Koha-Community/Koha at commit
00545f8780390d735dad664d76d09cc67f42fdaa (the columns rappel's preset reads, and the keys it joins
on; the other columns are left out).

    with koha_database() as koha:
        koha.branch("SCI", "Bibliothèque des sciences")
        koha.patron(1, "2000000001", "Camille", "Durand", email=..., category="ETU")
        koha.checkout(10, patron=1, barcode="3000000010", title="Algèbre /", branch="SCI", due="2026-11-26 23:59:00")
"""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import create_engine, text

try:
    from tests.conftest import server_database
except ModuleNotFoundError:  # tests/ on sys.path rather than the project root
    from conftest import server_database

KOHA_COMMIT = "00545f8780390d735dad664d76d09cc67f42fdaa"

DDL = [
    """CREATE TABLE `branches` (
  `branchcode` varchar(10) NOT NULL DEFAULT '',
  `branchname` longtext NOT NULL,
  PRIMARY KEY (`branchcode`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE `categories` (
  `categorycode` varchar(10) NOT NULL DEFAULT '',
  `description` longtext DEFAULT NULL,
  `category_type` varchar(1) NOT NULL DEFAULT 'A',
  PRIMARY KEY (`categorycode`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE `borrowers` (
  `borrowernumber` int(11) NOT NULL AUTO_INCREMENT,
  `cardnumber` varchar(32) DEFAULT NULL,
  `surname` longtext DEFAULT NULL,
  `firstname` mediumtext DEFAULT NULL,
  `streetnumber` tinytext DEFAULT NULL,
  `streettype` tinytext DEFAULT NULL,
  `address` longtext DEFAULT NULL,
  `address2` mediumtext DEFAULT NULL,
  `city` longtext DEFAULT NULL,
  `state` mediumtext DEFAULT NULL,
  `zipcode` tinytext DEFAULT NULL,
  `country` mediumtext DEFAULT NULL,
  `email` longtext DEFAULT NULL,
  `phone` mediumtext DEFAULT NULL,
  `mobile` tinytext DEFAULT NULL,
  `branchcode` varchar(10) NOT NULL DEFAULT '',
  `categorycode` varchar(10) NOT NULL DEFAULT '',
  `gonenoaddress` tinyint(1) DEFAULT NULL,
  `lang` varchar(25) NOT NULL DEFAULT 'default',
  PRIMARY KEY (`borrowernumber`),
  UNIQUE KEY `cardnumber` (`cardnumber`),
  KEY `categorycode` (`categorycode`),
  KEY `branchcode` (`branchcode`),
  CONSTRAINT `borrowers_ibfk_1` FOREIGN KEY (`categorycode`) REFERENCES `categories` (`categorycode`),
  CONSTRAINT `borrowers_ibfk_2` FOREIGN KEY (`branchcode`) REFERENCES `branches` (`branchcode`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE `biblio` (
  `biblionumber` int(11) NOT NULL AUTO_INCREMENT,
  `frameworkcode` varchar(4) NOT NULL DEFAULT '',
  `author` longtext DEFAULT NULL,
  `title` longtext DEFAULT NULL,
  `subtitle` longtext DEFAULT NULL,
  `datecreated` date NOT NULL,
  PRIMARY KEY (`biblionumber`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE `items` (
  `itemnumber` int(11) NOT NULL AUTO_INCREMENT,
  `biblionumber` int(11) NOT NULL DEFAULT 0,
  `biblioitemnumber` int(11) NOT NULL DEFAULT 0,
  `barcode` varchar(20) DEFAULT NULL,
  `homebranch` varchar(10) DEFAULT NULL,
  `itemlost` tinyint(1) NOT NULL DEFAULT 0,
  `itemlost_on` datetime DEFAULT NULL,
  `holdingbranch` varchar(10) DEFAULT NULL,
  `onloan` date DEFAULT NULL,
  `itype` varchar(10) DEFAULT NULL,
  PRIMARY KEY (`itemnumber`),
  UNIQUE KEY `itembarcodeidx` (`barcode`),
  KEY `itembibnoidx` (`biblionumber`),
  KEY `homebranch` (`homebranch`),
  CONSTRAINT `items_ibfk_2` FOREIGN KEY (`homebranch`) REFERENCES `branches` (`branchcode`) ON UPDATE CASCADE,
  CONSTRAINT `items_ibfk_4` FOREIGN KEY (`biblionumber`) REFERENCES `biblio` (`biblionumber`) ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE `issues` (
  `issue_id` int(11) NOT NULL AUTO_INCREMENT,
  `borrowernumber` int(11) NOT NULL,
  `itemnumber` int(11) NOT NULL,
  `date_due` datetime DEFAULT NULL,
  `branchcode` varchar(10) DEFAULT NULL,
  `returndate` datetime DEFAULT NULL,
  `lastreneweddate` datetime DEFAULT NULL,
  `renewals_count` tinyint(4) NOT NULL DEFAULT 0,
  `issuedate` datetime DEFAULT NULL,
  PRIMARY KEY (`issue_id`),
  UNIQUE KEY `itemnumber` (`itemnumber`),
  KEY `issuesborridx` (`borrowernumber`),
  KEY `branchcode_idx` (`branchcode`),
  CONSTRAINT `issues_ibfk_1` FOREIGN KEY (`borrowernumber`) REFERENCES `borrowers` (`borrowernumber`) ON UPDATE CASCADE,
  CONSTRAINT `issues_ibfk_2` FOREIGN KEY (`itemnumber`) REFERENCES `items` (`itemnumber`) ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE `old_issues` (
  `issue_id` int(11) NOT NULL,
  `borrowernumber` int(11) DEFAULT NULL,
  `itemnumber` int(11) DEFAULT NULL,
  `date_due` datetime DEFAULT NULL,
  `branchcode` varchar(10) DEFAULT NULL,
  `returndate` datetime DEFAULT NULL,
  `lastreneweddate` datetime DEFAULT NULL,
  `renewals_count` tinyint(4) NOT NULL DEFAULT 0,
  `issuedate` datetime DEFAULT NULL,
  PRIMARY KEY (`issue_id`),
  KEY `old_issuesborridx` (`borrowernumber`),
  KEY `old_issuesitemidx` (`itemnumber`),
  CONSTRAINT `old_issues_ibfk_1` FOREIGN KEY (`borrowernumber`) REFERENCES `borrowers` (`borrowernumber`) ON DELETE SET NULL ON UPDATE SET NULL,
  CONSTRAINT `old_issues_ibfk_2` FOREIGN KEY (`itemnumber`) REFERENCES `items` (`itemnumber`) ON DELETE SET NULL ON UPDATE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE `return_claims` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `itemnumber` int(11) NOT NULL,
  `issue_id` int(11) DEFAULT NULL,
  `borrowernumber` int(11) NOT NULL,
  `notes` mediumtext DEFAULT NULL,
  `created_on` timestamp NULL DEFAULT NULL,
  `resolution` varchar(80) DEFAULT NULL,
  `resolved_on` timestamp NULL DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `item_issue` (`itemnumber`,`issue_id`),
  KEY `itemnumber` (`itemnumber`),
  CONSTRAINT `rc_borrowers_ibfk` FOREIGN KEY (`borrowernumber`) REFERENCES `borrowers` (`borrowernumber`) ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT `rc_items_ibfk` FOREIGN KEY (`itemnumber`) REFERENCES `items` (`itemnumber`) ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
    """CREATE TABLE `reserves` (
  `reserve_id` int(11) NOT NULL AUTO_INCREMENT,
  `borrowernumber` int(11) NOT NULL DEFAULT 0,
  `reservedate` date DEFAULT NULL,
  `biblionumber` int(11) NOT NULL DEFAULT 0,
  `branchcode` varchar(10) NOT NULL,
  `cancellationdate` date DEFAULT NULL,
  `priority` smallint(6) NOT NULL DEFAULT 1,
  `found` varchar(1) DEFAULT NULL,
  `timestamp` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  `itemnumber` int(11) DEFAULT NULL,
  `waitingdate` date DEFAULT NULL,
  `expirationdate` date DEFAULT NULL,
  `patron_expiration_date` date DEFAULT NULL,
  `suspend` tinyint(1) NOT NULL DEFAULT 0,
  `suspend_until` datetime DEFAULT NULL,
  PRIMARY KEY (`reserve_id`),
  KEY `borrowernumber` (`borrowernumber`),
  KEY `biblionumber` (`biblionumber`),
  KEY `itemnumber` (`itemnumber`),
  KEY `branchcode` (`branchcode`),
  CONSTRAINT `reserves_ibfk_1` FOREIGN KEY (`borrowernumber`) REFERENCES `borrowers` (`borrowernumber`) ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT `reserves_ibfk_2` FOREIGN KEY (`biblionumber`) REFERENCES `biblio` (`biblionumber`) ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT `reserves_ibfk_4` FOREIGN KEY (`branchcode`) REFERENCES `branches` (`branchcode`) ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
]


class Koha:
    """Writes Koha's rows the way Koha does (this is the test's side: rappel only reads)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        self._item = 0

    def sql(self, statement: str, **params) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement), params)

    def create(self) -> None:
        for statement in DDL:
            self.sql(statement)

    def branch(self, code: str, name: str) -> None:
        self.sql("INSERT INTO branches (branchcode, branchname) VALUES (:c, :n)", c=code, n=name)

    def category(self, code: str, kind: str = "A") -> None:
        self.sql("INSERT INTO categories (categorycode, description, category_type) VALUES (:c, :c, :t)",
                 c=code, t=kind)

    def patron(self, number: int, card: str, first: str, last: str, *, email: str | None = None,
               category: str = "ETU", branch: str = "SCI", lang: str = "default", streetnumber: str | None = None,
               address: str | None = "12 rue des Facultés", zipcode: str | None = "33000",
               city: str | None = "Bordeaux", country: str | None = "France", phone: str | None = None,
               gonenoaddress: int | None = None) -> None:
        self.sql("INSERT INTO borrowers (borrowernumber, cardnumber, firstname, surname, email, categorycode, "
                 "branchcode, lang, streetnumber, address, zipcode, city, country, phone, gonenoaddress) "
                 "VALUES (:n, :card, :first, :last, :email, :cat, :branch, :lang, :sn, :addr, :zip, :city, "
                 ":country, :phone, :gone)", n=number, card=card, first=first, last=last, email=email,
                 cat=category, branch=branch, lang=lang, sn=streetnumber, addr=address, zip=zipcode, city=city,
                 country=country, phone=phone, gone=gonenoaddress)

    def item(self, barcode: str, title: str, branch: str, itype: str | None = None) -> int:
        self._item += 1
        number = self._item
        self.sql("INSERT INTO biblio (biblionumber, title, datecreated) VALUES (:n, :t, '2020-01-01')",
                 n=number, t=title)
        self.sql("INSERT INTO items (itemnumber, biblionumber, biblioitemnumber, barcode, homebranch, "
                 "holdingbranch, itype) VALUES (:n, :n, :n, :b, :br, :br, :ty)", n=number, b=barcode, br=branch,
                 ty=itype)
        return number

    def checkout(self, issue_id: int, *, patron: int, barcode: str, title: str, branch: str, due: str,
                 issued: str = "2026-10-01 10:00:00", itype: str | None = None) -> int:
        item = self.item(barcode, title, branch, itype)
        self.sql("INSERT INTO issues (issue_id, borrowernumber, itemnumber, date_due, branchcode, issuedate) "
                 "VALUES (:i, :p, :it, :due, :br, :issued)", i=issue_id, p=patron, it=item, due=due, br=branch,
                 issued=issued)
        self.sql("UPDATE items SET onloan = DATE(:due) WHERE itemnumber = :it", due=due, it=item)
        return item

    def check_in(self, issue_id: int, returned: str) -> None:
        """What Koha does at check-in: the checkout moves from issues to old_issues."""
        self.sql("INSERT INTO old_issues (issue_id, borrowernumber, itemnumber, date_due, branchcode, returndate, "
                 "lastreneweddate, renewals_count, issuedate) SELECT issue_id, borrowernumber, itemnumber, "
                 "date_due, branchcode, :r, lastreneweddate, renewals_count, issuedate FROM issues "
                 "WHERE issue_id = :i", i=issue_id, r=returned)
        self.sql("DELETE FROM issues WHERE issue_id = :i", i=issue_id)

    def renew(self, issue_id: int, due: str, at: str) -> None:
        self.sql("UPDATE issues SET date_due = :due, lastreneweddate = :at, renewals_count = renewals_count + 1 "
                 "WHERE issue_id = :i", i=issue_id, due=due, at=at)

    def lose(self, issue_id: int, value: int = 1) -> None:
        self.sql("UPDATE items SET itemlost = :v, itemlost_on = '2026-11-20 09:00:00' WHERE itemnumber = "
                 "(SELECT itemnumber FROM issues WHERE issue_id = :i)", i=issue_id, v=value)

    def claim_returned(self, issue_id: int, *, resolution: str | None = None) -> None:
        self.sql("INSERT INTO return_claims (itemnumber, issue_id, borrowernumber, created_on, resolution) "
                 "SELECT itemnumber, issue_id, borrowernumber, '2026-11-20 10:00:00', :res FROM issues "
                 "WHERE issue_id = :i", i=issue_id, res=resolution)

    def hold(self, reserve_id: int, *, patron: int, title: str, pickup: str, placed: str, found: str | None = None,
             expires: str | None = None, item_branch: str | None = None, barcode: str | None = None) -> None:
        item = self.item(barcode, title, item_branch) if item_branch else None
        if item is None:
            self._item += 1
            self.sql("INSERT INTO biblio (biblionumber, title, datecreated) VALUES (:n, :t, '2020-01-01')",
                     n=self._item, t=title)
        self.sql("INSERT INTO reserves (reserve_id, borrowernumber, reservedate, biblionumber, branchcode, found, "
                 "itemnumber, expirationdate) VALUES (:r, :p, :placed, :b, :pickup, :found, :item, :exp)",
                 r=reserve_id, p=patron, placed=placed, b=item or self._item, pickup=pickup, found=found,
                 item=item, exp=expires)

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def koha_database():
    """A fresh Koha-shaped database (dropped after); the test skips without a MariaDB server."""
    with server_database("mariadb", "rappel_koha") as url:
        koha = Koha(url)
        try:
            koha.create()
            yield koha
        finally:
            koha.close()
