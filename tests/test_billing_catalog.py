"""The plans' Stripe Prices (issue 9 §1, decision 0166): ``check_prices`` says, one line per
mismatch, where Stripe differs from the plans file; ``Kijko.start`` refuses to start on any (and
when Stripe cannot be asked); ``sync_prices`` creates what is missing in test mode only, with an
idempotency key on every write, and never changes an existing Price. ``kijko billing check|sync``
run the same. Against the Stripe stand-in, and Stripe's test mode when ``KIJKO_TEST_STRIPE_KEY``
is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe
from click.testing import CliRunner

from kijko_cli.main import cli
from kijko_core.billing import catalog
from kijko_core.billing.plans import Plans, plans_of
from kijko_core.billing.stripe_api import Stripe
from kijko_core.config import load_settings
from kijko_core.errors import ConfigurationError
from kijko_core.runtime import Kijko
from tests.billing_kit import WEBHOOK_SECRET, make_prices, stripe_settings
from tests.net import free_port
from tests.stripe_server import DEFAULT_KEY, StripeServer
from tests.test_cli import runner as runner  # noqa: F401 - fixture

SHIPPED = Plans.parse(Plans.shipped_text(), "the shipped plans")
KEYS = ["kijko_pro_monthly", "kijko_pro_annually", "kijko_teams_monthly", "kijko_teams_annually"]
STRIPE_TEST_KEY = os.environ.get("KIJKO_TEST_STRIPE_KEY", "")
TARGETS = ["stand-in"] + (["stripe-test-mode"] if STRIPE_TEST_KEY else [])


def account(server: StripeServer, key: str = DEFAULT_KEY) -> Stripe:
    settings = load_settings(
        stripe_secret_key=key,
        stripe_webhook_secrets=WEBHOOK_SECRET,
        stripe_api_base=server.url,
        stripe_max_network_retries=0,
    )
    found = Stripe.from_settings(settings)
    assert found is not None
    return found


def price(client: stripe.StripeClient, key: str, amount: int, **params: Any) -> Any:
    product = client.v1.products.create({"name": f"Product of {key}"})
    return client.v1.prices.create({"product": product.id, "unit_amount": amount, "lookup_key": key, **params})


@pytest.fixture
async def stand_in(stripe_server: StripeServer) -> AsyncIterator[Stripe]:
    found = account(stripe_server)
    yield found
    await found.aclose()


# --- check ---------------------------------------------------------------------------------


async def test_without_prices_each_missing_one_is_a_line(stand_in: Stripe) -> None:
    lines = await catalog.check_prices(stand_in, SHIPPED)
    assert lines == [
        f"Stripe Price {key} (plan {plan}, {interval}): missing: no Stripe Price has this lookup_key; expected "
        f"unit_amount {amount} eur every 1 {unit} (`kijko billing sync` creates it in a test-mode account)"
        for key, plan, interval, amount, unit in [
            ("kijko_pro_monthly", "pro", "monthly", 2900, "month"),
            ("kijko_pro_annually", "pro", "annually", 28800, "year"),
            ("kijko_teams_monthly", "teams", "monthly", 7900, "month"),
            ("kijko_teams_annually", "teams", "annually", 79200, "year"),
        ]
    ]


async def test_each_difference_is_a_line_with_expected_and_found(stripe_server: StripeServer, stand_in: Stripe) -> None:
    client = stripe_server.client()
    wrong_amount = price(client, "kijko_pro_monthly", 3900, currency="eur", recurring={"interval": "month"})
    wrong_currency_and_interval = price(
        client, "kijko_pro_annually", 28800, currency="usd", recurring={"interval": "month"}
    )
    one_time = price(client, "kijko_teams_monthly", 7900, currency="eur")
    every_two_years = price(
        client, "kijko_teams_annually", 79200, currency="eur", recurring={"interval": "year", "interval_count": 2}
    )

    lines = await catalog.check_prices(stand_in, SHIPPED)

    assert lines == [
        f"Stripe Price kijko_pro_monthly (plan pro, monthly): {wrong_amount.id}: amount differs: "
        "expected unit_amount 2900, found 3900",
        f"Stripe Price kijko_pro_annually (plan pro, annually): {wrong_currency_and_interval.id}: currency differs: "
        "expected eur, found usd",
        f"Stripe Price kijko_pro_annually (plan pro, annually): {wrong_currency_and_interval.id}: interval differs: "
        "expected every 1 year, found every 1 month",
        f"Stripe Price kijko_teams_monthly (plan teams, monthly): {one_time.id} is not recurring (a one-time "
        "price); expected every 1 month",
        f"Stripe Price kijko_teams_annually (plan teams, annually): {every_two_years.id}: interval differs: "
        "expected every 1 year, found every 2 year",
    ]


async def test_an_archived_price_or_product_is_a_mismatch(stripe_server: StripeServer, stand_in: Stripe) -> None:
    make_prices(stripe_server, SHIPPED)
    client = stripe_server.client()
    assert await catalog.check_prices(stand_in, SHIPPED) == []
    prices = {p.lookup_key: p for p in client.v1.prices.list({"lookup_keys": KEYS}).data}
    client.v1.prices.update(prices["kijko_pro_monthly"].id, {"active": False})
    client.v1.products.update(prices["kijko_teams_annually"].product, {"active": False})

    lines = await catalog.check_prices(stand_in, SHIPPED)

    assert lines == [
        f"Stripe Price kijko_pro_monthly (plan pro, monthly): {prices['kijko_pro_monthly'].id} is archived "
        "(inactive); expected an active Price",
        *[
            f"Stripe Price {key} (plan teams, {interval}): {prices[key].id}: its product {prices[key].product} is "
            "archived; expected an active product"
            for key, interval in [("kijko_teams_monthly", "monthly"), ("kijko_teams_annually", "annually")]
        ],
    ]


# --- sync ----------------------------------------------------------------------------------


@dataclass
class Target:
    """A Stripe to sync against, with plans whose lookup_keys are this test's own (test mode is
    a shared account), and what to archive afterwards."""

    stripe: Stripe
    plans: Plans
    keys: list[str]
    server: StripeServer | None = None
    created: list[str] = field(default_factory=list)


@pytest.fixture(params=TARGETS)
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    if request.param == "stand-in":
        with StripeServer() as server:
            found = Target(account(server), SHIPPED, KEYS, server)
            yield found
            await found.stripe.aclose()
        return
    assert STRIPE_TEST_KEY.startswith(("sk_test_", "rk_test_")), "KIJKO_TEST_STRIPE_KEY must be a test-mode key"
    tag = uuid.uuid4().hex[:12]
    plans = Plans.parse(Plans.shipped_text().replace('= "kijko_', f'= "kijko_{tag}_'), "the tagged plans")
    settings = load_settings(stripe_secret_key=STRIPE_TEST_KEY, stripe_webhook_secrets=WEBHOOK_SECRET)
    real = Stripe.from_settings(settings)
    assert real is not None
    found = Target(real, plans, [key.replace("kijko_", f"kijko_{tag}_") for key in KEYS])
    yield found
    client = stripe.StripeClient(STRIPE_TEST_KEY)
    for item in client.v1.prices.list({"lookup_keys": found.keys, "limit": 100}).data:
        client.v1.prices.update(item.id, {"active": False, "lookup_key": ""})
    for product_id in found.created:
        client.v1.products.update(product_id, {"active": False})
    await real.aclose()


async def test_sync_creates_the_missing_products_and_prices_once(target: Target) -> None:
    assert len(await catalog.check_prices(target.stripe, target.plans)) == 4

    done = await catalog.sync_prices(target.stripe, target.plans)
    target.created += [line.split()[1].rstrip(":") for line in done if line.startswith("created prod_")]

    assert await catalog.check_prices(target.stripe, target.plans) == []
    created = [line for line in done if line.startswith("created price_")]
    assert len(created) == 4 and all(any(key in line for line in created) for key in target.keys)
    prices = {
        p.lookup_key: p
        for p in (await target.stripe.v1.prices.list_async({"lookup_keys": target.keys, "expand": ["data.product"]}))
    }
    assert {key: (p.product.metadata["plan"], p.metadata["interval"]) for key, p in prices.items()} == {
        target.keys[0]: ("pro", "monthly"),
        target.keys[1]: ("pro", "annually"),
        target.keys[2]: ("teams", "monthly"),
        target.keys[3]: ("teams", "annually"),
    }
    assert prices[target.keys[0]].product.id == prices[target.keys[1]].product.id  # one product per plan
    assert prices[target.keys[0]].product.id != prices[target.keys[2]].product.id

    again = await catalog.sync_prices(target.stripe, target.plans)
    assert [line for line in again if line.startswith("created")] == []
    assert len([line for line in again if line.endswith("matches")]) == 4

    if target.server is not None:  # what went over the wire: every write with its idempotency key
        writes = [r for r in target.server.requests if r.method == "POST"]
        assert len(writes) == 6  # 2 products, 4 prices
        assert all(r.headers.get("idempotency-key", "").startswith("kijko-catalog-") for r in writes)


async def test_sync_leaves_a_wrong_price_alone_and_replaces_it_once_archived(
    stripe_server: StripeServer, stand_in: Stripe
) -> None:
    make_prices(stripe_server, SHIPPED)
    client = stripe_server.client()
    wrong = client.v1.prices.list({"lookup_keys": ["kijko_pro_monthly"]}).data[0]
    client.v1.prices.update(wrong.id, {"lookup_key": ""})
    wrong = price(client, "kijko_pro_monthly", 3900, currency="eur", recurring={"interval": "month"})
    before = len(stripe_server.requests)

    done = await catalog.sync_prices(stand_in, SHIPPED)

    assert [r.method for r in stripe_server.requests[before:]] == ["GET"]  # nothing written
    assert (
        f"left alone: Stripe Price kijko_pro_monthly (plan pro, monthly): {wrong.id}: amount differs: "
        "expected unit_amount 2900, found 3900"
    ) in done
    assert (
        f"Stripe Price kijko_pro_monthly (plan pro, monthly): Stripe Prices cannot be changed: archive {wrong.id} "
        f"(Dashboard, or `stripe prices update {wrong.id} --active=false`) and run `kijko billing sync` again"
    ) in done
    assert client.v1.prices.retrieve(wrong.id).unit_amount == 3900

    client.v1.prices.update(wrong.id, {"active": False})  # the operator archives it
    done = await catalog.sync_prices(stand_in, SHIPPED)

    replacement = client.v1.prices.list({"lookup_keys": ["kijko_pro_monthly"]}).data[0]
    assert replacement.id != wrong.id and (replacement.unit_amount, replacement.active) == (2900, True)
    assert client.v1.prices.retrieve(wrong.id).lookup_key is None  # transferred
    pro = client.v1.prices.list({"lookup_keys": ["kijko_pro_annually"]}).data[0]
    assert replacement.product == pro.product  # the plan's product
    assert (
        f"created {replacement.id}: Stripe Price kijko_pro_monthly (plan pro, monthly): unit_amount 2900 eur every "
        f"1 month, replacing the archived {wrong.id}"
    ) in done
    assert await catalog.check_prices(stand_in, SHIPPED) == []


async def test_sync_refuses_a_live_key_before_any_request(stripe_server: StripeServer) -> None:
    live_key = "sk_live_kijko_stand_in"
    stripe_server.api_keys.add(live_key)
    live = account(stripe_server, live_key)
    try:
        with pytest.raises(ConfigurationError) as raised:
            await catalog.sync_prices(live, SHIPPED)
    finally:
        await live.aclose()
    assert raised.value.problems == [
        "KIJKO_STRIPE_SECRET_KEY: `kijko billing sync` creates Prices in a test-mode account only (an sk_test_… "
        "or rk_test_… key); create live Prices in the Stripe Dashboard and check them with `kijko billing check`"
    ]
    assert stripe_server.requests == []


# --- start-up ------------------------------------------------------------------------------


async def test_kijko_start_refuses_until_the_prices_exist(make_settings: Any, stripe_server: StripeServer) -> None:
    settings = make_settings(**stripe_settings(stripe_server))

    with pytest.raises(ConfigurationError) as raised:
        await Kijko.start(settings)

    assert raised.value.problems[:-1] == await _lines(stripe_server, settings)
    assert len(raised.value.problems) == 5 and all("missing" in line for line in raised.value.problems[:4])
    assert raised.value.problems[-1] == (
        "the Stripe Prices differ from the plans file: `kijko billing check` lists them again"
    )

    make_prices(stripe_server, plans_of(settings))
    runtime = await Kijko.start(settings)
    try:
        assert runtime.stripe is not None and not runtime.stripe.livemode
    finally:
        await runtime.stop()

    client = stripe_server.client()
    teams = client.v1.prices.list({"lookup_keys": ["kijko_teams_monthly"]}).data[0]
    client.v1.prices.update(teams.id, {"active": False})
    with pytest.raises(ConfigurationError) as raised:
        await Kijko.start(settings)
    assert raised.value.problems[0] == (
        f"Stripe Price kijko_teams_monthly (plan teams, monthly): {teams.id} is archived (inactive); "
        "expected an active Price"
    )


async def _lines(server: StripeServer, settings: Any) -> list[str]:
    found = account(server)
    try:
        return await catalog.check_prices(found, plans_of(settings))
    finally:
        await found.aclose()


async def test_kijko_start_refuses_when_stripe_cannot_be_asked(make_settings: Any, stripe_server: StripeServer) -> None:
    unreachable = make_settings(**stripe_settings(stripe_server, stripe_api_base=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ConfigurationError) as raised:
        await Kijko.start(unreachable)
    assert raised.value.problems == [
        "KIJKO_STRIPE_SECRET_KEY: cannot check the plans' Stripe Prices: Stripe is unreachable "
        "(KIJKO_STRIPE_API_BASE); Kijko does not start with unchecked prices"
    ]

    wrong_key = make_settings(**stripe_settings(stripe_server, stripe_secret_key="sk_test_not_this_account"))
    with pytest.raises(ConfigurationError) as raised:
        await Kijko.start(wrong_key)
    assert raised.value.problems == [
        "KIJKO_STRIPE_SECRET_KEY: cannot check the plans' Stripe Prices: Stripe refused the key"
    ]


# --- the command line ----------------------------------------------------------------------


def cli_env(server: StripeServer) -> dict[str, str]:
    return {
        "KIJKO_STRIPE_SECRET_KEY": DEFAULT_KEY,
        "KIJKO_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "KIJKO_STRIPE_API_BASE": server.url,
        "KIJKO_STRIPE_MAX_NETWORK_RETRIES": "0",
    }


def test_kijko_billing_check_and_sync(runner: CliRunner, stripe_server: StripeServer) -> None:  # noqa: F811
    env = cli_env(stripe_server)

    checked = runner.invoke(cli, ["billing", "check"], env=env)
    assert checked.exit_code == 1, checked.output
    assert len(checked.stdout.splitlines()) == 4
    assert all(key in checked.stdout for key in KEYS)
    assert checked.stderr == "4 mismatch(es) between the plans file and Stripe\n"

    synced = runner.invoke(cli, ["billing", "sync"], env=env)
    assert synced.exit_code == 0, synced.output
    lines = synced.stdout.splitlines()
    assert [line.split()[1][:5] for line in lines[:-1]] == ["prod_", *["price"] * 2, "prod_", *["price"] * 2]
    assert lines[-1] == "all 4 prices match"

    checked = runner.invoke(cli, ["billing", "check"], env=env)
    assert (checked.exit_code, checked.stdout, checked.stderr) == (0, "all 4 prices match\n", "")

    live = runner.invoke(cli, ["billing", "sync"], env={**env, "KIJKO_STRIPE_SECRET_KEY": "sk_live_kijko_stand_in"})
    assert live.exit_code == 2
    assert live.stderr.startswith("configuration error: KIJKO_STRIPE_SECRET_KEY: `kijko billing sync` creates Prices")


def test_kijko_billing_without_stripe_or_with_it_down(runner: CliRunner) -> None:  # noqa: F811
    off = runner.invoke(cli, ["billing", "check"])
    assert off.exit_code == 2
    assert off.stderr == "configuration error: KIJKO_STRIPE_SECRET_KEY: not set, so billing is off\n"

    down = {
        "KIJKO_STRIPE_SECRET_KEY": DEFAULT_KEY,
        "KIJKO_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "KIJKO_STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",
        "KIJKO_STRIPE_MAX_NETWORK_RETRIES": "0",
    }
    for command in ("check", "sync"):
        result = runner.invoke(cli, ["billing", command], env=down)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: The payment provider is unavailable"), result.stderr
        assert "Traceback" not in result.output


async def test_sync_after_a_plan_was_retired_makes_a_new_product(stripe_server: StripeServer, stand_in: Stripe) -> None:
    """The operator archives the pro product and its Prices; the next sync makes a new product
    (its idempotency key names the archived Prices: not a replay of the first creation)."""
    await catalog.sync_prices(stand_in, SHIPPED)
    client = stripe_server.client()
    old = {p.lookup_key: p for p in client.v1.prices.list({"lookup_keys": KEYS[:2]}).data}
    for item in old.values():
        client.v1.prices.update(item.id, {"active": False})
    client.v1.products.update(old["kijko_pro_monthly"].product, {"active": False})

    done = await catalog.sync_prices(stand_in, SHIPPED)

    new = {p.lookup_key: p for p in client.v1.prices.list({"lookup_keys": KEYS[:2]}).data}
    assert new["kijko_pro_monthly"].product == new["kijko_pro_annually"].product != old["kijko_pro_monthly"].product
    assert f"created {new['kijko_pro_monthly'].product}: the Stripe Product of plan pro (Kijko Pro)" in done
    assert await catalog.check_prices(stand_in, SHIPPED) == []
