"""The check before acting on a project by id: the caller may read it (else the projects' 404,
the same answer as an unknown id or another organization's) and may do ``action`` on it (else
403). One place for the services of things that belong to a project."""

from __future__ import annotations

from uuid import UUID

from kijko_core.db.session import TenantSession
from kijko_core.permissions import PROJECTS, Action, authorize
from kijko_core.projects import repository
from kijko_core.projects.models import Project, ProjectNotFound


async def project_for(db: TenantSession, project_id: UUID, action: Action, *, lock: bool = False) -> Project:
    """The project, checked; ``lock`` holds its row until the transaction ends."""
    project = await repository.get(db, PROJECTS.readable_args(db.principal), project_id, for_update=lock)
    if project is None:
        raise ProjectNotFound()
    authorize(db.principal, action, project, policy=PROJECTS)
    return project
