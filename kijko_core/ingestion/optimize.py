"""The optimization phase: secrets redacted, repeated chunks dropped, a metadata header added
(docs/chunking.md#optimization). One Optimizer per ingestion run: it remembers what it stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from kijko_core.ingestion.chunkers import Chunk
from kijko_core.ingestion.secrets import redact
from kijko_core.ingestion.tokens import estimate_tokens

#: The shortest value any detector reports is longer than this: a shorter symbol (almost every
#: one) is not scanned.
_SHORTEST_SECRET = 8


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
        self._path: tuple[str | None, tuple[str, int]] = (None, ("", 0))

    def optimize(self, chunk: Chunk) -> Chunk | None:
        self.original_tokens += chunk.token_count
        content, symbol, redacted = chunk.content, chunk.symbol, 0
        if self.anonymize_secrets:
            content, redacted = redact(content, path=chunk.path)
            if symbol is not None and len(symbol) >= _SHORTEST_SECRET:
                symbol, in_symbol = redact(symbol, path=chunk.path)
                redacted += in_symbol
        # Repeats are recognised by what would be stored, before the header (which names the
        # path and so would make every copy look different).
        key = hashlib.sha256(content.encode("utf-8", "surrogatepass")).digest()
        if key in self._seen:
            self.duplicates += 1
            return None
        self._seen.add(key)
        # The chunkers' counts are estimate_tokens(content); recount only what changed. The
        # header ends with a line break, so its tokens simply add (the rule is additive).
        tokens = estimate_tokens(content) if redacted else chunk.token_count
        if self.include_metadata:
            path, in_path = self._redacted_path(chunk.path)
            header = metadata_header(path, chunk.language, symbol)
            content = header + content
            tokens += estimate_tokens(header)
            redacted += in_path
        self.secrets_redacted += redacted
        self.optimized_tokens += tokens
        return replace(chunk, content=content, symbol=symbol, token_count=tokens)

    def _redacted_path(self, path: str) -> tuple[str, int]:
        # Chunks come file by file: the path is scanned once per file, not once per chunk.
        if path != self._path[0]:
            redacted = redact(path, path=path) if self.anonymize_secrets else (path, 0)
            self._path = (path, redacted)
        return self._path[1]
