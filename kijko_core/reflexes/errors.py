"""The reflexes domain's errors (contract §2.5)."""

from __future__ import annotations

from kijko_core.errors import Conflict, KijkoError, NotFound, PayloadTooLarge, ValidationFailed


class ReflexNotFound(NotFound):
    code = "REFLEX_NOT_FOUND"
    default_message = "Reflex not found"


class NotWebhook(Conflict):
    code = "NOT_WEBHOOK"
    default_message = "This reflex is not triggered by a webhook"


class InvalidTriggerConfig(ValidationFailed):
    code = "INVALID_TRIGGER_CONFIG"
    default_message = "The trigger configuration is not valid for this trigger type"

    def __init__(self, message: str | None = None, *, field: str = "triggerConfig") -> None:
        super().__init__(message, field=field)


class TriggerTypeUnavailable(ValidationFailed):
    code = "TRIGGER_TYPE_UNAVAILABLE"
    default_message = "This trigger type is not available"

    def __init__(self) -> None:
        super().__init__(field="triggerType")


class WebhookRefused(KijkoError):
    """The receiver's one answer for an unknown, inactive or non-webhook reflex, a malformed
    id and a bad or expired signature alike (no enumeration)."""

    status = 401
    code = "WEBHOOK_UNAUTHORIZED"
    default_message = "The webhook delivery could not be verified"


class WebhookBodyTooLarge(PayloadTooLarge):
    default_message = "The webhook body is too large"
