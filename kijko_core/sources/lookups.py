"""Repositories at the providers, for the wizard: one repository's details from its URL
(``validate-full``) and the caller's repositories at a provider (``batch``).

The provider is asked outside any database transaction (a slow provider must not hold a
pooled connection), with the caller's connection when there is one, and its answers are
cached briefly per user (kijko_core/sources/cache.py).
"""

from __future__ import annotations

from kijko_core.errors import ValidationFailed
from kijko_core.sources.connections import Caller, Connections, OpenSession
from kijko_core.sources.models import (
    BatchRepositories,
    NotAuthenticated,
    ProviderNotConfigured,
    RepoInfo,
    RepoValidation,
)
from kijko_core.sources.providers import Provider, RepoRef, parse_repository_url

INVALID_URL = "Invalid repository URL. Supported: GitHub, GitLab, Bitbucket"
PRIVATE = "This repository is private. Please authenticate to access it."
NOT_VISIBLE = "Repository not found, or your connection cannot see it."


async def validate_full(connections: Connections, open_session: OpenSession, url: str | None) -> RepoValidation:
    found = parse_repository_url(url or "", connections.settings, connections.client)
    if found is None:
        async with open_session(readonly=True):  # the token's session is still checked
            pass
        return RepoValidation(valid=False, error=INVALID_URL)
    chosen, ref = found
    caller: Caller | None
    try:
        caller, _ = await connections.caller(open_session, chosen)
    except NotAuthenticated:
        caller = None
    if caller is not None and caller.token is not None:
        try:
            info = await _repo_info(connections, chosen, ref, caller)
        except NotAuthenticated:  # the provider refused the stored token: ask as anyone
            info = None
            caller = Caller(caller.org_id, caller.user_id, None)
        else:
            return RepoValidation(valid=True, info=info) if info else RepoValidation(valid=False, error=NOT_VISIBLE)
    if caller is None:
        async with open_session(readonly=True) as db:
            caller = Caller(db.principal.org_id, db.principal.user_id, None)
    info = await _repo_info(connections, chosen, ref, caller)
    return RepoValidation(valid=True, info=info) if info else RepoValidation(valid=False, error=PRIVATE)


async def _repo_info(connections: Connections, chosen: Provider, ref: RepoRef, caller: Caller) -> RepoInfo | None:
    cache = connections.cache
    asked_as = "token" if caller.token else "anonymous"
    key = cache.key(caller.org_id, caller.user_id, "repo", chosen.name, ref.path, asked_as)
    hit = await cache.get(key)
    if hit is not None:
        return RepoInfo.model_validate(hit["info"]) if hit["info"] is not None else None
    info = await chosen.repo_info(ref, caller.token)
    await cache.put(key, {"info": info.model_dump(mode="json") if info else None})
    return info


async def batch(connections: Connections, open_session: OpenSession, name: str | None) -> BatchRepositories:
    if name is None:
        async with open_session(readonly=True):  # the token first: a revoked one is a 401
            pass
        raise ValidationFailed("provider: Field required", field="provider")
    caller, chosen = await connections.caller(open_session, name)
    if caller.token is None:
        if chosen.credentials() is None:
            raise ProviderNotConfigured(f"{chosen.title} is not configured on this server")
        raise NotAuthenticated(f"Connect your {chosen.title} account first")
    cache = connections.cache
    key = cache.key(caller.org_id, caller.user_id, "batch", chosen.name)
    hit = await cache.get(key)
    if hit is not None:
        return BatchRepositories.model_validate(hit)
    repositories = await chosen.list_repositories(caller.token)
    result = BatchRepositories(repositories=repositories, total=len(repositories))
    await cache.put(key, result.model_dump(mode="json"))
    return result
