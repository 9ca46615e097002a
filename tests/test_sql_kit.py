"""The repository kit (kijko_core/db/sql.py, decision 0020): tables match the migrated
database, statements are composed only at import time from our own fragments, updates are
restricted to their allowlist, pages are stable and unique violations become the domain's
error."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, get_args

import asyncpg
import pytest
from pydantic import BaseModel

from kijko_core.db import sql
from kijko_core.db.provision import ScratchDatabase
from kijko_core.errors import Conflict
from kijko_core.projects import repository
from kijko_core.runtime import Kijko

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kijko_core", "kijko_server", "kijko_cli")
#: The kit itself builds statements in its functions, for callers that run at import time.
KIT = Path("kijko_core/db/sql.py")
#: Calls that build SQL text; only allowed where no request exists yet: at module level.
BUILDERS = frozenset({"compose", "Fragment", "paged", "counted", "Update", "Table"})
#: What S608 looks for, but across lines (its pattern stops at a newline).
SQL_TEXT = re.compile(
    r"\b(select\b.*\bfrom|delete\s+from|insert\s+into|update\b.*\bset|where)\b", re.IGNORECASE | re.DOTALL
)


# ---------------------------------------------------------------------------------------------
# The static check: SQL is never built from values.


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _literal_text(node: ast.AST) -> str:
    """The constant text of a string expression (an f-string's literal parts)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal_text(value) for value in node.values)
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + " " + _literal_text(node.right)
    return ""


def _dynamic_sql(node: ast.AST) -> bool:
    """A string expression that splices something into text that reads as SQL."""
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return bool(SQL_TEXT.search(_literal_text(node)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return bool(SQL_TEXT.search(_literal_text(node)))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
    ):
        return bool(SQL_TEXT.search(node.func.value.value))
    return False


def sql_violations(source: str, filename: str) -> list[str]:
    """Statements built inside functions (from run-time values) in one module."""
    problems = []
    tree = ast.parse(source, filename)

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            line = getattr(child, "lineno", 0)
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if inside and isinstance(child, ast.Call) and _name(child.func) in BUILDERS:
                problems.append(f"{filename}:{line}: {_name(child.func)}() inside a function")
            elif inside and _dynamic_sql(child):
                problems.append(f"{filename}:{line}: SQL built from values")
            visit(child, inside)

    visit(tree, False)
    return problems


def package_sql_violations() -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative == KIT:
                continue
            problems += sql_violations(path.read_text(encoding="utf-8"), str(relative))
    return problems


def test_no_sql_is_built_from_values_anywhere() -> None:
    assert package_sql_violations() == []


@pytest.mark.parametrize(
    "body",
    [
        "f\"SELECT * FROM kijko.projects WHERE name = '{name}'\"",
        '"SELECT id\\nFROM kijko.projects WHERE id = " + name',
        '"DELETE FROM kijko.projects WHERE id = %s" % name',
        '"UPDATE kijko.projects\\nSET name = {}".format(name)',
        'sql.compose("SELECT {c} FROM t", c=sql.Fragment(name))',
        "sql.Fragment(name)",
    ],
)
def test_the_check_reports_sql_built_from_a_value(body: str) -> None:
    source = f"from kijko_core.db import sql\n\n\nasync def find(db, name):\n    return await db.fetch({body})\n"
    assert sql_violations(source, "bad.py") != []


def test_the_check_allows_composition_at_import_time_and_plain_strings() -> None:
    source = (
        "from kijko_core.db import sql\n"
        'T = sql.Table("kijko.projects", Model)\n'
        '_GET = sql.compose("SELECT {c}\\nFROM {t} WHERE id = $1", c=T.select_list, t=T)\n'
        'PREFIX = "kijko"\n'
        '_LONG = f"SELECT 1 FROM {PREFIX}.projects"\n'
        "async def get(db, id):\n"
        "    message = f'no project {id}'\n"
        "    return await db.fetchrow(_GET, id)\n"
    )
    assert sql_violations(source, "good.py") == []


# ---------------------------------------------------------------------------------------------
# Tables and records against the migrated database.


async def table_columns(database: ScratchDatabase, table: str) -> dict[str, bool]:
    """Column name → nullable, as the migrated database has them."""
    schema, name = table.split(".")
    connection = await asyncpg.connect(database.admin_url)
    try:
        rows = await connection.fetch(
            "SELECT column_name, is_nullable = 'YES' AS nullable FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = $2",
            schema,
            name,
        )
    finally:
        await connection.close()
    return {row["column_name"]: row["nullable"] for row in rows}


def table_problems(table: sql.Table[Any], real: dict[str, bool]) -> list[str]:
    """Columns the record names that the table lacks, and nullability that disagrees."""
    problems = []
    if not real:
        return [f"{table.name}: no such table"]
    for column in table.columns:
        if column not in real:
            problems.append(f"{table.name}.{column}: not a column")
            continue
        # The record may hold None (``X | None``), whether or not the field has a default.
        record_nullable = type(None) in get_args(table.record.model_fields[column].annotation)
        if record_nullable != real[column]:
            problems.append(
                f"{table.name}.{column}: nullable {real[column]} in the table, {record_nullable} in the record"
            )
    return problems


async def test_every_table_matches_the_migrated_database(kijko: Kijko, database: ScratchDatabase) -> None:
    assert repository.TABLE in sql.TABLES
    for table in sql.TABLES:
        assert table_problems(table, await table_columns(database, table.name)) == []


async def test_the_table_check_reports_drift(kijko: Kijko, database: ScratchDatabase) -> None:
    class Drifted(BaseModel):
        id: Any
        name: str | None = None  # NOT NULL in the table
        colour: str  # no such column

    drifted = sql.Table("kijko.projects", Drifted)
    sql.TABLES.remove(drifted)
    assert table_problems(drifted, await table_columns(database, "kijko.projects")) == [
        "kijko.projects.name: nullable False in the table, True in the record",
        "kijko.projects.colour: not a column",
    ]
    missing = sql.Table("kijko.nothing", Drifted)
    sql.TABLES.remove(missing)
    assert table_problems(missing, await table_columns(database, "kijko.nothing")) == ["kijko.nothing: no such table"]


# ---------------------------------------------------------------------------------------------
# The pieces.


class Row(BaseModel):
    id: int
    organization_id: int
    name: str
    note: str | None = None
    updated_at: str


ROWS = sql.Table("kijko.rows", Row)
sql.TABLES.remove(ROWS)  # an example, not a table of the schema


def test_compose_takes_only_our_fragments() -> None:
    where = sql.Fragment("organization_id = $1")
    assert sql.compose("SELECT {c}\nFROM {t}\nWHERE {w}", c=ROWS.select_list, t=ROWS, w=where) == (
        "SELECT id, organization_id, name, note, updated_at\nFROM kijko.rows\nWHERE organization_id = $1"
    )
    with pytest.raises(TypeError, match="not a Fragment"):
        sql.compose("SELECT * FROM t WHERE {w}", w="1 = 1; DROP TABLE x")  # type: ignore[arg-type]


def test_update_is_one_statement_over_its_allowlist() -> None:
    update = sql.Update(ROWS, ("name", "note"), where=sql.Fragment("organization_id = $1 AND id = $2"), leading=2)
    assert update.statement == (
        "UPDATE kijko.rows SET name = CASE WHEN $3 THEN $4 ELSE name END,\n"
        "    note = CASE WHEN $5 THEN $6 ELSE note END,\n"
        "    updated_at = now()\n"
        "WHERE organization_id = $1 AND id = $2\n"
        "RETURNING id, organization_id, name, note, updated_at"
    )
    assert update.args({"note": None}) == [False, None, True, None]
    with pytest.raises(KeyError, match="organization_id"):
        update.args({"name": "x", "organization_id": 2})
    with pytest.raises(ValueError, match="colour"):
        sql.Update(ROWS, ("colour",), where=sql.Fragment("id = $1"), leading=1)
    with pytest.raises(ValueError, match="changed_at"):
        sql.Update(ROWS, ("name",), where=sql.Fragment("id = $1"), leading=1, touch="changed_at")


def test_projects_update_allowlist_leaves_out_server_managed_columns() -> None:
    server_managed = {"id", "user_id", "organization_id", "status", "total_repos", "total_files", "created_at"}
    assert server_managed.isdisjoint(repository.UPDATABLE)
    for column in server_managed:
        with pytest.raises(KeyError):
            repository._UPDATE.args({column: None})


def test_paged_orders_stably_and_counts_in_the_same_statement() -> None:
    select = sql.compose("SELECT {c}\nFROM {t}\nWHERE organization_id = $1", c=ROWS.select_list, t=ROWS)
    assert sql.paged(select, order_by=("name",)) == (
        "SELECT id, organization_id, name, note, updated_at,\n    count(*) OVER () AS total\nFROM kijko.rows\n"
        "WHERE organization_id = $1\nORDER BY name, id\nLIMIT $2 OFFSET $3"
    )
    assert sql.paged(select, order_by=("id",)).endswith("ORDER BY id\nLIMIT $2 OFFSET $3")
    assert sql.counted(select) == "SELECT count(*)\nFROM kijko.rows\nWHERE organization_id = $1"
    assert "ORDER BY created_at, id" in repository._LIST


class RowExists(Conflict):
    code = "ROW_EXISTS"


async def test_unique_as_maps_only_the_named_constraint(database: ScratchDatabase) -> None:
    connection = await asyncpg.connect(database.admin_url)
    try:
        await connection.execute(
            "CREATE TEMP TABLE kit_rows"
            " (a int CONSTRAINT kit_rows_a_key UNIQUE, b int CONSTRAINT kit_rows_b_key UNIQUE)"
        )
        await connection.execute("INSERT INTO kit_rows VALUES (1, 1)")
        errors = {"kit_rows_a_key": lambda: RowExists(field="a")}
        with pytest.raises(RowExists) as raised:
            with sql.unique_as(errors):
                await connection.execute("INSERT INTO kit_rows VALUES (1, 2)")
        assert raised.value.field == "a" and raised.value.__cause__ is None
        with pytest.raises(asyncpg.UniqueViolationError):
            with sql.unique_as(errors):
                await connection.execute("INSERT INTO kit_rows VALUES (2, 1)")
    finally:
        await connection.close()
