"""git against tenant-chosen repositories, through the egress guard.

Every command is the system ``git`` run with no configuration but ours: the host is resolved
and checked by the guard and curl is pinned to that address (``http.curloptResolve``; no
second lookup), only https is allowed (http only for hosts listed with ``http://`` in
``KIJKO_GIT_HOSTS``), redirects are errors, hooks, submodules, terminal prompts and the
system/global configuration are off, credentials reach git through the environment and a
credential helper that reads it (never the command line or the URL), and each command has a
wall-clock limit and an output (clone: directory) size limit. docs/egress.md lists it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import signal
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from kijko_core.config import Settings
from kijko_core.egress import EgressGuard, EgressRefused

log = structlog.get_logger("kijko.git")

#: The hosted providers and their one host (self-hosted ones come from ``KIJKO_GIT_HOSTS``).
PUBLIC_GIT_HOSTS = {
    "github": "github.com",
    "gitlab": "gitlab.com",
    "bitbucket": "bitbucket.org",
    "azure": "dev.azure.com",
}
#: The user name a token goes with when the caller gives none (GitHub's).
TOKEN_USERNAME = "x-access-token"
#: The user name each hosted provider expects with an OAuth token over HTTPS.
TOKEN_USERNAMES = {"github": TOKEN_USERNAME, "gitlab": "oauth2", "bitbucket": "x-token-auth"}
LS_REMOTE_MAX_BYTES = 8 * 1024 * 1024
#: ``str(GitFailed)`` when the server wants credentials (or hides a private repository).
AUTHENTICATION_REQUIRED = "authentication required"
STDERR_KEPT_BYTES = 4096
_DEFAULT_PORTS = {"https": 443, "http": 80}

# A credential helper that answers from the environment: the token is in the child's
# environment only (never argv, never the URL, so never in ``ps``, logs or .git/config).
_ENV_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'printf \'username=%s\\npassword=%s\\n\' "$KIJKO_GIT_USERNAME" "$KIJKO_GIT_PASSWORD"; }; f'
)


class GitError(Exception):
    """A git command against a remote failed. ``str()`` is safe for logs; API answers should
    say no more than "not reachable"."""


class GitRefused(GitError):
    """The URL may not be fetched at all (scheme, credentials in it, or an address the egress
    guard refuses)."""


class GitFailed(GitError):
    """git ran and failed: not found, authentication required, not a repository, a redirect."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class GitTimeout(GitError):
    """The command passed its wall-clock limit and was killed."""


class GitTooLarge(GitError):
    """The command's output (or the clone's directory) passed its size limit and was killed."""


@dataclass(frozen=True)
class GitHost:
    """A self-hosted git server from ``KIJKO_GIT_HOSTS``."""

    provider: str
    scheme: str
    host: str  # lower case, as urlsplit gives it
    port: int
    path: str  # the base path, without a trailing slash ("" at the root)

    @property
    def base_url(self) -> str:
        default = _DEFAULT_PORTS[self.scheme] == self.port
        netloc = self.host if default else f"{self.host}:{self.port}"
        if ":" in self.host:
            netloc = f"[{self.host}]" if default else f"[{self.host}]:{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"


def configured_git_hosts(settings: Settings) -> list[GitHost]:
    hosts = []
    for entry in settings.git_hosts:  # validated by Settings
        provider, _, url = entry.partition("=")
        parts = urlsplit(url)
        assert parts.hostname is not None
        hosts.append(
            GitHost(
                provider=provider,
                scheme=parts.scheme,
                host=parts.hostname,
                port=parts.port or _DEFAULT_PORTS[parts.scheme],
                path=parts.path.rstrip("/"),
            )
        )
    return hosts


def http_allowed(settings: Settings, host: str, port: int) -> bool:
    """Plain http only to a host listed with ``http://`` in ``KIJKO_GIT_HOSTS``."""
    return any(h.scheme == "http" and h.host == host and h.port == port for h in configured_git_hosts(settings))


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    address: str  # the checked address curl is pinned to


async def _check_url(settings: Settings, url: str, guard: EgressGuard) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise GitRefused("not a URL") from None
    host = parts.hostname
    if not host or parts.scheme not in ("https", "http"):
        raise GitRefused("only https (and http for listed hosts) URLs")
    port = port or _DEFAULT_PORTS[parts.scheme]
    if parts.scheme == "http" and not http_allowed(settings, host, port):
        raise GitRefused("plain http only to hosts listed in KIJKO_GIT_HOSTS with http://")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise GitRefused("no credentials, query or fragment in a repository URL")
    try:
        addresses = await guard.resolve(host, port)
    except EgressRefused as refused:
        raise GitRefused(str(refused)) from None
    except OSError:
        raise GitFailed(f"cannot resolve {host}") from None
    return _Target(url, parts.scheme, host, port, str(addresses[0]))


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _config(target: _Target, *, token: bool) -> list[str]:
    address = f"[{target.address}]" if ":" in target.address else target.address
    settings = [
        "protocol.allow=never",  # every transport off …
        "protocol.https.allow=always",  # … but https,
        *(["protocol.http.allow=always"] if target.scheme == "http" else []),  # (listed hosts)
        "http.followRedirects=false",  # a redirect is an error (also: no http-alternates)
        # The checked address (a literal address in the URL is already the one checked).
        *([f"http.curloptResolve={target.host}:{target.port}:{address}"] if not _literal(target.host) else []),
        "http.sslVerify=true",
        "http.proxy=",
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "core.symlinks=false",  # a hostile tree's symlinks are checked out as plain files
        "core.askPass=",
        "credential.interactive=false",
        "credential.helper=",  # reset the list, then (only with a token) our env helper
        *([f"credential.helper={_ENV_CREDENTIAL_HELPER}"] if token else []),
        "submodule.recurse=false",
        "fetch.recurseSubmodules=false",
        "transfer.fsckObjects=true",
        "init.templateDir=",  # no template hooks copied into a clone
    ]
    args: list[str] = []
    for item in settings:
        args += ["-c", item]
    return args


@contextlib.asynccontextmanager
async def _environment(token: str | None, username: str) -> AsyncIterator[dict[str, str]]:
    home = await asyncio.to_thread(tempfile.mkdtemp, prefix="kijko-git-")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,  # empty: no ~/.gitconfig, ~/.netrc, ~/.git-credentials
        "XDG_CONFIG_HOME": home,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
    }
    if token is not None:
        env["KIJKO_GIT_USERNAME"] = username
        env["KIJKO_GIT_PASSWORD"] = token
    try:
        yield env
    finally:
        await asyncio.to_thread(shutil.rmtree, home, True)


def _kill(process: asyncio.subprocess.Process) -> None:
    # git runs git-remote-https as a child: the whole process group goes (ours: new session).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def _read_capped(
    stream: asyncio.StreamReader, limit: int, sink: Callable[[bytes], None] | None = None
) -> bytes | None:
    """Everything on ``stream`` (or b"" when each chunk went to ``sink`` instead of being
    kept), or None once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    seen = 0
    while chunk := await stream.read(65536):
        seen += len(chunk)
        if seen > limit:
            return None
        if sink is None:
            chunks.append(chunk)
        else:
            sink(chunk)
    return b"".join(chunks)


async def _tail(stream: asyncio.StreamReader) -> bytes:
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-STDERR_KEPT_BYTES:]
    return kept


# Per event loop (a semaphore belongs to one loop): how many git commands may run at once.
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _slots(limit: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    current = _SLOTS.get(loop)
    if current is None or current[0] != limit:
        current = _SLOTS[loop] = (limit, asyncio.Semaphore(limit))
    return current[1]


async def _run(
    args: Sequence[str],
    env: dict[str, str],
    *,
    seconds: float,
    max_output: int,
    max_processes: int,
    cwd: str | None = None,
    watch: Path | None = None,
    max_tree_bytes: int | None = None,
    sink: Callable[[bytes], None] | None = None,
) -> str:
    """Run git in one of ``max_processes`` slots; waiting for a slot counts towards
    ``seconds`` (many validations at once queue, they do not fork without bound)."""
    slots = _slots(max_processes)
    started = asyncio.get_running_loop().time()
    try:
        await asyncio.wait_for(slots.acquire(), timeout=seconds)
    except TimeoutError:
        raise GitTimeout("too many git commands running; try again later") from None
    try:
        left = seconds - (asyncio.get_running_loop().time() - started)
        return await _run_in_slot(
            args,
            env,
            seconds=max(left, 0.1),
            max_output=max_output,
            cwd=cwd,
            watch=watch,
            max_tree_bytes=max_tree_bytes,
            sink=sink,
        )
    finally:
        slots.release()


async def _run_in_slot(
    args: Sequence[str],
    env: dict[str, str],
    *,
    seconds: float,
    max_output: int,
    cwd: str | None = None,
    watch: Path | None = None,
    max_tree_bytes: int | None = None,
    sink: Callable[[bytes], None] | None = None,
) -> str:
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    reading = asyncio.gather(_read_capped(process.stdout, max_output, sink), _tail(process.stderr))
    watcher = (
        asyncio.create_task(_watch_tree(watch, max_tree_bytes))
        if watch is not None and max_tree_bytes is not None
        else None
    )
    try:
        waiting: list[asyncio.Future[object]] = [reading]  # type: ignore[list-item]
        if watcher is not None:
            waiting.append(watcher)  # type: ignore[arg-type]
        done, _ = await asyncio.wait(waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise GitTimeout(f"git took longer than {seconds:g} s")
        if watcher is not None and watcher in done:
            raise GitTooLarge(f"the clone grew past {max_tree_bytes} bytes")
        stdout, stderr = reading.result()
        if stdout is None:
            raise GitTooLarge(f"git wrote more than {max_output} bytes")
        code = await asyncio.wait_for(process.wait(), timeout=5)
    finally:
        if process.returncode is None:
            _kill(process)
            await process.wait()
        reading.cancel()
        if watcher is not None:
            watcher.cancel()
    if code != 0:
        text = stderr.decode("utf-8", "replace").strip()
        raise GitFailed(_summary(text), text)
    return stdout.decode("utf-8", "replace")


def _summary(stderr: str) -> str:
    lower = stderr.lower()
    if "not found" in lower or "does not appear to be a git repository" in lower:
        return "repository not found"
    if "authentication" in lower or "could not read username" in lower or "401" in lower:
        return AUTHENTICATION_REQUIRED
    if "redirect" in lower:
        return "the server redirected (redirects are not followed)"
    if "could not resolve" in lower or "failed to connect" in lower or "couldn't connect" in lower:
        return "the server is not reachable"
    return "git failed"


def _tree_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):  # os.walk does not follow symlinks
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


async def _watch_tree(path: Path, limit: int) -> None:
    """Returns once the tree under ``path`` is larger than ``limit`` bytes."""
    while True:
        await asyncio.sleep(0.5)
        if await asyncio.to_thread(_tree_size, path) > limit:
            return


def _reference_lines(output: str) -> dict[str, str]:
    refs: dict[str, str] = {}
    for line in output.splitlines():
        sha, _, name = line.partition("\t")
        if name:
            refs[name] = sha
    return refs


async def ls_remote(
    settings: Settings,
    url: str,
    *,
    token: str | None = None,
    username: str = TOKEN_USERNAME,
    guard: EgressGuard | None = None,
    patterns: Sequence[str] = (),
    max_output_bytes: int = LS_REMOTE_MAX_BYTES,
) -> dict[str, str]:
    """``git ls-remote`` of ``url`` through the guard: ``{ref name: commit id}`` (HEAD
    included when the server tells it), only the refs matching ``patterns`` when given (the
    server filters them too, with protocol v2). Raises ``GitRefused``, ``GitFailed``,
    ``GitTimeout`` or ``GitTooLarge``; success means the repository is reachable."""
    if any(p.startswith("-") for p in patterns):
        raise GitRefused("not a ref pattern")
    target = await _check_url(settings, url, guard or EgressGuard.from_settings(settings))
    async with _environment(token, username) as env:
        output = await _run(
            [*_config(target, token=token is not None), "ls-remote", "--", target.url, *patterns],
            env,
            seconds=settings.git_timeout_seconds,
            max_processes=settings.git_max_processes,
            max_output=max_output_bytes,
        )
    return _reference_lines(output)


async def clone(
    settings: Settings,
    url: str,
    destination: Path,
    *,
    token: str | None = None,
    username: str = TOKEN_USERNAME,
    branch: str | None = None,
    depth: int | None = 1,
    guard: EgressGuard | None = None,
) -> None:
    """Clone ``url`` into ``destination`` (which must not exist) through the guard: one branch
    (``branch`` or the remote's default), ``depth`` commits (None: all), no tags, no
    submodules, symlinks as plain files, objects checked. Stopped and removed when it takes
    longer than ``KIJKO_GIT_CLONE_TIMEOUT_SECONDS`` or grows past ``KIJKO_GIT_CLONE_MAX_BYTES``.

    The ingestion issue builds on this (file-count caps and the walk over the tree are its
    part); treat the result as hostile input.
    """
    target = await _check_url(settings, url, guard or EgressGuard.from_settings(settings))
    if branch is not None and (branch.startswith("-") or not branch.strip()):
        raise GitRefused("not a branch name")
    if await asyncio.to_thread(destination.exists):
        raise FileExistsError(destination)
    options = ["--single-branch", "--no-tags", "--no-recurse-submodules", "--quiet"]
    if depth is not None:
        options.append(f"--depth={int(depth)}")
    if branch is not None:
        options += ["--branch", branch]
    async with _environment(token, username) as env:
        try:
            await _run(
                [*_config(target, token=token is not None), "clone", *options, "--", target.url, str(destination)],
                env,
                seconds=settings.git_clone_timeout_seconds,
                max_processes=settings.git_max_processes,
                max_output=LS_REMOTE_MAX_BYTES,
                watch=destination,
                max_tree_bytes=settings.git_clone_max_bytes,
            )
            if await asyncio.to_thread(_tree_size, destination) > settings.git_clone_max_bytes:
                raise GitTooLarge(f"the clone grew past {settings.git_clone_max_bytes} bytes")
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, destination, True)
            raise


#: The most ``git ls-files`` output read from a checkout (about 2.5 million entries; it is
#: parsed as it comes, only the link paths are kept).
LS_FILES_MAX_BYTES = 256 * 1024 * 1024
#: git's modes of entries that are no regular file: a symbolic link, a submodule.
_LINK_MODES = (b"120000 ", b"160000 ")


@dataclass(frozen=True)
class CheckedOut:
    """What git recorded about a clone: its commit and the paths it holds as symbolic links
    or submodules (``clone`` checks links out as plain files holding the target's name, and
    leaves submodules as empty directories: readers skip these paths)."""

    commit: str
    links: frozenset[str]


class _LinkPaths:
    """Collects the link and submodule paths of ``git ls-files --stage -z`` output, fed in
    chunks (``<mode> <object> <stage>\t<path>\0`` records)."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self._rest = b""

    def feed(self, chunk: bytes) -> None:
        *records, self._rest = (self._rest + chunk).split(b"\0")
        for record in records:
            if record.startswith(_LINK_MODES):
                # As os.scandir names files: UTF-8, undecodable bytes as surrogates.
                self.paths.add(record.partition(b"\t")[2].decode("utf-8", "surrogateescape"))


async def inspect(settings: Settings, checkout: Path) -> CheckedOut:
    """Read the commit and the link paths of a clone made by ``clone`` (local only: no network,
    no hooks, our configuration only). Raises ``GitFailed``, or ``GitTooLarge`` when the index
    lists more than ``LS_FILES_MAX_BYTES`` of entries."""
    async with _environment(None, TOKEN_USERNAME) as env:
        env = {**env, "GIT_DIR": str(checkout / ".git"), "GIT_WORK_TREE": str(checkout)}
        local = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false"]
        commit = await _run(
            [*local, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
            env,
            seconds=settings.git_timeout_seconds,
            max_processes=settings.git_max_processes,
            max_output=4096,
            cwd=str(checkout),
        )
        links = _LinkPaths()
        await _run(
            [*local, "ls-files", "--stage", "-z"],
            env,
            seconds=settings.git_timeout_seconds,
            max_processes=settings.git_max_processes,
            max_output=LS_FILES_MAX_BYTES,
            cwd=str(checkout),
            sink=links.feed,
        )
    return CheckedOut(commit=commit.strip(), links=frozenset(links.paths))
