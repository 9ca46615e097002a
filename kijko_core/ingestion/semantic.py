"""The ``semantic`` strategy (docs/chunking.md#semantic)."""

from __future__ import annotations

from collections.abc import Iterator

from kijko_core.ingestion.chunkers import Chunk, ChunkOptions, RecursiveChunker
from kijko_core.ingestion.files import SourceFile


class SemanticChunker:
    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        yield from RecursiveChunker().chunk(file, options)
