"""Ids in paths: the route layer parses them, services take ``UUID``s."""

from __future__ import annotations

from uuid import UUID

from kijko_core.errors import NotFound
from kijko_core.projects.models import ProjectNotFound


def entity_id(raw: str, not_found: type[NotFound]) -> UUID:
    """``raw`` as a UUID; a malformed id is the domain's 404, exactly like an unknown one
    (a converter in the rule would answer the router's ``ROUTE_NOT_FOUND`` instead)."""
    try:
        return UUID(raw)
    except ValueError:
        raise not_found() from None


def parse_project_id(raw: str) -> UUID:
    """A project id in a path: the projects' 404 when malformed, on every route under it."""
    return entity_id(raw, ProjectNotFound)


def optional_id(raw: str | None) -> UUID | None:
    """An id in a body that only narrows a check (``projectId`` of validate-name): a
    malformed one narrows nothing."""
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        return None
