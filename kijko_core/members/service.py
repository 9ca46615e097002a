"""The rules of project members (ARCHITECTURE §3, contract §2.2.3–2.2.4).

- Reading the members (and the pending invitations) of a project needs ``read`` on it;
  adding, changing, removing and inviting need ``manage members`` (project admins and
  managers, org owners and admins).
- A manager cannot make anyone an admin, nor change or remove an admin: only project admins
  and org owners/admins can (decision 0058), so ``manage members`` is no way to ``delete``.
- A member may change their own notification flags and leave the project.
- Every added member starts as an invitation (a pending member and a one-time token mailed
  to the address); the invitee becomes a member by accepting it (``invitations.py``).
- Changes are published through the events port after commit: ``project_user:added|updated|
  removed`` with the contract's ProjectUser (§3.1) and ``activity:new`` (§4.2), in the
  project's room.
"""

from __future__ import annotations

import secrets
from datetime import UTC
from typing import Any
from uuid import UUID

from email_validator import EmailNotValidError, validate_email

from kijko_core import mail
from kijko_core.billing import quotas
from kijko_core.billing.plans import plans_of
from kijko_core.config import Settings
from kijko_core.crypto import digest_secret
from kijko_core.db.session import TenantSession
from kijko_core.errors import Forbidden, RateLimited, ValidationFailed
from kijko_core.members import repository
from kijko_core.members.common import announce, caller_profile
from kijko_core.members.models import (
    AddMember,
    AlreadyAccepted,
    BulkInvitationResponse,
    BulkInvitations,
    InvitationResult,
    MemberExists,
    MemberNotFound,
    ProjectMember,
    UpdateMember,
    notifications,
)
from kijko_core.members.repository import InvitationRecord, MemberRecord
from kijko_core.permissions import PROJECTS, Action, ProjectRole, authorize, project_role, sees_everything
from kijko_core.projects import service as projects
from kijko_core.projects.models import Project

INVALID_EMAIL = "Invalid email format"
MAIL_BUDGET_SPENT = "This organization sent too many invitations in the last hour; try again later"


# --- tokens ---------------------------------------------------------------------------------------


def new_token() -> tuple[str, bytes]:
    """A fresh invitation token (256 random bits) and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, digest_secret(token)


def accept_url(settings: Settings, token: str) -> str:
    return f"{settings.app_url}/invitations/accept?token={token}"


def normalized_email(raw: str) -> str | None:
    """The address as given (trimmed) when it is one, else None. Not lower-cased: addresses
    are compared case-insensitively where it matters (the unique index, accepting)."""
    try:
        validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return raw.strip()


# --- who is acting -------------------------------------------------------------------------------


def _acts_as_admin(db: TenantSession, project: Project) -> bool:
    return sees_everything(db.principal) or project_role(db.principal, project) is ProjectRole.ADMIN


async def _managed(db: TenantSession, project_id: UUID) -> Project:
    project = await projects.get(db, project_id)
    authorize(db.principal, Action.MANAGE_MEMBERS, project, policy=PROJECTS)
    return project


def _check_role_change(db: TenantSession, project: Project, *roles: str) -> None:
    """Only project admins (and org owners/admins) give, change or take the admin role."""
    if "admin" in roles and not _acts_as_admin(db, project):
        raise Forbidden("Only a project admin can give, change or remove the admin role")


# --- reads ---------------------------------------------------------------------------------------


async def list_members(db: TenantSession, project_id: UUID, *, pending_only: bool = False) -> list[ProjectMember]:
    project = await projects.get(db, project_id)
    rows = await repository.list_members(db, project.organization_id, project.id, pending_only=pending_only)
    return [row.wire() for row in rows]


# --- invitations --------------------------------------------------------------------------------


async def _invite(
    db: TenantSession,
    settings: Settings,
    project: Project,
    me: dict[str, Any],
    *,
    email: str,
    role: str,
    notify: dict[str, bool],
    message: str | None,
) -> MemberRecord:
    """A pending member, its invitation and the mail, in ``db``'s transaction. An address that
    is not a member nor invited yet takes a seat of the plan (decision 0151): 429
    ``QUOTA_EXCEEDED`` when none is left."""
    await quotas.check_seat(db, plans_of(settings), project.organization_id, email)
    member = await repository.insert(
        db, project.organization_id, project.id, email=email, role=role, notify=notify, invited_by=me["id"]
    )
    token, token_hash = new_token()
    invitation = await repository.insert_invitation(db, member, token_hash, me["id"], settings.invitation_ttl_hours)
    await _mail(db, settings, project, member, invitation, me, token, message)
    await announce(db, "added", member, project, me, f"{me['name'] or me['email']} invited {email} as {role}")
    return member


async def _mail(
    db: TenantSession,
    settings: Settings,
    project: Project,
    member: MemberRecord,
    invitation: InvitationRecord,
    me: dict[str, Any],
    token: str,
    message: str | None,
) -> None:
    organization = await db.fetchval("SELECT name FROM kijko.organizations WHERE id = $1", project.organization_id)
    await mail.send(
        db,
        to=member.email,
        template="invitation",
        values={
            "inviter_name": _one_line(me["name"] or me["email"]),
            "project_name": _one_line(project.name),
            "organization_name": _one_line(organization or ""),
            "role": member.role,
            "accept_url": accept_url(settings, token),
            "expires_at": invitation.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "messages": [{"text": message}] if message else [],
        },
        org_id=project.organization_id,
    )


async def _mail_budget_wait(db: TenantSession, settings: Settings, project: Project) -> int:
    """Seconds until the organization may mail another invitation (0: now)."""
    return await mail.budget_wait(db, project.organization_id, "invitation", settings.invitation_mails_per_hour)


async def _check_mail_budget(db: TenantSession, settings: Settings, project: Project) -> None:
    wait = await _mail_budget_wait(db, settings, project)
    if wait > 0:
        raise RateLimited(retry_after=wait, message=MAIL_BUDGET_SPENT)


def _one_line(text: str) -> str:
    # Names go into the subject line, which is one line.
    return " ".join(text.split())


async def add_member(db: TenantSession, settings: Settings, project_id: UUID, data: AddMember) -> ProjectMember:
    project = await _managed(db, project_id)
    email = normalized_email(data.email)
    if email is None:
        raise ValidationFailed(INVALID_EMAIL, field="email")
    _check_role_change(db, project, data.role)
    await _check_mail_budget(db, settings, project)
    me = await caller_profile(db)
    notify = {
        "notify_on_ingestion": data.notify_on_ingestion,
        "notify_on_error": data.notify_on_error,
        "notify_on_team_changes": data.notify_on_team_changes,
    }
    try:
        member = await _invite(
            db, settings, project, me, email=email, role=data.role, notify=notify, message=data.invite_message
        )
    except mail.InvalidRecipient:  # the mailer's check is stricter than ours
        raise ValidationFailed(INVALID_EMAIL, field="email") from None
    return member.wire()


async def invite(
    db: TenantSession, settings: Settings, project_id: UUID, data: BulkInvitations
) -> BulkInvitationResponse:
    """One result per row: a bad address, an existing member or a role the caller may not
    give fails that row only (each row in a savepoint)."""
    project = await _managed(db, project_id)
    me = await caller_profile(db)
    results: list[InvitationResult] = []
    for row in data.invitations:
        email = normalized_email(row.email)
        if email is None:
            results.append(InvitationResult(email=row.email, status="failed", error=INVALID_EMAIL))
            continue
        if row.role == "admin" and not _acts_as_admin(db, project):
            results.append(
                InvitationResult(email=email, status="failed", error="Only a project admin can invite an admin")
            )
            continue
        if await _mail_budget_wait(db, settings, project) > 0:
            results.append(InvitationResult(email=email, status="failed", error=MAIL_BUDGET_SPENT))
            continue
        try:
            async with db.savepoint():
                member = await _invite(
                    db,
                    settings,
                    project,
                    me,
                    email=email,
                    role=row.role,
                    notify=notifications(row.notification_level),
                    message=None,
                )
        except MemberExists:
            results.append(InvitationResult(email=email, status="failed", error=MemberExists.default_message))
            continue
        except quotas.QuotaExceeded as error:  # no seat left: this row fails, like the others
            results.append(InvitationResult(email=email, status="failed", error=error.message))
            continue
        except mail.InvalidRecipient:  # the mailer's check is stricter than ours
            results.append(InvitationResult(email=email, status="failed", error=INVALID_EMAIL))
            continue
        results.append(InvitationResult(email=email, status="sent", member_id=member.id))
    failed = sum(1 for result in results if result.status == "failed")
    return BulkInvitationResponse(
        success=failed == 0, results=results, total_sent=len(results) - failed, total_failed=failed
    )


async def _member(db: TenantSession, project: Project, member_id: UUID) -> MemberRecord:
    member = await repository.get_for_update(db, project.organization_id, project.id, member_id)
    if member is None:
        raise MemberNotFound()
    return member


async def resend(db: TenantSession, settings: Settings, project_id: UUID, member_id: UUID) -> InvitationResult:
    """A new token (the old link stops working) and a fresh expiry, at most
    ``KIJKO_INVITATION_RESENDS_PER_HOUR`` times per invitation per hour (429 with Retry-After).
    A pending invitation holds its seat; an expired one does not, and its resend takes one again
    (429 ``QUOTA_EXCEEDED`` when none is left; decision 0167)."""
    project = await _managed(db, project_id)
    # The seats' lock before the member's row: the order every seat-taking path locks in.
    await quotas.lock_gauge(db, project.organization_id, "seats")
    member = await _member(db, project, member_id)
    if member.accepted_at is not None:
        raise AlreadyAccepted()
    _check_role_change(db, project, member.role)
    invitation = await repository.invitation_of(db, project.organization_id, member.id)
    if invitation is None:  # a pending member always has one; kept as the repository's contract
        raise MemberNotFound()
    wait = await repository.resend_wait(db, invitation, settings.invitation_resends_per_hour)
    if wait > 0:
        raise RateLimited(retry_after=wait, message="This invitation was resent too often; try again later")
    await _check_mail_budget(db, settings, project)
    # A seat unless the address holds one (its invitation still pending, or another's).
    await quotas.check_seat(db, plans_of(settings), project.organization_id, member.email)
    token, token_hash = new_token()
    invitation = await repository.renew(db, invitation, token_hash, settings.invitation_ttl_hours)
    await _mail(db, settings, project, member, invitation, await caller_profile(db), token, None)
    return InvitationResult(email=member.email, status="sent", member_id=member.id)


async def cancel(db: TenantSession, project_id: UUID, member_id: UUID) -> None:
    project = await _managed(db, project_id)
    member = await _member(db, project, member_id)
    if member.accepted_at is not None:
        raise AlreadyAccepted()
    _check_role_change(db, project, member.role)
    await _remove(db, project, member, "cancelled the invitation of")


# --- members -------------------------------------------------------------------------------------


async def update(db: TenantSession, project_id: UUID, member_id: UUID, data: UpdateMember) -> ProjectMember:
    project = await projects.get(db, project_id)
    member = await _member(db, project, member_id)
    changes: dict[str, Any] = {name: getattr(data, name) for name in data.model_fields_set}
    own_flags = member.user_id == db.principal.user_id and "role" not in changes
    if not own_flags:  # one's own notification flags need only read
        authorize(db.principal, Action.MANAGE_MEMBERS, project, policy=PROJECTS)
        _check_role_change(db, project, member.role, changes.get("role", member.role))
    if not changes:
        return member.wire()
    updated = await repository.update(db, project.organization_id, project.id, member.id, changes)
    if updated is None:  # unreachable while the row is locked
        raise MemberNotFound()
    me = await caller_profile(db)
    what = (
        f"changed the role of {member.email} to {updated.role}"
        if "role" in changes
        else (f"changed the notifications of {member.email}")
    )
    await announce(db, "updated", updated, project, me, f"{me['name'] or me['email']} {what}")
    return updated.wire()


async def remove(db: TenantSession, project_id: UUID, member_id: UUID) -> None:
    """Remove a member (or cancel a pending invitation); a member may also leave."""
    project = await projects.get(db, project_id)
    member = await _member(db, project, member_id)
    if member.user_id != db.principal.user_id:
        authorize(db.principal, Action.MANAGE_MEMBERS, project, policy=PROJECTS)
        _check_role_change(db, project, member.role)
    await _remove(db, project, member, "removed")


async def _remove(db: TenantSession, project: Project, member: MemberRecord, verb: str) -> None:
    removed = await repository.delete(db, project.organization_id, project.id, member.id)
    if removed is None:
        raise MemberNotFound()
    me = await caller_profile(db)
    await announce(db, "removed", removed, project, me, f"{me['name'] or me['email']} {verb} {member.email}")
