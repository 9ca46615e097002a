"""Who is calling: what a verified token says, and what the database adds to it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class OrgRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """The verified claims of an access token; organization roles are not trusted from it."""

    user_id: UUID
    org_id: UUID
    session_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller inside an organization, with the roles read from memberships this request."""

    user_id: UUID
    org_id: UUID
    session_id: str
    roles: frozenset[OrgRole]
    expires_at: datetime
