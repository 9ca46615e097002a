"""The one outbound HTTP client of a running Kijko (``kijko.http``).

Every call Kijko makes to a service the operator configured (Keycloak) goes through this
client, so timeouts and the user agent are decided in one place. Addresses a tenant chose go
through ``kijko.egress`` instead: the same settings on the egress guard's transport
(kijko_core/egress.py, decision 0062).
"""

from __future__ import annotations

import httpx

from kijko_core import __version__
from kijko_core.config import Settings


def make_http_client(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    timeout = settings.http_timeout_seconds
    return httpx.AsyncClient(
        # connect is the short one: an address that does not answer is down, not slow.
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,  # a redirect is the caller's decision (and the guard's)
        headers={"User-Agent": f"kijko/{__version__}"},
        transport=transport,
        trust_env=False,  # no proxy or netrc picked up from the environment behind our back
    )
