"""The ``github`` reflex type: a reflex fired by a GitHub repository or organization webhook
(a worked example of a Kijko reflex type plugin; docs/plugins.md#the-github-reflex-type).

GitHub signs the raw body with the webhook's secret: ``X-Hub-Signature-256: sha256=<hex of
HMAC-SHA256(secret, body)>``. :meth:`GitHubReflexType.verify` checks it (constant time) against
each current secret before anything is parsed and returns ``X-GitHub-Delivery`` (the GUID GitHub
shows next to each delivery) as the delivery id Kijko dedupes on.

Replay: GitHub signs neither a timestamp nor the delivery id. A captured delivery stays valid
forever, and replayed with a new ``X-GitHub-Delivery`` it is not recognised as a duplicate —
weaker than the Standard Webhooks scheme of the built-in ``webhook`` type (a signed id and a
5-minute timestamp window). What bounds it: TLS, the reflex's rate limit, and regenerating the
secret (decision 0124).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kijko_core.errors import MalformedJson, UnsupportedMediaType
from kijko_core.plugins import Delivery, ReflexType, SignatureInvalid

__version__ = "0.1.0"

SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
DELIVERY_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
#: ``*`` is every event except ``ping`` (which GitHub sends when the webhook is created).
ALL_EVENTS = "*"
PING = "ping"

EventName = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z][a-z_]{0,63})$")]


class GitHubConfig(BaseModel):
    """The ``triggerConfig`` of a ``github`` reflex. The signing secret is not part of it: Kijko
    generates it (:meth:`GitHubReflexType.new_secret`), stores it encrypted and shows it once."""

    model_config = ConfigDict(extra="forbid")

    #: GitHub event names (``X-GitHub-Event``: ``push``, ``pull_request``, ``issues``…) or ``*``.
    events: list[EventName] = Field(default_factory=lambda: ["push"], min_length=1, max_length=50)


class GitHubReflexType(ReflexType):
    name: ClassVar[str] = "github"
    version: ClassVar[str] = __version__
    description: ClassVar[str] = "GitHub webhooks (X-Hub-Signature-256), filtered by event name"
    Config = GitHubConfig
    receives_webhooks: ClassVar[bool] = True

    def new_secret(self) -> str:
        return secrets.token_hex(32)

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        found = SIGNATURE.fullmatch(delivery.headers.get(SIGNATURE_HEADER, "").strip())
        delivery_id = delivery.headers.get(DELIVERY_HEADER, "").strip()
        if found is None or not DELIVERY_ID.fullmatch(delivery_id):
            raise SignatureInvalid()
        given = found.group(1).encode()
        matched = False
        for secret in secrets:  # every one compared, so the time does not tell which matched
            expected = hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest().encode()
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise SignatureInvalid()
        return delivery_id

    def payload(self, delivery: Delivery) -> Any:
        """JSON (content type ``application/json``) or GitHub's form encoding
        (``application/x-www-form-urlencoded`` with the JSON in its ``payload`` field)."""
        content_type = delivery.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            try:
                fields = parse_qs(delivery.body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
            except (UnicodeDecodeError, ValueError):
                raise MalformedJson("The form-encoded body has no payload field") from None
            values = fields.get("payload", [])
            if len(values) != 1:
                raise MalformedJson("The form-encoded body has no payload field")
            text: str | bytes = values[0]
        elif content_type == "application/json":
            text = delivery.body
        else:
            raise UnsupportedMediaType("GitHub deliveries are application/json or application/x-www-form-urlencoded")
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise MalformedJson() from None

    def accepts(self, config: BaseModel, delivery: Delivery, payload: Any) -> bool:
        assert isinstance(config, GitHubConfig)
        event = delivery.headers.get(EVENT_HEADER, "")
        if event in config.events:
            return True
        return ALL_EVENTS in config.events and event != PING

    def sample_payload(self, config: BaseModel) -> dict[str, Any]:
        return {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": "1" * 40,
            "repository": {"full_name": "octo-org/octo-repo", "html_url": "https://github.com/octo-org/octo-repo"},
            "pusher": {"name": "octocat"},
            "head_commit": {"id": "1" * 40, "message": "Update README.md"},
        }
