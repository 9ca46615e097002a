"""Payment methods, invoices and the Customer Portal over HTTP (issue 9 §2, docs/billing.md
"Payment methods, invoices and the portal", decision 0164), against the Stripe stand-in with the
real SDK: methods added through a setup Checkout, exactly one default, the subscription's
default refused, invoices paged with ``hasMore``, one organization never seeing or touching
another's, owners manage and admins view, billing off and Stripe down as 503 with nothing
changed, and the billing details given to the Stripe customer."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from kijko_core.billing import customers, subscriptions
from kijko_core.db.session import system_session
from kijko_core.permissions import BILLING_ROUTES
from kijko_core.runtime import Kijko
from tests.billing_kit import stripe_app, wrong_key_client
from tests.conftest import Account
from tests.memberships import add_member
from tests.stripe_server import StripeServer

BILLING = "/api/v1/billing"
PM = f"{BILLING}/payment-methods"
INVOICES = f"{BILLING}/invoices"
PORTAL = f"{BILLING}/portal"
DETAILS = f"{BILLING}/details"
CUSTOMER = "SELECT stripe_customer_id FROM kijko.billing_customers WHERE organization_id = $1"
BODY = {"400", "413", "415", "422"}
#: Each operation's documented errors; each is triggered below with its documented code.
BILLING_PAYMENTS_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", PM): {"401", "403", "502", "503"},
    ("post", f"{PM}/setup"): {"401", "403", "502", "503"} | BODY,
    ("post", f"{PM}/{{pm_id}}/default"): {"401", "403", "404", "502", "503"},
    ("delete", f"{PM}/{{pm_id}}"): {"401", "403", "404", "409", "502", "503"},
    ("get", INVOICES): {"401", "403", "422", "502", "503"},
    ("get", PORTAL): {"401", "403", "502", "503"},
}


async def add_method(web: Any, server: StripeServer, account: Account, method: str = "card") -> str:
    """The owner adds a payment method through a setup Checkout; its Stripe id."""
    response = await web.post(f"{PM}/setup", json={"type": method}, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    session = server.complete_checkout((await response.get_json())["sessionId"], method=method)
    return str(server.object(session["setup_intent"])["payment_method"])


async def listed(web: Any, account: Account) -> list[dict[str, Any]]:
    response = await web.get(PM, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    methods: list[dict[str, Any]] = await response.get_json()
    return methods


def default_of(methods: list[dict[str, Any]]) -> str:
    defaults = [m["id"] for m in methods if m["isDefault"]]
    assert len(defaults) == 1, methods
    return defaults[0]


async def customer_of(kijko: Kijko, account: Account) -> str | None:
    async with system_session(kijko.system_db) as db:
        found = await db.fetchval(CUSTOMER, UUID(account.org_id))
    return None if found is None else str(found)


async def subscribe(kijko: Kijko, server: StripeServer, account: Account) -> dict[str, Any]:
    """A Pro subscription of the organization's customer (paid by a card given at Checkout),
    stored as Kijko's webhook handling would."""
    customer_id = await customer_of(kijko, account)
    assert customer_id is not None
    client = server.client()
    price = client.v1.prices.list({"lookup_keys": ["kijko_pro_monthly"]}).data[0]
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer_id,
            "line_items": [{"price": price.id, "quantity": 1}],
            "payment_method_types": ["card"],
            "success_url": "https://app.example/ok",
            "cancel_url": "https://app.example/no",
        }
    )
    done = server.complete_checkout(session.id, method="card")
    return await store(kijko, server, account, done["subscription"])


async def store(runtime: Kijko, server: StripeServer, account: Account, sub_id: str) -> dict[str, Any]:
    """Stripe's subscription as it is now, stored as the organization's."""
    sub = server.object(sub_id)
    org = UUID(account.org_id)
    async with customers.billing_session(runtime, org) as db:
        assert await subscriptions.store(db, org, sub, runtime.plans, grace_days=3)
    return sub


def test_every_route_is_in_the_permission_table(app: Any) -> None:
    served = {
        (method, rule.rule.removeprefix("/api/v1").replace("<pm_id>", "{id}"))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("billing_payments.")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    table = {(method, path) for method, path, _ in BILLING_ROUTES}
    assert served and served <= table
    assert {
        (m, p) for m, p in table if p.startswith(("/billing/payment-methods", "/billing/invoices", "/billing/portal"))
    } == served


async def test_methods_added_through_setup_checkout_are_listed_with_one_default(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    async with stripe_app(kijko, make_settings, stripe_server, app_url="https://app.example") as (runtime, web):
        assert await listed(web, alice) == []
        assert await customer_of(kijko, alice) is None  # reading made no customer
        response = await web.post(f"{PM}/setup", json={"type": "card"}, headers=alice.headers)
        body = await response.get_json()
        assert response.status_code == 200 and set(body) == {"checkoutUrl", "sessionId"}
        session = stripe_server.object(body["sessionId"])
        assert body["checkoutUrl"] == session["url"] and session["mode"] == "setup"
        assert session["payment_method_types"] == ["card"]
        assert session["customer"] == await customer_of(kijko, alice)
        assert session["success_url"] == (
            "https://app.example/settings/billing?setup=success&session_id={CHECKOUT_SESSION_ID}"
        )
        create = next(r for r in stripe_server.requests if r.path == "/v1/checkout/sessions")
        assert create.headers.get("idempotency-key", "").startswith("kijko-setup-session-")
        card = stripe_server.object(stripe_server.complete_checkout(body["sessionId"], "card")["setup_intent"])
        card_id = card["payment_method"]
        [shown] = await listed(web, alice)
        assert shown == {
            "id": card_id,
            "userId": None,
            "type": "card",
            "stripePaymentMethodId": card_id,
            "isDefault": True,
            "cardBrand": "visa",
            "cardLast4": "4242",
            "cardExpMonth": 12,
            "cardExpYear": 2034,
            "sepaBankCode": None,
            "sepaLast4": None,
            "sepaCountry": None,
            "createdAt": shown["createdAt"],
        }
        # The first method became the customer's default at Stripe, not only on the wire.
        customer = stripe_server.object(session["customer"])
        assert customer["invoice_settings"]["default_payment_method"] == card_id
        sepa_id = await add_method(web, stripe_server, alice, "sepa_debit")
        methods = await listed(web, alice)
    assert [m["id"] for m in methods] == [sepa_id, card_id]  # newest first
    assert default_of(methods) == card_id
    sepa = methods[0]
    assert (sepa["type"], sepa["sepaBankCode"], sepa["sepaLast4"], sepa["sepaCountry"]) == (
        "sepa_debit",
        "19043",
        "3201",
        "AT",
    )
    assert sepa["cardBrand"] is None and sepa["cardLast4"] is None


async def test_switching_the_default_sets_the_customers_and_the_subscriptions(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, web):
        card = await add_method(web, stripe_server, alice, "card")
        sepa = await add_method(web, stripe_server, alice, "sepa_debit")
        customer_id = await customer_of(kijko, alice)
        assert customer_id is not None
        for wanted in (sepa, card, sepa):  # back and forth: each switch is done, none replayed
            response = await web.post(f"{PM}/{wanted}/default", headers=alice.headers)
            assert response.status_code == 200
            assert default_of(await response.get_json()) == wanted
            assert default_of(await listed(web, alice)) == wanted
            assert stripe_server.object(customer_id)["invoice_settings"]["default_payment_method"] == wanted
        sub = await subscribe(runtime, stripe_server, alice)
        response = await web.post(f"{PM}/{card}/default", headers=alice.headers)
        assert response.status_code == 200 and default_of(await response.get_json()) == card
    assert stripe_server.object(sub["id"])["default_payment_method"] == card
    assert stripe_server.object(customer_id)["invoice_settings"]["default_payment_method"] == card


async def test_the_default_cannot_be_removed_while_a_subscription_needs_it(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, web):
        card = await add_method(web, stripe_server, alice, "card")
        spare = await add_method(web, stripe_server, alice, "sepa_debit")
        assert default_of(await listed(web, alice)) == card
        sub = await subscribe(runtime, stripe_server, alice)
        charged = sub["default_payment_method"]  # the card given at Checkout
        assert charged not in (card, spare) and default_of(await listed(web, alice)) == card
        for needed in (card, charged):
            response = await web.delete(f"{PM}/{needed}", headers=alice.headers)
            assert response.status_code == 409
            assert (await response.get_json())["code"] == "PAYMENT_METHOD_IN_USE"
            assert stripe_server.object(needed)["customer"] is not None
        response = await web.delete(f"{PM}/{spare}", headers=alice.headers)
        assert response.status_code == 200 and await response.get_json() == {"success": True}
        assert stripe_server.object(spare)["customer"] is None
        assert {m["id"] for m in await listed(web, alice)} == {card, charged}
        # Once the subscription has ended, nothing needs the default.
        stripe_server.client().v1.subscriptions.cancel(sub["id"])
        await store(runtime, stripe_server, alice, sub["id"])
        response = await web.delete(f"{PM}/{card}", headers=alice.headers)
        assert response.status_code == 200
        # The one left becomes the default.
        methods = await listed(web, alice)
    assert [m["id"] for m in methods] == [charged] and default_of(methods) == charged


async def test_without_a_subscription_the_default_can_be_removed(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, web):
        card = await add_method(web, stripe_server, alice, "card")
        sepa = await add_method(web, stripe_server, alice, "sepa_debit")
        assert default_of(await listed(web, alice)) == card
        response = await web.delete(f"{PM}/{card}", headers=alice.headers)
        assert response.status_code == 200
        again = await web.delete(f"{PM}/{card}", headers=alice.headers)  # detached: not ours any more
        assert again.status_code == 404
        methods = await listed(web, alice)
    assert [m["id"] for m in methods] == [sepa] and default_of(methods) == sepa


async def test_invoices_are_paged_newest_first_with_has_more(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, web):
        empty = await web.get(INVOICES, headers=alice.headers)
        assert await empty.get_json() == {"invoices": [], "hasMore": False}
        await add_method(web, stripe_server, alice)
        await subscribe(runtime, stripe_server, alice)
        stripe_server.advance_time(86400 * 365)  # twelve renewals
        pages: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 5}
        while True:
            response = await web.get(INVOICES, query_string=query, headers=alice.headers)
            assert response.status_code == 200, await response.get_data(as_text=True)
            pages.append(await response.get_json())
            if not pages[-1]["hasMore"]:
                break
            query = {"limit": 5, "startingAfter": pages[-1]["invoices"][-1]["id"]}
        default = await (await web.get(INVOICES, headers=alice.headers)).get_json()
        bad = {
            value: await web.get(INVOICES, query_string={"limit": value}, headers=alice.headers)
            for value in ("0", "101", "x")
        }
        malformed = await web.get(INVOICES, query_string={"startingAfter": "../in"}, headers=alice.headers)
    assert [len(p["invoices"]) for p in pages] == [5, 5, 3] and [p["hasMore"] for p in pages] == [True, True, False]
    invoices = [invoice for page in pages for invoice in page["invoices"]]
    assert len({i["id"] for i in invoices}) == 13
    assert [i["createdAt"] for i in invoices] == sorted((i["createdAt"] for i in invoices), reverse=True)
    assert len(default["invoices"]) == 10 and default["hasMore"] is True
    first = invoices[-1]
    stripe_invoice = stripe_server.object(first["id"])
    assert first["stripeInvoiceId"] == first["id"] and first["userId"] is None
    assert (first["status"], first["amountDue"], first["amountPaid"], first["currency"]) == ("paid", 2900, 2900, "eur")
    assert first["invoiceNumber"] == stripe_invoice["number"] is not None
    assert first["invoiceUrl"] == stripe_invoice["hosted_invoice_url"]
    assert first["pdfUrl"] == stripe_invoice["invoice_pdf"]
    assert first["paidAt"] is not None and first["periodStart"] < first["periodEnd"]
    for response in bad.values():
        assert response.status_code == 422 and (await response.get_json())["field"] == "limit"
    assert malformed.status_code == 422 and (await malformed.get_json())["field"] == "startingAfter"


async def test_another_organizations_methods_and_invoices_are_never_seen_nor_touched(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account, bob: Account
) -> None:
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, web):
        theirs = await add_method(web, stripe_server, alice, "card")
        await add_method(web, stripe_server, alice, "sepa_debit")
        await subscribe(runtime, stripe_server, alice)
        their_invoice = stripe_server.client().v1.invoices.list({"limit": 1}).data[0].id
        assert await listed(web, bob) == []
        mine = await add_method(web, stripe_server, bob, "card")  # bob has a customer of his own
        assert [m["id"] for m in await listed(web, bob)] == [mine]
        answers = []
        for pm_id in (theirs, "pm_unknown0000000000000000", "not-a-payment-method"):
            for response in (
                await web.post(f"{PM}/{pm_id}/default", headers=bob.headers),
                await web.delete(f"{PM}/{pm_id}", headers=bob.headers),
            ):
                assert response.status_code == 404
                answers.append(await response.get_json())
        paged = await web.get(INVOICES, query_string={"startingAfter": their_invoice}, headers=bob.headers)
        unknown = await web.get(INVOICES, query_string={"startingAfter": "in_unknown000000"}, headers=bob.headers)
        alices = await listed(web, alice)
    assert all(answer == answers[0] for answer in answers) and answers[0]["code"] == "PAYMENT_METHOD_NOT_FOUND"
    assert stripe_server.object(theirs)["customer"] is not None and theirs in {m["id"] for m in alices}
    assert paged.status_code == unknown.status_code == 422
    assert await paged.get_json() == await unknown.get_json()
    assert their_invoice not in await paged.get_data(as_text=True)


async def test_owners_manage_admins_view_members_are_refused(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    admin = await add_member(kijko, alice.org_id, "admin")
    member = await add_member(kijko, alice.org_id, "member")
    async with stripe_app(kijko, make_settings, stripe_server, app_url="https://app.example") as (runtime, web):
        card = await add_method(web, stripe_server, alice)
        assert [m["id"] for m in await listed(web, admin)] == [card]
        assert (await web.get(INVOICES, headers=admin.headers)).status_code == 200
        writes = [
            ("POST", f"{PM}/setup", {"type": "card"}),
            ("POST", f"{PM}/{card}/default", None),
            ("DELETE", f"{PM}/{card}", None),
            ("GET", PORTAL, None),
        ]
        reads = [("GET", PM, None), ("GET", INVOICES, None)]
        refused = []
        for account, calls in ((admin, writes), (member, writes + reads)):
            for method, path, body in calls:
                response = await web.open(path, method=method, headers=account.headers, json=body)
                refused.append((response.status_code, (await response.get_json())["code"]))
        portal = await web.get(PORTAL, headers=alice.headers)
    assert refused == [(403, "FORBIDDEN")] * len(refused)
    assert stripe_server.object(card)["customer"] is not None
    url = (await portal.get_json())["url"]
    session = next(s for s in stripe_server.state.of_kind("billing_portal.session") if s["url"] == url)
    assert session["return_url"] == "https://app.example/settings/billing"
    assert session["customer"] == await customer_of(kijko, alice)


async def test_without_stripe_every_route_is_billing_disabled(client: Any, alice: Account) -> None:
    calls = [
        ("GET", PM, None),
        ("POST", f"{PM}/setup", {"type": "sepa_debit"}),
        ("POST", f"{PM}/pm_x/default", None),
        ("DELETE", f"{PM}/pm_x", None),
        ("GET", INVOICES, None),
        ("GET", PORTAL, None),
    ]
    for method, path, body in calls:
        response = await client.open(path, method=method, headers=alice.headers, json=body)
        assert (response.status_code, (await response.get_json())["code"]) == (503, "BILLING_DISABLED"), path


async def test_a_stripe_outage_is_503_and_changes_nothing(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, web):
        card = await add_method(web, stripe_server, alice, "card")
        sepa = await add_method(web, stripe_server, alice, "sepa_debit")
        assert default_of(await listed(web, alice)) == card
        customer_id = await customer_of(kijko, alice)
        assert customer_id is not None
        sessions = len(stripe_server.state.of_kind("checkout.session"))
        calls = [
            ("POST", f"{PM}/{sepa}/default", None),
            ("DELETE", f"{PM}/{sepa}", None),
            ("POST", f"{PM}/setup", {"type": "card"}),  # the customer exists: the create fails
            ("GET", PORTAL, None),
            ("GET", PM, None),
            ("GET", INVOICES, None),
        ]
        for method, path, body in calls:
            stripe_server.fail_next(1, "reset")
            response = await web.open(path, method=method, headers=alice.headers, json=body)
            answer = await response.get_json()
            assert (response.status_code, answer["code"]) == (503, "PAYMENT_PROVIDER_UNAVAILABLE"), path
        assert stripe_server.object(customer_id)["invoice_settings"]["default_payment_method"] == card
        assert stripe_server.object(sepa)["customer"] == customer_id
        assert len(stripe_server.state.of_kind("checkout.session")) == sessions
        assert not stripe_server.state.of_kind("billing_portal.session")
        assert default_of(await listed(web, alice)) == card  # Stripe is back


def _tax_ids(server: StripeServer, customer_id: str) -> list[str]:
    return [t["value"] for t in server.state.of_kind("tax_id") if t["customer"] == customer_id]


async def test_billing_details_are_given_to_the_stripe_customer(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    saved = {
        "companyName": "Kijko B.V.",
        "btwNumber": "NL000099998B57",
        "kvkNumber": "87654321",
        "addressLine1": "Keizersgracht 1",
        "addressLine2": "Tweede etage",
        "postalCode": "1015 CJ",
        "city": "Amsterdam",
        "country": "NL",
    }
    async with stripe_app(kijko, make_settings, stripe_server) as (runtime, web):
        # Saved before the organization has a customer: given when the customer is made.
        assert (await web.patch(DETAILS, json=saved, headers=alice.headers)).status_code == 200
        assert await customer_of(kijko, alice) is None
        await add_method(web, stripe_server, alice)
        customer_id = await customer_of(kijko, alice)
        assert customer_id is not None
        made = stripe_server.object(customer_id)
        assert made["name"] == "Kijko B.V." and made["metadata"]["kvk_number"] == "87654321"
        assert (made["address"]["line1"], made["address"]["postal_code"], made["address"]["city"]) == (
            "Keizersgracht 1",
            "1015 CJ",
            "Amsterdam",
        )
        assert (
            made["address"]["line2"] == "Tweede etage"
            and made["address"]["country"] == "NL"
            and _tax_ids(stripe_server, customer_id) == ["NL000099998B57"]
        )
        # Each save is pushed: a changed city, a cleared VAT and KVK number.
        changed = await web.patch(
            DETAILS,
            json={"city": "Delft", "addressLine2": None, "btwNumber": None, "kvkNumber": None},
            headers=alice.headers,
        )
        assert changed.status_code == 200
        customer = stripe_server.object(customer_id)
        assert customer["address"]["city"] == "Delft" and customer["address"]["line2"] is None
        assert "kvk_number" not in customer["metadata"]
        assert _tax_ids(stripe_server, customer_id) == []
        assert customer["metadata"]["organization_id"] == alice.org_id
        # Stripe down: the save stands (200), Stripe keeps the old details until the next save.
        stripe_server.fail_next(1, "reset")
        down = await web.patch(DETAILS, json={"companyName": "Kijko Holding B.V."}, headers=alice.headers)
        assert down.status_code == 200 and (await down.get_json())["companyName"] == "Kijko Holding B.V."
        assert stripe_server.object(customer_id)["name"] == "Kijko B.V."
        assert (await (await web.get(DETAILS, headers=alice.headers)).get_json())["companyName"] == (
            "Kijko Holding B.V."
        )
        again = await web.patch(DETAILS, json={"btwNumber": "NL000099998B57"}, headers=alice.headers)
        assert again.status_code == 200
    customer = stripe_server.object(customer_id)
    assert customer["name"] == "Kijko Holding B.V." and customer["address"]["city"] == "Delft"
    assert _tax_ids(stripe_server, customer_id) == ["NL000099998B57"]


async def test_every_documented_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account
) -> None:
    from tests.test_openapi_errors import answers_not_as_documented, documented_errors, openapi

    gone = await add_member(kijko, alice.org_id, "owner")  # loses the membership below
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    spec = await openapi(client)
    problems: list[str] = []
    async with (
        stripe_app(kijko, make_settings, stripe_server) as (runtime, web),
        wrong_key_client(runtime, make_settings, stripe_server) as refused,
    ):
        card = await add_method(web, stripe_server, alice, "card")
        assert default_of(await listed(web, alice)) == card
        await subscribe(runtime, stripe_server, alice)
        for (method, template), statuses in BILLING_PAYMENTS_OPERATIONS.items():
            documented = documented_errors(spec, method, template)
            assert set(documented) == statuses | {"500"}, (method, template)
            path = template.replace("{pm_id}", card)
            body = {"json": {"type": "card"}} if template.endswith("/setup") else {}

            def send(app: Any, account: Account | None, at: str = path, verb: str = method, **extra: Any) -> Any:
                async def call() -> Any:
                    headers = dict(account.headers) if account else {}
                    headers.update(extra.pop("headers", {}))
                    return await app.open(at, method=verb.upper(), headers=headers, **extra)

                return call

            def outage(call: Any) -> Any:
                async def down() -> Any:
                    stripe_server.fail_next(1, "500")
                    return await call()

                return down

            cases: dict[str, Any] = {
                "401": send(web, None, **body),
                "403": send(web, gone, **body),
                "502": send(refused, alice, **body),
                "503": send(client, alice, **body),
                "503 outage": outage(send(web, alice, **body)),
            }
            if "404" in statuses:
                cases["404"] = send(web, alice, at=template.replace("{pm_id}", "pm_unknown"))
            if "409" in statuses:
                cases["409"] = send(web, alice)
            if "422" in statuses and method == "get":
                cases["422"] = send(web, alice, at=f"{path}?limit=0")
            if "400" in statuses:
                json_type = {"Content-Type": "application/json"}
                cases["400"] = send(web, alice, data=b'{"type": ', headers=json_type)
                cases["413"] = send(
                    web, alice, data=b'{"type": "' + b"x" * (2 * 1024 * 1024) + b'"}', headers=json_type
                )
                cases["415"] = send(
                    web, alice, data=b"type=card", headers={"Content-Type": "application/x-www-form-urlencoded"}
                )
                cases["422"] = send(web, alice, json={"type": "ideal"})
            problems += await answers_not_as_documented(method, template, cases, documented)
    assert problems == []
