"""What the ingestion pipeline reads, as the chunkers see it, and how a run fails for good.

docs/ingestion-sources.md describes the sources, the filters and the error codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kijko_core.config import Settings

# The fatal error codes of the sources (an ingestion run ends ``failed`` with one of them).
# docs/ingestion-sources.md has the table. The run's own codes (INTERNAL_ERROR, WORKER_LOST in
# job.py; INGESTION_FAILED in service.py) are listed with these in docs/ingestion.md.
REPOSITORY_UNREACHABLE: Final = "REPOSITORY_UNREACHABLE"
REPOSITORY_NOT_FOUND: Final = "REPOSITORY_NOT_FOUND"
AUTHENTICATION_REQUIRED: Final = "AUTHENTICATION_REQUIRED"
BRANCH_NOT_FOUND: Final = "BRANCH_NOT_FOUND"
REPOSITORY_TOO_LARGE: Final = "REPOSITORY_TOO_LARGE"
TOO_MANY_FILES: Final = "TOO_MANY_FILES"
CLONE_TIMEOUT: Final = "CLONE_TIMEOUT"
SOURCE_MISSING: Final = "SOURCE_MISSING"
ERROR_CODES: Final = (
    REPOSITORY_UNREACHABLE,
    REPOSITORY_NOT_FOUND,
    AUTHENTICATION_REQUIRED,
    BRANCH_NOT_FOUND,
    REPOSITORY_TOO_LARGE,
    TOO_MANY_FILES,
    CLONE_TIMEOUT,
    SOURCE_MISSING,
)


@dataclass(frozen=True)
class SourceFile:
    """One text file to chunk.

    ``text`` is the file decoded as UTF-8 with a leading byte-order mark removed and nothing
    else changed (line endings are kept). ``size_bytes`` is the file's size on disk (BOM
    included). ``line_count`` is :func:`count_lines` of ``text``.
    """

    source: str  # 'owner/repo' | 'uploads' | 'manual'
    path: str  # POSIX path inside its source
    language: str  # lower-case name, see kijko_core/ingestion/languages.py
    size_bytes: int
    line_count: int
    text: str


class IngestionFailed(Exception):
    """Fatal for the run: ``code`` is one of :data:`ERROR_CODES`, ``message`` is written for
    the user (it names the source, never a URL with credentials or a token)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Caps:
    """What one run may read (docs/ingestion-sources.md#caps)."""

    max_total_bytes: int
    max_files: int
    max_file_bytes: int
    #: Directory entries ``plan`` lists before it gives up (None: ``entries_limit``'s rule).
    max_entries: int | None = None

    @property
    def entries_limit(self) -> int:
        """How many directory entries (files, directories, links; skipped ones too, but not
        what is inside a skipped directory) ``plan`` lists before it fails ``TOO_MANY_FILES``:
        a bound on its time and memory on a tree of millions of tiny files. By default ten
        per file to read, plus 100,000."""
        return self.max_entries if self.max_entries is not None else self.max_files * 10 + 100_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Caps:
        return cls(
            max_total_bytes=settings.ingestion_max_total_bytes,
            max_files=settings.ingestion_max_files,
            max_file_bytes=settings.ingestion_max_file_bytes,
        )


def count_lines(text: str) -> int:
    """Lines are ended by ``\\n`` (so ``\\r\\n`` ends one line; a lone ``\\r``, form feed or
    U+2028 does not); a last line without its ``\\n`` still counts. ``""`` has 0 lines,
    ``"a"`` and ``"a\\n"`` have 1, ``"a\\n\\n"`` has 2."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def split_lines(text: str) -> list[str]:
    """The lines :func:`count_lines` counts, each with its ``\\n`` (the last may lack it):
    ``len(split_lines(t)) == count_lines(t)`` and ``"".join(split_lines(t)) == t``."""
    lines = text.split("\n")
    kept = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        kept.append(lines[-1])
    return kept
