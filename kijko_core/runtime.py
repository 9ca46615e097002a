"""A running Kijko, independent of any web framework: settings, pools, keyring and identity.

``Kijko.start(settings)`` resolves the embedded defaults (database, generated secrets),
migrates or checks the schema, connects the pools and starts the identity provider.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
from databases import Database
from redis import asyncio as aioredis

from kijko_core.auth.provider import IdentityProvider
from kijko_core.billing import catalog, vies
from kijko_core.billing.plans import Plans, plans_of
from kijko_core.billing.stripe_api import Stripe
from kijko_core.config import Settings
from kijko_core.crypto import Keyring
from kijko_core.data_dir import DataDirectory
from kijko_core.db import migrate as migrations
from kijko_core.db.embedded import EmbeddedPostgres
from kijko_core.db.pools import DatabaseUrls, make_pool
from kijko_core.db.provision import RoleTimeouts, provision, role_urls
from kijko_core.db.roles import RoleNames
from kijko_core.db.session import ServiceCapability, load_service_capability
from kijko_core.egress import EgressGuard, make_egress_client
from kijko_core.errors import ConfigurationError
from kijko_core.http import make_http_client
from kijko_core.llm import tracing
from kijko_core.llm.clients import ProviderClients
from kijko_core.plugins import registry as plugin_registry
from kijko_core.prices import PriceTable
from kijko_core.sources.cache import ProviderCache
from kijko_core.storage import Storage, make_storage

EMBEDDED_DATABASE = "kijko"
# A Redis that does not answer within this fails the request (503) instead of hanging it.
REDIS_TIMEOUT_SECONDS = 2.0
#: How long a process uses the service capability it read before reading it again.
CAPABILITY_SECONDS = 60.0


@dataclass
class Kijko:
    settings: Settings
    urls: DatabaseUrls
    keyring: Keyring
    app_db: Database
    system_db: Database
    identity: IdentityProvider
    http: httpx.AsyncClient  # outbound calls to configured, trusted services; closed by ``stop``
    # Outbound calls to tenant-chosen addresses, through the egress guard; closed by ``stop``.
    egress: httpx.AsyncClient
    embedded: EmbeddedPostgres | None = field(default=None)
    # The one Redis client (rate limits, health; later the queue and Socket.IO), or None.
    redis: aioredis.Redis | None = field(default=None)
    # Uploaded files' bytes (the storage port) and the wizard's short cache of provider answers.
    storage: Storage | None = field(default=None)
    provider_cache: ProviderCache | None = field(default=None)
    # VIES's answers about BTW/VAT numbers (kijko_core/billing/vies.py), kept a while.
    vies_cache: ProviderCache | None = field(default=None)
    # What models cost (the shipped table or KIJKO_MODEL_PRICES_FILE's).
    prices: PriceTable = field(default_factory=PriceTable.shipped)
    # The plans and the default plan (the shipped file or KIJKO_PLANS_FILE's; decision 0150).
    plans: Plans = field(default_factory=lambda: Plans.parse(Plans.shipped_text(), "the shipped plans"))
    # The Stripe account (KIJKO_STRIPE_SECRET_KEY), or None: billing off (decision 0162).
    stripe: Stripe | None = field(default=None)
    # The LLM providers' SDK clients, kept alive across runs (decision 0128); closed by ``stop``.
    llm_clients: ProviderClients = field(init=False)

    _service_capability: ServiceCapability | None = field(init=False, default=None, repr=False)
    _capability_read_at: float = field(init=False, default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.llm_clients = ProviderClients(self.settings)

    async def service_capability(self) -> ServiceCapability:
        """The service capability, for service sessions (jobs, the scheduler, webhooks). Read
        again after ``CAPABILITY_SECONDS``: a rotated context key (docs/operations.md) reaches
        every running process within that time; until then their service work is refused and
        retried."""
        now = time.monotonic()
        if self._service_capability is None or now - self._capability_read_at > CAPABILITY_SECONDS:
            self._service_capability = await load_service_capability(self.system_db)
            self._capability_read_at = now
        return self._service_capability

    def forget_service_capability(self) -> None:
        """Read the capability again on the next use (after rotating the context key here)."""
        self._service_capability = None

    @property
    def roles(self) -> RoleNames:
        return RoleNames.from_prefix(self.settings.db_role_prefix)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
        egress_guard: EgressGuard | None = None,
        check_prices: bool = True,
    ) -> Kijko:
        """Start everything; ``http_transport`` carries ``kijko.http``'s requests (a stand-in
        in tests); ``egress_guard`` decides ``kijko.egress``'s (default: from the settings);
        ``check_prices``: refuse to start while the Stripe Prices differ from the plans
        (decision 0166)."""
        embedded: EmbeddedPostgres | None = None
        http: httpx.AsyncClient | None = None
        egress: httpx.AsyncClient | None = None
        prices = PriceTable.load(settings.model_prices_file)  # a bad file stops start-up, line by line
        plans = plans_of(settings)  # the same for the plans file and KIJKO_DEFAULT_PLAN
        # Skill/reflex type plugins: checked and logged now; a broken one is skipped, never fatal.
        plugin_registry.load()
        account = Stripe.from_settings(settings)
        try:
            if account is not None and check_prices:
                # The plans' Stripe Prices as the plans file says, or no start (decision 0166);
                # operator commands that sell nothing (``kijko users``…) skip it.
                await catalog.require_prices(account, plans)
            urls, embedded = await resolve_database(settings)
            keyring = resolve_keyring(settings)
            roles = RoleNames.from_prefix(settings.db_role_prefix)
            if settings.mode == "embedded":
                await migrations.migrate(urls.migration, roles)
            else:
                behind = await migrations.pending(urls.migration)
                if behind:
                    names = ", ".join(m.label for m in behind)
                    raise migrations.SchemaBehind(
                        [f"the database schema is behind, pending migrations: {names}; run `kijko migrate` first"]
                    )
            app_db = make_pool(urls.app, size=settings.db_pool_size)
            system_db = make_pool(urls.system, size=settings.db_system_pool_size)
            await app_db.connect()
            await system_db.connect()
            http = make_http_client(settings, http_transport)
            egress = make_egress_client(settings, egress_guard)
            redis = make_redis(settings)  # a bad URL fails here, with the cleanup below
            storage = make_storage(settings.files_dir)
            identity = make_identity_provider(settings, system_db, keyring, http)
            await identity.start()
        except BaseException:
            if account is not None:
                await account.aclose()
            if http is not None:
                await http.aclose()
            if egress is not None:
                await egress.aclose()
            if embedded is not None:
                embedded.stop()
            raise
        return cls(
            settings,
            urls,
            keyring,
            app_db,
            system_db,
            identity,
            http,
            egress,
            embedded,
            redis,
            storage=storage,
            provider_cache=ProviderCache(redis, settings.provider_cache_seconds),
            vies_cache=vies.make_cache(redis, settings),
            prices=prices,
            plans=plans,
            stripe=account,
        )

    async def stop(self) -> None:
        # Traces of the last runs are still being sent through ``http``: let them arrive.
        await tracing.flush()
        if self.redis is not None:
            await self.redis.aclose()
        await self.identity.close()
        await self.http.aclose()
        await self.egress.aclose()
        await self.llm_clients.aclose()
        if self.stripe is not None:
            await self.stripe.aclose()
        await self.app_db.disconnect()
        await self.system_db.disconnect()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def make_identity_provider(
    settings: Settings, system_db: Database, keyring: Keyring, http: httpx.AsyncClient
) -> IdentityProvider:
    if settings.auth_provider == "keycloak":
        from kijko_core.auth.keycloak.provider import KeycloakProvider

        return KeycloakProvider(settings, system_db, keyring, http)
    from kijko_core.auth.local.provider import LocalProvider

    return LocalProvider(settings, system_db, keyring)


def make_redis(settings: Settings) -> aioredis.Redis | None:
    """A client for ``KIJKO_REDIS_URL``. It connects on first use: a Redis that is down makes
    the requests that need it fail (503), not the start-up."""
    if not settings.redis_url:
        return None
    return aioredis.from_url(
        settings.redis_url.get_secret_value(),
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )


def resolve_keyring(settings: Settings) -> Keyring:
    if settings.encryption_keys is not None:
        try:
            return Keyring.from_setting(settings.encryption_keys.get_secret_value())
        except ValueError:
            raise ConfigurationError(["KIJKO_ENCRYPTION_KEYS: not a comma-separated list of Fernet keys"]) from None
    data = DataDirectory(settings.data_dir).ensure()
    return Keyring([data.secret("encryption-key", Keyring.generate_key)])


async def resolve_database(settings: Settings) -> tuple[DatabaseUrls, EmbeddedPostgres | None]:
    """The configured URLs, or an embedded server started and provisioned in the data dir."""
    if not settings.embedded_database:
        assert settings.database_url and settings.system_database_url
        assert settings.migration_database_url
        return (
            DatabaseUrls(
                settings.database_url.get_secret_value(),
                settings.system_database_url.get_secret_value(),
                settings.migration_database_url.get_secret_value(),
            ),
            None,
        )
    data = DataDirectory(settings.data_dir).ensure()
    server = EmbeddedPostgres(data.postgres_dir)
    await asyncio.to_thread(server.start)
    try:
        roles = RoleNames.from_prefix(settings.db_role_prefix)
        passwords = {kind: data.secret(f"db-{kind}-password") for kind in ("owner", "app", "system")}
        await provision(
            server.admin_dsn(),
            database=EMBEDDED_DATABASE,
            roles=roles,
            passwords=passwords,
            timeouts=role_timeouts(settings),
            own_cluster=True,  # the embedded server holds nothing but Kijko's database
        )
    except BaseException:
        server.stop()
        raise
    urls = role_urls(server.admin_dsn(), database=EMBEDDED_DATABASE, roles=roles, passwords=passwords)
    return urls, server


def role_timeouts(settings: Settings) -> RoleTimeouts:
    return RoleTimeouts(
        statement_ms=settings.db_statement_timeout_ms,
        idle_in_transaction_ms=settings.db_idle_in_transaction_timeout_ms,
        lock_ms=settings.db_lock_timeout_ms,
    )
