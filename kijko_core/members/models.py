"""Wire shapes of project members and invitations (contract §3.1) and the errors of the domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, PlainSerializer, RootModel, WithJsonSchema, field_validator

from kijko_core.errors import Conflict, Forbidden, KijkoError, NotFound
from kijko_core.wire import WireInput, WireModel

ProjectMemberRole = Literal["admin", "manager", "developer", "viewer", "auditor"]
NotificationLevel = Literal["real-time", "daily", "weekly", "disabled"]
InvitationStatus = Literal["sent", "pending", "failed"]

EMAIL_MAX = 320
Email = Annotated[str, Field(min_length=1, max_length=EMAIL_MAX)]
InviteMessage = Annotated[str, Field(max_length=2000)]
#: At most this many invitations in one bulk request.
BULK_MAX = 50

#: The member's user id; "" while the invitation is pending (contract §2.2.4).
MemberUserId = Annotated[
    UUID | None,
    PlainSerializer(lambda value: "" if value is None else str(value), return_type=str),
    WithJsonSchema({"type": "string", "description": 'The member\'s user id; "" while the invitation is pending'}),
]


class MemberNotFound(NotFound):
    code = "MEMBER_NOT_FOUND"
    default_message = "Member not found"


class MemberExists(Conflict):
    code = "MEMBER_EXISTS"
    default_message = "Member already exists"


class AlreadyAccepted(Conflict):
    code = "ALREADY_ACCEPTED"
    default_message = "The invitation has already been accepted"


class InvitationNotFound(NotFound):
    code = "INVITATION_NOT_FOUND"
    default_message = "Invitation not found"


class InvitationExpired(KijkoError):
    status = 410
    code = "INVITATION_EXPIRED"
    default_message = "The invitation has expired"


class InvitationEmailMismatch(Forbidden):
    code = "INVITATION_EMAIL_MISMATCH"
    default_message = "This invitation was sent to another email address"


class ProjectMember(WireModel):
    """A member, or a pending invitation (no ``acceptedAt``, ``userId`` "")."""

    id: UUID
    project_id: UUID
    user_id: MemberUserId
    email: str
    name: str | None = None
    avatar_url: str | None = None
    role: ProjectMemberRole
    notify_on_ingestion: bool
    notify_on_error: bool
    notify_on_team_changes: bool
    invited_at: datetime
    accepted_at: datetime | None = None
    last_active_at: datetime | None = None


class AddMember(WireInput):
    email: Email
    role: ProjectMemberRole
    notify_on_ingestion: bool = True
    notify_on_error: bool = True
    notify_on_team_changes: bool = True
    invite_message: InviteMessage | None = None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional() -> Any:
    """Absent means unchanged; null is refused (as ``UpdateProject`` does)."""
    return Field(default=None, json_schema_extra=_no_default)


class UpdateMember(WireInput):
    """Partial: absent = unchanged; none of the fields may be null."""

    role: ProjectMemberRole = _optional()
    notify_on_ingestion: bool = _optional()
    notify_on_error: bool = _optional()
    notify_on_team_changes: bool = _optional()

    @field_validator("role", "notify_on_ingestion", "notify_on_error", "notify_on_team_changes", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class TeamMemberInvitation(WireInput):
    # Validated per row by the service (a bad address is a failed row, not a 422).
    email: Annotated[str, Field(max_length=EMAIL_MAX)]
    role: ProjectMemberRole
    notification_level: NotificationLevel


class BulkInvitations(WireInput):
    invitations: Annotated[list[TeamMemberInvitation], Field(min_length=1, max_length=BULK_MAX)]


class InvitationResult(WireModel):
    email: str
    status: InvitationStatus
    member_id: UUID | None = None
    error: str | None = None


class BulkInvitationResponse(WireModel):
    success: bool
    results: list[InvitationResult]
    total_sent: int
    total_failed: int


class AcceptInvitation(WireInput):
    token: Annotated[str, Field(min_length=1, max_length=200)]


class Inviter(WireModel):
    name: str | None = None


class InvitationPreview(WireModel):
    """``GET /invitations/{token}``: what the invitee needs to decide, nothing else."""

    project_name: str
    organization_name: str
    inviter: Inviter
    expires_at: datetime


class AcceptedInvitation(WireModel):
    """``POST /invitations/accept``: the project and organization joined, and the member."""

    project_id: UUID
    organization_id: UUID
    member: ProjectMember


def notifications(level: NotificationLevel) -> dict[str, bool]:
    """The contract's mapping of a notification level onto the three flags (§2.2.4)."""
    on = level != "disabled"
    return {"notify_on_ingestion": on, "notify_on_error": on, "notify_on_team_changes": level == "real-time"}


class MemberList(RootModel[list[ProjectMember]]):
    """A plain array of members (contract §1.4)."""
