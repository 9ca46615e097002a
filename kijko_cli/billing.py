"""``kijko billing``: the operator's billing commands. ``check`` and ``sync`` compare the plans
file's Stripe Prices with the configured Stripe account and create the missing ones in test mode
(docs/billing.md "Stripe setup", decision 0166); they read the settings like every command and
need no database. Other billing commands (the webhook inbox's) join this group from here."""

from __future__ import annotations

import sys

import click

from kijko_cli.billing_inbox import inbox
from kijko_cli.common import EXIT_CONFIGURATION, EXIT_FAILED, one_line_errors, run, settings
from kijko_core.billing import catalog
from kijko_core.billing.plans import plans_of
from kijko_core.billing.stripe_api import Stripe, StripeRefused
from kijko_core.config import Settings
from kijko_core.errors import UpstreamError


@click.group()
def billing() -> None:
    """Billing: the plans' Stripe Prices."""


def _account(config: Settings) -> Stripe:
    account = Stripe.from_settings(config)
    if account is None:
        click.echo("configuration error: KIJKO_STRIPE_SECRET_KEY: not set, so billing is off", err=True)
        sys.exit(EXIT_CONFIGURATION)
    return account


def _refused(error: StripeRefused) -> UpstreamError:
    """A request Stripe refused (one line with Stripe's reason, never a traceback)."""
    cause = error.__cause__
    reason = getattr(cause, "user_message", None) or type(cause).__name__
    return UpstreamError(f"Stripe refused a request: {reason}")


def _report_check(problems: list[str], count: int) -> None:
    if problems:
        for line in problems:
            click.echo(line)
        click.echo(f"{len(problems)} mismatch(es) between the plans file and Stripe", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"all {count} prices match")


@billing.command("check")
def check() -> None:
    """Check that each plan × interval of the plans file has its Stripe Price (by lookup_key)
    with the file's amount, currency and interval: exit 0 when all match, 1 with one line per
    mismatch. What Kijko checks at start-up."""
    config = settings()
    with one_line_errors():
        plans = plans_of(config)
    account = _account(config)

    async def work() -> list[str]:
        try:
            return await catalog.check_prices(account, plans)
        except StripeRefused as error:
            raise _refused(error) from None
        finally:
            await account.aclose()

    _report_check(run(work), len(catalog.wanted_prices(plans)))


@billing.command("sync")
def sync() -> None:
    """Create the plans' missing Stripe Products and Prices, in a test-mode account only; a
    Price with other terms is left alone and reported (archive it and run sync again). Then
    check: exit 0 when all prices match, 1 otherwise."""
    config = settings()
    with one_line_errors():
        plans = plans_of(config)
    account = _account(config)

    async def work() -> tuple[list[str], list[str]]:
        try:
            done = await catalog.sync_prices(account, plans)
            return done, await catalog.check_prices(account, plans)
        except StripeRefused as error:
            raise _refused(error) from None
        finally:
            await account.aclose()

    done, problems = run(work)
    for line in done:
        click.echo(line)
    _report_check(problems, len(catalog.wanted_prices(plans)))


billing.add_command(inbox)
