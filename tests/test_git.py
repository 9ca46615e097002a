"""git through the egress guard (kijko_core/git.py), against git's own smart-HTTP server
(``git http-backend``) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kijko_core.config import Settings
from kijko_core.egress import EgressGuard
from kijko_core.git import GitFailed, GitRefused, GitTimeout, GitTooLarge, clone, ls_remote
from tests.egress_server import GitServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("git"))
    server.add_repository(
        "acme",
        "widgets",
        {"README.md": "# widgets\n", "src/app.py": "print('hi')\n"},
        symlinks={"escape": "/etc/passwd"},
    )
    server.add_repository("acme", "huge", {"blob.bin": os.urandom(3 * 1024 * 1024)})
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def reset(git_server: GitServer) -> Iterator[None]:
    yield
    git_server.redirect_to = None
    git_server.require_token = None
    git_server.delay = 0.0


@pytest.fixture
def allowed(make_settings: Any, git_server: GitServer) -> Settings:
    settings: Settings = make_settings(egress_allow_cidrs="127.0.0.0/8", git_hosts=f"gitlab={git_server.url}")
    return settings


async def test_ls_remote_through_an_allowed_network(allowed: Settings, git_server: GitServer) -> None:
    refs = await ls_remote(allowed, f"{git_server.url}/acme/widgets.git")
    assert refs["refs/heads/main"] == refs["HEAD"] == git_server.heads["acme/widgets"]


async def test_ls_remote_is_refused_without_the_allow_setting(make_settings: Any, git_server: GitServer) -> None:
    settings = make_settings(git_hosts=f"gitlab={git_server.url}")
    before = len(git_server.requests)
    with pytest.raises(GitRefused, match="loopback"):
        await ls_remote(settings, f"{git_server.url}/acme/widgets.git")
    assert len(git_server.requests) == before


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/acme/widgets.git",  # http to a host not listed with http://
        "ftp://127.0.0.1/acme/widgets.git",
        "file:///etc",
        "ext::sh -c touch% /tmp/pwned",
        "https://user:secret@127.0.0.1:{port}/acme/widgets.git",
        "https://127.0.0.1:{port}/acme/widgets.git?x=1",
        "https://[::1]:{port}/acme/widgets.git",
        "https://169.254.169.254/acme/widgets.git",
    ],
)
async def test_refused_urls(make_settings: Any, git_server: GitServer, url: str) -> None:
    settings = make_settings(egress_allow_cidrs="127.0.0.0/8", git_hosts="gitlab=https://git.example.com")
    with pytest.raises(GitRefused):
        await ls_remote(settings, url.format(port=git_server.port))


async def test_a_name_resolving_to_a_private_address_is_refused(make_settings: Any, git_server: GitServer) -> None:
    async def intranet(host: str, port: int) -> list[str]:
        return ["10.20.30.40"]

    settings = make_settings(git_hosts=f"gitlab=http://git.intranet.test:{git_server.port}")
    with pytest.raises(GitRefused, match="private"):
        await ls_remote(
            settings, f"http://git.intranet.test:{git_server.port}/acme/widgets.git", guard=EgressGuard([], intranet)
        )


async def test_git_connects_to_the_checked_address(make_settings: Any, git_server: GitServer) -> None:
    # The name exists only in the guard's resolver: git can reach the server only through
    # the pinned address (http.curloptResolve), never by a lookup of its own.
    calls: list[str] = []

    async def pinned(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    host = f"git.pinned.test:{git_server.port}"
    settings = make_settings(egress_allow_cidrs="127.0.0.0/8", git_hosts=f"gitlab=http://{host}")
    refs = await ls_remote(settings, f"http://{host}/acme/widgets.git", guard=EgressGuard(["127.0.0.0/8"], pinned))
    assert refs["refs/heads/main"] == git_server.heads["acme/widgets"]
    assert calls == ["git.pinned.test"]


async def test_a_redirect_is_not_followed(allowed: Settings, git_server: GitServer, tmp_path: Path) -> None:
    other = GitServer(tmp_path / "other")
    other.add_repository("acme", "widgets")
    other.start()
    try:
        git_server.redirect_to = other.url
        with pytest.raises(GitFailed):
            await ls_remote(allowed, f"{git_server.url}/acme/widgets.git")
        assert other.requests == []
    finally:
        other.stop()


async def test_an_unknown_repository(allowed: Settings, git_server: GitServer) -> None:
    with pytest.raises(GitFailed, match="not found"):
        await ls_remote(allowed, f"{git_server.url}/acme/nothing.git")


async def test_the_token_goes_through_the_environment(allowed: Settings, git_server: GitServer, tmp_path: Path) -> None:
    git_server.require_token = "s3cret-token"
    with pytest.raises(GitFailed) as failed:
        await ls_remote(allowed, f"{git_server.url}/acme/widgets.git")
    assert "s3cret-token" not in str(failed.value) + failed.value.stderr
    refs = await ls_remote(allowed, f"{git_server.url}/acme/widgets.git", token="s3cret-token")
    assert "refs/heads/main" in refs
    await clone(allowed, f"{git_server.url}/acme/widgets.git", tmp_path / "c", token="s3cret-token")
    assert "s3cret-token" not in (tmp_path / "c" / ".git" / "config").read_text()


async def test_the_wall_clock_limit(make_settings: Any, git_server: GitServer) -> None:
    settings = make_settings(
        egress_allow_cidrs="127.0.0.0/8", git_hosts=f"gitlab={git_server.url}", git_timeout_seconds=1
    )
    git_server.delay = 3.0
    with pytest.raises(GitTimeout):
        await ls_remote(settings, f"{git_server.url}/acme/widgets.git")


@pytest.mark.parametrize("slots", [1, 3])
async def test_git_commands_wait_for_a_slot(make_settings: Any, git_server: GitServer, slots: int) -> None:
    settings = make_settings(
        egress_allow_cidrs="127.0.0.0/8", git_hosts=f"gitlab={git_server.url}", git_max_processes=slots
    )
    for _ in range(100):  # a request left by an earlier test (killed git) may still be delayed
        if git_server.in_flight == 0:
            break
        await asyncio.sleep(0.1)
    git_server.delay = 0.3
    git_server.most_in_flight = 0
    url = f"{git_server.url}/acme/widgets.git"
    results = await asyncio.gather(*(ls_remote(settings, url) for _ in range(3)))
    assert all("refs/heads/main" in refs for refs in results)
    # One ls-remote has one request in flight at a time: the server saw at most `slots`.
    assert git_server.most_in_flight == slots


async def test_the_output_limit(allowed: Settings, git_server: GitServer) -> None:
    with pytest.raises(GitTooLarge):
        await ls_remote(allowed, f"{git_server.url}/acme/widgets.git", max_output_bytes=20)


async def test_clone_checks_out_one_shallow_branch_with_symlinks_as_files(
    allowed: Settings, git_server: GitServer, tmp_path: Path
) -> None:
    target = tmp_path / "widgets"
    await clone(allowed, f"{git_server.url}/acme/widgets.git", target)
    assert (target / "src" / "app.py").read_text() == "print('hi')\n"
    escape = target / "escape"
    assert not escape.is_symlink() and escape.read_text() == "/etc/passwd"
    assert (target / ".git" / "shallow").exists()


async def test_clone_is_refused_without_the_allow_setting(
    make_settings: Any, git_server: GitServer, tmp_path: Path
) -> None:
    with pytest.raises(GitRefused):
        await clone(
            make_settings(git_hosts=f"gitlab={git_server.url}"), f"{git_server.url}/acme/widgets.git", tmp_path / "x"
        )
    assert not (tmp_path / "x").exists()


async def test_a_clone_past_the_size_limit_is_stopped_and_removed(
    make_settings: Any, git_server: GitServer, tmp_path: Path
) -> None:
    settings = make_settings(
        egress_allow_cidrs="127.0.0.0/8", git_hosts=f"gitlab={git_server.url}", git_clone_max_bytes=1024 * 1024
    )
    with pytest.raises(GitTooLarge):
        await clone(settings, f"{git_server.url}/acme/huge.git", tmp_path / "huge")
    assert not (tmp_path / "huge").exists()
