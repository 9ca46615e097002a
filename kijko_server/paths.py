"""Ids in paths: the route layer parses them, services take ``UUID``s."""

from __future__ import annotations

from uuid import UUID

from kijko_core.errors import NotFound


def entity_id(raw: str, not_found: type[NotFound]) -> UUID:
    """``raw`` as a UUID; a malformed id is the domain's 404, exactly like an unknown one
    (a converter in the rule would answer the router's ``ROUTE_NOT_FOUND`` instead)."""
    try:
        return UUID(raw)
    except ValueError:
        raise not_found() from None


def optional_id(raw: str | None) -> UUID | None:
    """An id in a body that only narrows a check (``projectId`` of validate-name): a
    malformed one narrows nothing."""
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        return None
