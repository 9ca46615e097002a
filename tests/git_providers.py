"""Stand-ins for GitHub, GitLab and Bitbucket: real HTTP servers on 127.0.0.1 speaking the
providers' OAuth and REST wire formats (the parts the wizard uses), for the sources tests.

Each provider serves its web endpoints (``/login/oauth/...``, ``/oauth/...``,
``/site/oauth2/...``) at the root and its REST API where Kijko's settings point:
GitHub ``/api`` (like GitHub Enterprise's ``/api/v3``), GitLab ``/api/v4``, Bitbucket
``/api/2.0``. The authorization endpoint answers 302 to the redirect URI with a code, as a
provider does after the user consents; tests follow it with a plain HTTP client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tests.net import DispatchingHandler, HttpStandIn, Reply

CLIENT_ID = "kijko-test-client"
CLIENT_SECRET = "kijko-test-secret"


@dataclass
class Repo:
    path: str  # owner/name (GitLab: group/…/name)
    private: bool = False
    members: set[str] = field(default_factory=set)  # usernames that can see it when private
    archived: bool = False
    language: str = "Python"
    files: int = 12
    file_bytes: int = 4000
    recent_commits: int = 7
    description: str | None = "A test repository"
    stars: int = 3

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Grant:
    user: str
    challenge: str | None
    redirect_uri: str | None


class FakeProvider(HttpStandIn):
    """One provider. ``kind`` is ``github``, ``gitlab`` or ``bitbucket``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.users: dict[str, str] = {}  # username → avatar
        self.repos: dict[str, Repo] = {}
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, tuple[str, float | None]] = {}  # access token → (user, expiry)
        self.refresh_tokens: dict[str, str] = {}  # refresh token → user (rotated on use)
        #: Lifetime of access tokens; None: they do not expire (GitHub OAuth apps).
        self.expires_in: int | None = None if kind == "github" else 7200
        self.limited = False  # answer every API and token call as rate-limited
        self.broken = False  # answer every API and token call with a 500
        self.requests: list[str] = []  # "METHOD path" of every request
        self.token_requests: list[dict[str, str]] = []
        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), _handler(self)))
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> dict[str, Any]:
        """Kijko settings pointing at this stand-in."""
        if self.kind == "github":
            return {
                "github_client_id": CLIENT_ID,
                "github_client_secret": CLIENT_SECRET,
                "github_url": self.url,
                "github_api_url": f"{self.url}/api",
            }
        if self.kind == "gitlab":
            return {"gitlab_client_id": CLIENT_ID, "gitlab_client_secret": CLIENT_SECRET, "gitlab_url": self.url}
        return {
            "bitbucket_client_id": CLIENT_ID,
            "bitbucket_client_secret": CLIENT_SECRET,
            "bitbucket_url": self.url,
            "bitbucket_api_url": f"{self.url}/api",
        }

    def add_user(self, username: str) -> None:
        self.users[username] = f"{self.url}/avatars/{username}.png"

    def add_repo(self, path: str, **fields: Any) -> Repo:
        repo = Repo(path, **fields)
        self.repos[path] = repo
        return repo

    def issue_token(self, user: str) -> str:
        token = secrets.token_hex(16)
        self.tokens[token] = (user, time.time() + self.expires_in if self.expires_in else None)
        return token

    # --- OAuth ---------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> Reply:
        if query.get("client_id") != CLIENT_ID or not query.get("redirect_uri"):
            raise Reply(400, {"error": "invalid_request"})
        user = next(iter(self.users))  # the user who is signed in at the provider and consents
        code = secrets.token_hex(10)
        challenge = query.get("code_challenge") if query.get("code_challenge_method") == "S256" else None
        self.codes[code] = Grant(user, challenge, query["redirect_uri"])
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        raise Reply(302, b"", {"Location": location})

    def token(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        self.token_requests.append(form)
        if self.kind == "bitbucket":
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if authorization != expected:
                raise Reply(401, {"error": "invalid_client", "error_description": "Invalid OAuth client credentials"})
        elif (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            raise self._token_error("invalid_client", 401)
        grant_type = form.get("grant_type", "authorization_code")
        if grant_type == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if user is None:
                raise self._token_error("invalid_grant")
            return self._token_body(user)
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or (grant.redirect_uri and form.get("redirect_uri") not in (None, grant.redirect_uri)):
            raise self._token_error("bad_verification_code" if self.kind == "github" else "invalid_grant")
        if grant.challenge is not None and self.kind != "bitbucket":
            verifier = form.get("code_verifier", "")
            computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if computed != grant.challenge:
                raise self._token_error("invalid_grant")
        return self._token_body(grant.user)

    def _token_error(self, error: str, status: int = 400) -> Reply:
        body = {"error": error, "error_description": "The code passed is incorrect or expired."}
        # GitHub answers token errors with 200 and an "error" member.
        return Reply(200 if self.kind == "github" else status, body)

    def _token_body(self, user: str) -> dict[str, Any]:
        token = self.issue_token(user)
        body: dict[str, Any] = {"access_token": token, "token_type": "bearer"}
        if self.kind == "github":
            body["scope"] = "read:user,repo"
        elif self.kind == "gitlab":
            body["scope"] = "read_user read_api"
            body["created_at"] = int(time.time())
        else:
            body["scopes"] = "account repository"
            body["state"] = "authorization_code"
        if self.expires_in:
            refresh = secrets.token_hex(16)
            self.refresh_tokens[refresh] = user
            body["expires_in"] = self.expires_in
            body["refresh_token"] = refresh
        return body

    # --- REST ----------------------------------------------------------------------------

    def caller(self, authorization: str | None) -> str | None:
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        entry = self.tokens.get(token) if scheme.lower() in ("bearer", "token") else None
        if entry is None or (entry[1] is not None and entry[1] < time.time()):
            message = {"message": "Bad credentials"} if self.kind == "github" else {"error": "invalid_token"}
            raise Reply(401, message)
        return entry[0]

    def visible(self, path: str, user: str | None) -> Repo:
        repo = self.repos.get(path)
        if repo is None or (repo.private and user not in repo.members):
            not_found = {
                "github": {"message": "Not Found"},
                "gitlab": {"message": "404 Project Not Found"},
                "bitbucket": {"type": "error", "error": {"message": "Repository not found"}},
            }[self.kind]
            raise Reply(404, not_found)
        return repo

    def rate_limited(self) -> Reply:
        reset = int(time.time()) + 120
        if self.kind == "github":
            return Reply(
                403,
                {"message": "API rate limit exceeded"},
                {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
            )
        return Reply(429, {"message": "Retry later"}, {"Retry-After": "42"})

    def api(self, path: str, query: dict[str, str], authorization: str | None) -> Reply:
        if self.limited:
            raise self.rate_limited()
        user = self.caller(authorization)
        return {"github": self._github, "gitlab": self._gitlab, "bitbucket": self._bitbucket}[self.kind](
            path, query, user
        )

    def _mine(self, user: str | None) -> list[Repo]:
        return [r for r in self.repos.values() if user is not None and (user in r.members)]

    def _github(self, path: str, query: dict[str, str], user: str | None) -> Reply:
        parts = path.strip("/").split("/")
        if parts == ["user"]:
            if user is None:
                raise Reply(401, {"message": "Requires authentication"})
            return Reply(200, {"login": user, "id": 1, "avatar_url": self.users[user]})
        if parts == ["user", "repos"]:
            if user is None:
                raise Reply(401, {"message": "Requires authentication"})
            mine = self._mine(user)
            per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
            chunk = mine[(page - 1) * per_page : page * per_page]
            headers = {}
            if page * per_page < len(mine):
                headers["Link"] = f'<{self.url}/api/user/repos?page={page + 1}>; rel="next"'
            return Reply(200, [self._github_repo(r) for r in chunk], headers)
        if len(parts) >= 3 and parts[0] == "repos":
            repo = self.visible(f"{parts[1]}/{parts[2]}", user)
            rest = parts[3:]
            if not rest:
                return Reply(200, self._github_repo(repo))
            if rest == ["commits"]:
                headers = {}
                if repo.recent_commits > 1:
                    headers["Link"] = (
                        f'<{self.url}/api/repositories/1/commits?per_page=1&page=2>; rel="next", '
                        f'<{self.url}/api/repositories/1/commits?per_page=1&page={repo.recent_commits}>; rel="last"'
                    )
                return Reply(200, [{"sha": "0" * 40}] if repo.recent_commits else [], headers)
            if rest[:2] == ["git", "trees"]:
                size = repo.file_bytes // max(repo.files, 1)
                tree = [{"path": f"f{n}.py", "type": "blob", "size": size} for n in range(repo.files)]
                tree.append({"path": "src", "type": "tree"})
                return Reply(200, {"sha": "1" * 40, "tree": tree, "truncated": False})
        raise Reply(404, {"message": "Not Found"})

    def _github_repo(self, repo: Repo) -> dict[str, Any]:
        return {
            "id": abs(hash(repo.path)) % 10**8,
            "name": repo.name,
            "full_name": repo.path,
            "private": repo.private,
            "html_url": f"{self.url}/{repo.path}",
            "description": repo.description,
            "default_branch": "main",
            "language": repo.language,
            "stargazers_count": repo.stars,
            "archived": repo.archived,
            "pushed_at": "2026-11-01T10:00:00Z",
            "updated_at": "2026-11-02T10:00:00Z",
        }

    def _gitlab(self, path: str, query: dict[str, str], user: str | None) -> Reply:
        parts = path.strip("/").split("/")
        if parts == ["user"]:
            if user is None:
                raise Reply(401, {"message": "401 Unauthorized"})
            return Reply(200, {"id": 1, "username": user, "avatar_url": self.users[user]})
        if parts == ["projects"]:
            mine = self._mine(user) if query.get("membership") == "true" else []
            per_page, page = int(query.get("per_page", 20)), int(query.get("page", 1))
            chunk = mine[(page - 1) * per_page : page * per_page]
            following = str(page + 1) if page * per_page < len(mine) else ""
            return Reply(200, [self._gitlab_project(r) for r in chunk], {"X-Next-Page": following, "X-Page": str(page)})
        if len(parts) >= 2 and parts[0] == "projects":
            repo = self.visible(unquote(parts[1]), user)
            rest = parts[2:]
            if not rest:
                return Reply(200, self._gitlab_project(repo, statistics=query.get("statistics") == "true"))
            if rest == ["repository", "commits"]:
                return Reply(200, [{"id": "0" * 40}][: repo.recent_commits], {"X-Total": str(repo.recent_commits)})
            if rest == ["repository", "tree"]:
                return Reply(200, [{"path": "f0.py", "type": "blob"}], {"X-Total": str(repo.files)})
            if rest == ["languages"]:
                return Reply(200, {repo.language: 90.5, "Shell": 9.5})
        raise Reply(404, {"message": "404 Not found"})

    def _gitlab_project(self, repo: Repo, *, statistics: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": abs(hash(repo.path)) % 10**8,
            "name": repo.name,
            "path_with_namespace": repo.path,
            "visibility": "private" if repo.private else "public",
            "web_url": f"{self.url}/{repo.path}",
            "default_branch": "main",
            "description": repo.description,
            "star_count": repo.stars,
            "archived": repo.archived,
            "last_activity_at": "2026-11-01T10:00:00.000Z",
        }
        if statistics:
            body["statistics"] = {"commit_count": 100, "repository_size": repo.file_bytes}
        return body

    def _bitbucket(self, path: str, query: dict[str, str], user: str | None) -> Reply:
        parts = path.strip("/").split("/")
        if parts == ["user"]:
            if user is None:
                raise Reply(401, {"type": "error", "error": {"message": "Unauthorized"}})
            return Reply(
                200, {"username": user, "display_name": user.title(), "links": {"avatar": {"href": self.users[user]}}}
            )
        if parts == ["repositories"]:
            mine = self._mine(user) if query.get("role") == "member" else []
            size, page = int(query.get("pagelen", 10)), int(query.get("page", 1))
            body: dict[str, Any] = {"values": [self._bitbucket_repo(r) for r in mine[(page - 1) * size : page * size]]}
            if page * size < len(mine):
                following = urlencode({"role": "member", "pagelen": size, "page": page + 1})
                body["next"] = f"{self.url}/api/2.0/repositories?{following}"
            return Reply(200, body)
        if len(parts) >= 3 and parts[0] == "repositories":
            repo = self.visible(f"{parts[1]}/{parts[2]}", user)
            rest = parts[3:]
            if not rest:
                return Reply(200, self._bitbucket_repo(repo))
            if rest[:1] == ["commits"]:
                now = datetime.now(UTC)
                recent = [{"hash": "0" * 40, "date": (now - timedelta(days=1)).isoformat()}] * repo.recent_commits
                old = [{"hash": "1" * 40, "date": (now - timedelta(days=90)).isoformat()}] * 3
                return Reply(200, {"values": recent + old, "pagelen": 100})
        raise Reply(404, {"type": "error", "error": {"message": "Not found"}})

    def _bitbucket_repo(self, repo: Repo) -> dict[str, Any]:
        return {
            "uuid": "{" + hashlib.md5(repo.path.encode()).hexdigest() + "}",  # noqa: S324 - an id, not security
            "name": repo.name,
            "full_name": repo.path,
            "is_private": repo.private,
            "links": {"html": {"href": f"{self.url}/{repo.path}"}},
            "mainbranch": {"name": "main", "type": "branch"},
            "language": repo.language.lower(),
            "updated_on": "2026-11-01T10:00:00.000000+00:00",
            "description": repo.description or "",
            "size": repo.file_bytes,
        }


_API_PREFIX = {"github": "/api", "gitlab": "/api/v4", "bitbucket": "/api/2.0"}
_AUTHORIZE = {"github": "/login/oauth/authorize", "gitlab": "/oauth/authorize", "bitbucket": "/site/oauth2/authorize"}
_TOKEN = {"github": "/login/oauth/access_token", "gitlab": "/oauth/token", "bitbucket": "/site/oauth2/access_token"}


def _handler(provider: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(DispatchingHandler):
        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            provider.requests.append(f"{method} {parts.path}")
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            try:
                if method == "GET" and parts.path == _AUTHORIZE[provider.kind]:
                    provider.authorize(query)
                if provider.broken and parts.path != _AUTHORIZE[provider.kind]:
                    raise Reply(500, {"message": "Server Error"})
                if provider.limited and parts.path == _TOKEN[provider.kind]:
                    raise provider.rate_limited()
                if method == "POST" and parts.path == _TOKEN[provider.kind]:
                    length = int(self.headers.get("Content-Length") or 0)
                    form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                    body = provider.token(form, self.headers.get("Authorization"))
                    if provider.kind == "github" and "application/json" not in self.headers.get("Accept", ""):
                        raise Reply(
                            200, urlencode(body).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
                        )
                    raise Reply(200, body)
                prefix = _API_PREFIX[provider.kind]
                if method == "GET" and parts.path.startswith(prefix + "/"):
                    raw = self.path.split("?", 1)[0]  # keep %2F in GitLab's project ids
                    raise provider.api(raw[len(prefix) :], query, self.headers.get("Authorization"))
                raise Reply(404, {"message": "Not Found"})
            except Reply as reply:
                self._send(reply)

        def _send(self, reply: Reply) -> None:
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json"} | reply.headers
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
