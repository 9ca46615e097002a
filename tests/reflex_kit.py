"""Reflexes in tests: creating them through the API and signing deliveries as a Standard
Webhooks sender does (the ``standardwebhooks`` library's own ``Webhook.sign``)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from tests.conftest import Account

API = "/api/v1/reflexes"
RECEIVER = "/api/v1/webhooks/reflex/"


async def create_reflex(client: Any, account: Account, skill_id: Any, **fields: Any) -> dict[str, Any]:
    body = {"skillId": str(skill_id), "triggerType": "webhook", "triggerConfig": {}} | fields
    response = await client.post(API, json=body, headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    created: dict[str, Any] = await response.get_json()
    return created


def signed(
    secret: str, payload: Any, *, delivery_id: str | None = None, sent: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body and the headers a Standard Webhooks sender puts on it."""
    body = json.dumps(payload)
    msg_id = delivery_id or f"msg_{uuid.uuid4().hex}"
    at = datetime.fromtimestamp(sent if sent is not None else time.time(), tz=UTC)
    signature = Webhook(secret).sign(msg_id, at, body)
    return body.encode(), {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def deliver(client: Any, reflex_id: str, body: bytes, headers: dict[str, str]) -> Any:
    return await client.post(RECEIVER + reflex_id, data=body, headers=headers)


_BODY = {"400", "413", "415", "422"}
R = "/api/v1/reflexes/{reflex_id}"
#: The statuses each reflex operation documents besides 500 (tests/test_openapi_errors.py).
REFLEX_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", API): {"401", "403", "422"},
    ("post", API): {"401", "403", "404"} | _BODY,
    ("get", f"{API}/stats"): {"401", "403"},
    ("get", R): {"401", "403", "404"},
    ("get", f"{R}/full"): {"401", "403", "404"},
    ("put", R): {"401", "403", "404", "409"} | _BODY,
    ("patch", R): {"401", "403", "404", "409"} | _BODY,
    ("delete", R): {"401", "403", "404"},
    ("post", f"{R}/activate"): {"401", "403", "404", "409"},
    ("post", f"{R}/deactivate"): {"401", "403", "404"},
    ("post", f"{R}/reset-errors"): {"401", "403", "404", "409"},
    ("post", f"{R}/test"): {"401", "403", "404", "429"} | _BODY,
    ("post", f"{R}/regenerate-secret"): {"401", "403", "404", "409"},
    ("get", f"{R}/webhook-info"): {"401", "403", "404", "409"},
    # The receiver: public, its body read raw (no 400/415: it is not parsed before it verifies).
    ("post", "/api/v1/webhooks/reflex/{reflex_id}"): {"401", "409", "413", "422", "429", "503"},
}
