"""The optimization phase: secrets redacted, repeated chunks dropped, a metadata header added
(docs/chunking.md#optimization). One Optimizer per ingestion run: it remembers what it stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from kijko_core.ingestion.chunkers import Chunk
from kijko_core.ingestion.secrets import redact
from kijko_core.ingestion.tokens import estimate_tokens


def _one_line(value: str) -> str:
    # A path or name with a line break (hostile file names) must not forge header lines.
    return "".join(" " if not char.isprintable() else char for char in value)


def metadata_header(path: str, language: str, symbol: str | None) -> str:
    """The line put before a chunk's content with ``includeMetadata``."""
    header = f"File: {_one_line(path)} | Language: {_one_line(language)}"
    if symbol:
        header += f" | Symbol: {_one_line(symbol)}"
    return header + "\n"


class Optimizer:
    """Turns each chunk into what is stored, or None for a chunk already stored in this run.

    Running totals: ``original_tokens`` adds every chunk's raw ``token_count`` (repeats too);
    ``optimized_tokens`` adds the ``token_count`` of each chunk returned (header included);
    ``secrets_redacted`` counts the replacements in the chunks returned; ``duplicates`` the
    chunks dropped.
    """

    def __init__(self, *, anonymize_secrets: bool, include_metadata: bool) -> None:
        self.anonymize_secrets = anonymize_secrets
        self.include_metadata = include_metadata
        self.secrets_redacted = 0
        self.duplicates = 0
        self.original_tokens = 0
        self.optimized_tokens = 0
        self._seen: set[bytes] = set()

    def optimize(self, chunk: Chunk) -> Chunk | None:
        self.original_tokens += chunk.token_count
        content, symbol, redacted = chunk.content, chunk.symbol, 0
        if self.anonymize_secrets:
            content, redacted = redact(content, path=chunk.path)
            if symbol is not None:
                symbol, in_symbol = redact(symbol, path=chunk.path)
                redacted += in_symbol
        # Repeats are recognised by what would be stored, before the header (which names the
        # path and so would make every copy look different).
        key = hashlib.sha256(content.encode("utf-8", "surrogatepass")).digest()
        if key in self._seen:
            self.duplicates += 1
            return None
        self._seen.add(key)
        if self.include_metadata:
            header, in_header = metadata_header(chunk.path, chunk.language, symbol), 0
            if self.anonymize_secrets:
                header, in_header = redact(header, path=chunk.path)
            redacted += in_header
            content = header + content
        self.secrets_redacted += redacted
        stored = replace(chunk, content=content, symbol=symbol, token_count=estimate_tokens(content))
        self.optimized_tokens += stored.token_count
        return stored
