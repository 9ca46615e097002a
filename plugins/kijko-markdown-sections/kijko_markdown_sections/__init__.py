"""Markdown cut at its headings: a worked example of a Kijko chunker plugin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from kijko_core.ingestion.chunkers import Chunk, ChunkOptions, chunker_for
from kijko_core.ingestion.files import SourceFile
from kijko_core.ingestion.tokens import estimate_tokens

HEADING = re.compile(r"#{1,6}\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"\s*(```|~~~)")


class MarkdownSections:
    """One chunk per section of a Markdown file, named by its heading."""

    def chunk(self, file: SourceFile, options: ChunkOptions) -> Iterator[Chunk]:
        recursive = chunker_for("recursive")
        if file.language != "markdown":
            yield from recursive.chunk(file, options)
            return
        lines = file.text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for start, end, title in sections(lines):
            content = "\n".join(lines[start - 1 : end])
            if estimate_tokens(content) <= options.max_tokens:
                yield Chunk(file.source, file.path, file.language, start, end, content, title, estimate_tokens(content))
                continue
            # Too long: Kijko's recursive chunker on the section alone, its lines shifted back.
            part = replace(file, text=content, size_bytes=len(content.encode()), line_count=end - start + 1)
            for piece in recursive.chunk(part, options):
                yield replace(
                    piece, start_line=piece.start_line + start - 1, end_line=piece.end_line + start - 1, symbol=title
                )


def sections(lines: list[str]) -> Iterator[tuple[int, int, str | None]]:
    """(first line, last non-blank line, heading) of each section; the text before the first
    heading is a section without one. Headings inside fenced code do not count."""
    start, title, fenced = 1, None, False
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading and number > start:
            yield from _trimmed(lines, start, number - 1, title)
            start = number
        if heading:
            title = heading.group(1) or None
    yield from _trimmed(lines, start, len(lines), title)


def _trimmed(lines: list[str], start: int, end: int, title: str | None) -> Iterator[tuple[int, int, str | None]]:
    while end >= start and not lines[end - 1].strip():
        end -= 1
    while start <= end and not lines[start - 1].strip():
        start += 1
    if start <= end:
        yield start, end, title
