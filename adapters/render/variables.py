"""Every variable a template sees, named once: the README's list is checked against this table
(tests/test_docs.py), and the tables are what a check of template variable names reads.

Names are dotted paths. A list's items are named by what they are: ``triggered`` is a list of
loans, so its items' fields are ``loan.title``, ``loan.due_date``…; ``stages`` is a list of stages
(``stage.*``, with their ``stage.loans``); ``recap`` a list of libraries (``library.*``, with their
``library.loans``); a loan's ``received`` a list of earlier notices (``earlier.*``).
"""
from __future__ import annotations

__all__ = ["LIST_ITEMS", "MAILBOX_VARIABLES", "REPORT_TEMPLATE", "TEMPLATE_VARIABLES", "variable_names"]

REPORT_TEMPLATE = "requests_report"
"""The requests report's templates (adapters/render/report.py): their own names, checked there."""

LIST_ITEMS = {"triggered": "loan", "library_loans": "loan", "stages": "stage", "stage.loans": "loan",
              "recap": "library", "library.loans": "loan", "loan.received": "earlier"}
"""What the items of each list of dicts are (the prefix of their fields' names)."""

_PATRON = {
    "patron": "the patron",
    "patron.patron_id": "their id in the library system",
    "patron.barcode": "their card's barcode",
    "patron.first_name": "first name",
    "patron.last_name": "last name",
    "patron.full_name": "first and last name",
    "patron.email": "email address",
    "patron.postal_lines": "postal address, a list of lines",
}
_STAGE = {
    "stage": "the notice's stage (combined: its most advanced, whose templates render it)",
    "stage.id": "its id (first_reminder)",
    "stage.label": "its name in the notice's language (labels:, e.g. Premier rappel)",
    "stage.offset_days": "days after the due date (negative: before)",
    "stage.channel": "its own channel (email, letter…)",
    "stage.template": "its templates' name",
    "stage.loans": "in stages only: the notice's loans at this stage (loans)",
}
_LIBRARY = {
    "library": "a letter's library (none for an email)",
    "library.code": "its code (SCI)",
    "library.name": "its name in the notice's language (labels:, else its name:)",
    "library.address": "its letterhead lines (address:)",
    "library.phone": "contact.phone (\"\" when not given), likewise:",
    "library.email": "contact.email",
    "library.hours_url": "contact.hours_url: the page of its opening hours",
    "library.website": "contact.website",
    "library.loans": "in recap only: the patron's overdue loans there (loans)",
}
_LOAN = {
    "loan.loan_id": "the loan's id",
    "loan.title": "the document's title",
    "loan.item_barcode": "the item's barcode",
    "loan.library_code": "its library's code",
    "loan.library_name": "its library's name in the notice's language",
    "loan.due_date": "its due date (a date: |date)",
    "loan.days_overdue": "days past the due date on the notice's date (0 before)",
    "loan.days_left": "days left before the due date (0 after)",
    "loan.stage": "its stage in this notice (\"\" for a loan only recapped)",
    "loan.stage_label": "that stage's name in the notice's language",
    "loan.received": "the earlier notices it really received for this due date, oldest first",
    "loan.received_stages": "their stage ids",
    "earlier.stage": "an earlier notice's stage id",
    "earlier.label": "its name in the notice's language",
    "earlier.date": "the day it was decided and sent",
    "earlier.channel": "its channel",
}
_NOTICE = {
    "notice": "the notice",
    "notice.key": "its key",
    "notice.channel": "its channel: email, letter…",
    "notice.date": "its date (the run's)",
    "notice.library": "a letter's library code (none for an email)",
    "notice.received": "stage ids every loan of it received before (\"first_reminder\" in …)",
    "notice.received_any": "stage ids some loan of it received before",
}
_SENDER = {
    "sender": "who the notice is from: the stage's, the library's or the policy's sender:",
    "sender.from": "the From header",
    "sender.reply_to": "the Reply-To header",
    "sender.name": "the name in From (to sign with)",
    "sender.address": "the Reply-To address",
}

TEMPLATE_VARIABLES: dict[str, str] = {
    **_PATRON, **_STAGE,
    "stages": "the notice's stages in the policy's order (stages), each with its loans",
    "combined": "true when the notice has loans at more than one stage",
    **_NOTICE, **_LIBRARY,
    "triggered": "the notice's loans (loans)",
    "recap": "emails: all the patron's overdue loans, library by library (libraries)",
    "library_loans": "letters: the loans of the letter's library, the notice's and the overdue ones",
    **_LOAN,
    "letter_table": "letters: the line where the table of documents is drawn",
    **_SENDER,
    "language": "the notice's language (fr)",
    "as_of": "the notice's date (a date: |date)",
}

MAILBOX_VARIABLES: dict[str, str] = {
    "library": "the letter's library (library.code, library.name, … as above)",
    **{name: text for name, text in _LIBRARY.items() if name not in ("library", "library.loans")},
    "recipient": "the patron's postal address on one line",
    "patron_id": "the patron's id",
    "loan_count": "how many documents the letter lists",
    "stage": "the letter's stage (stage.id, stage.label, … as above)",
    **{name: text for name, text in _STAGE.items() if name not in ("stage", "stage.loans")},
    "stages": "the letter's stages (each as stage)",
    "notice": "the letter (notice.key, notice.channel, notice.date, notice.library)",
    **{name: text for name, text in _NOTICE.items() if name not in ("notice", "notice.received", "notice.received_any")},
    "filename": "the attached PDF's file name",
    "language": "the policy's language",
    "as_of": "the letter's date",
    "sender": "the policy's sender (sender.from, sender.reply_to, sender.name, sender.address)",
    **{name: text for name, text in _SENDER.items() if name != "sender"},
}


def variable_names(values: dict, lists: dict[str, str] = LIST_ITEMS) -> set[str]:
    """The names of a template context as the tables write them (see the module's doc); ``lists``:
    what the items of its lists are named."""
    out: set[str] = set()

    def walk(value, name: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                inner = f"{name}.{key}" if name else key
                out.add(inner)
                walk(item, inner)
        elif isinstance(value, list) and name in lists:
            for item in value:
                for key, field in item.items():
                    inner = f"{lists[name]}.{key}"
                    out.add(inner)
                    walk(field, inner)

    walk(values, "")
    return out
