"""Wire shapes of organizations and their members (camelCase, like every domain entity;
contract §3.7 ``TeamRole``) and the errors of the domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, RootModel, StringConstraints

from kijko_core.errors import Conflict, NotFound
from kijko_core.wire import WireInput, WireModel

OrgRoleName = Literal["owner", "admin", "member", "viewer"]

#: The database allows 1–200 characters (migration 0001); surrounding whitespace is dropped.
OrganizationName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
SearchText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]

#: ``GET /users/search`` answers at most this many users (the frontend's ``limit 10``).
SEARCH_LIMIT = 10


class MemberNotFound(NotFound):
    code = "MEMBER_NOT_FOUND"
    default_message = "Member not found"


class LastOwner(Conflict):
    code = "LAST_OWNER"
    default_message = "An organization needs at least one owner; make someone else owner first"


class Organization(WireModel):
    """An organization as its member sees it, with the caller's role in it."""

    id: UUID
    name: str
    role: OrgRoleName
    created_at: datetime
    updated_at: datetime


class OrganizationListItem(Organization):
    """``GET /organizations``: one of the caller's organizations."""

    joined_at: datetime
    #: The organization of the token the request carried.
    current: bool


class UpdateOrganization(WireInput):
    """``PATCH /organizations/current``: the only writable field."""

    name: OrganizationName


class Member(WireModel):
    """A user of the organization (``GET /organizations/current/members``)."""

    id: UUID
    email: str
    first_name: str
    last_name: str
    role: OrgRoleName
    joined_at: datetime


class ChangeMemberRole(WireInput):
    role: OrgRoleName


class UserSearchQuery(WireInput):
    #: Nothing to search for (absent or blank) finds nobody, like an empty search box.
    q: SearchText = ""


class UserSearchResult(WireModel):
    """Contract §3.1 ``UserSearchResult`` (``avatar_url`` is optional and not kept yet)."""

    id: UUID
    email: str
    name: str = Field(description="First and last name")


# Plain arrays on the wire (contract §1.4: member lists are plain arrays).


class OrganizationList(RootModel[list[OrganizationListItem]]):
    pass


class MemberList(RootModel[list[Member]]):
    pass


class UserSearchResults(RootModel[list[UserSearchResult]]):
    pass
