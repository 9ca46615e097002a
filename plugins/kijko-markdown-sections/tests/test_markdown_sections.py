"""The installed plugin, found the way Kijko finds it: its ``kijko.chunkers`` entry point."""

from __future__ import annotations

from kijko_core.ingestion.chunkers import ChunkOptions, chunker_for
from kijko_core.ingestion.files import SourceFile
from kijko_core.plugins.registry import CHUNKERS_GROUP, discover

TEXT = "# Title\n\nIntro.\n\n## Usage\n\nRun it.\n"


def test_kijko_loads_the_installed_entry_point() -> None:
    found = [item for item in discover().report if item.group == CHUNKERS_GROUP and item.name == "markdown-sections"]
    assert [(item.status, item.distribution) for item in found] == [("loaded", "kijko-markdown-sections")]


def test_the_custom_strategy_cuts_markdown_at_its_headings() -> None:
    file = SourceFile(
        source="owner/repo",
        path="README.md",
        language="markdown",
        text=TEXT,
        size_bytes=len(TEXT),
        line_count=7,
    )
    chunks = list(
        chunker_for("custom", custom="markdown-sections").chunk(file, ChunkOptions(max_tokens=100, overlap_tokens=0))
    )
    assert [(c.start_line, c.end_line, c.symbol) for c in chunks] == [(1, 3, "Title"), (5, 7, "Usage")]
