"""The rules of search: whoever can read a project searches its current index (and lists its
indexed files); another organization's project, or a private one the caller is not on, is
the projects' 404. A project never ingested has an empty index, not an error."""

from __future__ import annotations

from uuid import UUID

from kijko_core.billing import quotas
from kijko_core.billing.plans import Plans
from kijko_core.db.session import TenantSession
from kijko_core.errors import ValidationFailed
from kijko_core.projects import service as projects
from kijko_core.search import repository
from kijko_core.search.models import FileListQuery, IndexedFile, SearchHit, SearchQuery
from kijko_core.wire import Page, escape_like


def path_pattern(path: str | None) -> str | None:
    """The ``path`` filter as a ``LIKE … ESCAPE '\\'`` pattern: a prefix, where ``*`` matches
    any characters (``/`` too) and ``?`` one; everything else is literal."""
    if path is None:
        return None
    return escape_like(path).replace("*", "%").replace("?", "_") + "%"


async def search(db: TenantSession, project_id: UUID, query: SearchQuery, plans: Plans) -> Page[SearchHit]:
    """A search is an oracle query of the plan's daily quota (decision 0151), counted in ``db``'s
    transaction once the request is valid: 429 ``QUOTA_EXCEEDED`` (``Retry-After``) over it."""
    project = await projects.get(db, project_id)  # the projects' 404 unless readable
    text = (query.q or "").strip()
    if not text:
        raise ValidationFailed("q: a search needs some text", field="q")
    parsed = await repository.parse_query(db, text)
    if parsed is None:  # nothing searchable in it (only punctuation or operators)
        await quotas.consume(db, plans, project.organization_id, "oracle_queries", only_write=True)
        return Page[SearchHit].of([], 0, query)
    hits, total = await repository.search(
        db,
        project.organization_id,
        project.id,
        parsed,
        language=query.language,
        path_like=path_pattern(query.path),
        limit=query.page_size,
        offset=query.offset,
    )
    # Counted last: the organization's counter row is locked from here to the commit only, so
    # concurrent searches of one organization do not wait for each other's queries; the count is
    # the only write, committed without waiting for the WAL flush.
    await quotas.consume(db, plans, project.organization_id, "oracle_queries", only_write=True)
    return Page[SearchHit].of(hits, total, query)


async def list_files(db: TenantSession, project_id: UUID, query: FileListQuery) -> Page[IndexedFile]:
    project = await projects.get(db, project_id)
    found, total = await repository.files(
        db,
        project.organization_id,
        project.id,
        language=query.language,
        path_like=path_pattern(query.path),
        limit=query.page_size,
        offset=query.offset,
    )
    return Page[IndexedFile].of(found, total, query)
