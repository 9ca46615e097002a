"""Every decision record is reachable: listed in the docs index and in the site's navigation
(mkdocs builds an unlisted page without complaint, and nobody finds it)."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_decision_is_in_the_index_and_the_navigation() -> None:
    decisions = sorted(path.name for path in (DOCS / "decisions").glob("*.md"))
    index = (DOCS / "index.md").read_text()
    navigation = (DOCS.parent / "mkdocs.yml").read_text()
    assert decisions
    assert [name for name in decisions if f"(decisions/{name})" not in index] == []
    assert [name for name in decisions if f"- decisions/{name}\n" not in navigation] == []
