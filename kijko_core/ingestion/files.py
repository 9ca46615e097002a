"""Files read from a project's sources, ready to be chunked."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceFile:
    """One text file to chunk."""

    source: str  # 'owner/repo' | 'uploads' | 'manual'
    path: str  # POSIX path inside its source
    language: str  # lower-case name, e.g. 'python', 'typescript', 'markdown', 'text'
    size_bytes: int
    line_count: int
    text: str
