"""Reflex conditions (kijko_core/reflexes/conditions.py): the operators on dot paths, matchAll,
JMESPath expressions, RE2 regexes (linear time: a pattern that makes backtracking engines
explode answers at once) and the checks on save."""

from __future__ import annotations

from typing import Any

import pytest

from kijko_core.errors import ValidationFailed
from kijko_core.reflexes.conditions import check, lookup, matches
from kijko_core.reflexes.models import ReflexConditions

PAYLOAD = {
    "action": "opened",
    "number": 42,
    "draft": False,
    "repository": {"full_name": "acme/api", "topics": ["python", "web"]},
    "commits": [{"id": "abc123", "message": "Fix: crash on start"}],
}


def conditions(**fields: Any) -> ReflexConditions:
    return ReflexConditions.model_validate(fields)


def one(field: str, operator: str, value: str) -> ReflexConditions:
    return conditions(filters=[{"field": field, "operator": operator, "value": value}])


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("action", "equals", "opened", True),
        ("action", "equals", "Opened", False),
        ("number", "equals", "42", True),
        ("draft", "equals", "false", True),
        ("repository.full_name", "startsWith", "acme/", True),
        ("repository.full_name", "endsWith", "/api", True),
        ("repository.full_name", "contains", "me/a", True),
        ("repository.topics.1", "equals", "web", True),
        ("commits.0.message", "regex", r"^Fix:\s", True),
        ("commits.0.message", "regex", r"^Feat:", False),
        ("commits.5.message", "contains", "", False),  # missing: no match, even for ""
        ("repository.owner", "equals", "acme", False),
        ("action.length", "equals", "6", False),  # no attribute access on strings
    ],
)
def test_filters(field: str, operator: str, value: str, expected: bool) -> None:
    assert matches(one(field, operator, value), PAYLOAD) is expected


def test_match_all_and_any() -> None:
    hit = {"field": "action", "operator": "equals", "value": "opened"}
    miss = {"field": "action", "operator": "equals", "value": "closed"}
    assert matches(conditions(filters=[hit, miss]), PAYLOAD) is False  # matchAll defaults to true
    assert matches(conditions(filters=[hit, miss], matchAll=True), PAYLOAD) is False
    assert matches(conditions(filters=[hit, miss], matchAll=False), PAYLOAD) is True
    assert matches(conditions(filters=[miss], expression="number > `40`", matchAll=False), PAYLOAD) is True
    assert matches(conditions(filters=[hit], expression="number > `50`"), PAYLOAD) is False
    assert matches(conditions(), PAYLOAD) is True and matches(None, PAYLOAD) is True


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("action == 'opened' && !draft", True),
        ("contains(repository.topics, 'web')", True),
        ("length(commits[?starts_with(message, 'Fix')]) > `0`", True),
        ("repository.missing", False),
        ("commits[?message == 'nope']", False),  # an empty list is false
        ("abs(action)", False),  # a type error while evaluating: no match, no exception
    ],
)
def test_jmespath_expressions(expression: str, expected: bool) -> None:
    check(conditions(expression=expression))
    assert matches(conditions(expression=expression), PAYLOAD) is expected


def test_catastrophic_patterns_are_linear_on_re2() -> None:
    # (a+)+$ on "aaaa…b" takes exponential time on a backtracking engine (Python's re).
    subject = {"text": "a" * 50_000 + "b"}
    for pattern in (r"(a+)+$", r"(a|aa)+$", r"(.*a){20}$"):
        check(one("text", "regex", pattern))
        assert matches(one("text", "regex", pattern), subject) is False


def test_a_long_subject_is_looked_at_up_to_the_cap() -> None:
    subject = {"text": "x" * 70_000 + "needle"}
    assert matches(one("text", "regex", "needle"), subject) is False
    assert matches(one("text", "contains", "needle"), subject) is True


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"filters": [{"field": "a", "operator": "regex", "value": "(a"}]}, "conditions.filters.0.value"),
        ({"filters": [{"field": "a", "operator": "regex", "value": r"(?<=a)b"}]}, "conditions.filters.0.value"),
        ({"filters": [{"field": "a", "operator": "regex", "value": r"(\1)"}]}, "conditions.filters.0.value"),
        ({"filters": [{"field": "a", "operator": "regex", "value": "a" * 501}]}, "conditions.filters.0.value"),
        (
            {"filters": [{"field": "a", "operator": "regex", "value": "(((a{100}){100}){100})"}]},
            "conditions.filters.0.value",
        ),
        ({"expression": "a[?"}, "conditions.expression"),
        ({"expression": "__import__('os')"}, "conditions.expression"),
    ],
)
def test_what_cannot_run_is_refused_on_save(given: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check(ReflexConditions.model_validate(given))
    assert refused.value.field == field


def test_lookup() -> None:
    assert lookup(PAYLOAD, "repository.topics.0") == "python"
    assert lookup({"a.b": 1}, "a.b") != 1  # dots always separate
