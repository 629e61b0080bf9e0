"""What an HTTP answer from an SMS provider or a webhook means for a notice (sms.py, webhook.py).

  - 2xx: delivered;
  - 401, 403, 405, 407: the service refuses rappel itself (its credentials, its URL's method): the
    site's setting is wrong, not the patron's number; the notice waits (retried with backoff)
    while it is fixed, nothing falls back for everyone;
  - 408, 429, 5xx, no answer (connection refused, a timeout): transient, retried later;
  - any other 4xx (400 a number the provider refuses, 404, 410, 422…): this message or recipient
    is refused for good, and the policy's fallback applies (the next channel in the patron's order).
"""
from __future__ import annotations

from adapters.channels.base import Delivery

__all__ = ["REFUSES_RAPPEL", "TRANSIENT", "outcome"]

REFUSES_RAPPEL = frozenset({401, 403, 405, 407})
TRANSIENT = frozenset({408, 425, 429})


def outcome(what: str, status: int | None, reply: str, reference: str) -> Delivery:
    """The Delivery for an HTTP ``status`` (None: no answer); ``reply`` the service's own words."""
    if status is not None and 200 <= status < 300:
        return Delivery.sent(reference, f"{what}: {status}", reply=reply)
    if status is None:
        return Delivery.failed(f"{what}: no answer ({reply or 'connection failed'}); tried again later",
                               reply=reply)
    if status in REFUSES_RAPPEL:
        return Delivery.failed(f"{what}: HTTP {status}: the service refuses rappel (its credentials or URL in "
                               f"reminders.yaml), not the recipient; it waits until the setting is fixed", reply=reply)
    if status in TRANSIENT or status >= 500:
        return Delivery.failed(f"{what}: HTTP {status}; tried again later", reply=reply)
    return Delivery.failed(f"{what}: HTTP {status}: refused for this recipient", permanent=True, reply=reply)
