"""Skills over HTTP (contract §2.3, docs/skills.md): defaults, validation with its fields, names
unique per organization and creator, versions, permissions per role, bulk actions, duplicate,
export and import. Templates and inputs alone: tests/test_skill_templates.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any, ClassVar
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field

from kijko_core.db.session import (
    ServiceActor,
    load_service_capability,
    service_session,
    system_session,
    tenant_session,
)
from kijko_core.errors import ValidationFailed
from kijko_core.plugins import SkillOutcome, SkillRun, SkillType, registry
from kijko_core.runtime import Kijko
from kijko_core.skills import service as skills
from kijko_core.skills.errors import SkillInactive, SkillNotFound
from kijko_core.skills.templates import RENDERED_MAX_CHARS, render_prompts
from tests.automation import API, create_skill, skill_body
from tests.conftest import Account
from tests.executions_kit import db_now, insert, insert_reflex, make_row
from tests.habits_kit import create_habit
from tests.memberships import add_member
from tests.reflex_kit import create_reflex


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=100)
    retries: int = Field(default=0, ge=0, le=5)


class _Configured(SkillType):
    """A skill type with a configuration and a save-time check of its own."""

    name: ClassVar[str] = "test.configured"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[BaseModel]] = _Config

    def check(self, config: BaseModel, *, model: str, kijko: Kijko) -> None:
        assert isinstance(config, _Config)
        if config.url.startswith("http://refused."):
            raise ValidationFailed("This address is refused", field="typeConfig.url")

    async def run(self, run: SkillRun) -> SkillOutcome:
        return SkillOutcome(output="configured")


registry.register_skill_type(_Configured())


async def _error(response: Any) -> tuple[int, str, str | None]:
    body = await response.get_json()
    return response.status_code, body.get("code"), body.get("field")


async def _rows(kijko: Kijko, org_id: str) -> list[dict[str, Any]]:
    """The organization's skills as stored (a system session: beside the API)."""
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch(
            "SELECT id, name, is_active, updated_at, version FROM kijko.skills WHERE organization_id = $1 ORDER BY id",
            UUID(org_id),
        )
    return [dict(row) for row in rows]


# --- create and defaults ----------------------------------------------------------------------


async def test_create_fills_the_contract_defaults(client: Any, alice: Account) -> None:
    response = await client.post(
        API, json={"name": "  Minimal  ", "promptTemplate": "Say hello to the world."}, headers=alice.headers
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    skill = await response.get_json()
    assert skill["name"] == "Minimal"
    assert skill["category"] == "custom"
    assert skill["model"] == "claude-3-5-sonnet-20241022"
    assert skill["parameters"] == {"temperature": 1, "max_tokens": 4096}
    assert skill["outputFormat"] == "markdown"
    assert skill["isActive"] is True
    assert skill["inputSchema"] == []
    assert skill["skillType"] == "llm" and skill["typeConfig"] == {}
    assert skill["executionCount"] == 0 and skill["lastExecutedAt"] is None
    assert skill["version"] == 1
    assert skill["userId"] == alice.user_id and skill["organizationId"] == alice.org_id
    # Not offered in this version (decision 0100), answered with a private, unrated skill's values.
    assert (skill["isPublic"], skill["starCount"], skill["rating"], skill["ratingCount"]) == (False, 0, None, 0)
    got = await client.get(f"{API}/{skill['id']}", headers=alice.headers)
    assert got.status_code == 200 and await got.get_json() == skill


async def test_create_keeps_what_is_given(client: Any, alice: Account) -> None:
    body = skill_body(
        parameters={"temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END"], "max_tokens": 100},
        output_format="json",
        is_active=False,
        system_prompt="You answer about {{topic}}.",
        model="claude-3-5-haiku-20241022",
    )
    skill = await create_skill(client, alice, **{k: v for k, v in body.items() if k != "name"}, name="Kept")
    assert skill["parameters"] == body["parameters"]
    assert skill["outputFormat"] == "json" and skill["isActive"] is False
    assert skill["systemPrompt"] == "You answer about {{topic}}."
    assert skill["inputSchema"] == [
        {"name": "topic", "type": "string", "description": None, "required": True, "default": None}
    ]


async def test_server_managed_fields_in_a_body_are_ignored(client: Any, alice: Account, bob: Account) -> None:
    skill = await create_skill(
        client,
        alice,
        id=str(uuid.uuid4()),
        user_id=bob.user_id,
        organization_id=bob.org_id,
        execution_count=99,
        version=7,
        is_public=True,
    )
    assert skill["userId"] == alice.user_id and skill["organizationId"] == alice.org_id
    assert (skill["executionCount"], skill["version"], skill["isPublic"]) == (0, 1, False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": "   "}, "name"),
        ({"promptTemplate": "too short"}, "promptTemplate"),
        ({"promptTemplate": "p" * 100_001}, "promptTemplate"),
        ({"description": "d" * 2001}, "description"),
        ({"category": "magic"}, "category"),
        ({"outputFormat": "pdf"}, "outputFormat"),
        ({"model": ""}, "model"),
        ({"model": "m" * 201}, "model"),
        ({"systemPrompt": "s" * 100_001}, "systemPrompt"),
        ({"isActive": "yes"}, "isActive"),
        ({"parameters": {"temperature": 2.5}}, "parameters.temperature"),
        ({"parameters": {"temperature": -0.1}}, "parameters.temperature"),
        ({"parameters": {"temperature": "1"}}, "parameters.temperature"),
        ({"parameters": {"max_tokens": 0}}, "parameters.max_tokens"),
        ({"parameters": {"max_tokens": 1.5}}, "parameters.max_tokens"),
        ({"parameters": {"max_tokens": True}}, "parameters.max_tokens"),
        ({"parameters": {"max_tokens": 200_001}}, "parameters.max_tokens"),
        ({"parameters": {"top_p": 1.1}}, "parameters.top_p"),
        ({"parameters": {"top_k": 0}}, "parameters.top_k"),
        ({"parameters": {"stop_sequences": ["a", "b", "c", "d", "e"]}}, "parameters.stop_sequences"),
        ({"parameters": {"stop_sequences": [""]}}, "parameters.stop_sequences"),
        ({"parameters": {"stop_sequences": ["s" * 101]}}, "parameters.stop_sequences"),
        ({"parameters": {"stop_sequences": [1]}}, "parameters.stop_sequences"),
        ({"parameters": {"frequency": 1}}, "parameters.frequency"),
        ({"parameters": []}, "parameters"),
        ({"inputSchema": {"topic": "string"}}, "inputSchema"),
        ({"inputSchema": [{"name": "1abc", "type": "string"}]}, "inputSchema.name"),
        ({"inputSchema": [{"name": "a.b", "type": "string"}]}, "inputSchema.name"),
        ({"inputSchema": [{"name": "a", "type": "date"}]}, "inputSchema.type"),
        ({"inputSchema": [{"name": "a", "type": "number", "default": "1"}]}, "inputSchema"),
        ({"inputSchema": [{"name": "a", "type": "number", "default": True}]}, "inputSchema"),
        ({"inputSchema": [{"name": "a", "type": "string", "description": "d" * 501}]}, "inputSchema.description"),
        ({"inputSchema": [{"name": "a", "type": "string", "default": "x" * 70_000}]}, "inputSchema.default"),
        ({"inputSchema": [{"name": f"i{n}", "type": "string"} for n in range(51)]}, "inputSchema"),
        (
            {"inputSchema": [{"name": "topic", "type": "string"}, {"name": "topic", "type": "number"}]},
            "inputSchema",
        ),
        ({"skillType": "Not A Type"}, "skillType"),
        ({"skillType": "not-installed"}, "skillType"),
        ({"typeConfig": []}, "typeConfig"),
        ({"name": "nul\x00name"}, "name"),
    ],
)
async def test_create_refuses_invalid_fields(client: Any, alice: Account, body: dict[str, Any], field: str) -> None:
    response = await client.post(API, json=skill_body(**body), headers=alice.headers)
    status, code, got = await _error(response)
    assert (status, got) == (422, field), await response.get_json()
    assert code == "VALIDATION_ERROR"
    listed = await (await client.get(API, headers=alice.headers)).get_json()
    assert listed["total"] == 0  # nothing half-written


async def test_unknown_placeholders_are_refused_on_save(client: Any, alice: Account) -> None:
    cases = [
        ({"promptTemplate": "Write about {{subject}} please."}, "promptTemplate"),
        ({"promptTemplate": "Write about {{ topic }} and {{other.part}}."}, "promptTemplate"),
        # Placeholders need declared inputs: a template with one and no inputSchema is refused.
        ({"promptTemplate": "Write about {{topic}} please.", "inputSchema": []}, "promptTemplate"),
        ({"systemPrompt": "You know {{secret}}."}, "systemPrompt"),
        # {{__class__}} is just a name, and not an input here.
        ({"promptTemplate": "Show me {{__class__}} now."}, "promptTemplate"),
    ]
    for body, field in cases:
        response = await client.post(API, json=skill_body(**body), headers=alice.headers)
        assert await _error(response) == (422, "VALIDATION_ERROR", field), body
    # Text that is no placeholder is just text: {% %}, {{ 1 + 1 }}, paths into a declared input.
    skill = await create_skill(
        client,
        alice,
        prompt_template="{% for x in y %}{{ 1 + 1 }}{{topic}} {{topic.a.0}}{% endfor %}",
    )
    assert skill["promptTemplate"].startswith("{% for")


async def test_model_must_be_priced_for_the_llm_type(client: Any, alice: Account) -> None:
    response = await client.post(API, json=skill_body(model="gpt-unpriced-9"), headers=alice.headers)
    body = await response.get_json()
    assert (response.status_code, body["code"], body["field"]) == (422, "MODEL_NOT_PRICED", "model")
    assert "gpt-unpriced-9" not in body["message"] or body["message"].count("gpt-unpriced-9") == 1


async def test_a_plugin_type_validates_its_config(client: Any, alice: Account) -> None:
    base = {"skill_type": "test.configured", "model": "not-a-priced-model"}  # the type calls no model
    skill = await create_skill(client, alice, **base, type_config={"url": "https://example.com/x"})
    assert skill["skillType"] == "test.configured"
    assert skill["typeConfig"] == {"url": "https://example.com/x", "retries": 0}  # its defaults filled in
    for config, field in [
        ({}, "typeConfig.url"),
        ({"url": "https://example.com", "retries": 9}, "typeConfig.retries"),
        ({"url": "https://example.com", "extra": 1}, "typeConfig.extra"),
        ({"url": "http://refused.example"}, "typeConfig.url"),
    ]:
        response = await client.post(API, json=skill_body(**base, type_config=config), headers=alice.headers)
        assert await _error(response) == (422, "VALIDATION_ERROR", field), config
    big = {"url": "https://example.com", "blob": "x" * 70_000}
    response = await client.post(API, json=skill_body(**base, type_config=big), headers=alice.headers)
    assert (await _error(response))[2] == "typeConfig"


# --- names ------------------------------------------------------------------------------------


async def test_names_are_unique_per_creator_whatever_the_case(client: Any, alice: Account, bob: Account) -> None:
    await create_skill(client, alice, name="Summarise")
    for name in ("Summarise", "SUMMARISE", " summarise "):
        response = await client.post(API, json=skill_body(name=name), headers=alice.headers)
        assert await _error(response) == (409, "SKILL_NAME_EXISTS", "name"), name
    # Another creator in the same organization, and another organization, may use it.
    colleague = await add_member(client.app.kijko, alice.org_id, "member")
    await create_skill(client, colleague, name="summarise")
    await create_skill(client, bob, name="Summarise")


async def test_concurrent_creates_with_one_name_give_one_skill_and_409s(client: Any, alice: Account) -> None:
    body = skill_body(name="Raced")
    responses = await asyncio.gather(*(client.post(API, json=body, headers=alice.headers) for _ in range(5)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409, 409]
    assert [row["name"] for row in await _rows(client.app.kijko, alice.org_id)] == ["Raced"]


async def test_rename_onto_a_taken_name_is_409(client: Any, alice: Account) -> None:
    await create_skill(client, alice, name="First")
    second = await create_skill(client, alice, name="Second")
    response = await client.put(f"{API}/{second['id']}", json={"name": "first"}, headers=alice.headers)
    assert await _error(response) == (409, "SKILL_NAME_EXISTS", "name")
    # Changing the case of one's own name is no conflict.
    response = await client.put(f"{API}/{second['id']}", json={"name": "SECOND"}, headers=alice.headers)
    assert response.status_code == 200 and (await response.get_json())["name"] == "SECOND"


# --- read, list -------------------------------------------------------------------------------


async def test_unknown_malformed_and_foreign_ids_are_the_same_404(client: Any, alice: Account, bob: Account) -> None:
    foreign = await create_skill(client, bob)
    for skill_id in (str(uuid.uuid4()), "not-a-uuid", foreign["id"]):
        for method, path, body in [
            ("GET", f"{API}/{skill_id}", None),
            ("PUT", f"{API}/{skill_id}", {"description": "x"}),
            ("PATCH", f"{API}/{skill_id}", {"description": "x"}),
            ("DELETE", f"{API}/{skill_id}", None),
            ("POST", f"{API}/{skill_id}/duplicate", {}),
            ("GET", f"{API}/{skill_id}/export", None),
        ]:
            response = await client.open(path, method=method, json=body, headers=alice.headers)
            got = await response.get_json()
            assert (response.status_code, got["code"]) == (404, "SKILL_NOT_FOUND"), (method, path)
            assert got["message"] == "Skill not found"
    still = await client.get(f"{API}/{foreign['id']}", headers=bob.headers)
    assert await still.get_json() == foreign


async def test_list_filters_searches_and_pages(client: Any, alice: Account, bob: Account) -> None:
    await create_skill(client, bob, name="Bob's 100% skill", description="foreign")
    a = await create_skill(client, alice, name="Alpha 100% sure", category="analysis")
    b = await create_skill(client, alice, name="Beta", description="contains 100_percent", is_active=False)
    c = await create_skill(client, alice, name="Gamma", category="analysis", description="plain")

    async def listed(**query: Any) -> dict[str, Any]:
        response = await client.get(API, query_string=query, headers=alice.headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        body: dict[str, Any] = await response.get_json()
        return body

    everything = await listed()
    assert [s["id"] for s in everything["skills"]] == [c["id"], b["id"], a["id"]]  # updatedAt desc
    assert (everything["total"], everything["page"], everything["pageSize"], everything["hasMore"]) == (3, 1, 20, False)
    assert {s["id"] for s in (await listed(category="analysis"))["skills"]} == {a["id"], c["id"]}
    assert [s["id"] for s in (await listed(isActive="false"))["skills"]] == [b["id"]]
    assert {s["id"] for s in (await listed(isActive="true"))["skills"]} == {a["id"], c["id"]}
    # Case-insensitive contains on name or description; % and _ are literal characters.
    assert [s["id"] for s in (await listed(search="ALPHA"))["skills"]] == [a["id"]]
    assert [s["id"] for s in (await listed(search="100%"))["skills"]] == [a["id"]]
    assert [s["id"] for s in (await listed(search="100_"))["skills"]] == [b["id"]]
    assert (await listed(search="%"))["total"] == 1
    assert [s["id"] for s in (await listed(search="PLAIN", category="analysis"))["skills"]] == [c["id"]]
    first = await listed(pageSize=2)
    second = await listed(pageSize=2, page=2)
    assert (first["hasMore"], second["hasMore"], second["total"]) == (True, False, 3)
    assert [s["id"] for s in first["skills"] + second["skills"]] == [c["id"], b["id"], a["id"]]
    assert (await listed(page=5))["skills"] == [] and (await listed(page=5))["total"] == 3
    # Changing a skill moves it first.
    await client.patch(f"{API}/{a['id']}", json={"description": "touched"}, headers=alice.headers)
    assert (await listed())["skills"][0]["id"] == a["id"]


@pytest.mark.parametrize(
    "query",
    [
        {"pageSize": 0},
        {"pageSize": 101},
        {"page": 0},
        {"category": "magic"},
        {"isActive": "maybe"},
        {"search": "s" * 201},
    ],
)
async def test_list_refuses_bad_queries(client: Any, alice: Account, query: dict[str, Any]) -> None:
    response = await client.get(API, query_string=query, headers=alice.headers)
    assert response.status_code == 422


# --- update, version --------------------------------------------------------------------------


async def test_update_is_partial_and_bumps_the_version_only_for_what_runs(client: Any, alice: Account) -> None:
    skill = await create_skill(client, alice, system_prompt="Be brief.")
    url = f"{API}/{skill['id']}"
    response = await client.put(
        url, json={"name": "Renamed", "description": None, "category": "custom"}, headers=alice.headers
    )
    renamed = await response.get_json()
    assert response.status_code == 200, renamed
    assert (renamed["name"], renamed["description"], renamed["category"], renamed["version"]) == (
        "Renamed",
        None,
        "custom",
        1,
    )
    assert renamed["promptTemplate"] == skill["promptTemplate"] and renamed["systemPrompt"] == "Be brief."
    response = await client.patch(url, json={"isActive": False}, headers=alice.headers)
    assert (await response.get_json())["version"] == 1
    # The same template again changes nothing that runs.
    response = await client.patch(url, json={"promptTemplate": skill["promptTemplate"]}, headers=alice.headers)
    assert (await response.get_json())["version"] == 1
    for change in (
        {"promptTemplate": "Write one sentence about {{topic}}."},
        {"systemPrompt": None},
        {"model": "claude-3-5-haiku-20241022"},
        {"parameters": {"temperature": 0.5}},
        {"inputSchema": [{"name": "topic", "type": "string", "required": False, "default": "cats"}]},
        {"outputFormat": "text"},
    ):
        before = (await (await client.get(url, headers=alice.headers)).get_json())["version"]
        response = await client.put(url, json=change, headers=alice.headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        assert (await response.get_json())["version"] == before + 1, change
    final = await (await client.get(url, headers=alice.headers)).get_json()
    assert final["version"] == 7 and final["parameters"] == {"temperature": 0.5}
    assert final["systemPrompt"] is None


async def test_update_checks_the_whole_definition(client: Any, alice: Account) -> None:
    skill = await create_skill(client, alice)
    url = f"{API}/{skill['id']}"
    cases = [
        ({"inputSchema": []}, 422, "promptTemplate"),  # the template still uses {{topic}}
        ({"promptTemplate": "About {{nothing}} at all."}, 422, "promptTemplate"),
        ({"model": "unpriced-model-x"}, 422, "model"),
        ({"name": None}, 422, "name"),
        ({"promptTemplate": None}, 422, "promptTemplate"),
        ({"parameters": None}, 422, "parameters"),
        ({"skillType": "missing.type"}, 422, "skillType"),
        ({"name": "x"}, 422, "name"),
    ]
    for body, status, field in cases:
        response = await client.put(url, json=body, headers=alice.headers)
        assert (response.status_code, (await response.get_json()).get("field")) == (status, field), body
    assert await (await client.get(url, headers=alice.headers)).get_json() == skill
    # Both together are consistent.
    response = await client.put(
        url,
        json={"promptTemplate": "About {{what}} at all.", "inputSchema": [{"name": "what", "type": "string"}]},
        headers=alice.headers,
    )
    assert response.status_code == 200


# --- delete -----------------------------------------------------------------------------------


async def test_delete_keeps_executions_without_the_skill(client: Any, alice: Account) -> None:
    skill = await create_skill(client, alice)
    kijko = client.app.kijko
    async with system_session(kijko.system_db) as db:
        execution_id = await db.fetchval(
            "INSERT INTO kijko.skill_executions (organization_id, skill_id, user_id, execution_type, snapshot)"
            " VALUES ($1, $2, $3, 'manual', '{}') RETURNING id",
            UUID(alice.org_id),
            UUID(skill["id"]),
            UUID(alice.user_id),
        )
    response = await client.delete(f"{API}/{skill['id']}", headers=alice.headers)
    assert (response.status_code, await response.get_json()) == (200, {"success": True})
    assert (await client.get(f"{API}/{skill['id']}", headers=alice.headers)).status_code == 404
    again = await client.delete(f"{API}/{skill['id']}", headers=alice.headers)
    assert again.status_code == 404
    async with system_session(kijko.system_db) as db:
        row = await db.fetchrow("SELECT skill_id FROM kijko.skill_executions WHERE id = $1", execution_id)
    assert row is not None and row["skill_id"] is None


# --- permissions ------------------------------------------------------------------------------


async def test_roles(client: Any, alice: Account) -> None:
    kijko = client.app.kijko
    member = await add_member(kijko, alice.org_id, "member")
    other_member = await add_member(kijko, alice.org_id, "member")
    admin = await add_member(kijko, alice.org_id, "admin")
    viewer = await add_member(kijko, alice.org_id, "viewer")
    mine = await create_skill(client, member)
    # Everyone reads every skill of the organization, viewers included.
    for account in (alice, admin, other_member, viewer):
        assert (await client.get(f"{API}/{mine['id']}", headers=account.headers)).status_code == 200
        listed = await (await client.get(API, headers=account.headers)).get_json()
        assert mine["id"] in {s["id"] for s in listed["skills"]}
        assert (await client.get(f"{API}/{mine['id']}/export", headers=account.headers)).status_code == 200
    # Viewers write nothing.
    response = await client.post(API, json=skill_body(), headers=viewer.headers)
    assert await _error(response) == (403, "FORBIDDEN", None)
    for method, path, body in [
        ("PUT", f"{API}/{mine['id']}", {"description": "v"}),
        ("DELETE", f"{API}/{mine['id']}", None),
        ("POST", f"{API}/{mine['id']}/duplicate", {}),
        ("POST", f"{API}/import", {"skill": skill_body(), "version": "1.0"}),
        ("POST", f"{API}/bulk/activate", {"skillIds": [mine["id"]]}),
        ("DELETE", f"{API}/bulk", {"skillIds": [mine["id"]]}),
    ]:
        response = await client.open(path, method=method, json=body, headers=viewer.headers)
        assert response.status_code == 403, (method, path)
    # Another member reads and copies, but does not change or delete someone else's skill.
    response = await client.put(f"{API}/{mine['id']}", json={"description": "x"}, headers=other_member.headers)
    assert await _error(response) == (403, "FORBIDDEN", None)
    assert (await client.delete(f"{API}/{mine['id']}", headers=other_member.headers)).status_code == 403
    copy = await client.post(f"{API}/{mine['id']}/duplicate", json={}, headers=other_member.headers)
    assert copy.status_code == 201 and (await copy.get_json())["userId"] == other_member.user_id
    # The creator, owners and admins change it.
    for account in (member, alice, admin):
        response = await client.patch(
            f"{API}/{mine['id']}", json={"description": account.email}, headers=account.headers
        )
        assert response.status_code == 200
    assert (await client.delete(f"{API}/{mine['id']}", headers=admin.headers)).status_code == 200


async def test_a_skill_whose_creator_is_gone_is_the_admins(client: Any, alice: Account) -> None:
    kijko = client.app.kijko
    member = await add_member(kijko, alice.org_id, "member")
    skill = await create_skill(client, member)
    async with system_session(kijko.system_db) as db:
        await db.execute("UPDATE kijko.skills SET user_id = NULL WHERE id = $1", UUID(skill["id"]))
    got = await (await client.get(f"{API}/{skill['id']}", headers=member.headers)).get_json()
    assert got["userId"] == ""
    assert (
        await client.patch(f"{API}/{skill['id']}", json={"description": "x"}, headers=member.headers)
    ).status_code == 403
    assert (
        await client.patch(f"{API}/{skill['id']}", json={"description": "x"}, headers=alice.headers)
    ).status_code == 200


# --- duplicate --------------------------------------------------------------------------------


async def test_duplicate(client: Any, alice: Account) -> None:
    skill = await create_skill(client, alice, name="Original", system_prompt="Be kind to {{topic}}.")
    async with system_session(client.app.kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.skills SET execution_count = 5, last_executed_at = now() WHERE id = $1", UUID(skill["id"])
        )
    response = await client.post(f"{API}/{skill['id']}/duplicate", json={}, headers=alice.headers)
    copy = await response.get_json()
    assert response.status_code == 201, copy
    assert copy["name"] == "Original (Copy)" and copy["id"] != skill["id"]
    assert (copy["executionCount"], copy["lastExecutedAt"], copy["version"]) == (0, None, 1)
    for key in ("promptTemplate", "systemPrompt", "model", "parameters", "inputSchema", "category", "skillType"):
        assert copy[key] == skill[key], key
    again = await client.post(f"{API}/{skill['id']}/duplicate", json={}, headers=alice.headers)
    assert await _error(again) == (409, "SKILL_NAME_EXISTS", "name")
    named = await client.post(f"{API}/{skill['id']}/duplicate", json={"newName": "Mine now"}, headers=alice.headers)
    assert (await named.get_json())["name"] == "Mine now"
    long = await create_skill(client, alice, name="L" * 100)
    response = await client.post(f"{API}/{long['id']}/duplicate", json={}, headers=alice.headers)
    assert (await response.get_json())["name"] == "L" * 93 + " (Copy)"
    bad = await client.post(f"{API}/{skill['id']}/duplicate", json={"newName": "x"}, headers=alice.headers)
    assert await _error(bad) == (422, "VALIDATION_ERROR", "newName")


# --- bulk -------------------------------------------------------------------------------------


async def test_bulk_actions_skip_unknown_foreign_and_others_ids(client: Any, alice: Account, bob: Account) -> None:
    kijko = client.app.kijko
    member = await add_member(kijko, alice.org_id, "member")
    own = [await create_skill(client, member) for _ in range(2)]
    owners = await create_skill(client, alice)
    foreign = await create_skill(client, bob)
    foreign_before = await _rows(kijko, bob.org_id)
    ids = [s["id"] for s in own] + [owners["id"], foreign["id"], str(uuid.uuid4()), "junk"]

    # A member acts on their own skills only: the owner's and the foreign one are skipped.
    response = await client.post(f"{API}/bulk/deactivate", json={"skillIds": ids}, headers=member.headers)
    assert (response.status_code, await response.get_json()) == (200, {"success": True, "count": 2})
    rows = {str(row["id"]): row for row in await _rows(kijko, alice.org_id)}
    assert [rows[s["id"]]["is_active"] for s in own] == [False, False]
    assert rows[owners["id"]]["is_active"] is True
    # An owner acts on every skill of the organization; already inactive ones count, unchanged.
    response = await client.post(f"{API}/bulk/deactivate", json={"skillIds": ids}, headers=alice.headers)
    assert await response.get_json() == {"success": True, "count": 3}
    after = {str(row["id"]): row for row in await _rows(kijko, alice.org_id)}
    assert [after[s["id"]]["updated_at"] for s in own] == [rows[s["id"]]["updated_at"] for s in own]
    assert not any(row["is_active"] for row in after.values())
    response = await client.post(f"{API}/bulk/activate", json={"skillIds": ids}, headers=alice.headers)
    assert await response.get_json() == {"success": True, "count": 3}
    assert all(row["is_active"] for row in await _rows(kijko, alice.org_id))
    # Delete: the member's own only, then the rest by the owner.
    response = await client.open(f"{API}/bulk", method="DELETE", json={"skillIds": ids}, headers=member.headers)
    assert await response.get_json() == {"success": True, "count": 2}
    response = await client.open(f"{API}/bulk", method="DELETE", json={"skillIds": ids}, headers=alice.headers)
    assert await response.get_json() == {"success": True, "count": 1}
    assert await _rows(kijko, alice.org_id) == []
    # The other organization's skill is untouched, in the database.
    assert await _rows(kijko, bob.org_id) == foreign_before
    empty = await client.post(f"{API}/bulk/activate", json={"skillIds": []}, headers=alice.headers)
    assert await empty.get_json() == {"success": True, "count": 0}


@pytest.mark.parametrize(
    "body", [{}, {"skillIds": "abc"}, {"skillIds": [1]}, {"skillIds": ["x" * 101]}, {"skillIds": ["a"] * 501}]
)
async def test_bulk_refuses_bad_bodies(client: Any, alice: Account, body: dict[str, Any]) -> None:
    response = await client.post(f"{API}/bulk/activate", json=body, headers=alice.headers)
    assert response.status_code == 422


# --- export and import ------------------------------------------------------------------------


async def test_export_import_round_trip(client: Any, alice: Account, bob: Account) -> None:
    skill = await create_skill(
        client,
        alice,
        name="Portable",
        system_prompt="System {{topic}}",
        parameters={"temperature": 0.3, "stop_sequences": ["##"]},
        output_format="html",
    )
    response = await client.get(f"{API}/{skill['id']}/export", headers=alice.headers)
    exported = await response.get_json()
    assert response.status_code == 200 and exported["version"] == "1.0"
    assert set(exported["skill"]) == {
        "name",
        "description",
        "category",
        "skillType",
        "typeConfig",
        "promptTemplate",
        "systemPrompt",
        "model",
        "parameters",
        "inputSchema",
        "outputFormat",
        "isActive",
    }
    # Into another organization: the same definition, a new identity and counters.
    response = await client.post(f"{API}/import", json=exported, headers=bob.headers)
    imported = await response.get_json()
    assert response.status_code == 201, imported
    assert imported["id"] != skill["id"] and imported["userId"] == bob.user_id
    assert imported["organizationId"] == bob.org_id
    assert (imported["executionCount"], imported["version"]) == (0, 1)
    for key, value in exported["skill"].items():
        assert imported[key] == value, key
    # Into the same creator's skills: names de-duplicated with " (1)", " (2)"…
    names = []
    for _ in range(3):
        response = await client.post(f"{API}/import", json=exported, headers=alice.headers)
        assert response.status_code == 201
        names.append((await response.get_json())["name"])
    assert names == ["Portable (1)", "Portable (2)", "Portable (3)"]
    lowered = {**exported, "skill": {**exported["skill"], "name": "PORTABLE"}}
    response = await client.post(f"{API}/import", json=lowered, headers=alice.headers)
    assert (await response.get_json())["name"] == "PORTABLE (4)"


async def test_import_validates_like_create(client: Any, alice: Account) -> None:
    good = {"skill": skill_body(), "version": "1.0"}
    cases = [
        ({**good, "version": "2.0"}, "version"),
        ({"skill": good["skill"]}, "version"),
        ({**good, "skill": {**good["skill"], "promptTemplate": "About {{x}} here."}}, "skill.promptTemplate"),
        ({**good, "skill": {**good["skill"], "model": "no-price"}}, "skill.model"),
        ({**good, "skill": {**good["skill"], "name": "x"}}, "skill.name"),
        ({"version": "1.0"}, "skill"),
    ]
    for body, field in cases:
        response = await client.post(f"{API}/import", json=body, headers=alice.headers)
        assert (response.status_code, (await response.get_json()).get("field")) == (422, field), body
    assert (await (await client.get(API, headers=alice.headers)).get_json())["total"] == 0


# --- the full skill ---------------------------------------------------------------------------


async def test_full_has_habits_reflexes_and_the_ten_newest_executions(
    client: Any, alice: Account, bob: Account
) -> None:
    kijko = client.app.kijko
    skill = await create_skill(client, alice)
    other = await create_skill(client, alice)
    habit = await create_habit(client, alice, skill)
    await create_habit(client, alice, other)
    reflex = await create_reflex(client, alice, skill["id"])
    await create_reflex(client, alice, other["id"])
    now = await db_now(kijko)
    mine = [make_row(alice.org_id, at=now - timedelta(minutes=n), skill_id=UUID(skill["id"])) for n in range(12)]
    await insert(kijko, [*mine, make_row(alice.org_id, at=now, skill_id=UUID(other["id"]))])
    response = await client.get(f"{API}/{skill['id']}/full", headers=alice.headers)
    full = await response.get_json()
    assert response.status_code == 200, full
    assert {key: full[key] for key in skill} == skill
    assert [h["id"] for h in full["habits"]] == [habit["id"]]
    assert [r["id"] for r in full["reflexes"]] == [reflex["id"]]
    assert [e["id"] for e in full["recentExecutions"]] == [str(row.id) for row in mine[:10]]
    foreign = await client.get(f"{API}/{skill['id']}/full", headers=bob.headers)
    assert (foreign.status_code, (await foreign.get_json())["code"]) == (404, "SKILL_NOT_FOUND")


async def test_delete_takes_its_habits_and_reflexes_along(client: Any, alice: Account) -> None:
    kijko = client.app.kijko
    skill = await create_skill(client, alice)
    kept = await create_skill(client, alice)
    await create_habit(client, alice, skill)
    await insert_reflex(kijko, alice.org_id, UUID(skill["id"]))
    kept_habit = await create_habit(client, alice, kept)
    assert (await client.delete(f"{API}/{skill['id']}", headers=alice.headers)).status_code == 200
    async with system_session(kijko.system_db) as db:
        habits = await db.fetch("SELECT id FROM kijko.habits WHERE organization_id = $1", UUID(alice.org_id))
        reflexes = await db.fetchval("SELECT count(*) FROM kijko.reflexes WHERE skill_id = $1", UUID(skill["id"]))
    assert [str(row["id"]) for row in habits] == [kept_habit["id"]] and reflexes == 0


# --- what runs --------------------------------------------------------------------------------


async def test_runnable_gives_the_snapshot_and_the_checked_input(client: Any, alice: Account, bob: Account) -> None:
    kijko = client.app.kijko
    skill = await create_skill(
        client,
        alice,
        system_prompt="Expert on {{topic}}.",
        input_schema=[
            {"name": "topic", "type": "string", "required": True},
            {"name": "n", "type": "number", "default": 3},
        ],
        prompt_template="Write {{n}} sentences about {{topic}}.",
    )
    skill_id = UUID(skill["id"])
    capability = await load_service_capability(kijko.system_db)
    actor = ServiceActor("habits", f"test-{uuid.uuid4().hex[:12]}")
    async with tenant_session(kijko.app_db, alice.identity) as db:
        found, snapshot, values = await skills.runnable(db, skill_id, {"topic": "owls"})
    assert values == {"topic": "owls", "n": 3} and str(found.id) == skill["id"]
    assert snapshot == {
        "skillId": skill["id"],
        "skillName": skill["name"],
        "skillVersion": 1,
        "skillType": "llm",
        "typeConfig": {},
        "promptTemplate": "Write {{n}} sentences about {{topic}}.",
        "systemPrompt": "Expert on {{topic}}.",
        "model": "claude-3-5-sonnet-20241022",
        "parameters": {"temperature": 1, "max_tokens": 4096},
        "inputSchema": [
            {"name": "topic", "type": "string", "required": True},
            {"name": "n", "type": "number", "required": False, "default": 3},
        ],
        "outputFormat": "markdown",
    }
    assert render_prompts(snapshot, values) == ("Write 3 sentences about owls.", "Expert on owls.")
    # A service session of the organization (a habit firing) reads it too; another's does not.
    async with service_session(kijko.app_db, capability, UUID(alice.org_id), actor) as db:
        assert (await skills.runnable(db, skill_id, {"topic": "x"}))[2] == {"topic": "x", "n": 3}
    async with service_session(kijko.app_db, capability, UUID(bob.org_id), actor) as db:
        with pytest.raises(SkillNotFound):
            await skills.runnable(db, skill_id, {"topic": "x"})
    async with tenant_session(kijko.app_db, bob.identity) as db:
        with pytest.raises(SkillNotFound):
            await skills.runnable(db, skill_id, {"topic": "x"})
    async with tenant_session(kijko.app_db, alice.identity) as db:
        with pytest.raises(ValidationFailed) as caught:
            await skills.runnable(db, skill_id, {"n": 1})
        assert caught.value.field == "input.topic"
        with pytest.raises(ValidationFailed) as caught:
            await skills.runnable(db, skill_id, {"topic": "t" * (RENDERED_MAX_CHARS + 1)})
        assert caught.value.field == "input"
    await client.patch(f"{API}/{skill['id']}", json={"isActive": False}, headers=alice.headers)
    async with tenant_session(kijko.app_db, alice.identity) as db:
        with pytest.raises(SkillInactive):
            await skills.runnable(db, skill_id, {"topic": "x"})
        assert (await skills.runnable(db, skill_id, {"topic": "x"}, require_active=False))[2]["topic"] == "x"


async def test_concurrent_bulk_requests_over_the_same_skills_all_succeed(client: Any, alice: Account) -> None:
    ids = [(await create_skill(client, alice))["id"] for _ in range(6)]
    orders = [ids, ids[::-1], ids[2:] + ids[:2], ids[::-1]]
    responses = await asyncio.gather(
        *(
            client.post(
                f"{API}/bulk/{'deactivate' if n % 2 else 'activate'}", json={"skillIds": order}, headers=alice.headers
            )
            for n, order in enumerate(orders)
        ),
        client.open(f"{API}/bulk", method="DELETE", json={"skillIds": ids[::-1]}, headers=alice.headers),
    )
    assert [response.status_code for response in responses] == [200] * 5
    assert await _rows(client.app.kijko, alice.org_id) == []
