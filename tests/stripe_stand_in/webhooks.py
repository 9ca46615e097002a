"""Webhook deliveries as Stripe makes them: the event's JSON posted with a ``Stripe-Signature``
header ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the endpoint secret>``
(one ``v1`` per secret while a rotated secret is still live). Computed here, not with the SDK's
helper, so that the SDK's verification is tested against an independent implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx


def payload(event: dict[str, Any]) -> bytes:
    """The body Stripe posts: the event, pretty-printed as Stripe's deliveries are."""
    return json.dumps(event, indent=2).encode()


def signature(body: bytes, secrets: list[str], timestamp: int | None = None) -> str:
    stamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{stamp}.".encode() + body
    parts = [f"t={stamp}"]
    parts += [f"v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}" for secret in secrets]
    return ",".join(parts)


@dataclass
class Delivery:
    event_id: str
    status: int
    body: bytes
    signature: str


def deliver(
    url: str,
    event: dict[str, Any],
    secrets: list[str],
    *,
    timestamp: int | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Delivery:
    """POST ``event`` to ``url`` over real HTTP, signed with ``secrets`` (a forged delivery: pass
    a wrong secret, an old ``timestamp`` or a ``body`` other than the one signed)."""
    signed_body = payload(event)
    header = signature(signed_body, secrets, timestamp)
    response = httpx.post(
        url,
        content=signed_body if body is None else body,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": header,
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Cache-Control": "no-cache",
        },
        timeout=timeout,
    )
    return Delivery(event["id"], response.status_code, response.content, header)
