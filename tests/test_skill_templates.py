"""Templates (substitution only) and input validation (docs/skills.md), without a server."""

from __future__ import annotations

from typing import Any

import pytest

from kijko_core.errors import ValidationFailed
from kijko_core.skills.inputs import INPUT_MAX_BYTES, validate_input
from kijko_core.skills.models import InputSchemaField
from kijko_core.skills.templates import RENDERED_MAX_CHARS, placeholders, render, render_prompts, roots


def test_placeholders_in_order_each_once() -> None:
    text = "{{a}} {{ b.c }} {{a}} {{b.0.d}} {{_x1}} {{ 1 + 1 }} {{a b}} {% if a %} {{}} {{.a}} {{a.}}"
    assert placeholders(text) == ["a", "b.c", "b.0.d", "_x1"]
    assert roots(text) == ["a", "b", "_x1"]


def test_render_substitutes_paths_and_encodes_values() -> None:
    values = {
        "name": "Ada",
        "n": 3,
        "flag": False,
        "tags": ["x", "y"],
        "user": {"address": {"city": "Delft"}, "emails": ["a@example.com"]},
        "nothing": None,
    }
    template = (
        "Hi {{name}} ({{ n }}, {{flag}}): {{tags}} {{tags.1}} {{user.address.city}} {{user.emails.0}} "
        "{{user.address}} [{{missing}}] [{{user.none.deeper}}] [{{tags.7}}] [{{name.length}}] [{{nothing}}]"
    )
    assert render(template, values) == (
        'Hi Ada (3, false): ["x", "y"] y Delft a@example.com {"city": "Delft"} [] [] [] [] []'
    )


@pytest.mark.parametrize(
    "template",
    [
        "{{__class__}}{{__class__.__mro__}}{{name.__class__.__init__.__globals__}}",
        "{% import os %}{{ config }}{{ ''.__class__ }}{{ lipsum.__globals__ }}",
        "${name} %(name)s {name} {0} {{{{name}}}}",
    ],
)
def test_render_never_interprets_anything_but_placeholders(template: str) -> None:
    """Attribute-like paths are dictionary keys and positions only; other syntax is text."""
    values = {"name": "Ada", "__class__": "just a value"}
    rendered = render(template, values)
    assert "object" not in rendered and "module" not in rendered and "function" not in rendered
    if template.startswith("{{__class__}}"):
        assert rendered == "just a value"
    if template.startswith("{%"):
        # Only {{ config }} and {{ lipsum.__globals__ }} are placeholders (missing: empty).
        assert rendered == "{% import os %}{{ ''.__class__ }}"
    if template.startswith("$"):
        assert rendered == "${name} %(name)s {name} {0} {{Ada}}"


def test_rendered_size_is_capped() -> None:
    big = "x" * (RENDERED_MAX_CHARS // 2 + 1)
    with pytest.raises(ValidationFailed) as caught:
        render("{{a}}{{a}}", {"a": big})
    assert caught.value.field == "input" and big not in caught.value.message
    assert len(render("{{a}}", {"a": big})) == len(big)
    with pytest.raises(ValidationFailed):
        render("p" * 10 + "{{a}}", {"a": "x" * RENDERED_MAX_CHARS})


def test_render_prompts_renders_both_templates() -> None:
    snapshot = {"promptTemplate": "About {{t}}.", "systemPrompt": "Expert in {{t}}."}
    assert render_prompts(snapshot, {"t": "owls"}) == ("About owls.", "Expert in owls.")
    assert render_prompts({"promptTemplate": "Plain", "systemPrompt": None}, {}) == ("Plain", None)


SCHEMA = [
    InputSchemaField(name="text", type="string", required=True),
    InputSchemaField(name="count", type="number", default=3),
    InputSchemaField(name="loud", type="boolean"),
    InputSchemaField(name="items", type="array"),
    InputSchemaField(name="meta", type="object", required=True, default={"k": 1}),
]


def test_validate_input_applies_defaults_and_keeps_extra_keys() -> None:
    raw = {"text": "hi", "loud": True, "extra": {"from": "webhook"}}
    assert validate_input(SCHEMA, raw) == {
        "text": "hi",
        "count": 3,
        "loud": True,
        "meta": {"k": 1},
        "extra": {"from": "webhook"},
    }
    assert raw == {"text": "hi", "loud": True, "extra": {"from": "webhook"}}  # not changed
    # null is absent: the default, or nothing for an optional input without one.
    assert validate_input(SCHEMA, {"text": "x", "count": None, "items": None}) == {
        "text": "x",
        "count": 3,
        "meta": {"k": 1},
    }
    assert validate_input([], None) == {}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "input.text"),
        ({"text": None}, "input.text"),
        ({"text": 5}, "input.text"),
        ({"text": "x", "count": "3"}, "input.count"),
        ({"text": "x", "count": True}, "input.count"),
        ({"text": "x", "loud": "true"}, "input.loud"),
        ({"text": "x", "loud": 1}, "input.loud"),
        ({"text": "x", "items": {"a": 1}}, "input.items"),
        ({"text": "x", "meta": [1]}, "input.meta"),
    ],
)
def test_validate_input_refusals_name_the_input(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_input(SCHEMA, raw)
    assert caught.value.field == field
    assert caught.value.status == 422


def test_validate_input_refuses_non_objects_and_huge_inputs() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_input(SCHEMA, ["text"])  # type: ignore[arg-type]
    assert caught.value.field == "input"
    with pytest.raises(ValidationFailed) as caught:
        validate_input([], {"blob": "x" * INPUT_MAX_BYTES})
    assert caught.value.field == "input"
    assert validate_input(SCHEMA, {"text": 1.5 and "ok", "count": 1.5})["count"] == 1.5
