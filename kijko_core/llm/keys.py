"""Organizations' own provider keys (``kijko.llm_keys``, migration 0017; decision 0104).

A key is encrypted with the keyring before it reaches the database and never leaves the server
again: what is shown is its last four characters. Owners and admins set and remove keys;
:func:`resolve` picks the key a run uses — the organization's, else the platform's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kijko_core.config import Settings
from kijko_core.crypto import DecryptionFailed, Keyring
from kijko_core.db.session import ServiceSession, TenantSession
from kijko_core.db.sql import Fragment
from kijko_core.errors import ValidationFailed
from kijko_core.llm.models import LlmKey, LlmKeyNotFound, PutLlmKey
from kijko_core.llm.providers import ProviderKey, base_url_problem, default_base_url, platform_key
from kijko_core.logging import get_logger
from kijko_core.permissions import Action, Policy, authorize
from kijko_core.prices import PriceTable

log = get_logger("kijko.llm.keys")
# A provider's name as the price table allows it (anything else names no key).
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


LLM_KEYS = Policy(
    name="llm keys",
    not_found=LlmKeyNotFound,
    readable=lambda principal, key: True,
    readable_sql=Fragment("organization_id = $1"),
)


def check_provider(prices: PriceTable, provider: str) -> None:
    """A key is for a provider of some priced model (anything else could never be used)."""
    if not any(price.provider == provider for model in prices.models if (price := prices.get(model))):
        raise ValidationFailed("No model in the price table uses this provider", field="provider")


async def list_keys(db: TenantSession) -> list[LlmKey]:
    authorize(db.principal, Action.MANAGE_LLM_KEYS, policy=LLM_KEYS)
    rows = await db.fetch(
        "SELECT provider, last4, base_url, created_at, updated_at, updated_by FROM kijko.llm_keys ORDER BY provider"
    )
    return [LlmKey.model_validate(dict(row)) for row in rows]


async def get_key(db: TenantSession, provider: str) -> LlmKey:
    authorize(db.principal, Action.MANAGE_LLM_KEYS, policy=LLM_KEYS)
    if not _PROVIDER.fullmatch(provider):
        raise LlmKeyNotFound()
    row = await db.fetchrow(
        "SELECT provider, last4, base_url, created_at, updated_at, updated_by FROM kijko.llm_keys WHERE provider = $1",
        provider,
    )
    if row is None:
        raise LlmKeyNotFound()
    return LlmKey.model_validate(dict(row))


async def put_key(
    db: TenantSession,
    keyring: Keyring,
    prices: PriceTable,
    provider: str,
    data: PutLlmKey,
    allow: Sequence[str] = (),
) -> LlmKey:
    """Create or change the organization's key for ``provider`` (one statement: two admins
    saving at once leave one of their keys, never a mix). A base URL whose host the egress
    guard would refuse is 422 (``baseUrl``) now; ``allow`` is ``KIJKO_EGRESS_ALLOW_CIDRS``."""
    authorize(db.principal, Action.MANAGE_LLM_KEYS, policy=LLM_KEYS)
    check_provider(prices, provider)
    fields = data.model_fields_set
    api_key = data.api_key.strip() if data.api_key is not None else None
    if "api_key" in fields and not api_key:
        raise ValidationFailed("The API key must not be empty", field="apiKey")
    if data.base_url is not None and (problem := base_url_problem(data.base_url, allow)) is not None:
        raise ValidationFailed(f"The base URL must be {problem}", field="baseUrl")
    ciphertext = keyring.encrypt(api_key) if api_key else None
    last4 = api_key[-4:] if api_key else None
    base_url = data.base_url.rstrip("/") if data.base_url else None
    row = await db.fetchrow(
        """
        INSERT INTO kijko.llm_keys AS k
            (organization_id, provider, key_ciphertext, last4, base_url, updated_by)
        SELECT $1, $2, $3, $4, $5, $6 WHERE $3::text IS NOT NULL
        ON CONFLICT (organization_id, provider) DO UPDATE SET
            key_ciphertext = COALESCE($3, k.key_ciphertext),
            last4 = COALESCE($4, k.last4),
            base_url = CASE WHEN $7 THEN $5 ELSE k.base_url END,
            updated_at = now(),
            updated_by = $6
        RETURNING provider, last4, base_url, created_at, updated_at, updated_by
        """,
        db.principal.org_id,
        provider,
        ciphertext,
        last4,
        base_url,
        db.principal.user_id,
        "base_url" in fields,
    )
    if row is None and ciphertext is None:
        # Nothing inserted: no key yet and none given. (An update needs no key.)
        row = await db.fetchrow(
            """
            UPDATE kijko.llm_keys SET base_url = CASE WHEN $3 THEN $2 ELSE base_url END,
                updated_at = now(), updated_by = $4
            WHERE provider = $1 RETURNING provider, last4, base_url, created_at, updated_at, updated_by
            """,
            provider,
            base_url,
            "base_url" in fields,
            db.principal.user_id,
        )
        if row is None:
            raise ValidationFailed("An API key is required for a provider without one", field="apiKey")
    assert row is not None
    return LlmKey.model_validate(dict(row))


async def delete_key(db: TenantSession, provider: str) -> None:
    authorize(db.principal, Action.MANAGE_LLM_KEYS, policy=LLM_KEYS)
    if not _PROVIDER.fullmatch(provider):
        raise LlmKeyNotFound()
    deleted = await db.fetchval("DELETE FROM kijko.llm_keys WHERE provider = $1 RETURNING provider", provider)
    if deleted is None:
        raise LlmKeyNotFound()


async def organization_key(
    db: TenantSession | ServiceSession, keyring: Keyring, settings: Settings, provider: str
) -> ProviderKey | None:
    """The organization's own key for ``provider`` (row-level security picks the organization),
    or None. A key no keyring key opens any more counts as none."""
    row = await db.fetchrow("SELECT key_ciphertext, base_url FROM kijko.llm_keys WHERE provider = $1", provider)
    if row is None:
        return None
    try:
        api_key = keyring.decrypt(row["key_ciphertext"])
    except DecryptionFailed:
        # Its keyring key was removed from KIJKO_ENCRYPTION_KEYS: as if none were stored.
        log.warning("llm_key_undecryptable", provider=provider)
        return None
    base_url = row["base_url"] or default_base_url(settings, provider)
    if base_url is None:
        return None
    return ProviderKey(provider, api_key, base_url, "organization")


async def resolve(
    db: TenantSession | ServiceSession, keyring: Keyring, settings: Settings, provider: str
) -> ProviderKey | None:
    """The key a run uses for ``provider``: the organization's, else the platform's, else None."""
    return await organization_key(db, keyring, settings, provider) or platform_key(settings, provider)
