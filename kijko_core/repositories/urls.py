"""Which repository URLs Kijko accepts, and the ``owner/repo`` name derived from one.

https only; github.com, gitlab.com, bitbucket.org and dev.azure.com, plus the self-hosted
servers of ``KIJKO_GIT_HOSTS`` (the only ones that may use http); no credentials, query or
fragment; the path shaped as the provider shapes repositories. ``parse`` raises
``InvalidRepositoryUrl`` with a sentence for people (never the URL itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from kijko_core.config import Settings
from kijko_core.git import PUBLIC_GIT_HOSTS, GitHost, configured_git_hosts

MAX_URL_LENGTH = 2048
SUPPORTED = "Invalid repository URL. Supported: GitHub, GitLab, Bitbucket"
PROVIDER_NAMES = {"github": "GitHub", "gitlab": "GitLab", "bitbucket": "Bitbucket", "azure": "Azure DevOps"}

# Per provider: the shape of one path segment. GitHub: owners are alphanumerics and single
# hyphens (≤ 39), repositories [A-Za-z0-9._-] (≤ 100); GitLab and Bitbucket allow dots and
# underscores in both; none allows "." or ".." alone, "%" or other characters.
_GITHUB_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_GITLAB_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_AZURE_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_. -]{0,63}")


class InvalidRepositoryUrl(ValueError):
    """Why a URL is not a repository Kijko accepts (a sentence for people)."""


@dataclass(frozen=True)
class RepositoryUrl:
    provider: str
    url: str  # as given, without a trailing slash
    name: str  # ``owner/repo`` (GitLab: the full group path; Azure: org/project/repo)


def _name_ok(segment: str) -> bool:
    return bool(_NAME.fullmatch(segment)) and segment not in (".", "..")


def _strip_git(segment: str) -> str:
    return segment[:-4] if segment.lower().endswith(".git") else segment


def _shape(provider: str, segments: list[str]) -> str | None:
    """The ``owner/repo`` name of a repository path (segments after the base), or None."""
    if provider == "github":
        if len(segments) == 2 and _GITHUB_OWNER.fullmatch(segments[0]):
            repo = _strip_git(segments[1])
            if _name_ok(repo):
                return f"{segments[0]}/{repo}"
        return None
    if provider == "bitbucket":
        if len(segments) == 2 and _name_ok(segments[0]):
            repo = _strip_git(segments[1])
            if _name_ok(repo):
                return f"{segments[0]}/{repo}"
        return None
    if provider == "gitlab":
        # group/subgroup/…/project; "-" starts GitLab's own routes (/-/tree/…), not a repository.
        if not 2 <= len(segments) <= 20:
            return None
        *groups, last = segments
        repo = _strip_git(last)
        names = [*groups, repo]
        if all(_GITLAB_SEGMENT.fullmatch(s) and s not in (".", "..") for s in names):
            return "/".join(names)
        return None
    if provider == "azure":
        # {organization}/{project}/_git/{repository}
        if len(segments) == 4 and segments[2] == "_git":
            org, project, repo = segments[0], segments[1], _strip_git(segments[3])
            if all(_AZURE_SEGMENT.fullmatch(s) for s in (org, project, repo)):
                return f"{org}/{project}/{repo}"
        return None
    return None


def _configured(hosts: list[GitHost], scheme: str, host: str, port: int, path: str) -> GitHost | None:
    for entry in hosts:
        if (entry.scheme, entry.host, entry.port) == (scheme, host, port) and (
            entry.path == "" or path == entry.path or path.startswith(entry.path + "/")
        ):
            return entry
    return None


def parse(settings: Settings, url: str, provider: str | None = None) -> RepositoryUrl:
    """``url`` as a repository Kijko accepts, or ``InvalidRepositoryUrl``. With ``provider``,
    the URL must be one of that provider's."""
    text = url.strip()
    if not text:
        raise InvalidRepositoryUrl("Repository URL is required")
    if len(text) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 for c in text):
        raise InvalidRepositoryUrl(SUPPORTED)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidRepositoryUrl(SUPPORTED) from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidRepositoryUrl(SUPPORTED)
    if "@" in parts.netloc:
        raise InvalidRepositoryUrl("Repository URLs cannot contain credentials; connect the provider instead")
    if "?" in text or "#" in text:
        raise InvalidRepositoryUrl("Repository URLs cannot contain a query or fragment")
    port = port or (443 if parts.scheme == "https" else 80)
    path = parts.path.rstrip("/")
    entry = _configured(configured_git_hosts(settings), parts.scheme, host, port, path)
    if entry is not None:
        found, base = entry.provider, entry.path
    elif parts.scheme == "https" and port == 443 and host in PUBLIC_GIT_HOSTS.values():
        found = next(name for name, public in PUBLIC_GIT_HOSTS.items() if public == host)
        base = ""
    elif parts.scheme == "http" and host in PUBLIC_GIT_HOSTS.values():
        raise InvalidRepositoryUrl("Repository URLs must use https")
    else:
        raise InvalidRepositoryUrl(SUPPORTED)
    if provider is not None and provider != found:
        raise InvalidRepositoryUrl(f"This is not a {PROVIDER_NAMES.get(provider, provider)} repository URL")
    segments = path[len(base) :].strip("/").split("/") if path[len(base) :].strip("/") else []
    name = _shape(found, segments)
    if name is None:
        raise InvalidRepositoryUrl(
            f"Not a {PROVIDER_NAMES[found]} repository URL"
            + (" (expected https://host/owner/repo)" if found != "azure" else " (expected …/org/project/_git/repo)")
        )
    return RepositoryUrl(provider=found, url=text.rstrip("/"), name=name)
