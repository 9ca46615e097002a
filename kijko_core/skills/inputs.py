"""A run's input checked against the skill's ``inputSchema`` (docs/skills.md): types, required
inputs, defaults. Errors name the input (``field: "input.<name>"``) and never echo its value.

Keys the schema does not declare are kept as given (a reflex's webhook payload, a habit's
config): the template can only reach declared inputs (placeholders ⊆ inputSchema names, checked
when the skill is saved), so they are recorded with the execution and otherwise unused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kijko_core.errors import ValidationFailed
from kijko_core.skills.models import InputSchemaField, json_size, matches_type

#: The largest input a run takes (its JSON), whatever its source: the webhook receiver's
#: body cap, so a delivery that was accepted is never refused here for its size.
INPUT_MAX_BYTES = 256 * 1024


def validate_input(schema: Sequence[InputSchemaField], raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The input to run with: ``raw`` with each declared input checked and defaults filled in
    (a copy: ``raw`` is not changed). A missing or null input takes its default; with no
    default, a required one is a 422 and an optional one stays absent."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValidationFailed("The input must be a JSON object", field="input")
    values: dict[str, Any] = dict(raw)
    if json_size(values) > INPUT_MAX_BYTES:
        raise ValidationFailed(f"The input is larger than {INPUT_MAX_BYTES // 1024} KiB", field="input")
    for item in schema:
        value = values.get(item.name)
        if value is None:
            if item.default is not None:
                values[item.name] = item.default
            elif item.required:
                raise ValidationFailed(f"The input {item.name} is required", field=f"input.{item.name}")
            else:
                values.pop(item.name, None)
            continue
        if not matches_type(value, item.type):
            raise ValidationFailed(f"The input {item.name} must be of type {item.type}", field=f"input.{item.name}")
    return values
