"""The rules of organizations (ARCHITECTURE §3, decision 0070): every member reads the active
organization and its members; owners rename it; owners and admins change roles and remove
members, only owners touch owners; an organization always keeps an owner."""

from __future__ import annotations

from uuid import UUID

from databases import Database

from kijko_core.auth import accounts
from kijko_core.auth.principal import OrgRole, Principal, TokenIdentity
from kijko_core.db.session import TenantSession, system_session
from kijko_core.errors import InvalidToken
from kijko_core.organizations import repository
from kijko_core.organizations.models import (
    SEARCH_LIMIT,
    ChangeMemberRole,
    Member,
    MemberNotFound,
    Organization,
    OrganizationListItem,
    UpdateOrganization,
    UserSearchResult,
)
from kijko_core.permissions import ORGANIZATION_MEMBERS, Action, authorize, authorize_member_change
from kijko_core.wire import like_pattern

#: The strongest first: the role shown when (in some future) a user holds several.
_STRENGTH = (OrgRole.OWNER, OrgRole.ADMIN, OrgRole.MEMBER, OrgRole.VIEWER)


def _role(principal: Principal) -> OrgRole:
    return next(role for role in _STRENGTH if role in principal.roles)


async def organizations(system_db: Database, identity: TokenIdentity) -> list[OrganizationListItem]:
    """The caller's organizations with their role in each, oldest membership first.

    Cross-tenant by nature, so on the system role (decision 0071); the token's session is
    checked as ``kijko.enter`` would, but no membership of the token's organization is needed:
    a member just removed from it can still see where else to go.
    """
    async with system_session(system_db, readonly=True) as db:
        await accounts.require_live_session(db, identity)
        rows = await repository.organizations_of(db, identity.user_id)
    return [OrganizationListItem.model_validate({**dict(row), "current": row["id"] == identity.org_id}) for row in rows]


async def current(db: TenantSession) -> Organization:
    authorize(db.principal, Action.READ, policy=ORGANIZATION_MEMBERS)
    row = await repository.organization(db, db.principal.org_id)
    if row is None:  # deleted while the request was entering it
        raise InvalidToken()
    return Organization.model_validate({**dict(row), "role": _role(db.principal)})


async def rename(db: TenantSession, data: UpdateOrganization) -> Organization:
    authorize(db.principal, Action.MANAGE_ORGANIZATION, policy=ORGANIZATION_MEMBERS)
    row = await repository.rename(db, db.principal.org_id, data.name)
    if row is None:
        raise InvalidToken()
    return Organization.model_validate({**dict(row), "role": _role(db.principal)})


async def members(db: TenantSession) -> list[Member]:
    authorize(db.principal, Action.READ, policy=ORGANIZATION_MEMBERS)
    return await repository.members(db)


async def _target(db: TenantSession, user_id: UUID) -> Member:
    # Members are readable by every member: an unknown (or another organization's) user is
    # 404, a member the caller may not change is 403.
    authorize(db.principal, Action.READ, policy=ORGANIZATION_MEMBERS)
    target = await repository.member(db, user_id)
    if target is None:
        raise MemberNotFound()
    return target


async def change_role(db: TenantSession, user_id: UUID, data: ChangeMemberRole) -> Member:
    target = await _target(db, user_id)
    new_role = OrgRole(data.role)
    # Naming an owner where none is left (decision 0018) is an admin's too.
    ownerless = new_role == OrgRole.OWNER and not await repository.has_owner(db, db.principal.org_id)
    authorize_member_change(db.principal, OrgRole(target.role), new_role, organization_has_owner=not ownerless)
    # The database checks again under the organization's lock (a concurrent change, the last owner).
    return await repository.change_role(db, user_id, data.role)


async def remove(db: TenantSession, user_id: UUID) -> None:
    target = await _target(db, user_id)
    authorize_member_change(db.principal, OrgRole(target.role), None)
    await repository.remove(db, user_id)


async def search_users(db: TenantSession, text: str) -> list[UserSearchResult]:
    """Members of the active organization whose email or name contains ``text``
    (case-insensitive, taken literally), at most ``SEARCH_LIMIT``."""
    authorize(db.principal, Action.READ, policy=ORGANIZATION_MEMBERS)
    if not text:
        return []
    return await repository.search(db, like_pattern(text), SEARCH_LIMIT)
