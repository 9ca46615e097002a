"""Shared pieces of the wire format: camelCase models and the one pagination helper."""

from __future__ import annotations

import math
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class WireModel(BaseModel):
    """A domain model on the wire: camelCase keys (snake_case accepted on input), unknown keys
    ignored, so server-managed fields in a body are never taken."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(item) for item in value)
    return False


def reject_non_finite(value: Any) -> Any:
    """A ``mode="before"`` field validator body: refuse NaN and ±Infinity anywhere inside (Python
    parses ``NaN`` and ``1e309`` in a body; they are not JSON, and jsonb refuses them)."""
    if _has_non_finite(value):
        raise ValueError("must not contain NaN or Infinity")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def reject_unstorable(value: Any) -> Any:
    """JSON parsed outside the request body parser (a webhook's body, verified as bytes):
    refuse what ``jsonb`` cannot hold — NUL, NaN and ±Infinity, lone surrogates — anywhere."""
    reject_non_finite(reject_nul(value))
    if _has_lone_surrogate(value):
        raise ValueError("must be valid Unicode (no unpaired surrogate)")
    return value


def reject_nul(value: Any) -> Any:
    """A ``mode="before"`` field validator body: refuse strings PostgreSQL cannot store."""
    if _has_nul(value):
        raise ValueError("must not contain NUL characters")
    return value


class WireInput(WireModel):
    """A request body or query: like ``WireModel``, and no string may contain a NUL character,
    no number may be NaN or infinite.

    PostgreSQL cannot store NUL in text or jsonb, nor NaN or Infinity in jsonb; rejected here
    it is a 422 on the right field instead of a database error (500) halfway through a
    transaction.
    """

    @field_validator("*", mode="before")
    @classmethod
    def _reject_nul(cls, value: Any) -> Any:
        return reject_non_finite(reject_nul(value))


class PageQuery(WireInput):
    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(default=20, ge=1, le=100)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


class Page(WireModel, Generic[T]):
    """``{data, total, page, pageSize, hasMore}`` (contract §1.4, ``PaginatedResponse``)."""

    data: list[T]
    total: int
    page: int
    page_size: int
    has_more: bool

    @classmethod
    def of(cls, items: list[T], total: int, query: PageQuery) -> Page[T]:
        return cls(
            data=items,
            total=total,
            page=query.page,
            page_size=query.page_size,
            has_more=query.offset + len(items) < total,
        )


class Success(WireModel):
    # Always written, so required in the document.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    success: Literal[True] = True


def escape_like(text: str) -> str:
    """``text`` with the ``LIKE`` wildcards and the escape character escaped (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_pattern(text: str) -> str:
    """A case-insensitive ``ILIKE`` pattern matching ``text`` literally anywhere (ESCAPE '\\')."""
    return f"%{escape_like(text)}%"
