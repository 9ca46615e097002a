"""Organizations and switching (issue 6 §2, contract §3.7): the caller's organizations, the
active one and its members, and user search (contract §2.2.8 "search users")."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from kijko_core.organizations import service
from kijko_core.organizations.models import (
    ChangeMemberRole,
    LastOwner,
    Member,
    MemberList,
    MemberNotFound,
    Organization,
    OrganizationList,
    UpdateOrganization,
    UserSearchQuery,
    UserSearchResults,
)
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.paths import entity_id
from kijko_server.responses import validate_response
from kijko_server.security import current_identity, revocation_checked
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("organizations", __name__, url_prefix="/api/v1")

_CURRENT = "/organizations/current"


@bp.get("/organizations")
@responds()
@validate_response(OrganizationList)
async def list_organizations() -> OrganizationList:
    """The caller's organizations with their role in each; ``current`` marks the token's."""
    organizations = await service.organizations(runtime().system_db, current_identity())
    revocation_checked()  # the service checked the session as kijko.enter does
    return OrganizationList(organizations)


@bp.get(_CURRENT)
@responds(*TENANT_ERRORS)
@validate_response(Organization)
async def get_current() -> Organization:
    """The active organization (the token's), with the caller's role."""
    async with tenant(readonly=True) as db:
        return await service.current(db)


@bp.patch(_CURRENT)
@responds(*TENANT_ERRORS)  # 403 also for everyone but owners
@validate_request(UpdateOrganization)
@validate_response(Organization)
async def update_current(data: UpdateOrganization) -> Organization:
    """Rename the active organization (owners only)."""
    async with tenant() as db:
        return await service.rename(db, data)


@bp.get(f"{_CURRENT}/members")
@responds(*TENANT_ERRORS)
@validate_response(MemberList)
async def list_organization_members() -> MemberList:
    """The users of the active organization with their role, in the order they joined."""
    async with tenant(readonly=True) as db:
        return MemberList(await service.members(db))


@bp.patch(f"{_CURRENT}/members/<user_id>")
@responds(*TENANT_ERRORS, MemberNotFound, LastOwner)
@validate_request(ChangeMemberRole)
@validate_response(Member)
async def change_organization_member_role(user_id: str, data: ChangeMemberRole) -> Member:
    """Change a member's role (owners and admins; only owners make or change owners)."""
    async with tenant() as db:
        return await service.change_role(db, entity_id(user_id, MemberNotFound), data)


@bp.delete(f"{_CURRENT}/members/<user_id>")
@responds(*TENANT_ERRORS, MemberNotFound, LastOwner)
@validate_response(Success)
async def remove_organization_member(user_id: str) -> Success:
    """Remove a member from the active organization; their access to it ends at once."""
    async with tenant() as db:
        await service.remove(db, entity_id(user_id, MemberNotFound))
    return Success()


@bp.get("/users/search")
@responds(*TENANT_ERRORS)
@validate_querystring(UserSearchQuery)
@validate_response(UserSearchResults)
async def search_users(query_args: UserSearchQuery) -> UserSearchResults:
    """Members of the active organization whose email or name contains ``q`` (at most 10)."""
    async with tenant(readonly=True) as db:
        return UserSearchResults(await service.search_users(db, query_args.q))
