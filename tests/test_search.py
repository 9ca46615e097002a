"""Search over a project's current index and its indexed files (issue 7 §3, docs/search.md):
identifiers in every casing style, ranking, websearch syntax, filters, pagination, only the
current index, visibility like the project's, and hostile input never a 500."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.db.session import (
    ServiceActor,
    ServiceCapability,
    load_service_capability,
    service_session,
    system_session,
)
from kijko_core.ingestion.repository import INSERT_CHUNKS
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from kijko_core.search.models import MARK_END, MARK_START
from tests.conftest import Account
from tests.ingestion_kit import ingest
from tests.memberships import add_member
from tests.projects import created
from tests.search_index import CHUNK_COLUMNS, Chunk, index, insert_rows

API = "/api/v1/projects"

PARSER = Chunk(
    "src/config/loader.py",
    "def parse_config(path):\n    with open(path) as handle:\n        return load(handle)\n",
    symbol="parse_config",
    start_line=10,
)
CALLER = Chunk(
    "src/app.py",
    "import sys\n\n"
    + "\n".join(f"step_{n} = prepare(step_{n - 1})" for n in range(1, 30))
    + "\nsettings = parse_config(sys.argv[1])\nrun(settings)\n",
    symbol="main",
)
CAMEL = Chunk(
    "web/client.ts",
    "export function fetchUser(id: string) {\n  const cfg = parseConfig(window.location.href);\n"
    "  return new HTTPServer(cfg).get(id);\n}\n",
    symbol="fetchUser",
    language="typescript",
    source="uploads",
)
DOCS = Chunk("README.md", "# Setup\n\nRun the loader, then parse the config file.\n", language="markdown")


@pytest.fixture
async def capability(kijko: Kijko) -> ServiceCapability:
    return await load_service_capability(kijko.system_db)


@pytest.fixture
async def project(client: Any, kijko: Kijko, capability: ServiceCapability, alice: Account) -> dict[str, Any]:
    """Alice's project, indexed with the four chunks above."""
    made = await created(client, alice, "Searchable")
    await index(kijko, capability, alice.org_id, made["id"], [PARSER, CALLER, CAMEL, DOCS])
    return made


async def search(client: Any, account: Account, project_id: str, **query: Any) -> Any:
    response = await client.get(f"{API}/{project_id}/search", query_string=query, headers=account.headers)
    body = await response.get_json()
    assert response.status_code == 200, body
    return body


async def paths(client: Any, account: Account, project_id: str, q: str, **query: Any) -> list[str]:
    body = await search(client, account, project_id, q=q, **query)
    return [hit["path"] for hit in body["data"]]


async def test_identifiers_match_in_every_casing_style(client: Any, alice: Account, project: dict[str, Any]) -> None:
    for spelling in ("parse_config", "parseConfig", "ParseConfig", "parse-config", "PARSE_CONFIG", "parseconfig"):
        found = await paths(client, alice, project["id"], spelling)
        assert found[0] == PARSER.path, spelling
        if spelling == "parseconfig":
            # One word: the symbol's whole identifier, and a camelCase word in a body (CAMEL),
            # not the snake_case call in CALLER's body (docs/search.md).
            assert set(found) == {PARSER.path, CAMEL.path}, spelling
        else:
            # camelCase in a body (CAMEL) and snake_case in a body (CALLER) both match.
            assert set(found) == {PARSER.path, CALLER.path, CAMEL.path}, spelling
    # Two words match wherever both occur, side by side or not (the README has both too).
    assert set(await paths(client, alice, project["id"], "parse config")) == {
        PARSER.path,
        CALLER.path,
        CAMEL.path,
        DOCS.path,
    }
    # Acronyms and dotted or slashed names are split as well.
    assert await paths(client, alice, project["id"], "http server") == [CAMEL.path]
    assert await paths(client, alice, project["id"], "HTTPServer") == [CAMEL.path]
    assert await paths(client, alice, project["id"], "httpserver") == [CAMEL.path]
    assert await paths(client, alice, project["id"], "location.href") == [CAMEL.path]
    assert await paths(client, alice, project["id"], "config/loader") == [PARSER.path]
    assert await paths(client, alice, project["id"], "fetch_user") == [CAMEL.path]


async def test_a_symbol_or_path_match_ranks_above_a_mention_in_a_body(
    client: Any, alice: Account, project: dict[str, Any]
) -> None:
    body = await search(client, alice, project["id"], q="parse_config")
    hits = body["data"]
    assert [hit["path"] for hit in hits][:1] == [PARSER.path]
    assert hits[0]["score"] > max(hit["score"] for hit in hits[1:]) > 0
    # A path match beats a word in a body: "loader" is in PARSER's path and in the README's text.
    assert await paths(client, alice, project["id"], "loader") == [PARSER.path, DOCS.path]
    first = hits[0]
    assert first == {
        "source": "acme/app",
        "path": PARSER.path,
        "language": "python",
        "startLine": 10,
        "endLine": 12,
        "symbol": "parse_config",
        "snippet": first["snippet"],
        "content": PARSER.content,
        "score": first["score"],
    }
    # Matched words are marked in the snippet (the parser reads parse_config as two words).
    assert f"{MARK_START}parse{MARK_END}_{MARK_START}config{MARK_END}" in first["snippet"]


async def test_quotes_make_a_phrase_and_a_minus_excludes(client: Any, alice: Account, project: dict[str, Any]) -> None:
    pid = project["id"]
    assert await paths(client, alice, pid, '"return load"') == [PARSER.path]
    assert await paths(client, alice, pid, '"load return"') == []
    assert set(await paths(client, alice, pid, "parse_config -settings")) == {PARSER.path, CAMEL.path}
    assert set(await paths(client, alice, pid, "parseConfig -HTTPServer")) == {PARSER.path, CALLER.path}
    assert set(await paths(client, alice, pid, "fetchUser or argv")) == {CAMEL.path, CALLER.path}
    # A phrase across an identifier and the next word.
    assert await paths(client, alice, pid, '"def parseConfig path"') == [PARSER.path]


async def test_language_and_path_filters(client: Any, alice: Account, project: dict[str, Any]) -> None:
    pid = project["id"]
    assert await paths(client, alice, pid, "parse_config", language="typescript") == [CAMEL.path]
    assert await paths(client, alice, pid, "parse_config", language="Python") == []  # exact
    assert set(await paths(client, alice, pid, "parse_config", path="src/")) == {PARSER.path, CALLER.path}
    assert await paths(client, alice, pid, "parse_config", path="src/config") == [PARSER.path]
    assert set(await paths(client, alice, pid, "parse config", path="*.py")) == {PARSER.path, CALLER.path}
    assert await paths(client, alice, pid, "parse_config", path="src/*/load?r.py") == [PARSER.path]
    assert await paths(client, alice, pid, "parse_config", path="*client") == [CAMEL.path]
    # Only * and ? are wildcards: % and _ are literal.
    assert await paths(client, alice, pid, "parse_config", path="%") == []
    assert await paths(client, alice, pid, "parse_config", path="src_") == []


async def test_pages_of_hits(client: Any, kijko: Kijko, capability: ServiceCapability, alice: Account) -> None:
    made = await created(client, alice, "Many chunks")
    chunks = [Chunk(f"pkg/mod_{n:02}.py", f"def handler_{n}():\n    return widget\n") for n in range(25)]
    await index(kijko, capability, alice.org_id, made["id"], chunks)
    seen: list[str] = []
    for page in (1, 2, 3):
        body = await search(client, alice, made["id"], q="widget", page=page, pageSize=10)
        assert (body["total"], body["page"], body["pageSize"]) == (25, page, 10)
        assert body["hasMore"] is (page < 3)
        seen += [hit["path"] for hit in body["data"]]
    assert sorted(seen) == sorted(c.path for c in chunks) and len(set(seen)) == 25
    past = await search(client, alice, made["id"], q="widget", page=9, pageSize=10)
    assert (past["data"], past["total"], past["hasMore"]) == ([], 25, False)
    files = await (
        await client.get(f"{API}/{made['id']}/files", query_string={"page": 3, "pageSize": 10}, headers=alice.headers)
    ).get_json()
    assert (files["total"], [f["path"] for f in files["data"]]) == (25, [f"pkg/mod_{n:02}.py" for n in range(20, 25)])
    beyond = await (
        await client.get(f"{API}/{made['id']}/files", query_string={"page": 9, "pageSize": 10}, headers=alice.headers)
    ).get_json()
    assert (beyond["data"], beyond["total"], beyond["hasMore"]) == ([], 25, False)


async def test_only_the_current_index_is_searched(
    client: Any, kijko: Kijko, capability: ServiceCapability, alice: Account
) -> None:
    made = await created(client, alice, "Reindexed")
    pid = made["id"]
    await index(kijko, capability, alice.org_id, pid, [Chunk("old.py", "def retired_helper(): pass\n")])
    assert await paths(client, alice, pid, "retired_helper") == ["old.py"]
    # A newer run that completed replaces it; a running and a cancelled one are never seen.
    await index(kijko, capability, alice.org_id, pid, [Chunk("new.py", "def fresh_helper(): pass\n")])
    await index(
        kijko, capability, alice.org_id, pid, [Chunk("cancelled.py", "def fresh_helper(): 1\n")], status="cancelled"
    )
    await index(
        kijko, capability, alice.org_id, pid, [Chunk("partial.py", "def fresh_helper(): 2\n")], status="running"
    )
    assert await paths(client, alice, pid, "retired_helper") == []
    assert await paths(client, alice, pid, "helper") == ["new.py"]
    files = await (await client.get(f"{API}/{pid}/files", headers=alice.headers)).get_json()
    assert [f["path"] for f in files["data"]] == ["new.py"] and files["total"] == 1


async def test_a_project_never_ingested_has_no_results(client: Any, alice: Account) -> None:
    made = await created(client, alice, "Empty")
    body = await search(client, alice, made["id"], q="anything")
    assert body == {"data": [], "total": 0, "page": 1, "pageSize": 20, "hasMore": False}
    files = await client.get(f"{API}/{made['id']}/files", headers=alice.headers)
    assert files.status_code == 200
    assert await files.get_json() == {"data": [], "total": 0, "page": 1, "pageSize": 20, "hasMore": False}


async def test_the_indexed_files(client: Any, alice: Account, project: dict[str, Any]) -> None:
    response = await client.get(f"{API}/{project['id']}/files", headers=alice.headers)
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["total"] == 4
    # By source, then path.
    assert [(f["source"], f["path"]) for f in body["data"]] == [
        ("acme/app", "README.md"),
        ("acme/app", "src/app.py"),
        ("acme/app", "src/config/loader.py"),
        ("uploads", "web/client.ts"),
    ]
    assert body["data"][2] == {
        "source": "acme/app",
        "path": "src/config/loader.py",
        "language": "python",
        "sizeBytes": len(PARSER.content.encode()),
        "lineCount": 12,
        "chunkCount": 1,
    }
    narrowed = await client.get(
        f"{API}/{project['id']}/files", query_string={"language": "python", "path": "src/c"}, headers=alice.headers
    )
    assert [f["path"] for f in (await narrowed.get_json())["data"]] == ["src/config/loader.py"]


async def test_visible_to_whoever_reads_the_project(
    client: Any, kijko: Kijko, capability: ServiceCapability, alice: Account, bob: Account
) -> None:
    shared = await created(client, alice, "Shared one", privacy="shared")
    private = await created(client, alice, "Private one", privacy="private")
    for made in (shared, private):
        await index(kijko, capability, alice.org_id, made["id"], [PARSER])
    viewer = await add_member(kijko, alice.org_id, "viewer")
    member = await add_member(kijko, alice.org_id, "member")
    admin = await add_member(kijko, alice.org_id, "admin")
    for route in ("search?q=parse_config", "files"):
        for account, made, status in (
            (viewer, shared, 200),
            (member, shared, 200),
            (member, private, 404),  # not on the project
            (viewer, private, 404),
            (admin, private, 200),  # org owners and admins see every project
            (alice, private, 200),
            (bob, shared, 404),  # another organization's: as unknown
            (bob, private, 404),
        ):
            response = await client.get(f"{API}/{made['id']}/{route}", headers=account.headers)
            body = await response.get_json()
            assert response.status_code == status, (route, made["name"], body)
            if status == 404:
                assert body["code"] == "PROJECT_NOT_FOUND" and set(body) == {"detail", "code", "message"}
            else:
                assert body["total"] == 1
        unknown = await client.get(f"{API}/00000000-0000-0000-0000-000000000000/{route}", headers=alice.headers)
        malformed = await client.get(f"{API}/not-a-uuid/{route}", headers=alice.headers)
        assert unknown.status_code == malformed.status_code == 404


async def test_the_query_is_checked_after_the_project(client: Any, alice: Account, bob: Account) -> None:
    made = await created(client, alice, "Checked")
    route = f"{API}/{made['id']}/search"
    for query in ({}, {"q": ""}, {"q": "   "}, {"q": "x" * 501}):
        response = await client.get(route, query_string=query, headers=alice.headers)
        body = await response.get_json()
        assert (response.status_code, body["code"], body["field"]) == (422, "VALIDATION_ERROR", "q"), query
        # Another organization's project is a 404 whatever the query.
        if len(query.get("q", "")) <= 500:
            theirs = await client.get(route, query_string=query, headers=bob.headers)
            assert theirs.status_code == 404
    for query in (
        {"q": "a", "pageSize": 0},
        {"q": "a", "pageSize": 101},
        {"q": "a", "page": 0},
        {"q": "a", "language": ""},
        {"q": "a", "path": "p" * 1025},
        {"q": "a\x00b"},
    ):
        response = await client.get(route, query_string=query, headers=alice.headers)
        assert response.status_code == 422, query


HOSTILE = [
    "'; DROP TABLE kijko.chunks; --",
    "parse_config') OR 1=1 --",
    "\\",
    "%",
    "_",
    "*",
    ":*",
    "parse:*",
    "a & b | !c <-> d",
    "!!!",
    "(((",
    ")",
    '"',
    '""',
    '"unterminated',
    "-",
    "--",
    "-parse_config",
    "or",
    "parse or or or config",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓ 日本語",
    "\u202eevil",
    "$1",
    "x" * 500,
    " ".join(["word"] * 100),
    "a" * 300 + "_" + "B" * 199,
]


async def test_hostile_queries_are_safe(client: Any, alice: Account, project: dict[str, Any]) -> None:
    for q in HOSTILE:
        for extra in ({}, {"path": q[:1024]}, {"language": q[:64]}):
            response = await client.get(
                f"{API}/{project['id']}/search", query_string={"q": q, **extra}, headers=alice.headers
            )
            body = await response.get_json()
            assert response.status_code == 200, (q, extra, body)
    # Huge values are refused on their field; the last page there can be is empty.
    for query in ({"q": "x" * 50_000}, {"q": "a", "path": "/" * 50_000}, {"q": "a", "language": "l" * 5_000}):
        response = await client.get(f"{API}/{project['id']}/search", query_string=query, headers=alice.headers)
        body = await response.get_json()
        assert (response.status_code, body["field"]) == (422, next(iter(query.keys() - {"q"}), "q"))
    far = await search(client, alice, project["id"], q="parse_config", page=1_000_000, pageSize=100)
    assert (far["data"], far["total"], far["hasMore"]) == ([], 3, False)
    # Still there, still searchable.
    assert (await paths(client, alice, project["id"], "parse_config"))[0] == PARSER.path
    # A negation alone matches what lacks the word.
    assert set(await paths(client, alice, project["id"], "-parse_config")) == {DOCS.path}


async def test_copy_names_its_columns_and_the_search_column_is_computed(
    kijko: Kijko, capability: ServiceCapability, alice: Account, client: Any
) -> None:
    made = await created(client, alice, "Copy rules")
    run = await index(kijko, capability, alice.org_id, made["id"], [DOCS])
    org = UUID(alice.org_id)
    record = (org, UUID(made["id"]), run, "manual", "x.txt", "text", 1, 1, None, "text", "0" * 64, 1)
    async with service_session(kijko.app_db, capability, org, ServiceActor("ingestion", "copy-test")) as db:
        # COPY straight into the table is refused under row-level security.
        with pytest.raises(asyncpg.FeatureNotSupportedError, match="row-level security"):
            async with db.savepoint():
                await db.connection.copy_records_to_table(
                    "chunks", schema_name="kijko", columns=CHUNK_COLUMNS, records=[record]
                )
        # The generated column cannot be written.
        with pytest.raises(asyncpg.PostgresError, match="generated"):
            async with db.savepoint():
                await db.execute("INSERT INTO kijko.chunks (search) VALUES (to_tsvector('x'))")
        # The search column is computed on the way in, through the app role's grants.
        await insert_rows(db.connection, INSERT_CHUNKS, [record])
        vector = await db.fetchval("SELECT search::text FROM kijko.chunks WHERE run_id = $1 AND path = 'x.txt'", run)
        assert vector == "'text':3 'txt':2B 'x':1B"  # the path (B) above the content
    async with system_session(kijko.system_db) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.chunks WHERE run_id = $1", run) == 2


MANUAL_TEXT = (
    "# Loading settings\n\n"
    "The loader reads the file given on the command line:\n\n"
    "```python\n"
    "def parse_config(path):\n"
    "    with open(path) as handle:\n"
    "        return load(handle)\n"
    "```\n\n"
    "Call `parseConfig` from JavaScript clients.\n"
)


async def test_what_a_real_ingestion_indexed_is_searchable(client: Any, kijko: Kijko, alice: Account) -> None:
    made = await created(client, alice, "Ingested for real", customSettings={"manualContent": MANUAL_TEXT})
    await ingest(client, alice, made["id"])
    await run_until_idle(kijko)
    shown = await (await client.get(f"{API}/{made['id']}", headers=alice.headers)).get_json()
    assert shown["status"] == "active", shown
    for spelling in ("ParseConfig", "parse_config", '"return load"', "loader -javascript_is_absent"):
        body = await search(client, alice, made["id"], q=spelling)
        assert [(hit["source"], hit["path"]) for hit in body["data"]] == [("manual", "manual.md")], spelling
        assert "def parse_config(path):" in body["data"][0]["content"]
    assert (await search(client, alice, made["id"], q="loader -javascript"))["data"] == []
    files = await (await client.get(f"{API}/{made['id']}/files", headers=alice.headers)).get_json()
    assert [(f["source"], f["path"], f["lineCount"]) for f in files["data"]] == [
        ("manual", "manual.md", MANUAL_TEXT.count("\n"))
    ]
