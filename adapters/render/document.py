"""What the sms and webhook channels carry: a stage's SMS text, and the notice as a JSON document.

``sms_text``: ``<stage>.sms.j2`` rendered, its lines stripped and blank ones dropped (what is
measured in SMS segments by ``rappel lint``, adapters/render/segments.py). ``notice_document``:
the webhook's body (README, "SMS and webhooks"): the notice's key, date, stage(s), channel,
patron id, library, language, its loans with their due dates, and the stage's subject and text
rendered from its templates.
"""
from __future__ import annotations

from adapters.render.context import NoticeContext

__all__ = ["notice_document", "sms_text"]


def sms_text(rendered: str) -> str:
    """An SMS as sent: each line stripped, no blank line, no final newline."""
    return "\n".join(line.strip() for line in rendered.strip().splitlines() if line.strip())


def notice_document(ctx: NoticeContext, subject: str, text: str, language: str) -> dict:
    """The notice as one JSON object (plain values: strings, lists, null)."""
    notice = ctx.notice
    return {
        "notice": notice.key,
        "date": notice.date.isoformat(),
        "stage": notice.stage,
        "stages": list(notice.stages),
        "channel": notice.channel,
        "patron_id": notice.patron_id,
        "library": notice.library,
        "language": language,
        "loans": [{"loan_id": loan.loan_id, "title": loan.title, "item_barcode": loan.item_barcode,
                   "library": loan.library, "due_date": loan.due_date.isoformat(),
                   "stage": notice.stage_of(loan.loan_id)}
                  for loan in sorted(ctx.triggered, key=lambda loan: (loan.due_date, loan.loan_id))],
        "subject": subject,
        "text": text,
    }
