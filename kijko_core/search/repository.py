"""Every SQL statement of search. Each reads the project's current index only: the rows of
``kijko.chunks`` and ``kijko.indexed_files`` whose run is the one ``kijko.project_indexes``
names, so a run in progress, a cancelled one and the runs it replaced are never seen.

``$1`` organization and ``$2`` project everywhere; the caller has already read the project
(``kijko_core.projects.service.get``), and row-level security keeps every statement to the
caller's organization besides.
"""

from __future__ import annotations

from uuid import UUID

from kijko_core.db import sql
from kijko_core.db.session import TenantSession
from kijko_core.search.models import MARK_END, MARK_START, IndexedFile, SearchHit

# The query through the same identifier splitting as the indexed column (migration 0015).
_QUERY = "SELECT websearch_to_tsquery('kijko.code', kijko.code_words($1))::text"
# An empty query (only punctuation, only operators) has no node and matches nothing.
_EMPTY = "SELECT numnode($1::tsquery) = 0"

# Matched words: STX … ETX (models.MARK_START/END). Up to two fragments of 8–30 words.
_HEADLINE = sql.Fragment(
    f'StartSel={MARK_START}, StopSel={MARK_END}, MaxFragments=2, MinWords=8, MaxWords=30, FragmentDelimiter=" … "'
)

_CURRENT = sql.Fragment(
    "FROM kijko.project_indexes i"
    "\n  JOIN kijko.chunks c ON c.organization_id = i.organization_id"
    " AND c.project_id = i.project_id AND c.run_id = i.run_id"
    "\nWHERE i.organization_id = $1 AND i.project_id = $2"
    "\n  AND c.search @@ $3::tsquery"
    "\n  AND ($4::text IS NULL OR c.language = $4)"
    "\n  AND ($5::text IS NULL OR c.path LIKE $5 ESCAPE '\\')"
)

# Ranked first, then a page of them, then only that page is headlined (ts_headline re-parses
# the chunk: the costly part, done for at most a page of rows). ts_rank normalization 1
# divides by 1 + log(length), so a long chunk does not win on repetition alone.
_SEARCH = sql.compose(
    "WITH page AS ("
    "\n  SELECT c.id, c.source, c.path, c.language, c.start_line, c.end_line, c.symbol, c.content,"
    "\n    ts_rank(c.search, $3::tsquery, 1) AS score, count(*) OVER () AS total"
    "\n  {current}"
    "\n  ORDER BY score DESC, c.id"
    "\n  LIMIT $6 OFFSET $7"
    "\n)"
    "\nSELECT source, path, language, start_line, end_line, symbol, content, score, total,"
    "\n  ts_headline('kijko.code', content, $3::tsquery, '{headline}') AS snippet"
    "\nFROM page ORDER BY score DESC, id",
    current=_CURRENT,
    headline=_HEADLINE,
)
_SEARCH_COUNT = sql.compose("SELECT count(*)\n{current}", current=_CURRENT)

_FILES_WHERE = sql.Fragment(
    "FROM kijko.project_indexes i"
    "\n  JOIN kijko.indexed_files f ON f.organization_id = i.organization_id"
    " AND f.project_id = i.project_id AND f.run_id = i.run_id"
    "\nWHERE i.organization_id = $1 AND i.project_id = $2"
    "\n  AND ($3::text IS NULL OR f.language = $3)"
    "\n  AND ($4::text IS NULL OR f.path LIKE $4 ESCAPE '\\')"
)
_FILES = sql.compose(
    "SELECT f.source, f.path, f.language, f.size_bytes, f.line_count, f.chunk_count,"
    " count(*) OVER () AS total"
    "\n{where}"
    "\nORDER BY f.source, f.path"
    "\nLIMIT $5 OFFSET $6",
    where=_FILES_WHERE,
)
_FILES_COUNT = sql.compose("SELECT count(*)\n{where}", where=_FILES_WHERE)


async def parse_query(db: TenantSession, text: str) -> str | None:
    """``text`` as a tsquery (its text form), or None when nothing in it can match."""
    query: str = await db.fetchval(_QUERY, text)
    if await db.fetchval(_EMPTY, query):
        return None
    return query


async def search(
    db: TenantSession,
    org_id: UUID,
    project_id: UUID,
    query: str,
    *,
    language: str | None,
    path_like: str | None,
    limit: int,
    offset: int,
) -> tuple[list[SearchHit], int]:
    rows, total = await sql.fetch_page(
        db, _SEARCH, _SEARCH_COUNT, org_id, project_id, query, language, path_like, limit=limit, offset=offset
    )
    validate = SearchHit.model_validate
    return [validate(dict(row)) for row in rows], total


async def files(
    db: TenantSession,
    org_id: UUID,
    project_id: UUID,
    *,
    language: str | None,
    path_like: str | None,
    limit: int,
    offset: int,
) -> tuple[list[IndexedFile], int]:
    rows, total = await sql.fetch_page(
        db, _FILES, _FILES_COUNT, org_id, project_id, language, path_like, limit=limit, offset=offset
    )
    validate = IndexedFile.model_validate
    return [validate(dict(row)) for row in rows], total
