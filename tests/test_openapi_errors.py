"""OpenAPI truthful for projects (decision 0024): each operation documents exactly the error
statuses it can answer, each of them is triggered here for real with the documented code,
and fields that cannot be null are not nullable in the document."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.memberships import add_member

API = "/api/v1/projects"
P = "/api/v1/projects/{project_id}"
#: The statuses each projects operation can answer besides its success; 500 is on all of them.
BODY = {"400", "413", "415", "422"}
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("get", API): {"401", "403", "422"},
    ("post", API): {"401", "403", "409"} | BODY,
    ("get", f"{API}/stats"): {"401", "403"},
    ("post", f"{API}/validate-name"): {"401", "403"} | BODY,
    ("get", P): {"401", "403", "404"},
    ("get", f"{P}/full"): {"401", "403", "404"},
    ("put", P): {"401", "403", "404", "409"} | BODY,
    ("patch", P): {"401", "403", "404", "409"} | BODY,
    ("delete", P): {"401", "403", "404"},
}


async def openapi(client: Any) -> dict[str, Any]:
    document: dict[str, Any] = await (await client.get("/openapi.json")).get_json()
    return document


def documented_errors(spec: dict[str, Any], method: str, path: str) -> dict[str, str]:
    responses = spec["paths"][path][method]["responses"]
    return {status: response["description"] for status, response in responses.items() if status[0] in "45"}


async def test_each_projects_operation_documents_exactly_its_errors(client: Any) -> None:
    spec = await openapi(client)
    for (method, path), statuses in EXPECTED.items():
        documented = documented_errors(spec, method, path)
        assert set(documented) == statuses | {"500"}, (method, path)
    assert "PROJECT_EXISTS" in documented_errors(spec, "post", API)["409"]
    assert "INVALID_STATUS" in documented_errors(spec, "put", P)["409"]
    assert "PROJECT_NOT_FOUND" in documented_errors(spec, "delete", P)["404"]


async def test_update_fields_that_cannot_be_null_are_not_nullable(client: Any) -> None:
    spec = await openapi(client)
    body = spec["paths"][P]["put"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    properties = schema["properties"]
    for field in ("name", "type", "privacy", "chunkingStrategy", "includeMetadata", "anonymizeSecrets"):
        assert "null" not in str(properties[field]), field
        assert "default" not in properties[field], field
    assert {"type": "null"} in properties["description"]["anyOf"]
    assert not schema.get("required")


Request = Callable[[], Awaitable[Any]]


async def test_every_documented_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    viewer = await add_member(kijko, alice.org_id, "viewer")
    member = await add_member(kijko, alice.org_id, "member")
    gone = await add_member(kijko, alice.org_id, "member")  # loses the membership below
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    async def project(name: str) -> dict[str, Any]:
        response = await client.post(API, json={"name": name, "type": "repository"}, headers=alice.headers)
        body: dict[str, Any] = (await response.get_json())["project"]
        return body

    taken = await project("Taken")  # shared and no longer a draft: its type cannot change
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.projects SET status = 'active', privacy = 'shared' WHERE id = $1", UUID(taken["id"])
        )
    other_id = (await project("Other"))["id"]
    unknown = str(uuid.uuid4())

    def send(method: str, path: str, account: Account | None, **kwargs: Any) -> Request:
        headers = dict(account.headers) if account else {}
        return lambda: client.open(path, method=method.upper(), headers=headers, **kwargs)

    def raw(method: str, path: str, data: bytes, content_type: str = "application/json") -> Request:
        headers = {**alice.headers, "Content-Type": content_type}
        return lambda: client.open(path, method=method.upper(), headers=headers, data=data)

    huge = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    triggers: dict[tuple[str, str], dict[str, Request]] = {}
    for (method, template), statuses in EXPECTED.items():
        path = template.format(project_id=other_id)
        body = {"json": {"name": "Some name"}} if "400" in statuses else {}
        cases: dict[str, Request] = {
            "401": send(method, path, None),
            "403": send(method, path, gone, **body),  # the membership is gone
        }
        if "404" in statuses:
            cases["404"] = send(method, template.format(project_id=unknown), alice, json={"description": "x"})
        if "400" in statuses:
            cases["400"] = raw(method, path, b'{"name": ')
            cases["413"] = raw(method, path, huge)
            cases["415"] = raw(method, path, b"name=x", "application/x-www-form-urlencoded")
            cases["422"] = send(method, path, alice, json={"name": 5, "type": "nope"})
        triggers[(method, template)] = cases
    triggers[("get", API)]["422"] = send("get", API, alice, query_string={"pageSize": 0})
    triggers[("post", API)]["403"] = send("post", API, viewer, json={"name": "Viewer's", "type": "manual"})
    triggers[("post", API)]["409"] = send("post", API, member, json={"name": "TAKEN", "type": "manual"})
    for method in ("put", "patch"):
        path = P.format(project_id=other_id)
        triggers[(method, P)]["409"] = send(method, P.format(project_id=taken["id"]), alice, json={"type": "files"})
        triggers[(method, P)]["403"] = send(method, P.format(project_id=taken["id"]), viewer, json={"name": "Nope"})
        triggers[(method, P)]["409 name"] = send(method, path, alice, json={"name": "taken"})
    triggers[("delete", P)]["403"] = send("delete", P.format(project_id=taken["id"]), viewer)

    spec = await openapi(client)
    problems = []
    for (method, template), cases in triggers.items():
        documented = documented_errors(spec, method, template)
        assert {status.split()[0] for status in cases} == EXPECTED[(method, template)], (method, template)
        for label, request in cases.items():
            status = label.split()[0]
            response = await request()
            answer = await response.get_json(force=True, silent=True) or {}
            code = answer.get("code")
            if response.status_code != int(status) or not code or code not in documented.get(status, ""):
                problems.append(f"{method} {template} [{label}]: {response.status_code} {code}")
    assert problems == []
