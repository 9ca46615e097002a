"""Contract §2.2.3 and §2.2.4: project members and invitations, and the invitation link
(``/api/v1/invitations``: a public look-up of a token, and accepting it)."""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint
from quart_schema import validate_request

from kijko_core.billing.quotas import QuotaExceeded
from kijko_core.db.session import system_session
from kijko_core.errors import Forbidden, RateLimited, TryAgain
from kijko_core.members import invitations, service
from kijko_core.members.common import caller_profile
from kijko_core.members.models import (
    AcceptedInvitation,
    AcceptInvitation,
    AddMember,
    AlreadyAccepted,
    BulkInvitationResponse,
    BulkInvitations,
    InvitationEmailMismatch,
    InvitationExpired,
    InvitationNotFound,
    InvitationPreview,
    InvitationResult,
    MemberExists,
    MemberList,
    MemberNotFound,
    ProjectMember,
    UpdateMember,
)
from kijko_core.projects.models import ProjectNotFound
from kijko_core.wire import Success
from kijko_server.caching import no_store
from kijko_server.observability import secret_in_path
from kijko_server.openapi import responds
from kijko_server.paths import entity_id, parse_project_id
from kijko_server.ratelimits import Limit, by_client_address, rate_limit
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

#: A tenant session refuses a caller who left the token's organization (403); the project
#: is the domain's 404 whether unknown, unreadable or another organization's.
_PROJECT = (*TENANT_ERRORS, ProjectNotFound)


def _member(raw: str) -> UUID:
    return entity_id(raw, MemberNotFound)


bp = Blueprint("members", __name__, url_prefix="/api/v1/projects")


@bp.get("/<project_id>/members")
@responds(*_PROJECT)
@validate_response(MemberList)
async def list_members(project_id: str) -> MemberList:
    """The project's members, pending invitations included (no ``acceptedAt``)."""
    async with tenant(readonly=True) as db:
        return MemberList(await service.list_members(db, parse_project_id(project_id)))


@bp.post("/<project_id>/members")
@responds(*_PROJECT, MemberExists, RateLimited, QuotaExceeded)
@validate_request(AddMember)
@validate_response(ProjectMember, 201)
async def add_member(project_id: str, data: AddMember) -> tuple[ProjectMember, int]:
    """Invite someone to the project by email: a pending member, and the invitation mailed."""
    async with tenant() as db:
        return await service.add_member(db, runtime().settings, parse_project_id(project_id), data), 201


@bp.route("/<project_id>/members/<member_id>", methods=["PUT", "PATCH"])
@responds(*_PROJECT, MemberNotFound)
@validate_request(UpdateMember)
@validate_response(ProjectMember)
async def update_member(project_id: str, member_id: str, data: UpdateMember) -> ProjectMember:
    """Change a member's role or notification flags (absent fields stay)."""
    async with tenant() as db:
        return await service.update(db, parse_project_id(project_id), _member(member_id), data)


@bp.delete("/<project_id>/members/<member_id>")
@responds(*_PROJECT, MemberNotFound)
@validate_response(Success)
async def remove_member(project_id: str, member_id: str) -> Success:
    """Remove a member (or cancel a pending invitation); members may remove themselves."""
    async with tenant() as db:
        await service.remove(db, parse_project_id(project_id), _member(member_id))
    return Success()


@bp.post("/<project_id>/invitations")
@responds(*_PROJECT)
@validate_request(BulkInvitations)
@validate_response(BulkInvitationResponse)
async def invite(project_id: str, data: BulkInvitations) -> BulkInvitationResponse:
    """Invite several addresses; each row succeeds or fails on its own."""
    async with tenant() as db:
        return await service.invite(db, runtime().settings, parse_project_id(project_id), data)


@bp.get("/<project_id>/invitations/pending")
@responds(*_PROJECT)
@validate_response(MemberList)
async def pending_invitations(project_id: str) -> MemberList:
    """The members who have not accepted yet."""
    async with tenant(readonly=True) as db:
        return MemberList(await service.list_members(db, parse_project_id(project_id), pending_only=True))


@bp.post("/<project_id>/invitations/<member_id>/resend")
@responds(*_PROJECT, MemberNotFound, AlreadyAccepted, RateLimited, QuotaExceeded)
@validate_response(InvitationResult)
async def resend_invitation(project_id: str, member_id: str) -> InvitationResult:
    """Mail a new link (the previous one stops working) with a fresh expiry; an expired
    invitation takes a seat again (429 ``QUOTA_EXCEEDED`` when none is left)."""
    async with tenant() as db:
        return await service.resend(db, runtime().settings, parse_project_id(project_id), _member(member_id))


@bp.delete("/<project_id>/invitations/<member_id>")
@responds(*_PROJECT, MemberNotFound, AlreadyAccepted)
@validate_response(Success)
async def cancel_invitation(project_id: str, member_id: str) -> Success:
    """Withdraw a pending invitation."""
    async with tenant() as db:
        await service.cancel(db, parse_project_id(project_id), _member(member_id))
    return Success()


def invitations_blueprint(limit_per_minute: int) -> Blueprint:
    """``/api/v1/invitations``: the link the invitation mail carries."""
    links = Blueprint("invitations", __name__, url_prefix="/api/v1/invitations")
    links.after_request(no_store)  # answers about a secret link: never cached

    @links.get("/<token>")
    @public
    @secret_in_path
    @responds(InvitationNotFound, AlreadyAccepted, InvitationExpired, TryAgain)
    @rate_limit(Limit("address", limit_per_minute, 60, by_client_address))
    @validate_response(InvitationPreview)
    async def preview(token: str) -> InvitationPreview:
        """What an invitation link is for: project, organization, inviter and expiry."""
        async with system_session(runtime().system_db, readonly=True) as db:
            return await invitations.preview(db, token)

    @links.post("/accept")
    @responds(Forbidden, InvitationNotFound, InvitationEmailMismatch, AlreadyAccepted, InvitationExpired, MemberExists)
    @validate_request(AcceptInvitation)
    @validate_response(AcceptedInvitation)
    async def accept(data: AcceptInvitation) -> AcceptedInvitation:
        """Join the project (and its organization, if needed) with an invitation sent to the
        caller's email address."""
        # The tenant session checks the caller's session and tells who they are; the
        # invitation lives in another organization: a system session accepts it (decision 0059).
        async with tenant(readonly=True) as db:
            caller = await caller_profile(db)
        async with system_session(runtime().system_db) as system:
            return await invitations.accept(system, caller, data.token)

    return links
