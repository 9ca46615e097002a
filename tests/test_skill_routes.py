"""The skills routes' OpenAPI document tells the truth (decisions 0024, 0046): each operation
documents exactly its error statuses, and each is triggered here with its documented code."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.automation import API, SKILL_OPERATIONS, S, create_skill, skill_body
from tests.conftest import Account
from tests.memberships import add_member
from tests.test_openapi_errors import answers_not_as_documented, documented_errors, openapi


async def test_skill_operations_document_exactly_their_errors(client: Any) -> None:
    spec = await openapi(client)
    for (method, path), statuses in SKILL_OPERATIONS.items():
        assert set(documented_errors(spec, method, path)) == statuses | {"500"}, (method, path)
    assert "SKILL_NAME_EXISTS" in documented_errors(spec, "post", API)["409"]
    assert "MODEL_NOT_PRICED" in documented_errors(spec, "post", API)["422"]
    assert "SKILL_NOT_FOUND" in documented_errors(spec, "get", S)["404"]


async def test_update_fields_that_cannot_be_null_are_not_nullable(client: Any) -> None:
    spec = await openapi(client)
    body = spec["paths"][S]["put"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    properties = schema["properties"]
    for field in ("name", "category", "promptTemplate", "model", "parameters", "outputFormat", "isActive"):
        assert "null" not in str(properties[field]), field
        assert "default" not in properties[field], field
    assert {"type": "null"} in properties["description"]["anyOf"]
    assert not schema.get("required")


async def test_every_documented_skill_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    gone = await add_member(kijko, alice.org_id, "member")
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    viewer = await add_member(kijko, alice.org_id, "viewer")
    skill = await create_skill(client, alice, name="Taken")
    await create_skill(client, alice, name="Taken (Copy)")
    other = await create_skill(client, alice, name="Other")
    unknown = str(uuid.uuid4())

    def send(method: str, path: str, account: Account | None, **kwargs: Any) -> Any:
        headers = dict(account.headers) if account else {}
        return lambda: client.open(path, method=method.upper(), headers=headers, **kwargs)

    def raw(method: str, path: str, data: bytes, content_type: str = "application/json") -> Any:
        headers = {**alice.headers, "Content-Type": content_type}
        return lambda: client.open(path, method=method.upper(), headers=headers, data=data)

    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("post", API): skill_body(),
        ("post", f"{API}/bulk/activate"): {"skillIds": [skill["id"]]},
        ("post", f"{API}/bulk/deactivate"): {"skillIds": [skill["id"]]},
        ("delete", f"{API}/bulk"): {"skillIds": [unknown]},
        ("post", f"{API}/import"): {"skill": skill_body(), "version": "1.0"},
        ("put", S): {"description": "x"},
        ("patch", S): {"description": "x"},
        ("post", f"{S}/duplicate"): {"newName": "A fresh copy"},
    }
    bad_bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("post", API): skill_body(name=5),
        ("post", f"{API}/bulk/activate"): {"skillIds": "all"},
        ("post", f"{API}/bulk/deactivate"): {},
        ("delete", f"{API}/bulk"): {"skillIds": [1]},
        ("post", f"{API}/import"): {"skill": skill_body(), "version": "9"},
        ("put", S): {"name": None},
        ("patch", S): {"parameters": {"temperature": 9}},
        ("post", f"{S}/duplicate"): {"newName": "x"},
    }
    huge = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    triggers: dict[tuple[str, str], dict[str, Any]] = {}
    for (method, template), statuses in SKILL_OPERATIONS.items():
        at = template.format(skill_id=other["id"])
        body = bodies.get((method, template))
        kwargs = {"json": body} if body is not None else {}
        cases: dict[str, Any] = {"401": send(method, at, None, **kwargs), "403": send(method, at, gone, **kwargs)}
        if "404" in statuses:
            cases["404"] = send(method, template.format(skill_id=unknown), alice, **kwargs)
            cases["404 malformed"] = send(method, template.format(skill_id="not-an-id"), alice, **kwargs)
        if "400" in statuses:
            cases["400"] = raw(method, at, b'{"name": ')
            cases["413"] = raw(method, at, huge)
            cases["415"] = raw(method, at, b"name=x", "application/x-www-form-urlencoded")
            cases["422"] = send(method, at, alice, json=bad_bodies[(method, template)])
        triggers[(method, template)] = cases
    triggers[("get", API)]["422"] = send("get", API, alice, query_string={"pageSize": 101})
    triggers[("post", API)].update(
        {
            "403 viewer": send("post", API, viewer, json=skill_body()),
            "409": send("post", API, alice, json=skill_body(name="TAKEN")),
            "422 unpriced": send("post", API, alice, json=skill_body(model="nobody-prices-this")),
            "422 type": send("post", API, alice, json=skill_body(skill_type="not.installed")),
            "422 placeholder": send("post", API, alice, json=skill_body(prompt_template="About {{x}} now.")),
        }
    )
    for method in ("put", "patch"):
        triggers[(method, S)]["409"] = send(method, S.format(skill_id=other["id"]), alice, json={"name": "taken"})
        triggers[(method, S)]["403 viewer"] = send(method, S.format(skill_id=other["id"]), viewer, json={})
    triggers[("post", f"{S}/duplicate")]["409"] = send(
        "post", f"{S}/duplicate".format(skill_id=skill["id"]), alice, json={}
    )
    # An import tries " (1)" … " (100)": with all of them taken, the name is refused.
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.skills (organization_id, user_id, name, prompt_template, model)"
            " SELECT $1, $2, name, 'A prompt template', 'm'"
            " FROM unnest(array_append(ARRAY(SELECT 'Full (' || n || ')' FROM generate_series(1, 100) n),"
            " 'Full')) name",
            UUID(alice.org_id),
            UUID(alice.user_id),
        )
    triggers[("post", f"{API}/import")]["409"] = send(
        "post", f"{API}/import", alice, json={"skill": skill_body(name="full"), "version": "1.0"}
    )
    triggers[("delete", S)]["403 viewer"] = send("delete", S.format(skill_id=other["id"]), viewer)
    triggers[("post", f"{API}/bulk/activate")]["403 viewer"] = send(
        "post", f"{API}/bulk/activate", viewer, json={"skillIds": []}
    )

    spec = await openapi(client)
    problems = []
    for (method, template), statuses in SKILL_OPERATIONS.items():
        cases = triggers[(method, template)]
        assert {label.split()[0] for label in cases} == statuses, (method, template)
        problems += await answers_not_as_documented(method, template, cases, documented_errors(spec, method, template))
    assert problems == []
