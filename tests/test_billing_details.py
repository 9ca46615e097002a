"""Billing details and BTW/VAT validation over HTTP (issue 9 §4, docs/billing-details.md): saves
merge one field at a time, values are checked offline, owners edit and admins read, one
organization never sees another's; BTW/VAT numbers are confirmed with a VIES stand-in reached
through the egress-guarded client, with the checksum as the answer when VIES cannot confirm."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import pytest
from stdnum.eu import vat

from kijko_core.auth.accounts import erase_user
from kijko_core.billing import vies
from kijko_core.billing.btw import InvalidVatNumber, VatNumber, check_country, check_kvk, check_vat
from kijko_core.billing.details import BillingDetails, customer_fields
from kijko_core.db.session import system_session
from kijko_core.egress import make_egress_client
from kijko_core.permissions import BILLING_ROUTES
from kijko_core.runtime import Kijko, make_redis
from kijko_server.app import create_app
from tests.conftest import Account
from tests.memberships import add_member
from tests.net import free_port
from tests.vies_server import Answer, ViesServer, vies_settings

DETAILS = "/api/v1/billing/details"
VALIDATE = f"{DETAILS}/validate-btw"


def nl_vat() -> str:
    """A fresh Dutch BTW number with valid check digits (the mod-11 rule of ``stdnum.nl.btw``):
    each test checks numbers of its own, so no cache entry of another test answers for it."""
    while True:
        digits = [random.randint(0, 9) for _ in range(8)]
        check = sum((9 - i) * digit for i, digit in enumerate(digits)) % 11
        if check < 10:
            number = "NL" + "".join(map(str, digits)) + str(check) + f"B{random.randint(1, 99):02d}"
            assert vat.is_valid(number)
            return number


def broken(number: str) -> str:
    """``number`` with its check digit (the ninth digit) changed: the checksum fails."""
    for digit in "0123456789":
        candidate = number[:10] + digit + number[11:]
        if not vat.is_valid(candidate):
            return candidate
    raise AssertionError("no digit breaks it")


async def patch(client: Any, account: Account, body: dict[str, Any]) -> Any:
    return await client.patch(DETAILS, json=body, headers=account.headers)


async def details_of(client: Any, account: Account) -> dict[str, Any]:
    response = await client.get(DETAILS, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


# --- the details ----------------------------------------------------------------------------------


async def test_details_never_saved_are_the_empty_shape(client: Any, alice: Account) -> None:
    assert await details_of(client, alice) == {
        "organizationId": alice.org_id,
        "userId": None,
        "companyName": None,
        "btwNumber": None,
        "kvkNumber": None,
        "addressLine1": None,
        "addressLine2": None,
        "postalCode": None,
        "city": None,
        "country": "NL",
        "updatedAt": None,
    }


async def test_saves_of_one_field_each_keep_the_others(client: Any, alice: Account) -> None:
    number = nl_vat()
    spaced = f"{number[:2].lower()} {number[2:6]}.{number[6:11]} {number[11:].lower()}"
    saves = [
        {"companyName": "  Kijko B.V.  "},
        {"addressLine1": "Keizersgracht 1"},
        {"addressLine2": "3e verdieping"},
        {"postalCode": "1015 CJ"},
        {"city": "Amsterdam"},
        {"kvkNumber": "1234 5678"},
        {"btwNumber": spaced},
        {"country": "nl"},
    ]
    for body in saves:
        response = await patch(client, alice, body)
        assert response.status_code == 200, await response.get_data(as_text=True)
    saved = await details_of(client, alice)
    assert saved == {
        "organizationId": alice.org_id,
        "userId": alice.user_id,
        "companyName": "Kijko B.V.",
        "btwNumber": number,  # compact, upper-case, with its country prefix
        "kvkNumber": "12345678",
        "addressLine1": "Keizersgracht 1",
        "addressLine2": "3e verdieping",
        "postalCode": "1015 CJ",
        "city": "Amsterdam",
        "country": "NL",
        "updatedAt": saved["updatedAt"],
    }
    assert saved["updatedAt"] is not None
    # Another field later: the answer is the whole of it, the rest as it was.
    response = await patch(client, alice, {"city": "Utrecht"})
    assert await response.get_json() == {
        **saved,
        "city": "Utrecht",
        "updatedAt": (await response.get_json())["updatedAt"],
    }
    # An empty body changes nothing (and saves nothing).
    same = await patch(client, alice, {})
    assert (await same.get_json())["updatedAt"] == (await response.get_json())["updatedAt"]


async def test_saves_at_once_of_different_fields_all_stay(client: Any, alice: Account) -> None:
    """The first save makes the row; saves racing it each change their own field."""
    bodies = [
        {"companyName": "Race B.V."},
        {"addressLine1": "Dam 1"},
        {"addressLine2": "Achterhuis"},
        {"postalCode": "1012 JS"},
        {"city": "Amsterdam"},
        {"kvkNumber": "11223344"},
        {"country": "NL"},
    ]
    answers = await asyncio.gather(*(patch(client, alice, body) for body in bodies))
    assert [answer.status_code for answer in answers] == [200] * len(bodies)
    saved = await details_of(client, alice)
    for body in bodies:
        assert {key: saved[key] for key in body} == body


def test_every_billing_details_route_is_in_the_permission_table(app: Any) -> None:
    served = {
        (method, rule.rule.removeprefix("/api/v1"))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(DETAILS)
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert served == {(method, path) for method, path, _ in BILLING_ROUTES if path.startswith("/billing/details")}


async def test_null_or_blank_clears_a_field_and_country_cannot_be_cleared(client: Any, alice: Account) -> None:
    body = {"companyName": "Acme", "city": "Delft", "kvkNumber": "87654321", "country": "BE"}
    assert (await patch(client, alice, body)).status_code == 200
    cleared = await patch(client, alice, {"city": None, "kvkNumber": "   "})
    assert cleared.status_code == 200
    answer = await cleared.get_json()
    assert (answer["city"], answer["kvkNumber"], answer["companyName"], answer["country"]) == (None, None, "Acme", "BE")
    for value in (None, "", "  "):
        refused = await patch(client, alice, {"country": value})
        assert refused.status_code == 422 and (await refused.get_json())["field"] == "country", value
    assert (await details_of(client, alice))["country"] == "BE"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"btwNumber": "NL000099998B58"}, "btwNumber"),  # check digits
        ({"btwNumber": "000099998B57"}, "btwNumber"),  # no country prefix
        ({"btwNumber": "GB980780684"}, "btwNumber"),  # not an EU member state
        ({"btwNumber": "NL12"}, "btwNumber"),
        ({"btwNumber": "x" * 41}, "btwNumber"),
        ({"kvkNumber": "1234567"}, "kvkNumber"),
        ({"kvkNumber": "123456789"}, "kvkNumber"),
        ({"kvkNumber": "1234567a"}, "kvkNumber"),
        ({"country": "XX"}, "country"),
        ({"country": "NLD"}, "country"),
        ({"country": "N1"}, "country"),
        ({"companyName": "x" * 201}, "companyName"),
        ({"city": 5}, "city"),
        ({"vatNumber": "NL000099998B57"}, "vatNumber"),  # not a field of the details
        ({"companyName": "Fine", "kvkNumber": "1"}, "kvkNumber"),  # one bad field: nothing saved
    ],
)
async def test_invalid_values_are_422_on_their_camel_case_field(
    client: Any, alice: Account, body: dict[str, Any], field: str
) -> None:
    response = await patch(client, alice, body)
    answer = await response.get_json()
    assert response.status_code == 422, answer
    assert (answer["code"], answer["field"]) == ("VALIDATION_ERROR", field)
    assert "NL000099998B5" not in answer["message"] and "980780684" not in answer["message"]
    assert (await details_of(client, alice))["updatedAt"] is None  # nothing was saved


async def test_server_managed_fields_in_a_body_are_ignored(client: Any, alice: Account, bob: Account) -> None:
    body = {
        "organizationId": bob.org_id,
        "userId": bob.user_id,
        "updatedAt": "2020-01-01T00:00:00Z",
        "city": "Leiden",
    }
    response = await patch(client, alice, body)
    answer = await response.get_json()
    assert response.status_code == 200, answer
    assert (answer["organizationId"], answer["userId"], answer["city"]) == (alice.org_id, alice.user_id, "Leiden")
    assert not answer["updatedAt"].startswith("2020")
    assert (await details_of(client, bob))["city"] is None


@pytest.mark.parametrize(("role", "read", "write"), [("admin", 200, 403), ("member", 403, 403), ("viewer", 403, 403)])
async def test_owners_edit_admins_view_and_the_others_get_403(
    client: Any, kijko: Kijko, alice: Account, role: str, read: int, write: int
) -> None:
    assert (await patch(client, alice, {"companyName": "Owner's"})).status_code == 200
    caller = await add_member(kijko, alice.org_id, role)  # type: ignore[arg-type]
    got = await client.get(DETAILS, headers=caller.headers)
    assert got.status_code == read
    if read == 200:
        assert (await got.get_json())["companyName"] == "Owner's"
    changed = await patch(client, caller, {"companyName": "Not the owner's"})
    checked = await client.post(VALIDATE, json={"btwNumber": "NL000099998B58"}, headers=caller.headers)
    assert (changed.status_code, checked.status_code) == (write, write)
    for refused in [r for r in (got, changed, checked) if r.status_code == 403]:
        assert (await refused.get_json())["code"] == "FORBIDDEN"
    assert (await details_of(client, alice))["companyName"] == "Owner's"


async def test_one_organizations_details_are_invisible_and_unchangeable_to_another(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    number = nl_vat()
    assert (await patch(client, alice, {"companyName": "Alice BV", "btwNumber": number})).status_code == 200
    theirs = await details_of(client, bob)
    assert theirs["organizationId"] == bob.org_id and theirs["companyName"] is None and theirs["btwNumber"] is None
    assert (await patch(client, bob, {"companyName": "Bob BV"})).status_code == 200
    mine = await details_of(client, alice)
    assert (mine["companyName"], mine["btwNumber"]) == ("Alice BV", number)
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(
            "SELECT organization_id, company_name FROM kijko.billing_details WHERE organization_id = ANY($1::uuid[])",
            [UUID(alice.org_id), UUID(bob.org_id)],
        )
    assert {(str(r["organization_id"]), r["company_name"]) for r in rows} == {
        (alice.org_id, "Alice BV"),
        (bob.org_id, "Bob BV"),
    }


async def test_erasing_who_saved_them_keeps_the_details_with_no_user(client: Any, kijko: Kijko, alice: Account) -> None:
    other_owner = await add_member(kijko, alice.org_id, "owner")
    assert (await patch(client, other_owner, {"companyName": "Kept B.V."})).status_code == 200
    erasure = await erase_user(kijko.system_db, UUID(other_owner.user_id))
    assert erasure.erased
    kept = await details_of(client, alice)
    assert (kept["companyName"], kept["userId"]) == ("Kept B.V.", None)


async def test_app_role_sql_cannot_read_or_forge_details(client: Any, alice: Account, attacker: Any) -> None:
    """Without a tenant context the app role sees no row, and cannot write one."""
    assert (await patch(client, alice, {"companyName": "Alice BV"})).status_code == 200
    assert await attacker.fetch("SELECT * FROM kijko.billing_details") == []
    with pytest.raises(Exception, match="row-level security|permission denied"):
        await attacker.execute(
            "INSERT INTO kijko.billing_details (organization_id, updated_by) VALUES ($1, NULL)", UUID(alice.org_id)
        )


def test_customer_fields_are_the_name_address_and_tax_id() -> None:
    org = UUID(int=1)
    saved = BillingDetails.empty(org).model_copy(
        update={
            "company_name": "Kijko B.V.",
            "btw_number": "NL000099998B57",
            "kvk_number": "12345678",
            "address_line1": "Keizersgracht 1",
            "postal_code": "1015 CJ",
            "city": "Amsterdam",
        }
    )
    assert customer_fields(saved) == {
        "name": "Kijko B.V.",
        "address": {
            "line1": "Keizersgracht 1",
            "line2": None,
            "postal_code": "1015 CJ",
            "city": "Amsterdam",
            "country": "NL",
        },
        "tax_id": {"type": "eu_vat", "value": "NL000099998B57"},
        "metadata": {"kvk_number": "12345678"},
    }
    empty = customer_fields(BillingDetails.empty(org))
    assert (empty["name"], empty["tax_id"], empty["address"]["country"]) == (None, None, "NL")


# --- validating a BTW/VAT number with VIES ----------------------------------------------------------


@pytest.fixture
def vies_server() -> Iterator[ViesServer]:
    with ViesServer() as server:
        yield server


@contextlib.asynccontextmanager
async def vies_app(kijko: Kijko, settings: Any, redis: Any = None) -> AsyncIterator[Any]:
    """A test client of an app on the test run's Kijko with ``settings`` (VIES, the egress
    allowance), its own egress client and a fresh VIES cache (in ``redis`` when given)."""
    egress = make_egress_client(settings)
    runtime = dataclasses.replace(
        kijko, settings=settings, egress=egress, redis=redis, vies_cache=vies.make_cache(redis, settings)
    )
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            yield application.test_client()
    finally:
        await egress.aclose()


@pytest.fixture
async def vies_client(kijko: Kijko, make_settings: Any, vies_server: ViesServer) -> AsyncIterator[Any]:
    async with vies_app(kijko, make_settings(**vies_settings(vies_server, timeout=1.0))) as client:
        yield client


async def validate(client: Any, account: Account, number: str) -> dict[str, Any]:
    response = await client.post(VALIDATE, json={"btwNumber": number}, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def test_a_number_vies_knows_is_valid_with_its_holder(
    vies_client: Any, vies_server: ViesServer, alice: Account
) -> None:
    number = nl_vat()
    vies_server.registry[number] = ("KIJKO B.V.", "KEIZERSGRACHT 00001\n1015CJ AMSTERDAM\n")
    answer = await validate(vies_client, alice, number.lower())
    assert answer == {
        "isValid": True,
        "companyName": "KIJKO B.V.",
        "address": "KEIZERSGRACHT 00001, 1015CJ AMSTERDAM",
        "errorMessage": None,
    }
    # What VIES was asked: the country code and the number without it, as its API wants them.
    assert [r.body for r in vies_server.requests] == [{"countryCode": "NL", "vatNumber": number[2:]}]


async def test_a_number_vies_does_not_know_is_invalid(
    vies_client: Any, vies_server: ViesServer, alice: Account
) -> None:
    answer = await validate(vies_client, alice, nl_vat())
    assert answer["isValid"] is False and answer["companyName"] is None
    assert "VIES does not know" in answer["errorMessage"]
    assert len(vies_server.requests) == 1


async def test_undisclosed_holders_are_null(vies_client: Any, vies_server: ViesServer, alice: Account) -> None:
    number = nl_vat()
    vies_server.registry[number] = ("---", "---")
    answer = await validate(vies_client, alice, number)
    assert (answer["isValid"], answer["companyName"], answer["address"]) == (True, None, None)


async def test_an_invalid_checksum_never_reaches_vies(
    vies_client: Any, vies_server: ViesServer, alice: Account
) -> None:
    for number in (broken(nl_vat()), "GB980780684", "123", "NL"):
        answer = await validate(vies_client, alice, number)
        assert answer["isValid"] is False and answer["errorMessage"].startswith("Not a valid EU VAT number"), number
    assert vies_server.requests == []
    refused = await vies_client.post(VALIDATE, json={"btwNumber": ""}, headers=alice.headers)
    assert refused.status_code == 422 and (await refused.get_json())["field"] == "btwNumber"


async def test_a_second_check_within_the_cache_time_does_not_ask_vies(
    vies_client: Any, vies_server: ViesServer, alice: Account, bob: Account
) -> None:
    known, unknown = nl_vat(), nl_vat()
    vies_server.registry[known] = ("KIJKO B.V.", "AMSTERDAM")
    first = [await validate(vies_client, alice, known), await validate(vies_client, alice, unknown)]
    # Again, written differently, and by another organization: VIES's answers are about the
    # number, the same for everyone.
    again = [
        await validate(vies_client, alice, f"{known[:2]} {known[2:].lower()}"),
        await validate(vies_client, bob, unknown),
    ]
    assert again == first
    assert len(vies_server.requests) == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(error="MS_UNAVAILABLE"), "VIES answered MS_UNAVAILABLE"),  # with 200, as VIES does
        (Answer(error="TIMEOUT", status=200), "VIES answered TIMEOUT"),
        (Answer(error="GLOBAL_MAX_CONCURRENT_REQ", status=429), "VIES answered GLOBAL_MAX_CONCURRENT_REQ"),
        (Answer(error="SERVICE_UNAVAILABLE", status=500), "VIES answered SERVICE_UNAVAILABLE"),
        (Answer(status=500, text="<html>Internal Server Error</html>"), "VIES answered HTTP 500"),
        (Answer(status=502, text=""), "VIES answered HTTP 502"),
    ],
)
async def test_vies_errors_answer_the_checksum_and_are_not_cached(
    vies_client: Any, vies_server: ViesServer, alice: Account, answer: Answer, reason: str
) -> None:
    number = nl_vat()
    vies_server.registry[number] = ("KIJKO B.V.", "AMSTERDAM")
    vies_server.queue(answer)
    fallback = await validate(vies_client, alice, number)
    assert fallback["isValid"] is True and fallback["companyName"] is None
    assert fallback["errorMessage"].startswith(reason) and "could not confirm" in fallback["errorMessage"]
    # Not kept: the next check asks VIES again, which answers this time.
    assert (await validate(vies_client, alice, number))["companyName"] == "KIJKO B.V."
    assert len(vies_server.requests) == 2


async def test_vies_slower_than_the_time_limit_answers_the_checksum(
    kijko: Kijko, make_settings: Any, vies_server: ViesServer, alice: Account
) -> None:
    settings = make_settings(**vies_settings(vies_server, timeout=0.3))
    async with vies_app(kijko, settings) as client:
        vies_server.queue(Answer(delay=30))
        answer = await validate(client, alice, nl_vat())
    assert answer["isValid"] is True
    assert answer["errorMessage"].startswith("VIES did not answer in time")
    # Kijko hung up instead of waiting for the answer.
    assert vies_server.wait_for(lambda server: server.aborted == 1)


async def test_vies_unreachable_or_refused_by_the_egress_guard_answers_the_checksum(
    kijko: Kijko, make_settings: Any, vies_server: ViesServer, alice: Account
) -> None:
    down = make_settings(**{**vies_settings(vies_server), "vies_url": f"http://127.0.0.1:{free_port()}/check"})
    # Without the allowance for 127.0.0.0/8 the guard refuses the stand-in's address: VIES is
    # called through the egress-guarded client, like every outside address.
    guarded = make_settings(vies_url=vies_server.url)
    for settings in (down, guarded):
        async with vies_app(kijko, settings) as client:
            answer = await validate(client, alice, nl_vat())
        assert answer["isValid"] is True
        assert answer["errorMessage"].startswith("VIES could not be reached"), answer
    assert vies_server.requests == []


async def test_without_a_vies_url_only_the_checksum_is_checked(
    kijko: Kijko, make_settings: Any, alice: Account
) -> None:
    async with vies_app(kijko, make_settings(vies_url="")) as client:
        good = await validate(client, alice, nl_vat())
        bad = await validate(client, alice, broken(nl_vat()))
    assert good["isValid"] is True and "turned off" in good["errorMessage"]
    assert bad["isValid"] is False


@pytest.mark.redis
async def test_vies_answers_are_shared_through_redis(
    kijko: Kijko, make_settings: Any, vies_server: ViesServer, alice: Account
) -> None:
    url = os.environ.get("KIJKO_TEST_REDIS_URL")
    if not url:
        pytest.skip("KIJKO_TEST_REDIS_URL is not set")
    settings = make_settings(**vies_settings(vies_server), redis_url=url)
    number = nl_vat()
    vies_server.registry[number] = ("KIJKO B.V.", "AMSTERDAM")
    redis = make_redis(settings)
    try:
        # Two apps with caches of their own, as two processes: the second finds the first's answer.
        async with vies_app(kijko, settings, redis) as first:
            assert (await validate(first, alice, number))["companyName"] == "KIJKO B.V."
        async with vies_app(kijko, settings, redis) as second:
            assert (await validate(second, alice, number))["companyName"] == "KIJKO B.V."
        assert len(vies_server.requests) == 1
        keys = [key async for key in redis.scan_iter(match="kijko:vies:*")]
        assert keys and all(number[2:].encode() not in key for key in keys)  # hashed
        assert 0 < await redis.ttl(keys[0]) <= settings.vies_cache_seconds
        await redis.delete(*keys)
    finally:
        await redis.aclose()


# --- every documented error, with its documented code -------------------------------------------

BODY = {"400", "413", "415", "422"}
BILLING_DETAILS_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", DETAILS): {"401", "403"},
    ("patch", DETAILS): {"401", "403"} | BODY,
    ("post", VALIDATE): {"401", "403", "429", "503"} | BODY,
}


async def test_every_documented_billing_details_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account, make_settings: Any
) -> None:
    from tests.test_openapi_errors import answers_not_as_documented, documented_errors, openapi

    gone = await add_member(kijko, alice.org_id, "owner")  # loses the membership below
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    spec = await openapi(client)
    invalid = {"btwNumber": "NL000099998B58"}  # answered offline: no VIES needed
    down = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    redis = make_redis(down)
    try:
        # One validation a minute; and the limiter's Redis down (503).
        async with (
            vies_app(kijko, make_settings(vies_rate_limit_per_minute=1)) as limited,
            vies_app(kijko, down, redis) as redis_down,
        ):

            async def twice() -> Any:
                await limited.post(VALIDATE, json=invalid, headers=alice.headers)
                return await limited.post(VALIDATE, json=invalid, headers=alice.headers)

            async def unavailable() -> Any:
                return await redis_down.post(VALIDATE, json=invalid, headers=alice.headers)

            problems: list[str] = []
            for (method, path), statuses in BILLING_DETAILS_OPERATIONS.items():
                documented = documented_errors(spec, method, path)
                assert set(documented) == statuses | {"500"}, (method, path)
                body = {"json": invalid} if method != "get" else {}

                def send(account: Account | None, verb: str = method, at: str = path, **extra: Any) -> Any:
                    async def call() -> Any:
                        headers = dict(account.headers) if account else {}
                        headers.update(extra.pop("headers", {}))
                        return await client.open(at, method=verb.upper(), headers=headers, **extra)

                    return call

                cases: dict[str, Any] = {"401": send(None, **body), "403": send(gone, **body)}
                if "400" in statuses:
                    json_type = {"Content-Type": "application/json"}
                    form = {"Content-Type": "application/x-www-form-urlencoded"}
                    cases["400"] = send(alice, data=b'{"btwNumber": ', headers=json_type)
                    cases["413"] = send(
                        alice, data=b'{"btwNumber": "' + b"x" * (2 * 1024 * 1024) + b'"}', headers=json_type
                    )
                    cases["415"] = send(alice, data=b"btwNumber=x", headers=form)
                    cases["422"] = send(alice, json={"btwNumber": 5})
                if "429" in statuses:
                    cases["429"] = twice
                    cases["503"] = unavailable
                problems += await answers_not_as_documented(method, path, cases, documented)
    finally:
        assert redis is not None
        await redis.aclose()
    assert problems == []


async def test_each_user_validates_a_limited_number_a_minute(kijko: Kijko, make_settings: Any, alice: Account) -> None:
    other_owner = await add_member(kijko, alice.org_id, "owner")
    async with vies_app(kijko, make_settings(vies_rate_limit_per_minute=2)) as client:
        answers = [await client.post(VALIDATE, json={"btwNumber": "NL1"}, headers=alice.headers) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [200, 200, 429]
        limited = await answers[2].get_json()
        assert limited["code"] == "RATE_LIMITED" and int(answers[2].headers["Retry-After"]) >= 1
        # Per user: another owner of the organization has a budget of their own.
        other = await client.post(VALIDATE, json={"btwNumber": "NL1"}, headers=other_owner.headers)
        assert other.status_code == 200


# --- the offline checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "compact", "country", "number"),
    [
        ("nl 0000.99998.b57", "NL000099998B57", "NL", "000099998B57"),
        ("DE 136 695 976", "DE136695976", "DE", "136695976"),
        ("GR094259216", "GR094259216", "EL", "094259216"),  # VIES calls Greece EL
        ("EL-094259216", "EL094259216", "EL", "094259216"),
        ("XI123456782", "XI123456782", "XI", "123456782"),  # Northern Ireland: VIES answers too
        ("FR40303265045", "FR40303265045", "FR", "40303265045"),
    ],
)
def test_check_vat_compacts_and_names_the_vies_country(text: str, compact: str, country: str, number: str) -> None:
    assert check_vat(text) == VatNumber(compact, country, number)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NL000099998B58", "check digits"),
        ("000099998B57", "EU member state"),
        ("GB980780684", "EU member state"),
        ("CHE-116.281.710 MWST", "EU member state"),
        ("NL000099998B5712345", "length"),
        ("", "EU member state"),
    ],
)
def test_check_vat_says_why_without_the_number(text: str, reason: str) -> None:
    with pytest.raises(InvalidVatNumber) as refused:
        check_vat(text)
    assert reason in str(refused.value)
    assert not any(chunk in str(refused.value) for chunk in ("99998", "980780684", "116.281"))


def test_kvk_and_country_checks() -> None:
    assert check_kvk("1234 5678") == "12345678"
    assert check_country(" be ") == "BE"
    for kvk in ("1234567", "123456789", "1234567a", "１２３４５６７８"):
        with pytest.raises(ValueError):
            check_kvk(kvk)
    for country in ("XX", "UK", "NLD", "", "n"):
        with pytest.raises(ValueError):
            check_country(country)
