"""The notice as JSON for another system (a discovery layer, a messaging platform): apprise ``json://``.

The policy gives an apprise ``json://`` (``jsons://`` for TLS) URL (``delivery.channels.webhook.url``,
secrets as ``${NAME}``; headers as ``+Name=value``, a method as ``?method=PUT``, as apprise
documents them). apprise posts it: rappel replaces the body of apprise's stock payload with the
notice's own document (its fields below; apprise's version, title, message, attachments and type
are removed, as a ``:key=`` with no value does), so the receiving system gets one JSON object:

    {"notice": KEY, "date": "2026-11-23", "stage": "first_reminder", "stages": [...],
     "channel": "webhook", "patron_id": "P1", "library": null, "language": "fr",
     "loans": [{"loan_id", "title", "item_barcode", "library", "due_date": "2026-11-16", "stage"}],
     "subject": "...", "text": "..."}            (the stage's subject and text templates, rendered)

The HTTP answer decides (adapters/channels/http_reply.py): 2xx delivered; 400 or 422 this notice
refused for good (the patron's next channel); 5xx, no answer, 401/403: retried.
"""
from __future__ import annotations

import json
from dataclasses import replace

from adapters.channels.base import BaseChannel, Check, Delivery
from adapters.channels.http_reply import outcome
from adapters.channels.url_channels import shown_url
from adapters.channels.sms import send_logged
from engine.channels import ChannelSpec
from engine.decide import Notice

__all__ = ["WEBHOOK", "WebhookChannel"]

WEBHOOK = ChannelSpec("webhook", contact="none", renders="json")
_STOCK = ("version", "title", "message", "attachments", "type")    # apprise's own payload keys, removed


class WebhookChannel(BaseChannel):
    """One POST (apprise json://) per notice, its body the notice's JSON document."""

    name = "webhook"
    carries = ("json",)

    def __init__(self, url: str, label: str = "delivery.channels.webhook.url"):
        import apprise      # loaded with the first webhook channel built, not by every command
        from apprise.plugins.custom_json import NotifyJSON

        service = apprise.Apprise.instantiate(url)
        if not isinstance(service, NotifyJSON):
            raise ValueError(f"{label}: a webhook is an apprise json:// or jsons:// URL "
                             f"(jsons://discovery.example/rappel/notices)")
        self.url = url
        self.shown = shown_url(url)

    @property
    def description(self) -> str:
        return f"webhook ({self.shown})"

    def destination(self, notice: Notice) -> str:
        return f"webhook:{self.shown}"

    def send_json(self, notice: Notice, body: dict) -> Delivery:
        import apprise

        service = apprise.Apprise.instantiate(self.url)
        service.payload_extras = {**{key: "" for key in _STOCK}, **json.loads(json.dumps(body))}
        ok, status, words = send_logged(service, body.get("text") or notice.key, body.get("subject", ""))
        delivery = outcome("webhook", status or (200 if ok else None), words, f"webhook:{notice.key}")
        return replace(delivery, destination=self.destination(notice)) if delivery.ok else delivery

    def checks(self) -> list[Check]:
        return [Check(f"webhook {self.shown}", True, "an apprise json:// URL (nothing sent)")]
