"""Auth operations that run inside the caller's tenant session."""

from __future__ import annotations

from kijko_core.auth.models import UserProfile
from kijko_core.db.session import TenantSession
from kijko_core.errors import InvalidToken


async def me(db: TenantSession) -> UserProfile:
    row = await db.fetchrow("SELECT id, email, first_name, last_name FROM kijko.current_user_profile()")
    if row is None:  # the user was erased while the token was still valid
        raise InvalidToken()
    return UserProfile(
        id=str(row["id"]),
        email=row["email"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        org_id=str(db.principal.org_id),
        roles=sorted(role.value for role in db.principal.roles),
    )
