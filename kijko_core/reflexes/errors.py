"""The reflexes domain's errors (contract §2.5)."""

from __future__ import annotations

from kijko_core.errors import Conflict, NotFound


class ReflexNotFound(NotFound):
    code = "REFLEX_NOT_FOUND"
    default_message = "Reflex not found"


class NotWebhook(Conflict):
    code = "NOT_WEBHOOK"
    default_message = "This reflex is not triggered by a webhook"
