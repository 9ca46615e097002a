"""Every setting, read from ``KIJKO_*`` environment variables (and an optional ``.env`` file).

``load_settings()`` validates everything at start-up and raises ``ConfigurationError`` with one
readable line per bad value, e.g. ``KIJKO_DATABASE_URL: not a postgres URL``.
docs/configuration.md lists every setting; keep the two in step.

Secrets are secret types: ``repr``/``str`` of the settings, a log line or a JSON dump show
them masked; code that needs the value asks for it with ``.get_secret_value()``
(docs/decisions/0043-secret-settings.md).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import platformdirs
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kijko_core.errors import ConfigurationError

ROLE_PREFIX_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"
DEFAULT_CORS_ORIGINS = ["https://app.kijko.nl", "http://localhost:3000"]
#: The git providers a repository URL may name (KIJKO_GIT_HOSTS entries use these names).
GIT_PROVIDERS = ("github", "gitlab", "bitbucket", "azure")

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


MASK = "***"
_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pass", "sslpassword"})


def mask_url(url: str) -> str:
    """The URL with its password (in the user info or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK  # not parseable: show nothing of it
    shown = url  # replaced piece by piece: urlunsplit would rewrite "unix:///x" as "unix:/x"
    if password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        masked = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
        shown = shown.replace(f"//{parts.netloc}", f"//{masked}", 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs):
        query = urlencode([(k, MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
        shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown


class SecretUrl(SecretStr):
    """A URL that may carry a password: shown with the password masked
    (``postgresql://kijko_app:***@db:5432/kijko``), whole only from ``get_secret_value()``."""

    def _display(self) -> str:
        return mask_url(self.get_secret_value())


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _postgres_url(value: Any) -> str | None:
    value = _plain(value)
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("not a postgres URL")
    return str(value)


SMTP_SCHEMES = {"smtp": 587, "smtps": 465}


def check_smtp_url(url: str) -> None:
    """``smtp://[user:pass@]host[:587]`` (STARTTLS), ``smtps://…[:465]`` (TLS from the first
    byte), or ``smtp://host:25?starttls=off`` for a relay without TLS (no credentials then: they
    would cross the network in clear). Raises ``ValueError`` naming what is wrong, never the URL."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number in range raises here
    except ValueError:
        raise ValueError("not an SMTP URL (smtp://user:password@host:587 or smtps://…)") from None
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise ValueError("not an SMTP URL (smtp://user:password@host:587 or smtps://…)")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if set(query) - {"starttls"} or query.get("starttls", "on") not in ("on", "off"):
        raise ValueError("the only option of an SMTP URL is starttls=off (smtp:// only)")
    if query.get("starttls") == "off" and (parts.scheme == "smtps" or parts.username or parts.password):
        raise ValueError("starttls=off is for smtp:// without credentials (they would travel in clear)")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("an SMTP URL has no path or fragment")


def sender_address(value: str) -> str | None:
    """The address of a From value (``Kijko <kijko@example.com>`` or ``kijko@example.com``), or
    None if it is not one."""
    from email.utils import parseaddr

    if any(c in value for c in "\r\n"):
        return None
    _, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    return address if at and local and domain and " " not in address else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIJKO_", env_file=".env", extra="ignore", frozen=True)

    mode: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("kijko")))
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = None

    database_url: SecretUrl | None = None
    system_database_url: SecretUrl | None = None
    migration_database_url: SecretUrl | None = None
    db_role_prefix: str = Field(default="kijko", pattern=ROLE_PREFIX_PATTERN)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_system_pool_size: int = Field(default=2, ge=1, le=50)
    db_statement_timeout_ms: int = Field(default=15_000, ge=100)
    db_idle_in_transaction_timeout_ms: int = Field(default=30_000, ge=100)
    db_lock_timeout_ms: int = Field(default=5_000, ge=10)

    redis_url: SecretUrl | None = None

    # Realtime (Socket.IO, kijko_server/realtime; docs/realtime.md).
    realtime_recheck_seconds: float = Field(default=5.0, ge=0.5, le=300)
    realtime_refresh_lead_seconds: int = Field(default=300, ge=0, le=3600)
    realtime_channel: str = Field(default="kijko-realtime", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    realtime_ping_interval_seconds: float = Field(default=25.0, ge=1, le=300)
    realtime_ping_timeout_seconds: float = Field(default=20.0, ge=1, le=300)
    # Per user and API process, handshakes under way included (decision 0097).
    realtime_max_connections_per_user: int = Field(default=20, ge=1, le=10_000)

    auth_provider: Literal["local", "keycloak"] = "local"
    jwt_issuer: str | None = None
    jwt_audience: str = "kijko-api"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=900)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    refresh_reuse_grace_seconds: int = Field(default=10, ge=0, le=300)
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwks_refresh_interval_seconds: int = Field(default=60, ge=1)
    password_hash_threads: int = Field(default=2, ge=1, le=32)

    keycloak_url: str | None = None
    keycloak_realm: str = "kijko"
    keycloak_client_id: str = "kijko-api"
    keycloak_client_secret: SecretStr | None = None
    oauth_redirect_url: str = "http://localhost:3000/auth/callback"
    oauth_state_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    oauth_handoff_ttl_seconds: int = Field(default=60, ge=10, le=600)
    keycloak_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # The egress guard (kijko_core/egress.py, docs/egress.md) and git through it.
    egress_allow_cidrs: CommaList = Field(default_factory=list)
    egress_max_response_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    egress_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    git_hosts: CommaList = Field(default_factory=list)
    git_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    git_clone_timeout_seconds: float = Field(default=900.0, gt=0, le=24 * 3600)
    git_clone_max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)
    git_max_processes: int = Field(default=8, ge=1, le=256)

    # What one ingestion run reads (docs/ingestion-sources.md#caps): after the filters, at
    # most this many files and bytes (more ends the run), and no file larger than this.
    ingestion_max_total_bytes: int = Field(default=500 * 1024 * 1024, ge=1024, le=1024**4)
    ingestion_max_files: int = Field(default=50_000, ge=1, le=10_000_000)
    ingestion_max_file_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, le=1024**3)

    encryption_keys: SecretStr | None = None

    # Git-provider connections of the wizard (docs/providers.md): a provider without its
    # client id and secret answers 409 PROVIDER_NOT_CONFIGURED. Base URLs are settings so a
    # self-hosted GitLab (and the tests' stand-ins) can be used.
    git_oauth_redirect_url: str = "http://localhost:3000/oauth/callback"
    git_oauth_state_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    gitlab_client_id: str | None = None
    gitlab_client_secret: SecretStr | None = None
    gitlab_url: str = "https://gitlab.com"
    bitbucket_client_id: str | None = None
    bitbucket_client_secret: SecretStr | None = None
    bitbucket_url: str = "https://bitbucket.org"
    bitbucket_api_url: str = "https://api.bitbucket.org"
    provider_cache_seconds: int = Field(default=60, ge=0, le=3600)

    # What models cost (docs/model-prices.md): a TOML file replacing the shipped price table.
    model_prices_file: Path | None = None

    # Plans and quotas (docs/billing.md): a TOML file replacing the shipped plans, and the plan
    # every organization is on until billing says otherwise (self-hosters: enterprise).
    plans_file: Path | None = None
    default_plan: Literal["free", "pro", "teams", "enterprise"] = "free"

    # Stripe (docs/billing.md): without a secret key billing is off (billing routes 503
    # BILLING_DISABLED, every organization on KIJKO_DEFAULT_PLAN). The webhook endpoint's signing
    # secrets, comma-separated (old and new while rotating); the API's address (tests: the
    # stand-in); retries of network failures and 5xx/409 answers (each write keeps its
    # idempotency key); how long a subscription stays on its plan after a payment failed.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secrets: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    stripe_timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    stripe_max_network_retries: int = Field(default=2, ge=0, le=5)
    billing_grace_days: int = Field(default=7, ge=0, le=90)
    # Days a webhook event processed (or ignored) stays in the inbox, for operators.
    stripe_inbox_retention_days: int = Field(default=90, ge=7, le=3650)

    # LLM providers of the ``llm`` skill type (docs/llm-providers.md): the platform's keys and
    # base URLs (an organization's own key takes precedence), the time limit of one call and
    # the retries of transient failures (429, 5xx, 529, timeouts, resets).
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    llm_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_retry_base_seconds: float = Field(default=1.0, ge=0, le=60)
    llm_retry_max_seconds: float = Field(default=30.0, ge=0, le=600)
    # Langfuse tracing of LLM calls: on when all three are set.
    langfuse_host: str | None = None
    langfuse_public_key: str | None = None
    langfuse_secret_key: SecretStr | None = None

    # Uploaded files (docs/configuration.md#uploads): the storage directory defaults to
    # ``files`` in the data dir.
    storage_dir: Path | None = None
    upload_max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    upload_max_request_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    upload_max_files: int = Field(default=20, ge=1, le=1000)
    upload_unattached_hours: int = Field(default=24, ge=1, le=24 * 365)

    cors_origins: CommaList = Field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))
    health_check_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    trusted_proxies: CommaList = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    rate_limit_auth_per_minute: int = Field(default=5, ge=1)
    rate_limit_refresh_per_minute: int = Field(default=30, ge=1)
    rate_limit_login_per_account_per_hour: int = Field(default=20, ge=1)

    # Background jobs and the worker (docs/jobs.md).
    job_retention_days: int = Field(default=14, ge=1, le=3650)
    job_retry_base_seconds: float = Field(default=10.0, ge=0, le=3600)
    job_retry_max_seconds: float = Field(default=3600.0, ge=0, le=7 * 24 * 3600)
    worker_concurrency: int = Field(default=8, ge=1, le=256)
    worker_grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    worker_poll_seconds: float = Field(default=10.0, gt=0, le=3600)
    serve_worker: Literal["auto", "on", "off"] = "auto"

    # Ingestion runs (docs/ingestion.md): how many run at once per organization (more wait,
    # queued), and how soon a waiting one looks for a free slot again.
    ingestion_concurrency_per_org: int = Field(default=2, ge=1, le=1000)
    ingestion_queue_recheck_seconds: float = Field(default=5.0, ge=0.1, le=600)

    # Habits (docs/habits.md): the shortest interval a schedule may fire at, and how many
    # failed runs in a row deactivate a habit.
    habit_min_interval_seconds: int = Field(default=60, ge=60, le=7 * 24 * 3600)
    habit_max_consecutive_failures: int = Field(default=5, ge=1, le=1000)

    # Skill executions (docs/executions.md): runs at once per organization over all workers
    # (more wait, pending), how soon a waiting one looks again, how long one may run, how long
    # an inline test may run, how many inline tests one user may start per minute (they run in
    # the request, outside the concurrency limit), and the monthly spend cap on the platform's
    # LLM keys.
    execution_concurrency_per_org: int = Field(default=4, ge=1, le=1000)
    execution_queue_recheck_seconds: float = Field(default=0.5, ge=0.05, le=600)
    execution_timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    execution_test_timeout_seconds: float = Field(default=60.0, gt=0, le=300)
    execution_test_rate_limit_per_minute: int = Field(default=20, ge=1, le=100_000)
    llm_monthly_spend_cap: Decimal | None = Field(default=None, ge=0, max_digits=20, decimal_places=6)
    llm_spend_cap_currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")

    # Reflexes (docs/reflexes.md): the largest webhook body the receiver reads, deliveries one
    # reflex may start per minute (counted after verification).
    reflex_webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    reflex_rate_limit_per_minute: int = Field(default=60, ge=1, le=100_000)
    # Failed runs in a row after which a reflex deactivates itself (like habits', decision 0135).
    reflex_max_consecutive_failures: int = Field(default=5, ge=1, le=1000)

    # Mail (docs/mail.md): SMTP when a URL is set, else the local outbox in the data dir.
    smtp_url: SecretUrl | None = None
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    mail_from: str | None = None

    # Project invitations (docs/members.md).
    app_url: str = "http://localhost:3000"
    invitation_ttl_hours: int = Field(default=168, ge=1, le=24 * 90)
    invitation_resends_per_hour: int = Field(default=3, ge=1, le=100)
    invitation_mails_per_hour: int = Field(default=100, ge=1, le=100_000)
    rate_limit_invitation_lookup_per_minute: int = Field(default=30, ge=1)

    # Product analytics intake (docs/analytics.md, decisions 0125–0127).
    analytics_rate_limit_per_minute: int = Field(default=120, ge=1, le=100_000)
    analytics_retention_days: int = Field(default=90, ge=1, le=3650)
    analytics_flush_seconds: float = Field(default=1.0, gt=0, le=60)
    analytics_buffer_max_events: int = Field(default=10_000, ge=100, le=1_000_000)

    # Billing details (docs/billing-details.md, decision 0160): BTW/VAT numbers are confirmed
    # with VIES (its REST API's check-vat-number; empty: checksum only) through the egress
    # guard, within a short time limit, its answers kept for a while, its use limited per user.
    vies_url: str | None = "https://ec.europa.eu/taxation_customs/vies/rest-api/check-vat-number"
    vies_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    vies_cache_seconds: int = Field(default=24 * 3600, ge=0, le=30 * 24 * 3600)
    # Validations one user may ask for per minute: VIES blocks a server that asks too much.
    vies_rate_limit_per_minute: int = Field(default=30, ge=1, le=100_000)

    # Chunking of ingested files (docs/chunking.md).
    ingestion_chunk_tokens: int = Field(default=512, ge=16, le=8192)
    ingestion_chunk_overlap_tokens: int = Field(default=64, ge=0, le=4096)
    ingestion_custom_chunker: str | None = None

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    _split_lists = field_validator("cors_origins", "trusted_proxies", "egress_allow_cidrs", "git_hosts", mode="before")(
        _split_commas
    )

    @field_validator("database_url", "system_database_url", "migration_database_url", mode="before")
    @classmethod
    def _check_postgres(cls, value: Any) -> str | None:
        return _postgres_url(value)

    @field_serializer(
        "database_url",
        "system_database_url",
        "migration_database_url",
        "redis_url",
        "smtp_url",
        when_used="json",
    )
    def _show_masked_url(self, value: SecretUrl | None) -> str | None:
        # Where the database is, without its password, is what someone reading a dump needs.
        return None if value is None else str(value)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _check_redis(cls, value: Any) -> str | None:
        value = _plain(value)
        if not value:
            return None
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("not a redis URL")
        return str(value)

    @field_validator("smtp_url", mode="before")
    @classmethod
    def _check_smtp(cls, value: Any) -> str | None:
        value = _plain(value)
        if not value:
            return None
        check_smtp_url(str(value))
        return str(value)

    @field_validator("vies_url", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        # KIJKO_VIES_URL= (empty) turns VIES off: BTW/VAT numbers are checked offline only.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("mail_from")
    @classmethod
    def _check_mail_from(cls, value: str | None) -> str | None:
        if value is not None and not sender_address(value):
            raise ValueError("not an email address (optionally with a name: Kijko <kijko@example.com>)")
        return value

    @field_validator("git_hosts")
    @classmethod
    def _check_git_hosts(cls, value: list[str]) -> list[str]:
        for item in value:
            provider, sep, url = item.partition("=")
            if not sep or provider.strip() not in GIT_PROVIDERS:
                raise ValueError(
                    "each entry must be provider=base_url with provider one of " + ", ".join(GIT_PROVIDERS)
                )
            parts = urlsplit(url.strip())
            try:
                port_ok = parts.port is None or parts.port > 0
            except ValueError:
                port_ok = False
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or not port_ok
                or parts.username is not None
                or parts.query
                or parts.fragment
            ):
                raise ValueError(
                    "each base_url must be an http(s) URL with a host and no credentials, query or fragment"
                )
        return [f"{p.strip()}={u.strip().rstrip('/')}" for p, _, u in (i.partition("=") for i in value)]

    @field_validator("trusted_proxies", "egress_allow_cidrs")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError("each entry must be an IP address or CIDR network") from None
        return value

    @field_validator(
        "public_url",
        "keycloak_url",
        "oauth_redirect_url",
        "jwt_issuer",
        "app_url",
        "git_oauth_redirect_url",
        "github_url",
        "github_api_url",
        "gitlab_url",
        "bitbucket_url",
        "bitbucket_api_url",
        "openai_base_url",
        "anthropic_base_url",
        "langfuse_host",
        "vies_url",
        "stripe_api_base",
    )
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError("not an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_mode(self) -> Settings:
        problems: list[tuple[str, str]] = []
        if self.mode == "production":
            for name in ("database_url", "system_database_url", "migration_database_url"):
                if getattr(self, name) is None:
                    problems.append((name, "required in production mode"))
            if self.encryption_keys is None:
                problems.append(("encryption_keys", "required in production mode"))
            if self.public_url is None:
                problems.append(("public_url", "required in production mode"))
        if self.auth_provider == "keycloak":
            if self.keycloak_url is None:
                problems.append(("keycloak_url", "required when KIJKO_AUTH_PROVIDER=keycloak"))
            if self.keycloak_client_secret is None:
                problems.append(("keycloak_client_secret", "required when KIJKO_AUTH_PROVIDER=keycloak"))
        if self.stripe_secret_key is not None:
            key = self.stripe_secret_key.get_secret_value()
            if not key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
                problems.append(("stripe_secret_key", "not a Stripe secret key (sk_test_…, sk_live_…, rk_…)"))
            if self.stripe_webhook_secrets is None:
                problems.append(("stripe_webhook_secrets", "required when KIJKO_STRIPE_SECRET_KEY is set"))
        if self.stripe_webhook_secrets is not None and not all(
            secret.strip().startswith("whsec_") for secret in self.stripe_webhook_secrets.get_secret_value().split(",")
        ):
            problems.append(("stripe_webhook_secrets", "each secret starts with whsec_ (comma-separated)"))
        if self.ingestion_chunk_overlap_tokens >= self.ingestion_chunk_tokens:
            problems.append(("ingestion_chunk_overlap_tokens", "must be less than KIJKO_INGESTION_CHUNK_TOKENS"))
        if self.smtp_url is not None and self.mail_from is None:
            problems.append(("mail_from", "required when KIJKO_SMTP_URL is set"))
        urls = (self.database_url, self.system_database_url, self.migration_database_url)
        if any(urls) and not all(urls):
            problems.append(
                (
                    "database_url",
                    "set KIJKO_DATABASE_URL, KIJKO_SYSTEM_DATABASE_URL and "
                    "KIJKO_MIGRATION_DATABASE_URL together, or none for the embedded database",
                )
            )
        langfuse = (self.langfuse_host, self.langfuse_public_key, self.langfuse_secret_key)
        if any(langfuse) and not all(langfuse):
            problems.append(
                (
                    "langfuse_host",
                    "set KIJKO_LANGFUSE_HOST, KIJKO_LANGFUSE_PUBLIC_KEY and KIJKO_LANGFUSE_SECRET_KEY together",
                )
            )
        if problems:
            raise ConfigurationError([f"KIJKO_{name.upper()}: {why}" for name, why in problems])
        return self

    @property
    def files_dir(self) -> Path:
        """Where uploaded files are stored: ``KIJKO_STORAGE_DIR``, or ``files`` in the data dir."""
        return self.storage_dir or self.data_dir / "files"

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        """The ``iss`` of tokens we sign (local) or accept (keycloak)."""
        if self.auth_provider == "keycloak":
            return self.jwt_issuer or f"{self.keycloak_url}/realms/{self.keycloak_realm}"
        return self.jwt_issuer or self.base_url


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; ``overrides`` win over the environment (tests, CLI flags)."""
    try:
        return Settings(**overrides)
    except ConfigurationError:
        raise
    except ValidationError as error:
        raise ConfigurationError(_describe(error)) from None


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        name = str(item["loc"][0]) if item["loc"] else ""
        if isinstance(item.get("ctx", {}).get("error"), ConfigurationError):
            lines.extend(item["ctx"]["error"].problems)
            continue
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"KIJKO_{name.upper()}: {message}" if name else message)
    return lines


#: ``KIJKO_*`` variables that are not settings: the test suite's, benchmarks' and fuzzers' own.
TOOL_VARIABLE_PREFIXES = ("KIJKO_TEST_", "KIJKO_BENCH_", "KIJKO_API_FUZZ")


def setting_variables() -> list[str]:
    """The environment variable of every setting (``KIJKO_DATABASE_URL``…)."""
    return ["KIJKO_" + name.upper() for name in Settings.model_fields]


def unknown_variables(names: Iterable[str]) -> list[str]:
    """One line per ``KIJKO_*`` name that is no setting, with the closest known name: such a
    variable is otherwise silently ignored (a typo in a production URL, say)."""
    known = setting_variables()
    lines = []
    for name in sorted(set(names)):
        upper = name.upper()
        if not upper.startswith("KIJKO_") or upper in known:
            continue
        if upper.startswith(TOOL_VARIABLE_PREFIXES):
            continue
        # Compared without the common prefix, which would make everything look alike.
        close = difflib.get_close_matches(
            upper.removeprefix("KIJKO_"), [k.removeprefix("KIJKO_") for k in known], n=1, cutoff=0.6
        )
        hint = f" (did you mean KIJKO_{close[0]}?)" if close else ""
        lines.append(f"{name} is not a Kijko setting and is ignored{hint}")
    return lines


def environment_names(env_file: str | Path = ".env") -> list[str]:
    """The ``KIJKO_*`` names Settings reads: the environment's and the ``.env`` file's."""
    names = [name for name in os.environ if name.upper().startswith("KIJKO_")]
    names += [name for name in env_file_values(env_file) if name.upper().startswith("KIJKO_")]
    return names


def env_file_values(env_file: str | Path = ".env") -> dict[str, str | None]:
    from dotenv import dotenv_values

    path = Path(env_file)
    return dict(dotenv_values(path)) if path.is_file() else {}
