"""The repository kit: what every domain's ``repository.py`` is written with.

A repository is a handful of module-level statements and thin functions that run them. The
statements are plain PostgreSQL with ``$n`` parameters, composed **once, at import time, from
constants of our own** (a table's column list, a domain's readable condition, the update
statement built from an allowlist) and never from anything a request carries: print one and
paste it into psql. Values always travel as parameters.

The rule is checked, not trusted (decision 0020): ruff's S608 stays on everywhere but in this
module, and ``tests/test_sql_kit.py`` refuses any call of :func:`compose` (or any SQL built
with an f-string, ``%``, ``.format`` or ``+``) inside a function body of a repository.

What the kit gives:

- :class:`Table` — a table and the record its rows become; the columns are the record's
  fields, named once (a test checks them against the migrated database).
- :func:`compose` — a statement from a template and our fragments.
- :class:`Update` — one fixed partial-update statement over an allowlist of columns.
- :func:`paged` / :func:`fetch_page` — stable order with an ``id`` tie-breaker, and the total
  from the same round trip.
- :func:`unique_as` — a unique violation turned into the domain's ``*_EXISTS`` error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
from pydantic import BaseModel

from kijko_core.db.session import Session
from kijko_core.errors import KijkoError

R = TypeVar("R", bound=BaseModel)


class Fragment(str):
    """A piece of SQL of our own (a column list, a condition). Only fragments are spliced into
    statements; everything else is a ``$n`` parameter."""

    __slots__ = ()


def compose(template: str, **parts: Fragment | Table[Any]) -> str:
    """``template`` with ``{name}`` replaced by our fragments; a table stands for its name.
    The result is a plain ``str`` (asyncpg takes nothing else); to reuse a statement as a
    part, wrap it in ``Fragment`` where it is defined.

    Called at module level only (the test enforces it), so no request value can reach it; the
    type check refuses plain strings at run time as a second line.
    """
    for name, part in parts.items():
        if not isinstance(part, Fragment | Table):
            raise TypeError(f"SQL part {name!r} is not a Fragment of our own")
    return template.format(
        **{name: str.__str__(part) if isinstance(part, Fragment) else part.name for name, part in parts.items()}
    )


#: Every table a repository declared, for the test that compares them with the database.
TABLES: list[Table[Any]] = []


@dataclass(frozen=True)
class Table(Generic[R]):
    """``kijko.projects`` and the record its rows become.

    ``columns`` are the record's fields in declaration order, so the select list, the record and
    the wire model cannot drift apart; ``tests/test_sql_kit.py`` checks each against the real
    table.
    """

    name: str
    record: type[R]
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.record.model_fields))
        TABLES.append(self)

    def __str__(self) -> str:
        return self.name

    @property
    def select_list(self) -> Fragment:
        """``id, user_id, …`` for ``SELECT`` and ``RETURNING``."""
        return Fragment(", ".join(self.columns))

    def one(self, row: asyncpg.Record) -> R:
        return self.record.model_validate(dict(row))

    def maybe(self, row: asyncpg.Record | None) -> R | None:
        return None if row is None else self.record.model_validate(dict(row))

    def many(self, rows: Sequence[asyncpg.Record]) -> list[R]:
        # The list endpoint is benchmarked: one model_validate per row, nothing more.
        validate = self.record.model_validate
        return [validate(dict(row)) for row in rows]


@dataclass(frozen=True)
class Update:
    """One fixed statement for every partial update of ``columns`` (an allowlist).

    Each column gets two parameters, a flag and a value:
    ``name = CASE WHEN $3 THEN $4 ELSE name END``, so one prepared statement serves every
    combination of present fields, and a key outside the allowlist is an error, never SQL.
    ``where`` uses ``$1``…``$n`` for its own arguments (``leading`` of them).
    """

    table: Table[Any]
    columns: tuple[str, ...]
    where: Fragment
    leading: int
    touch: str | None = "updated_at"
    statement: str = field(init=False)

    def __post_init__(self) -> None:
        unknown = (set(self.columns) | ({self.touch} if self.touch else set())) - set(self.table.columns)
        if unknown:
            raise ValueError(f"not columns of {self.table.name}: {sorted(unknown)}")
        sets = [
            f"{column} = CASE WHEN ${self.leading + 2 * n + 1} THEN ${self.leading + 2 * n + 2} ELSE {column} END"
            for n, column in enumerate(self.columns)
        ]
        if self.touch:
            sets.append(f"{self.touch} = now()")
        statement = compose(
            "UPDATE {table} SET {sets}\nWHERE {where}\nRETURNING {columns}",
            table=self.table,
            sets=Fragment(",\n    ".join(sets)),
            where=self.where,
            columns=self.table.select_list,
        )
        object.__setattr__(self, "statement", statement)

    def args(self, changes: Mapping[str, Any]) -> list[Any]:
        """The flag/value parameters for ``changes``; a key outside the allowlist raises."""
        unknown = changes.keys() - set(self.columns)
        if unknown:
            raise KeyError(f"not updatable: {sorted(unknown)}")
        args: list[Any] = []
        for column in self.columns:
            args += [column in changes, changes.get(column)]
        return args


def paged(select: str, *, order_by: Sequence[str]) -> str:
    """``select`` (``SELECT … FROM … WHERE …``, up to the end of its ``WHERE``) as one page:
    a ``total`` column counted over every match, a stable order ending in ``id``, and
    ``LIMIT``/``OFFSET`` as its last two parameters.

    The total rides on each row (``count(*) OVER ()``), so a page and its total are one round
    trip; :func:`fetch_page` asks separately only for a page past the end.
    """
    keys = [*order_by] if "id" in order_by else [*order_by, "id"]
    count = _highest_parameter(select)
    head, sep, tail = select.partition("\nFROM ")
    if not sep:
        raise ValueError("a paged select needs its FROM on a line of its own")
    return (
        f"{head},\n    count(*) OVER () AS total\nFROM {tail}\n"
        f"ORDER BY {', '.join(keys)}\nLIMIT ${count + 1} OFFSET ${count + 2}"
    )


def counted(select: str) -> str:
    """The count of what ``select`` matches, for a page past the end."""
    _, sep, tail = select.partition("\nFROM ")
    if not sep:
        raise ValueError("a counted select needs its FROM on a line of its own")
    return f"SELECT count(*)\nFROM {tail}"


def _highest_parameter(statement: str) -> int:
    return max((int(number) for number in re.findall(r"\$(\d+)", statement)), default=0)


async def fetch_page(
    db: Session, page: str, count: str, *args: Any, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """One page of rows and the total over all of them (see :func:`paged`)."""
    rows = await db.fetch(page, *args, limit, offset)
    if rows:
        return rows, rows[0]["total"]
    if offset == 0:
        return rows, 0
    return rows, await db.fetchval(count, *args)


@contextmanager
def unique_as(errors: Mapping[str, Callable[[], KijkoError]]) -> Iterator[None]:
    """Turn a unique violation of a named constraint or index into the domain's error
    (``{"projects_name_key": lambda: ProjectExists(field="name")}``); other violations
    propagate unchanged, so an unexpected one stays a visible bug."""
    try:
        yield
    except asyncpg.UniqueViolationError as error:
        make = errors.get(error.constraint_name or "")
        if make is None:
            raise
        raise make() from None
