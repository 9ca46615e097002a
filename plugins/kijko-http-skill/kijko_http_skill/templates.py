"""Substitution of the run's input into ``bodyTemplate``: Kijko's own template rule
(``kijko_core.skills.templates.render``: ``{{name}}`` and ``{{a.b}}`` paths, non-string values
JSON-encoded, nothing else — no expressions, no code)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

try:  # Kijko with the skills domain: its rule, so the two never differ.
    from kijko_core.skills.templates import render as render
except ImportError:  # pragma: no cover - an older Kijko: the same rule, minimal.
    PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")

    def _value(values: Mapping[str, Any], path: str) -> Any:
        current: Any = values
        for part in path.split("."):
            if not isinstance(current, Mapping) or part not in current:
                return ""
            current = current[part]
        return current

    def render(template: str, values: Mapping[str, Any]) -> str:  # type: ignore[misc]
        def substitute(match: re.Match[str]) -> str:
            value = _value(values, match.group(1))
            return value if isinstance(value, str) else json.dumps(value)

        return PLACEHOLDER.sub(substitute, template)


__all__ = ["render"]
