"""Kijko's one way to Stripe (docs/billing.md, decision 0162): the ``stripe`` SDK's
``StripeClient`` on its async httpx client, the API version pinned here and nowhere else, an
idempotency key on every write, the SDK's retries of network failures, and Stripe's failures
turned into our error shape.

Rules for callers (ARCHITECTURE §6):

- never hold a database transaction across a Stripe call (read what you need, close the
  transaction, call Stripe, open a new one to store the answer);
- every write passes :func:`idempotency_key` ``(operation, *what identifies it)`` so that a
  retry — the SDK's, the user's double click, a replayed job — cannot do it twice;
- read periods, prices and statuses only through this version's shapes (period dates are on
  the subscription items; an invoice's subscription is ``parent.subscription_details``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from kijko_core.errors import ServiceUnavailable, UpstreamError
from kijko_core.logging import get_logger

if TYPE_CHECKING:
    from kijko_core.config import Settings

#: The Stripe API version Kijko speaks — the one its pinned SDK was generated for. Every request
#: sends it; objects are read in its shapes. Change it only with the SDK and the stand-in.
API_VERSION = "2026-10-28.endive"

T = TypeVar("T")
log = get_logger("kijko.billing")


class BillingDisabled(ServiceUnavailable):
    code = "BILLING_DISABLED"
    default_message = "Billing is not enabled on this server (no Stripe keys are configured)"


class PaymentProviderUnavailable(ServiceUnavailable):
    """Stripe could not be reached or failed (after the SDK's retries): nothing was changed on
    our side; the same request may succeed later."""

    code = "PAYMENT_PROVIDER_UNAVAILABLE"
    default_message = "The payment provider is unavailable; nothing was changed, try again in a moment"
    retry_after = 5

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, details={"retryAfter": self.retry_after})


class StripeRefused(UpstreamError):
    """Stripe refused a request as invalid (an object missing or changed under us, a rule not
    foreseen, an idempotency key reused with other parameters, a card declined): 502 in our
    shape. ``stripe_code`` and ``param`` are Stripe's, for callers that can do better (a missing
    object is their 404: :func:`is_missing`)."""

    default_message = "The payment provider refused the request"

    def __init__(self, error: stripe.StripeError) -> None:
        super().__init__()
        self.stripe_code: str | None = getattr(error, "code", None)
        self.param: str | None = getattr(error, "param", None)
        self.idempotency = isinstance(error, stripe.IdempotencyError)


class LivemodeMismatch(UpstreamError):
    code = "STRIPE_LIVEMODE_MISMATCH"
    default_message = "A Stripe object's mode (live/test) differs from the configured key's"


def idempotency_key(operation: str, *parts: object) -> str:
    """A key naming one intended write: the same operation on the same things gives the same
    key, so Stripe answers a repeat with the first answer instead of doing it again."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()[:40]
    return f"kijko-{operation}-{digest}"


def writes(key: str) -> dict[str, Any]:
    """Request options of a write: its idempotency key."""
    return {"idempotency_key": key}


@dataclass
class Stripe:
    """The configured Stripe account: a client, its mode and the webhook signing secrets."""

    client: stripe.StripeClient
    livemode: bool
    webhook_secrets: tuple[str, ...]
    _http: stripe.HTTPXClient

    @classmethod
    def from_settings(cls, settings: Settings) -> Stripe | None:
        """The account of ``KIJKO_STRIPE_SECRET_KEY``, or None: billing off."""
        if settings.stripe_secret_key is None:
            return None
        key = settings.stripe_secret_key.get_secret_value()
        http = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
        client = stripe.StripeClient(
            key,
            stripe_version=API_VERSION,
            base_addresses={"api": settings.stripe_api_base},
            max_network_retries=settings.stripe_max_network_retries,
            http_client=http,
        )
        listed = settings.stripe_webhook_secrets.get_secret_value() if settings.stripe_webhook_secrets else ""
        secrets = tuple(secret.strip() for secret in listed.split(",") if secret.strip())
        return cls(client, livemode="_live_" in key, webhook_secrets=secrets, _http=http)

    @property
    def v1(self) -> Any:
        return self.client.v1

    async def call(self, request: Awaitable[T]) -> T:
        """Await one SDK call, Stripe's failures as ours: unreachable, 5xx, rate-limited → 503
        PAYMENT_PROVIDER_UNAVAILABLE; our key refused → 502 UPSTREAM_ERROR; the request refused
        as invalid → :class:`StripeRefused` (502), which a caller may interpret."""
        try:
            return await request
        except (stripe.InvalidRequestError, stripe.CardError, stripe.IdempotencyError) as exc:
            log.warning("stripe_refused", error=type(exc).__name__, code=getattr(exc, "code", None))
            raise StripeRefused(exc) from exc
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise PaymentProviderUnavailable() from exc
        except stripe.APIError as exc:
            raise PaymentProviderUnavailable() from exc
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise UpstreamError("The payment provider refused Kijko's credentials") from exc
        except stripe.StripeError as exc:
            if exc.http_status is not None and exc.http_status >= 500:
                raise PaymentProviderUnavailable() from exc
            raise UpstreamError() from exc

    def check_livemode(self, obj: Any) -> None:
        """Refuse an object (or event) of the other mode than the configured key's: a test
        event must never change a live organization's plan, nor the other way round."""
        livemode = obj.get("livemode") if isinstance(obj, dict) else getattr(obj, "livemode", None)
        if livemode is not None and bool(livemode) != self.livemode:
            raise LivemodeMismatch()

    def construct_event(self, payload: bytes, signature: str | None) -> stripe.Event:
        """The event of a webhook delivery whose ``Stripe-Signature`` one of the configured
        secrets made (several while rotating); ``stripe.SignatureVerificationError`` otherwise."""
        last: Exception | None = None
        for secret in self.webhook_secrets:
            try:
                return self.client.construct_event(payload, signature, secret)
            except stripe.SignatureVerificationError as exc:
                last = exc
        raise last or stripe.SignatureVerificationError("no webhook secret configured", signature)  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


def require(account: Stripe | None) -> Stripe:
    """The Stripe account, or 503 BILLING_DISABLED when none is configured."""
    if account is None:
        raise BillingDisabled()
    return account


def is_missing(exc: BaseException) -> bool:
    """Stripe's 404 for an object (``resource_missing``)."""
    return isinstance(exc, StripeRefused) and exc.stripe_code == "resource_missing"


def field(obj: Any, *path: str) -> Any:
    """A field, or a path of fields, of a Stripe object (or a dict, or an event's copy); None
    where one is absent."""
    for name in path:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    return obj


def object_id(value: Any) -> str | None:
    """An expandable field's id, expanded or not."""
    return value if value is None or isinstance(value, str) else field(value, "id")
