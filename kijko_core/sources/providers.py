"""GitHub, GitLab and Bitbucket as the wizard sees them: their OAuth endpoints and the few REST
calls it needs, on their real wire formats (docs/providers.md).

Every request goes through the client it is given: the egress guard (``kijko.egress``), since
the addresses are settings an operator chose and a self-hosted GitLab may be anywhere. Tokens
travel in ``Authorization`` headers only, never in URLs, and are never logged.
"""

from __future__ import annotations

import base64
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

import httpx
from pydantic import SecretStr

from kijko_core.config import Settings
from kijko_core.sources.models import (
    CONNECTABLE,
    BatchRepository,
    ConnectableProvider,
    ConnectionCodeRejected,
    NotAuthenticated,
    ProviderFailed,
    ProviderNotConfigured,
    ProviderNotFound,
    ProviderRateLimited,
    RepoInfo,
)

#: Most repositories ``GET /repositories/batch`` lists (pages of 100 are followed up to it).
MAX_LISTED = 500
_PAGE = 100
#: Bytes per line for the lines-of-code estimate from sizes (typical source averages 30–45).
BYTES_PER_LINE = 40
#: Retry-After when a provider says it is limited without saying until when.
DEFAULT_RETRY_AFTER = 60
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
UNKNOWN_LANGUAGE = "Unknown"


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    refresh_token: str | None
    expires_in: int | None
    scope: list[str]


@dataclass(frozen=True)
class Profile:
    username: str
    avatar_url: str | None


@dataclass(frozen=True)
class RepoRef:
    """A repository a URL names: ``path`` is ``owner/name`` (GitLab: ``group/sub/name``)."""

    provider: ConnectableProvider
    path: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _retry_after(response: httpx.Response) -> int | None:
    """Seconds until the provider takes requests again, from its rate-limit headers; None when
    the response carries none (then a 403 is an ordinary refusal)."""
    headers = response.headers
    if "retry-after" in headers:
        value = headers["retry-after"].strip()
        if value.isdigit():
            return max(1, int(value))
        try:
            return max(1, int((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()))
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
    remaining = headers.get("x-ratelimit-remaining", headers.get("ratelimit-remaining"))
    if remaining is not None and remaining.strip() == "0":
        reset = headers.get("x-ratelimit-reset", headers.get("ratelimit-reset", ""))
        if reset.strip().isdigit():
            return max(1, int(reset) - int(time.time()))
        return DEFAULT_RETRY_AFTER
    return None


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.fromtimestamp(0, UTC)


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _since() -> str:
    return (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_page(link: str | None) -> int | None:
    """The page number of ``rel="last"`` in a Link header (GitHub's pagination)."""
    if not link:
        return None
    for part in link.split(","):
        if 'rel="last"' in part:
            match = re.search(r"[?&]page=(\d+)", part)
            if match:
                return int(match.group(1))
    return None


class Provider(ABC):
    name: ClassVar[ConnectableProvider]
    title: ClassVar[str]
    #: What the wizard asks for: the user's name and avatar, and read access to repositories.
    scopes: ClassVar[tuple[str, ...]]

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        # Each provider's settings are named after it: <name>_url, <name>_client_id, <name>_client_secret.
        web: str = getattr(settings, f"{self.name}_url")
        self.web = web.rstrip("/")

    def credentials(self) -> tuple[str, str] | None:
        """(client id, client secret), or None when the provider is not configured."""
        client_id: str | None = getattr(self.settings, f"{self.name}_client_id")
        secret: SecretStr | None = getattr(self.settings, f"{self.name}_client_secret")
        if client_id and secret:
            return client_id, secret.get_secret_value()
        return None

    def configured(self) -> tuple[str, str]:
        credentials = self.credentials()
        if credentials is None:
            raise ProviderNotConfigured(f"{self.title} is not configured on this server")
        return credentials

    # --- OAuth ---------------------------------------------------------------------------

    @property
    @abstractmethod
    def authorize_endpoint(self) -> str: ...

    @property
    @abstractmethod
    def token_endpoint(self) -> str: ...

    def authorization_url(self, *, state: str, challenge: str, redirect_uri: str) -> str:
        client_id, _ = self.configured()
        query = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(self.scopes),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.authorize_endpoint}?{urlencode(query)}"

    def _token_request(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(form, headers) of a token request; the client authenticates in the form (RFC 6749
        §2.3.1) unless the provider wants HTTP Basic."""
        client_id, secret = self.configured()
        return form | {"client_id": client_id, "client_secret": secret}, {"Accept": "application/json"}

    async def _token(self, form: dict[str, str]) -> TokenGrant:
        body, headers = self._token_request(form)
        try:
            response = await self.client.post(self.token_endpoint, data=body, headers=headers)
        except httpx.HTTPError:
            raise ProviderFailed() from None
        self._raise_if_limited(response)
        try:
            payload = response.json()
        except ValueError:
            raise ProviderFailed() from None
        if not isinstance(payload, dict):
            raise ProviderFailed()
        # GitHub answers 200 with {"error": …}; the others 400/401 (RFC 6749 §5.2).
        if response.status_code in (400, 401) or "error" in payload:
            raise ConnectionCodeRejected()
        if response.status_code != 200 or not isinstance(payload.get("access_token"), str):
            raise ProviderFailed()
        expires_in = payload.get("expires_in")
        refresh = payload.get("refresh_token")
        return TokenGrant(
            access_token=payload["access_token"],
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_in=expires_in if isinstance(expires_in, int) and expires_in > 0 else None,
            scope=self._scope(payload),
        )

    def _scope(self, payload: dict[str, Any]) -> list[str]:
        scope = payload.get("scope", "")
        return [item for item in re.split(r"[\s,]+", scope) if item] if isinstance(scope, str) else []

    async def exchange(self, code: str, verifier: str, redirect_uri: str) -> TokenGrant:
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> TokenGrant:
        """A new access token; ``ConnectionCodeRejected`` when the refresh token is no good."""
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    # --- REST ----------------------------------------------------------------------------

    def _headers(self, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    @staticmethod
    def _raise_if_limited(response: httpx.Response) -> None:
        if response.status_code in (403, 429):
            retry_after = _retry_after(response)
            if retry_after is not None or response.status_code == 429:
                raise ProviderRateLimited(retry_after or DEFAULT_RETRY_AFTER)

    async def _get(self, url: str, token: str | None, params: dict[str, Any] | None = None) -> httpx.Response | None:
        """GET a resource: its response, or None when the provider says it does not exist or
        is not visible to ``token``. A token the provider refuses is NOT_AUTHENTICATED."""
        try:
            response = await self.client.get(url, params=params, headers=self._headers(token))
        except httpx.HTTPError:
            raise ProviderFailed() from None
        self._raise_if_limited(response)
        if response.status_code == 401:
            if token is None:
                return None  # some providers answer 401 for a private repository
            raise NotAuthenticated(f"Your {self.title} connection is no longer valid; connect again")
        if response.status_code in (403, 404, 409):
            return None  # not visible, not there, or (GitHub, 409) an empty repository
        if response.status_code != 200:
            raise ProviderFailed()
        return response

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ProviderFailed() from None

    async def _get_object(
        self, url: str, token: str | None, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """GET a JSON object: None as ``_get`` (not there, not visible); any other body fails."""
        response = await self._get(url, token, params)
        if response is None:
            return None
        body = self._json(response)
        if not isinstance(body, dict):
            raise ProviderFailed()
        return body

    def _within_api(self, url: str, base: str) -> bool:
        return url.startswith(base.rstrip("/") + "/")

    @abstractmethod
    async def profile(self, token: str) -> Profile: ...

    @abstractmethod
    async def repo_info(self, ref: RepoRef, token: str | None) -> RepoInfo | None: ...

    @abstractmethod
    async def list_repositories(self, token: str) -> list[BatchRepository]: ...

    # --- URLs ----------------------------------------------------------------------------

    def parse(self, url: str) -> RepoRef | None:
        """The repository ``url`` names on this provider's web address, or None."""
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unbalanced "[" in the host: no URL of ours
            return None
        base = urlsplit(self.web)
        if (parts.scheme.lower(), parts.netloc.lower()) != (base.scheme.lower(), base.netloc.lower()):
            return None
        if parts.query or parts.fragment or "@" in parts.netloc:
            return None
        path = parts.path
        prefix = base.path.rstrip("/")
        if prefix:
            if not path.startswith(prefix + "/"):
                return None
            path = path[len(prefix) :]
        segments = [segment for segment in path.strip("/").split("/")]
        if segments and segments[-1].endswith(".git"):
            segments[-1] = segments[-1][: -len(".git")]
        kept = self._repository_segments(segments)
        if kept is None or not all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in kept):
            return None
        return RepoRef(self.name, "/".join(kept))

    def _repository_segments(self, segments: list[str]) -> list[str] | None:
        return segments if len(segments) == 2 else None


class GitHub(Provider):
    name = "github"
    title = "GitHub"
    scopes = ("read:user", "repo")

    @property
    def api(self) -> str:
        return self.settings.github_api_url.rstrip("/")

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.web}/login/oauth/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.web}/login/oauth/access_token"

    def _headers(self, token: str | None) -> dict[str, str]:
        headers = super()._headers(token)
        headers["Accept"] = "application/vnd.github+json"
        headers["X-GitHub-Api-Version"] = "2022-11-28"
        return headers

    async def profile(self, token: str) -> Profile:
        body = await self._get_object(f"{self.api}/user", token)
        if body is None or not isinstance(body.get("login"), str):
            raise ProviderFailed()
        return Profile(body["login"], _text(body.get("avatar_url")) or None)

    async def repo_info(self, ref: RepoRef, token: str | None) -> RepoInfo | None:
        owner, name = ref.path.split("/")
        base = f"{self.api}/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        repo = await self._get_object(base, token)
        if repo is None:
            return None
        branch = _text(repo.get("default_branch"), "main")
        commits = await self._get(f"{base}/commits", token, {"since": _since(), "per_page": 1})
        commit_count = 0
        if commits is not None:
            last = _last_page(commits.headers.get("link"))
            listed = self._json(commits)
            commit_count = last if last is not None else (len(listed) if isinstance(listed, list) else 0)
        tree = await self._get(f"{base}/git/trees/{quote(branch, safe='')}", token, {"recursive": 1})
        files, size = 0, 0
        body = self._json(tree) if tree is not None else None
        if isinstance(body, dict) and isinstance(body.get("tree"), list):
            blobs = [entry for entry in body["tree"] if isinstance(entry, dict) and entry.get("type") == "blob"]
            files, size = len(blobs), sum(_int(entry.get("size")) for entry in blobs)
        return RepoInfo(
            name=_text(repo.get("name"), ref.name),
            full_name=_text(repo.get("full_name"), ref.path),
            provider="github",
            url=_text(repo.get("html_url"), f"{self.web}/{ref.path}"),
            default_branch=branch,
            commits_per_month=commit_count,
            file_count=files,
            loc_estimate=size // BYTES_PER_LINE,
            primary_language=_text(repo.get("language")) or UNKNOWN_LANGUAGE,
            last_updated=_timestamp(repo.get("pushed_at") or repo.get("updated_at")),
            is_private=bool(repo.get("private")),
            stars=_int(repo.get("stargazers_count")),
            description=_text(repo.get("description")) or None,
        )

    async def list_repositories(self, token: str) -> list[BatchRepository]:
        listed: list[BatchRepository] = []
        page = 1
        while len(listed) < MAX_LISTED:
            response = await self._get(
                f"{self.api}/user/repos", token, {"per_page": _PAGE, "page": page, "sort": "updated"}
            )
            items = self._json(response) if response is not None else []
            if not isinstance(items, list) or not items:
                break
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("full_name"), str):
                    listed.append(
                        BatchRepository(
                            id=str(item.get("id", item["full_name"])),
                            name=_text(item.get("name")),
                            full_name=item["full_name"],
                            url=_text(item.get("html_url")),
                            is_private=bool(item.get("private")),
                            last_updated=_timestamp(item.get("pushed_at") or item.get("updated_at")),
                            is_archived=bool(item.get("archived")),
                        )
                    )
            if response is None or 'rel="next"' not in response.headers.get("link", ""):
                break
            page += 1
        return listed[:MAX_LISTED]


class GitLab(Provider):
    name = "gitlab"
    title = "GitLab"
    scopes = ("read_user", "read_api")

    @property
    def api(self) -> str:
        return f"{self.web}/api/v4"

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.web}/oauth/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.web}/oauth/token"

    def _repository_segments(self, segments: list[str]) -> list[str] | None:
        # Groups nest; "/-/" starts GitLab's own pages of a project (tree, merge requests…).
        if "-" in segments:
            segments = segments[: segments.index("-")]
        return segments if 2 <= len(segments) <= 20 else None

    async def profile(self, token: str) -> Profile:
        body = await self._get_object(f"{self.api}/user", token)
        if body is None or not isinstance(body.get("username"), str):
            raise ProviderFailed()
        return Profile(body["username"], _text(body.get("avatar_url")) or None)

    @staticmethod
    def _total(response: httpx.Response | None) -> int:
        value = response.headers.get("x-total", "") if response is not None else ""
        return int(value) if value.isdigit() else 0

    async def repo_info(self, ref: RepoRef, token: str | None) -> RepoInfo | None:
        base = f"{self.api}/projects/{quote(ref.path, safe='')}"
        project = await self._get_object(base, token, {"statistics": "true"} if token else None)
        if project is None:
            return None
        branch = _text(project.get("default_branch"), "main")
        commits = await self._get(
            f"{base}/repository/commits", token, {"since": _since(), "per_page": 1, "ref_name": branch}
        )
        tree = await self._get(f"{base}/repository/tree", token, {"recursive": "true", "per_page": 1, "ref": branch})
        languages = await self._get(f"{base}/languages", token)
        shares = self._json(languages) if languages is not None else {}
        primary = max(shares, key=lambda k: shares[k]) if isinstance(shares, dict) and shares else ""
        statistics = _obj(project.get("statistics"))
        return RepoInfo(
            name=_text(project.get("name"), ref.name),
            full_name=_text(project.get("path_with_namespace"), ref.path),
            provider="gitlab",
            url=_text(project.get("web_url"), f"{self.web}/{ref.path}"),
            default_branch=branch,
            commits_per_month=self._total(commits),
            file_count=self._total(tree),
            loc_estimate=_int(statistics.get("repository_size")) // BYTES_PER_LINE,
            primary_language=_text(primary) or UNKNOWN_LANGUAGE,
            last_updated=_timestamp(project.get("last_activity_at")),
            is_private=project.get("visibility") != "public",
            stars=_int(project.get("star_count")),
            description=_text(project.get("description")) or None,
        )

    async def list_repositories(self, token: str) -> list[BatchRepository]:
        listed: list[BatchRepository] = []
        page = 1
        while len(listed) < MAX_LISTED:
            response = await self._get(
                f"{self.api}/projects",
                token,
                {"membership": "true", "per_page": _PAGE, "page": page, "order_by": "last_activity_at"},
            )
            items = self._json(response) if response is not None else []
            if not isinstance(items, list) or not items:
                break
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("path_with_namespace"), str):
                    listed.append(
                        BatchRepository(
                            id=str(item.get("id", item["path_with_namespace"])),
                            name=_text(item.get("name")),
                            full_name=item["path_with_namespace"],
                            url=_text(item.get("web_url")),
                            is_private=item.get("visibility") != "public",
                            last_updated=_timestamp(item.get("last_activity_at")),
                            is_archived=bool(item.get("archived")),
                        )
                    )
            following = response.headers.get("x-next-page", "") if response is not None else ""
            if not following.isdigit():
                break
            page = int(following)
        return listed[:MAX_LISTED]


class Bitbucket(Provider):
    name = "bitbucket"
    title = "Bitbucket"
    # Bitbucket takes the scopes configured on the OAuth consumer; these are what it needs.
    scopes = ("account", "repository")

    @property
    def api(self) -> str:
        return f"{self.settings.bitbucket_api_url.rstrip('/')}/2.0"

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.web}/site/oauth2/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.web}/site/oauth2/access_token"

    def _token_request(self, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        # Bitbucket authenticates the consumer with HTTP Basic.
        client_id, secret = self.configured()
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        return form, {"Accept": "application/json", "Authorization": f"Basic {basic}"}

    def _scope(self, payload: dict[str, Any]) -> list[str]:
        scopes = payload.get("scopes", payload.get("scope", ""))
        return [item for item in re.split(r"[\s,]+", scopes) if item] if isinstance(scopes, str) else []

    async def profile(self, token: str) -> Profile:
        body = await self._get_object(f"{self.api}/user", token)
        if body is None:
            raise ProviderFailed()
        name = body.get("username") or body.get("nickname") or body.get("display_name")
        if not isinstance(name, str):
            raise ProviderFailed()
        links = _obj(body.get("links"))
        avatar = _obj(links.get("avatar"))
        return Profile(name, _text(avatar.get("href")) or None)

    async def repo_info(self, ref: RepoRef, token: str | None) -> RepoInfo | None:
        workspace, slug = ref.path.split("/")
        base = f"{self.api}/repositories/{quote(workspace, safe='')}/{quote(slug, safe='')}"
        repo = await self._get_object(base, token)
        if repo is None:
            return None
        mainbranch = _obj(repo.get("mainbranch"))
        branch = _text(mainbranch.get("name"), "main")
        # Bitbucket has no commit count: the newest page of 100, counted back 30 days.
        commits = await self._get(f"{base}/commits/{quote(branch, safe='')}", token, {"pagelen": _PAGE})
        body = self._json(commits) if commits is not None else {}
        cutoff = datetime.now(UTC) - timedelta(days=30)
        values = _list(_obj(body).get("values"))
        recent = sum(1 for item in values if isinstance(item, dict) and _timestamp(item.get("date")) >= cutoff)
        links = _obj(repo.get("links"))
        html = _obj(links.get("html"))
        return RepoInfo(
            name=_text(repo.get("name"), ref.name),
            full_name=_text(repo.get("full_name"), ref.path),
            provider="bitbucket",
            url=_text(html.get("href"), f"{self.web}/{ref.path}"),
            default_branch=branch,
            commits_per_month=recent,
            file_count=0,  # not offered without walking the tree: documented as unknown (0)
            loc_estimate=_int(repo.get("size")) // BYTES_PER_LINE,
            primary_language=_text(repo.get("language")) or UNKNOWN_LANGUAGE,
            last_updated=_timestamp(repo.get("updated_on")),
            is_private=bool(repo.get("is_private")),
            stars=None,
            description=_text(repo.get("description")) or None,
        )

    async def list_repositories(self, token: str) -> list[BatchRepository]:
        listed: list[BatchRepository] = []
        url: str | None = f"{self.api}/repositories"
        params: dict[str, Any] | None = {"role": "member", "pagelen": _PAGE, "sort": "-updated_on"}
        while url is not None and len(listed) < MAX_LISTED:
            response = await self._get(url, token, params)
            body = self._json(response) if response is not None else {}
            values = body.get("values") if isinstance(body, dict) else None
            if not isinstance(values, list):
                break
            for item in values:
                if isinstance(item, dict) and isinstance(item.get("full_name"), str):
                    links = _obj(item.get("links"))
                    html = _obj(links.get("html"))
                    listed.append(
                        BatchRepository(
                            id=_text(item.get("uuid"), item["full_name"]),
                            name=_text(item.get("name")),
                            full_name=item["full_name"],
                            url=_text(html.get("href")),
                            is_private=bool(item.get("is_private")),
                            last_updated=_timestamp(item.get("updated_on")),
                            is_archived=False,  # Bitbucket has no archived repositories
                        )
                    )
            following = body.get("next") if isinstance(body, dict) else None
            # The next page's URL carries its own query; only ever one on the same API.
            url = following if isinstance(following, str) and self._within_api(following, self.api) else None
            params = None
        return listed[:MAX_LISTED]


PROVIDERS: dict[str, type[Provider]] = {"github": GitHub, "gitlab": GitLab, "bitbucket": Bitbucket}


def provider(name: str, settings: Settings, client: httpx.AsyncClient) -> Provider:
    """The provider named in a path or body: unknown → 404, ``azure`` (no flow yet) → 409."""
    if name == "azure":
        raise ProviderNotConfigured("Azure DevOps connections are not supported yet")
    kind = PROVIDERS.get(name)
    if kind is None:
        raise ProviderNotFound()
    return kind(settings, client)


def parse_repository_url(url: str, settings: Settings, client: httpx.AsyncClient) -> tuple[Provider, RepoRef] | None:
    """The provider and repository a URL names, among the three providers' web addresses."""
    for name in CONNECTABLE:
        candidate = PROVIDERS[name](settings, client)
        ref = candidate.parse(url.strip())
        if ref is not None:
            return candidate, ref
    return None
