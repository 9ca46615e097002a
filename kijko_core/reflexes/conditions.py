"""A reflex's conditions on a payload (docs/reflexes.md#conditions): never ``eval``.

- ``filters``: ``{field, operator, value}`` with ``field`` a dot path (``repo.name``,
  ``commits.0.id``); the operators compare the field's text (a string as is, anything else as
  compact JSON: ``42``, ``true``) with ``value``. ``regex`` runs on RE2 (linear time, no
  backtracking), with the pattern and the text it looks at capped. A missing field matches no
  filter.
- ``expression``: a JMESPath expression (``jmespath``: a query language without code
  execution) whose result matches when truthy (JMESPath's truth: not null/false/""/[]/{}).
- ``matchAll`` (default true): every filter and the expression must match; false: any one.
  No filters and no expression: everything matches.

Both are checked when a reflex is saved (:func:`check`), so a bad pattern or expression is a
422 on its field, never an error at delivery time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jmespath
import re2
from jmespath.exceptions import JMESPathError

from kijko_core.errors import ValidationFailed
from kijko_core.reflexes.models import ReflexConditions, ReflexFilter

#: Longest regex pattern, and how much of a field a regex looks at (RE2 is linear in both).
REGEX_MAX = 500
SUBJECT_MAX = 64 * 1024
#: RE2's memory budget per compiled pattern (its default is 8 MiB): a pattern whose automaton
#: needs more is refused when the reflex is saved.
REGEX_MAX_MEM = 1 << 20
_MISSING = object()


def _options() -> Any:
    options = re2.Options()
    options.max_mem = REGEX_MAX_MEM
    options.log_errors = False
    return options


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    return re2.compile(pattern, _options())


@lru_cache(maxsize=1024)
def _expression(text: str) -> Any:
    return jmespath.compile(text)


def check(conditions: ReflexConditions | None) -> None:
    """Refuse what could not be evaluated: 422 on ``conditions.filters.N.value`` or
    ``conditions.expression``."""
    if conditions is None:
        return
    for index, item in enumerate(conditions.filters or []):
        if item.operator == "regex":
            if len(item.value) > REGEX_MAX:
                raise ValidationFailed(
                    f"A regex may have at most {REGEX_MAX} characters", field=f"conditions.filters.{index}.value"
                )
            try:
                _regex(item.value)
            except Exception:  # re2.error, and a pattern over the memory budget
                raise ValidationFailed(
                    "This is not a valid regular expression (RE2 syntax)", field=f"conditions.filters.{index}.value"
                ) from None
    if conditions.expression is not None:
        try:
            _expression(conditions.expression)
        except JMESPathError:
            raise ValidationFailed("This is not a valid JMESPath expression", field="conditions.expression") from None


def lookup(payload: Any, path: str) -> Any:
    """The value at a dot path, or a marker for none (numeric parts index lists)."""
    current = payload
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "equals": lambda text, value: text == value,
    "contains": lambda text, value: value in text,
    "startsWith": lambda text, value: text.startswith(value),
    "endsWith": lambda text, value: text.endswith(value),
    "regex": lambda text, value: _regex(value).search(text[:SUBJECT_MAX]) is not None,
}


def _filter_matches(item: ReflexFilter, payload: Any) -> bool:
    found = lookup(payload, item.field)
    if found is _MISSING:
        return False
    return _OPERATORS[item.operator](_text(found), item.value)


def _truthy(value: Any) -> bool:
    return value not in (None, False, "", [], {})


def matches(conditions: ReflexConditions | None, payload: Any) -> bool:
    """Whether ``payload`` meets ``conditions`` (checked on save, so nothing here raises for
    a stored reflex)."""
    if conditions is None:
        return True
    verdicts = [_filter_matches(item, payload) for item in conditions.filters or []]
    if conditions.expression is not None:
        try:
            verdicts.append(_truthy(_expression(conditions.expression).search(payload)))
        except JMESPathError:  # a runtime type error in the expression: no match
            verdicts.append(False)
    if not verdicts:
        return True
    return all(verdicts) if conditions.match_all is not False else any(verdicts)
