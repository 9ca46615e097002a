"""Meta-tests of the database's security invariants (TEST-01, ARCHITECTURE §2).

Each invariant is a function that inspects the catalogs and returns its violations. It runs on
the real, migrated schema expecting none, and again after the invariant was broken on purpose
(inside a transaction that is rolled back, or on throwaway roles that are dropped afterwards)
to prove that it would notice.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from kijko_core.db.provision import ScratchDatabase, dsn_as
from kijko_core.db.roles import RoleNames, quote_identifier

TENANT_SCHEMA = "kijko"
PRIVATE_SCHEMA = "kijko_private"
#: SECURITY DEFINER functions the app role is meant to call (and nothing else of that kind).
#: The context readers are definers because they verify the context with a key the app role
#: cannot read (decision 0016); enter_service demands a capability (decision 0017).
APP_DEFINER_ALLOWLIST = frozenset(
    {
        "kijko.enter(uuid,uuid,text)",
        "kijko.enter_service(uuid,text,text,text)",
        "kijko.current_user_profile()",
        "kijko.current_org_id()",
        "kijko.current_user_id()",
        "kijko.current_actor()",
        # Organization members (migration 0012): each holds its own rules.
        "kijko.organization_members()",
        "kijko.change_member_role(uuid,text)",
        "kijko.remove_member(uuid)",
    }
)


class _Rollback(Exception):
    """Raised to leave a transaction that broke an invariant on purpose."""


# ---------------------------------------------------------------------------------------------
# The checks.


async def rls_violations(conn: asyncpg.Connection, schema: str = TENANT_SCHEMA) -> list[str]:
    """Tables of the tenant schema without forced RLS or without USING / WITH CHECK policies."""
    tables = await conn.fetch(
        """
        SELECT c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
        ORDER BY c.relname
        """,
        schema,
    )
    problems = []
    for table in tables:
        name = f"{schema}.{table['relname']}"
        if not table["relrowsecurity"]:
            problems.append(f"{name}: row-level security not enabled")
        if not table["relforcerowsecurity"]:
            problems.append(f"{name}: row-level security not forced")
        policies = await conn.fetch(
            "SELECT polname, polcmd::text AS polcmd, polqual IS NOT NULL AS has_using,"
            " polwithcheck IS NOT NULL AS has_check FROM pg_policy WHERE polrelid = $1",
            table["oid"],
        )
        if not any(p["has_using"] for p in policies):
            problems.append(f"{name}: no policy with USING")
        if not any(p["has_check"] for p in policies):
            problems.append(f"{name}: no policy with WITH CHECK")
        for policy in policies:
            # '*' = ALL, 'w' = UPDATE: both clauses are meaningful and must be explicit.
            if policy["polcmd"] in ("*", "w") and not (policy["has_using"] and policy["has_check"]):
                problems.append(f"{name}: policy {policy['polname']} lacks USING or WITH CHECK")
    return problems


async def app_role_violations(conn: asyncpg.Connection, roles: RoleNames) -> list[str]:
    """Attributes, ownership, memberships and private-schema privileges of the app role."""
    problems = []
    role = await conn.fetchrow(
        "SELECT oid, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1",
        roles.app,
    )
    assert role is not None, "the app role exists"
    for attribute in ("rolsuper", "rolbypassrls", "rolcreaterole", "rolcreatedb"):
        if role[attribute]:
            problems.append(f"app role has {attribute}")
    # pg_shdepend records the owner of every object, in every database, of a non-bootstrap role.
    owned = await conn.fetch(
        """
        SELECT CASE WHEN d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                    THEN pg_describe_object(d.classid, d.objid, d.objsubid)
                    ELSE format('object %s of class %s in database %s', d.objid, d.classid, d.dbid)
               END AS object
        FROM pg_shdepend d WHERE d.refobjid = $1 AND d.deptype = 'o'
        """,
        role["oid"],
    )
    problems.extend(f"app role owns {row['object']}" for row in owned)
    # 'SET' is a privilege mode of its own from PostgreSQL 16 on (implied by USAGE before).
    modes = ("MEMBER", "USAGE", "SET") if conn.get_server_version().major >= 16 else ("MEMBER", "USAGE")
    for other in (roles.owner, roles.system):
        for mode in modes:
            if await conn.fetchval("SELECT pg_has_role($1, $2, $3)", roles.app, other, mode):
                problems.append(f"app role has {mode} on role {other}")
    for privilege in ("USAGE", "CREATE"):
        if await conn.fetchval("SELECT has_schema_privilege($1, $2, $3)", roles.app, PRIVATE_SCHEMA, privilege):
            problems.append(f"app role has {privilege} on schema {PRIVATE_SCHEMA}")
    granted = await conn.fetch(
        """
        SELECT c.relname, a.privilege_type
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             aclexplode(c.relacl) a
        WHERE n.nspname = $1 AND a.grantee IN ($2::regrole, 0)
        """,
        PRIVATE_SCHEMA,
        roles.app,
    )
    problems.extend(f"app role has {row['privilege_type']} on {PRIVATE_SCHEMA}.{row['relname']}" for row in granted)
    return problems


async def set_role_succeeds(conn: asyncpg.Connection, target: str) -> bool:
    """Try ``SET ROLE`` on a connection logged in as the role under test."""
    try:
        await conn.execute("SET ROLE " + quote_identifier(target))
    except asyncpg.InsufficientPrivilegeError:
        return False
    await conn.execute("RESET ROLE")
    return True


async def definer_function_violations(
    conn: asyncpg.Connection, app_role: str, allowlist: frozenset[str] = APP_DEFINER_ALLOWLIST
) -> list[str]:
    """SECURITY DEFINER functions: pinned search_path, no PUBLIC execute, app only if allowed."""
    functions = await conn.fetch(
        """
        SELECT p.oid::regprocedure::text AS signature, p.proconfig,
               has_function_privilege($1, p.oid, 'EXECUTE') AS app_can_execute,
               EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                       WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_can_execute
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prosecdef
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%'
        ORDER BY 1
        """,
        app_role,
    )
    problems = []
    for function in functions:
        signature = function["signature"]
        config = function["proconfig"] or []
        if not any(item.startswith("search_path=") for item in config):
            problems.append(f"{signature}: SECURITY DEFINER without a pinned search_path")
        if function["public_can_execute"]:
            problems.append(f"{signature}: SECURITY DEFINER executable by PUBLIC")
        if function["app_can_execute"] and signature not in allowlist:
            problems.append(f"{signature}: SECURITY DEFINER executable by the app role")
    return problems


async def view_violations(conn: asyncpg.Connection, schema: str = TENANT_SCHEMA) -> list[str]:
    """Views that would run with their owner's rights (and so bypass the caller's RLS)."""
    views = await conn.fetch(
        """
        SELECT c.relname, c.relkind::text AS relkind, c.reloptions
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('v', 'm')
        ORDER BY c.relname
        """,
        schema,
    )
    truthy = {"security_invoker=" + value for value in ("true", "on", "1", "yes", "t", "y")}
    problems = []
    for view in views:
        name = f"{schema}.{view['relname']}"
        if view["relkind"] == "m":
            problems.append(f"{name}: materialized views cannot apply the caller's RLS")
        elif not truthy & {option.lower() for option in view["reloptions"] or []}:
            problems.append(f"{name}: view is not security_invoker")
    return problems


# ---------------------------------------------------------------------------------------------
# Fixtures.


@asynccontextmanager
async def _connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def admin(database: ScratchDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database (to break invariants on purpose)."""
    async with _connected(database.admin_url) as conn:
        yield conn


@pytest.fixture
async def owner(database: ScratchDatabase) -> AsyncIterator[asyncpg.Connection]:
    async with _connected(database.urls.migration) as conn:
        yield conn


@pytest.fixture
async def as_app(database: ScratchDatabase) -> AsyncIterator[asyncpg.Connection]:
    async with _connected(database.urls.app) as conn:
        yield conn


async def _in_rolled_back_transaction(conn: asyncpg.Connection, work: Any) -> Any:
    """Run ``work(conn)`` inside a transaction that is always rolled back; return its result."""
    result: Any = None
    try:
        async with conn.transaction():
            result = await work(conn)
            raise _Rollback
    except _Rollback:
        pass
    return result


# ---------------------------------------------------------------------------------------------
# Row-level security.


async def test_every_tenant_table_has_forced_rls_with_using_and_with_check(
    owner: asyncpg.Connection,
) -> None:
    tables = await owner.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", TENANT_SCHEMA)
    assert tables >= 3  # organizations, memberships, projects: the check looks at something
    assert await rls_violations(owner) == []


async def test_rls_check_reports_tables_that_break_it(owner: asyncpg.Connection) -> None:
    async def break_it(conn: asyncpg.Connection) -> list[str]:
        await conn.execute("CREATE TABLE kijko.meta_no_rls (id int)")
        await conn.execute("CREATE TABLE kijko.meta_not_forced (organization_id uuid)")
        await conn.execute("ALTER TABLE kijko.meta_not_forced ENABLE ROW LEVEL SECURITY")
        await conn.execute(
            "CREATE POLICY p ON kijko.meta_not_forced"
            " USING (organization_id = kijko.current_org_id())"
            " WITH CHECK (organization_id = kijko.current_org_id())"
        )
        await conn.execute("CREATE TABLE kijko.meta_using_only (organization_id uuid)")
        await conn.execute("ALTER TABLE kijko.meta_using_only ENABLE ROW LEVEL SECURITY")
        await conn.execute("ALTER TABLE kijko.meta_using_only FORCE ROW LEVEL SECURITY")
        await conn.execute("CREATE POLICY p ON kijko.meta_using_only USING (organization_id = kijko.current_org_id())")
        await conn.execute("CREATE TABLE kijko.meta_no_policy (id int)")
        await conn.execute("ALTER TABLE kijko.meta_no_policy ENABLE ROW LEVEL SECURITY")
        await conn.execute("ALTER TABLE kijko.meta_no_policy FORCE ROW LEVEL SECURITY")
        return await rls_violations(conn)

    problems = await _in_rolled_back_transaction(owner, break_it)
    assert sorted(problems) == sorted(
        [
            "kijko.meta_no_rls: row-level security not enabled",
            "kijko.meta_no_rls: row-level security not forced",
            "kijko.meta_no_rls: no policy with USING",
            "kijko.meta_no_rls: no policy with WITH CHECK",
            "kijko.meta_not_forced: row-level security not forced",
            "kijko.meta_using_only: no policy with WITH CHECK",
            "kijko.meta_using_only: policy p lacks USING or WITH CHECK",
            "kijko.meta_no_policy: no policy with USING",
            "kijko.meta_no_policy: no policy with WITH CHECK",
        ]
    )
    assert await rls_violations(owner) == []  # and the rollback left nothing behind


# ---------------------------------------------------------------------------------------------
# The app role.


async def test_app_role_is_unprivileged(owner: asyncpg.Connection, database: ScratchDatabase) -> None:
    assert await app_role_violations(owner, database.roles) == []


async def test_app_role_check_reports_privileges_ownership_and_memberships(
    admin: asyncpg.Connection, database: ScratchDatabase
) -> None:
    roles = database.roles
    app, system = quote_identifier(roles.app), quote_identifier(roles.system)

    async def break_it(conn: asyncpg.Connection) -> list[str]:
        await conn.execute("ALTER ROLE " + app + " BYPASSRLS")
        await conn.execute("CREATE TABLE kijko.meta_owned (id int)")
        await conn.execute("ALTER TABLE kijko.meta_owned OWNER TO " + app)
        await conn.execute("GRANT " + system + " TO " + app)
        await conn.execute("GRANT USAGE ON SCHEMA kijko_private TO " + app)
        await conn.execute("GRANT SELECT ON kijko_private.users TO " + app)
        return await app_role_violations(conn, roles)

    problems = await _in_rolled_back_transaction(admin, break_it)
    assert "app role has rolbypassrls" in problems
    assert "app role owns table kijko.meta_owned" in problems
    assert f"app role has MEMBER on role {roles.system}" in problems
    assert "app role has USAGE on schema kijko_private" in problems
    assert "app role has SELECT on kijko_private.users" in problems
    assert await app_role_violations(admin, roles) == []


async def test_app_role_cannot_set_role_to_system_or_owner(
    as_app: asyncpg.Connection, database: ScratchDatabase
) -> None:
    assert await as_app.fetchval("SELECT current_user") == database.roles.app
    assert not await set_role_succeeds(as_app, database.roles.system)
    assert not await set_role_succeeds(as_app, database.roles.owner)


async def test_set_role_check_notices_a_role_that_can_switch(
    admin: asyncpg.Connection, database: ScratchDatabase
) -> None:
    # Role grants only become visible to other sessions once committed: use throwaway roles.
    suffix = secrets.token_hex(4)
    member, target = f"meta_member_{suffix}", f"meta_target_{suffix}"
    password = secrets.token_urlsafe(16)
    quoted_password = await admin.fetchval("SELECT quote_literal($1::text)", password)
    await admin.execute("CREATE ROLE " + quote_identifier(member) + " LOGIN PASSWORD " + quoted_password)
    try:
        await admin.execute("CREATE ROLE " + quote_identifier(target))
        await admin.execute(
            "GRANT CONNECT ON DATABASE " + quote_identifier(database.name) + " TO " + quote_identifier(member)
        )
        await admin.execute("GRANT " + quote_identifier(target) + " TO " + quote_identifier(member))
        conn = await asyncpg.connect(dsn_as(database.admin_dsn, database=database.name, user=member, password=password))
        try:
            assert await set_role_succeeds(conn, target)
            assert not await set_role_succeeds(conn, database.roles.system)
        finally:
            await conn.close()
    finally:
        await admin.execute(
            "REVOKE ALL ON DATABASE " + quote_identifier(database.name) + " FROM " + quote_identifier(member)
        )
        await admin.execute("DROP ROLE IF EXISTS " + quote_identifier(member))
        await admin.execute("DROP ROLE IF EXISTS " + quote_identifier(target))


async def test_app_role_cannot_read_the_private_schema(as_app: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_app.fetch("SELECT * FROM kijko_private.users")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_app.fetch("SELECT * FROM kijko_private.schema_migrations")


# ---------------------------------------------------------------------------------------------
# SECURITY DEFINER functions.


async def test_security_definer_functions_are_locked_down(owner: asyncpg.Connection, database: ScratchDatabase) -> None:
    count = await owner.fetchval(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE p.prosecdef AND n.nspname = 'kijko'"
    )
    assert count >= 2  # kijko.enter and kijko.current_user_profile at least
    assert await definer_function_violations(owner, database.roles.app) == []


async def test_app_role_can_execute_only_allowlisted_definer_functions(
    as_app: asyncpg.Connection,
) -> None:
    callable_ = await as_app.fetch(
        "SELECT p.oid::regprocedure::text AS signature"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND has_function_privilege(p.oid, 'EXECUTE')"
    )
    assert {row["signature"] for row in callable_} == APP_DEFINER_ALLOWLIST


async def test_definer_check_reports_unpinned_public_and_app_executable_functions(
    owner: asyncpg.Connection, database: ScratchDatabase
) -> None:
    app = quote_identifier(database.roles.app)

    async def break_it(conn: asyncpg.Connection) -> list[str]:
        # Created by the owner with the defaults: PUBLIC may execute, no search_path.
        await conn.execute(
            "CREATE FUNCTION kijko.meta_unpinned() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$"
        )
        await conn.execute(
            "CREATE FUNCTION kijko.meta_granted() RETURNS int LANGUAGE sql SECURITY DEFINER"
            " SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$"
        )
        await conn.execute("REVOKE EXECUTE ON FUNCTION kijko.meta_granted() FROM PUBLIC")
        await conn.execute("GRANT EXECUTE ON FUNCTION kijko.meta_granted() TO " + app)
        await conn.execute(
            "CREATE FUNCTION kijko.meta_fine() RETURNS int LANGUAGE sql SECURITY DEFINER"
            " SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$"
        )
        await conn.execute("REVOKE EXECUTE ON FUNCTION kijko.meta_fine() FROM PUBLIC")
        return await definer_function_violations(conn, database.roles.app)

    problems = await _in_rolled_back_transaction(owner, break_it)
    assert sorted(problems) == sorted(
        [
            "kijko.meta_unpinned(): SECURITY DEFINER without a pinned search_path",
            "kijko.meta_unpinned(): SECURITY DEFINER executable by PUBLIC",
            "kijko.meta_unpinned(): SECURITY DEFINER executable by the app role",
            "kijko.meta_granted(): SECURITY DEFINER executable by the app role",
        ]
    )


# ---------------------------------------------------------------------------------------------
# Views.


async def test_every_tenant_view_is_security_invoker(owner: asyncpg.Connection) -> None:
    assert await view_violations(owner) == []


async def test_view_check_reports_definer_views_and_materialized_views(
    owner: asyncpg.Connection,
) -> None:
    async def break_it(conn: asyncpg.Connection) -> list[str]:
        await conn.execute("CREATE VIEW kijko.meta_definer AS SELECT id FROM kijko.projects")
        await conn.execute(
            "CREATE VIEW kijko.meta_invoker WITH (security_invoker = true) AS SELECT id FROM kijko.projects"
        )
        await conn.execute(
            "CREATE VIEW kijko.meta_invoker_off WITH (security_invoker = false) AS SELECT id FROM kijko.projects"
        )
        await conn.execute("CREATE MATERIALIZED VIEW kijko.meta_materialized AS SELECT id FROM kijko.projects")
        return await view_violations(conn)

    problems = await _in_rolled_back_transaction(owner, break_it)
    assert sorted(problems) == sorted(
        [
            "kijko.meta_definer: view is not security_invoker",
            "kijko.meta_invoker_off: view is not security_invoker",
            "kijko.meta_materialized: materialized views cannot apply the caller's RLS",
        ]
    )


async def test_app_role_carries_its_timeouts(as_app: asyncpg.Connection) -> None:
    """A runaway query, an abandoned transaction or a lock wait cannot hold a pooled connection
    forever: the app role's own settings bound them (the values provision_scratch sets)."""
    assert await as_app.fetchval("SHOW statement_timeout") == "15s"
    assert await as_app.fetchval("SHOW idle_in_transaction_session_timeout") == "30s"
    assert await as_app.fetchval("SHOW lock_timeout") == "5s"
