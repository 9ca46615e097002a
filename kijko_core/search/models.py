"""Wire shapes of search (``GET /projects/{id}/search``) and of the indexed files
(``GET /projects/{id}/files``), beyond the contract (issue 7 §3, docs/search.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from kijko_core.wire import PageQuery, WireModel

#: The longest query taken; longer ones are a 422 on ``q``.
QUERY_MAX = 500
#: Highlighted words in a snippet sit between these two characters (ASCII STX and ETX):
#: they never occur in the text files that are indexed, unlike ``<b>`` or ``**`` in code.
MARK_START = "\x02"
MARK_END = "\x03"

SearchText = Annotated[
    str, Field(max_length=QUERY_MAX, description='websearch syntax: words, "phrases", -exclusions, or')
]
Language = Annotated[str, Field(min_length=1, max_length=64, description="Exact language name, e.g. python")]
PathPattern = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        description="A path prefix; `*` matches any characters (also `/`), `?` one character",
    ),
]


class SearchQuery(PageQuery):
    #: Checked by the service once the project is known to be readable (absent or blank → 422).
    q: SearchText | None = None
    language: Language | None = None
    path: PathPattern | None = None


class FileListQuery(PageQuery):
    language: Language | None = None
    path: PathPattern | None = None


class SearchHit(WireModel):
    """One matching chunk of the project's current index."""

    source: str = Field(description="'owner/repo' of a repository, 'uploads' or 'manual'")
    path: str
    language: str
    start_line: int
    end_line: int
    symbol: str | None = None
    snippet: str = Field(description="Fragments of the chunk; matched words between \\u0002 and \\u0003")
    content: str
    score: float = Field(description="Relevance (higher is better); comparable within one query only")


class IndexedFile(WireModel):
    """One file of the project's current index."""

    source: str
    path: str
    language: str
    size_bytes: int
    line_count: int
    chunk_count: int
