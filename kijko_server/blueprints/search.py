"""Search over a project's current index and its indexed files (issue 7 §3, beyond the
contract; docs/search.md)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring

from kijko_core.billing.quotas import QuotaExceeded
from kijko_core.errors import ValidationFailed
from kijko_core.projects.models import ProjectNotFound
from kijko_core.search import service
from kijko_core.search.models import FileListQuery, IndexedFile, SearchHit, SearchQuery
from kijko_core.wire import Page
from kijko_server.openapi import responds
from kijko_server.paths import parse_project_id
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("project_search", __name__, url_prefix="/api/v1/projects")


@bp.get("/<project_id>/search")
@responds(*TENANT_ERRORS, ProjectNotFound, ValidationFailed, QuotaExceeded)
@validate_querystring(SearchQuery)
@validate_response(Page[SearchHit])
async def search_project(project_id: str, query_args: SearchQuery) -> Page[SearchHit]:
    """Chunks of the project's current index matching ``q`` (websearch syntax; identifiers
    match in any casing style), best first, optionally of one ``language`` and under a
    ``path`` prefix (``*`` and ``?`` wildcards). A project never ingested has no results. Each
    search counts against the plan's oracle queries per UTC day (429 ``QUOTA_EXCEEDED``)."""
    async with tenant() as db:  # writes: the search is counted (oracle_queries)
        return await service.search(db, parse_project_id(project_id), query_args, runtime().plans)


@bp.get("/<project_id>/files")
@responds(*TENANT_ERRORS, ProjectNotFound)
@validate_querystring(FileListQuery)
@validate_response(Page[IndexedFile])
async def list_indexed_files(project_id: str, query_args: FileListQuery) -> Page[IndexedFile]:
    """The files of the project's current index, by source and path, with their language,
    size, line and chunk counts."""
    async with tenant(readonly=True) as db:
        return await service.list_files(db, parse_project_id(project_id), query_args)
