"""An organization's own LLM provider keys over HTTP: owners and admins only, the key encrypted
at rest and never answered (``last4`` only), one organization's keys invisible to another."""

from __future__ import annotations

import io
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.memberships import add_member

KEYS = "/api/v1/organizations/current/llm-keys"
SECRET = "sk-proj-abcdefghijklmnop-WXYZ"


async def put(client: Any, account: Account, provider: str, body: dict[str, Any]) -> Any:
    return await client.put(f"{KEYS}/{provider}", json=body, headers=account.headers)


async def test_owner_sets_reads_lists_and_removes_a_key_that_is_never_answered(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    response = await put(client, alice, "openai", {"apiKey": SECRET})
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["provider"] == "openai" and body["last4"] == "WXYZ" and body["baseUrl"] is None
    assert body["updatedBy"] == alice.user_id
    for answer in (body, await (await client.get(f"{KEYS}/openai", headers=alice.headers)).get_json()):
        assert SECRET not in str(answer) and "apiKey" not in answer
    listed = await (await client.get(KEYS, headers=alice.headers)).get_json()
    assert [k["provider"] for k in listed["data"]] == ["openai"]

    # At rest: the column holds the keyring's ciphertext, which opens to the key.
    async with system_session(kijko.system_db, readonly=True) as db:
        stored = await db.fetchval(
            "SELECT key_ciphertext FROM kijko.llm_keys WHERE organization_id = $1", UUID(alice.org_id)
        )
    assert SECRET not in stored and kijko.keyring.decrypt(stored) == SECRET

    # A partial update keeps the key; null removes the base URL again.
    changed = await put(client, alice, "openai", {"baseUrl": "https://llm.example.com/v1"})
    assert (await changed.get_json())["baseUrl"] == "https://llm.example.com/v1"
    assert (await changed.get_json())["last4"] == "WXYZ"
    cleared = await client.patch(f"{KEYS}/openai", json={"baseUrl": None}, headers=alice.headers)
    assert (await cleared.get_json())["baseUrl"] is None

    deleted = await client.delete(f"{KEYS}/openai", headers=alice.headers)
    assert deleted.status_code == 200
    gone = await client.get(f"{KEYS}/openai", headers=alice.headers)
    assert gone.status_code == 404 and (await gone.get_json())["code"] == "LLM_KEY_NOT_FOUND"
    again = await client.delete(f"{KEYS}/openai", headers=alice.headers)
    assert again.status_code == 404
    for odd in ("OpenAI", "x" * 300, "%00"):
        assert (await client.get(f"{KEYS}/{odd}", headers=alice.headers)).status_code == 404


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("member", False), ("viewer", False)])
async def test_only_owners_and_admins_manage_keys(
    client: Any, kijko: Kijko, alice: Account, role: str, allowed: bool
) -> None:
    assert (await put(client, alice, "anthropic", {"apiKey": SECRET})).status_code == 200
    caller = await add_member(kijko, alice.org_id, role)  # type: ignore[arg-type]
    answers = [
        await client.get(KEYS, headers=caller.headers),
        await client.get(f"{KEYS}/anthropic", headers=caller.headers),
        await put(client, caller, "anthropic", {"apiKey": "sk-another-key-1234"}),
        await client.patch(f"{KEYS}/anthropic", json={"baseUrl": None}, headers=caller.headers),
        await client.delete(f"{KEYS}/anthropic", headers=caller.headers),
    ]
    expected = [200] * 5 if allowed else [403] * 5
    assert [a.status_code for a in answers] == expected
    if not allowed:
        assert {(await a.get_json())["code"] for a in answers} == {"FORBIDDEN"}


async def test_one_organizations_keys_are_invisible_to_another(client: Any, alice: Account, bob: Account) -> None:
    assert (await put(client, alice, "openai", {"apiKey": SECRET})).status_code == 200
    assert (await (await client.get(KEYS, headers=bob.headers)).get_json())["data"] == []
    assert (await client.get(f"{KEYS}/openai", headers=bob.headers)).status_code == 404
    assert (await client.delete(f"{KEYS}/openai", headers=bob.headers)).status_code == 404
    # Bob's own key is his organization's; Alice's stays as it was.
    assert (await put(client, bob, "openai", {"apiKey": "sk-bobs-key-0000-BOBK"})).status_code == 200
    mine = await (await client.get(f"{KEYS}/openai", headers=alice.headers)).get_json()
    assert mine["last4"] == "WXYZ"


@pytest.mark.parametrize(
    ("provider", "body", "field"),
    [
        ("no-such-provider", {"apiKey": SECRET}, "provider"),
        ("openai", {}, "apiKey"),  # no key yet and none given
        ("openai", {"apiKey": "short"}, "apiKey"),
        ("openai", {"apiKey": SECRET, "baseUrl": "ftp://files.example.com"}, "baseUrl"),
        ("openai", {"apiKey": SECRET, "baseUrl": "https://user:pw@llm.example.com"}, "baseUrl"),
        ("openai", {"apiKey": SECRET, "baseUrl": "https://llm.example.com/v1?x=1"}, "baseUrl"),
    ],
)
async def test_bad_keys_are_refused_without_echoing_them(
    client: Any, alice: Account, provider: str, body: dict[str, Any], field: str
) -> None:
    response = await put(client, alice, provider, body)
    answer = await response.get_json()
    assert response.status_code == 422, answer
    assert answer["field"] == field
    assert SECRET not in str(answer) and "user:pw" not in str(answer)
    assert (await (await client.get(KEYS, headers=alice.headers)).get_json())["data"] == []


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",  # AWS/GCP/Azure instance metadata
        "http://[fd00:ec2::254]/",  # AWS IMDS over IPv6
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/",  # 169.254.169.254 spelt as one number
        "http://0xa9fea9fe/",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://METADATA.google.internal./",
        "http://metadata/",
        "http://127.0.0.1:11434/v1",  # loopback: not let through by KIJKO_EGRESS_ALLOW_CIDRS here
        "http://localhost:8080/v1",
        "https://10.0.0.5/v1",
        "http://[::1]/",
        "http://0.0.0.0/",
        "gopher://llm.example.com/",
    ],
)
async def test_a_base_url_the_egress_guard_would_refuse_is_refused_when_saved(
    client: Any, alice: Account, base_url: str
) -> None:
    """Refused at save (decision 0138), not only at call time; names are not looked up."""
    response = await put(client, alice, "openai", {"apiKey": SECRET, "baseUrl": base_url})
    answer = await response.get_json()
    assert (response.status_code, answer["code"], answer["field"]) == (422, "VALIDATION_ERROR", "baseUrl"), answer
    assert (await (await client.get(KEYS, headers=alice.headers)).get_json())["data"] == []
    # Changing only the address of an existing key is checked the same way.
    assert (await put(client, alice, "openai", {"apiKey": SECRET})).status_code == 200
    changed = await client.patch(f"{KEYS}/openai", json={"baseUrl": base_url}, headers=alice.headers)
    assert changed.status_code == 422
    assert (await (await client.get(f"{KEYS}/openai", headers=alice.headers)).get_json())["baseUrl"] is None


async def test_a_base_url_with_a_public_address_or_any_name_is_saved(client: Any, alice: Account) -> None:
    # A name is saved without a DNS lookup (its answer may change; the guard checks each call).
    for base_url in ("https://llm.internal.example.com/v1", "http://8.8.8.8/v1", "https://[2001:4860::8888]/v1"):
        response = await put(client, alice, "openai", {"apiKey": SECRET, "baseUrl": base_url})
        assert response.status_code == 200, base_url
        assert (await response.get_json())["baseUrl"] == base_url


async def test_keys_never_reach_the_logs(client: Any, alice: Account) -> None:
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    assert (await put(client, alice, "openai", {"apiKey": SECRET})).status_code == 200
    assert (await put(client, alice, "nope", {"apiKey": SECRET})).status_code == 422
    assert (await client.get(f"{KEYS}/openai", headers=alice.headers)).status_code == 200
    assert buffer.getvalue()  # the access lines were written here
    assert SECRET not in buffer.getvalue()


# --- every documented error, with its documented code -------------------------------------------

ONE = "/api/v1/organizations/current/llm-keys/{provider}"
BODY = {"400", "413", "415", "422"}
LLM_KEY_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", KEYS): {"401", "403"},
    ("get", ONE): {"401", "403", "404"},
    ("put", ONE): {"401", "403"} | BODY,
    ("patch", ONE): {"401", "403"} | BODY,
    ("delete", ONE): {"401", "403", "404"},
}


async def test_every_documented_llm_key_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    from tests.test_openapi_errors import answers_not_as_documented, documented_errors, openapi

    viewer = await add_member(kijko, alice.org_id, "viewer")
    spec = await openapi(client)
    problems: list[str] = []
    for (method, template), statuses in LLM_KEY_OPERATIONS.items():
        documented = documented_errors(spec, method, template)
        assert set(documented) == statuses | {"500"}, (method, template)
        path = template.format(provider="anthropic")
        body = {"json": {"apiKey": SECRET}} if method in ("put", "patch") else {}

        def send(account: Account | None, at: str = path, verb: str = method, **extra: Any) -> Any:
            async def call() -> Any:
                headers = dict(account.headers) if account else {}
                headers.update(extra.pop("headers", {}))
                return await client.open(at, method=verb.upper(), headers=headers, **extra)

            return call

        cases: dict[str, Any] = {"401": send(None, **body), "403": send(viewer, **body)}
        if "404" in statuses:
            cases["404"] = send(alice)  # no key stored for it
        if "400" in statuses:
            json_type = {"Content-Type": "application/json"}
            cases["400"] = send(alice, data=b'{"apiKey": ', headers=json_type)
            cases["413"] = send(alice, data=b'{"apiKey": "' + b"x" * (2 * 1024 * 1024) + b'"}', headers=json_type)
            cases["415"] = send(alice, data=b"apiKey=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
            cases["422"] = send(alice, json={"apiKey": 5})
            cases["422 provider"] = send(alice, template.format(provider="nope"), json={"apiKey": SECRET})
        problems += await answers_not_as_documented(method, template, cases, documented)
    assert problems == []
