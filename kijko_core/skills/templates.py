"""Prompt templates: substitution only (docs/skills.md, decision 0101).

``{{name}}`` and ``{{a.b}}`` (with optional spaces inside the braces) are replaced by the value
at that path of the validated input: a key of an object, or a position (``{{items.0}}``) of a
list. Nothing else is interpreted: there are no expressions, filters, loops or attribute
lookups, so ``{{__class__}}`` is just an input named ``__class__`` (a dictionary key), and
``{% … %}`` or ``{{ 1 + 1 }}`` are ordinary text, sent as written.

Values: strings as they are, other JSON values JSON-encoded, a missing value or null as the
empty string. The rendered text is capped (:data:`RENDERED_MAX_CHARS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from kijko_core.errors import ValidationFailed

#: A placeholder: an identifier-like root (an input's name) and further keys or positions.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
#: The largest prompt a template may render to (characters).
RENDERED_MAX_CHARS = 400_000

_MISSING = object()


def placeholders(template: str) -> list[str]:
    """The placeholders' paths in order of first appearance, each once (``["topic", "a.b"]``)."""
    return list(dict.fromkeys(match.group(1) for match in PLACEHOLDER.finditer(template)))


def roots(template: str) -> list[str]:
    """The inputs a template refers to: each placeholder's first segment, each once."""
    return list(dict.fromkeys(path.split(".", 1)[0] for path in placeholders(template)))


def _lookup(values: Mapping[str, Any], path: str) -> Any:
    current: Any = values
    for key in path.split("."):
        # Only keys of JSON objects and positions of JSON lists: never an attribute.
        if isinstance(current, Mapping):
            current = current.get(key, _MISSING)
        elif isinstance(current, list) and key.isdigit():
            index = int(key)
            current = current[index] if index < len(current) else _MISSING
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def _text(value: Any) -> str:
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render(template: str, values: Mapping[str, Any], *, field: str = "input") -> str:
    """``template`` with every placeholder replaced (see the module docstring); a result over
    :data:`RENDERED_MAX_CHARS` is a 422 on ``field``."""
    size = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal size
        text = _text(_lookup(values, match.group(1)))
        size += len(text)
        if size > RENDERED_MAX_CHARS:  # stop early: a huge value is never copied twice
            raise _TooLarge
        return text

    try:
        rendered = PLACEHOLDER.sub(replace, template)
    except _TooLarge:
        rendered = None
    if rendered is None or len(rendered) > RENDERED_MAX_CHARS:
        raise ValidationFailed(
            f"The prompt rendered from this input is longer than {RENDERED_MAX_CHARS} characters", field=field
        )
    return rendered


class _TooLarge(Exception):
    pass


def render_prompts(snapshot: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[str, str | None]:
    """The prompt and system prompt of an execution's snapshot rendered with its input: both
    are templates (the system prompt may use the same placeholders)."""
    prompt = render(snapshot["promptTemplate"], values)
    system = snapshot.get("systemPrompt")
    return prompt, (render(system, values) if system else None)
