"""Loading skill and reflex type plugins (kijko_core.plugins.registry, docs/plugins.md): what
loads, what is skipped and why, ``kijko plugins`` and ``GET /api/v1/plugins``.

Plugins are declared the way an installed distribution declares them: a ``.dist-info`` folder
with its ``entry_points.txt`` on ``sys.path`` — nothing of Kijko is patched."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kijko_cli.main import cli
from kijko_core.logging import configure_logging
from kijko_core.plugins import API_VERSION, PluginError, registry
from kijko_core.plugins.registry import PluginReport, discover
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.memberships import add_member
from tests.plugin_samples import EchoConfig, RouteSampleReflex, RouteSampleSkill


def install(
    site: Path, monkeypatch: pytest.MonkeyPatch, distribution: str, version: str, groups: dict[str, dict[str, str]]
) -> None:
    """A distribution ``distribution`` declaring ``groups`` ({group: {name: target}})."""
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    text = "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items())
        for group, entries in groups.items()
    )
    (info / "entry_points.txt").write_text(text)
    monkeypatch.syspath_prepend(str(site))


SAMPLES = "tests.plugin_samples"


def by_name(report: list[PluginReport], group: str) -> dict[str, PluginReport]:
    """The test distribution's entries (installed plugins, built-ins left out)."""
    return {item.name: item for item in report if item.group == group and item.distribution == "kijko-test-plugins"}


def test_good_plugins_load_and_broken_ones_are_skipped_with_their_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(
        tmp_path,
        monkeypatch,
        "kijko-test-plugins",
        "3.1",
        {
            registry.SKILL_TYPES_GROUP: {
                "echo": f"{SAMPLES}:EchoSkill",
                "old": f"{SAMPLES}:OldApiSkill",
                "unversioned": f"{SAMPLES}:NoVersionSkill",
                "badconfig": f"{SAMPLES}:BadConfigSkill",
                "failing": f"{SAMPLES}:FailingInitSkill",
                "abstract": f"{SAMPLES}:AbstractSkill",
                "plain": f"{SAMPLES}:NotASkill",
                "missing": "tests.no_such_plugin_module:Skill",
                "renamed": f"{SAMPLES}:EchoSkill",
                "ping": f"{SAMPLES}:PingReflex",
            },
            registry.REFLEX_TYPES_GROUP: {"ping": f"{SAMPLES}:PingReflex", "echo": f"{SAMPLES}:EchoSkill"},
            registry.CHUNKERS_GROUP: {"lines": f"{SAMPLES}:LineChunker", "nochunk": f"{SAMPLES}:EchoConfig"},
        },
    )
    buffer = io.StringIO()
    configure_logging("info", "json", stream=buffer)
    found = discover()
    skills = by_name(found.report, registry.SKILL_TYPES_GROUP)
    reasons = {name: item.reason for name, item in skills.items()}
    assert reasons == {
        "echo": None,
        "old": f"it was written for plugin API version 0; this Kijko offers {API_VERSION}",
        "unversioned": "it has no version (a non-empty string of at most 64 characters)",
        "badconfig": "its Config is not a pydantic model (a subclass of pydantic.BaseModel)",
        "failing": "creating it failed (RuntimeError: no connection)",
        "abstract": reasons["abstract"],
        "plain": "tests.plugin_samples:NotASkill is not a subclass of kijko_core.plugins.SkillType",
        "missing": "importing it failed (ModuleNotFoundError: No module named 'tests.no_such_plugin_module')",
        "renamed": "its name 'echo' differs from the entry point's name 'renamed'",
        "ping": "tests.plugin_samples:PingReflex is not a subclass of kijko_core.plugins.SkillType",
    }
    assert reasons["abstract"] is not None and reasons["abstract"].startswith("creating it failed (TypeError: ")
    echo = skills["echo"]
    assert (echo.status, echo.version, echo.description) == ("loaded", "1.2.0", "Answers its prompt")
    assert (echo.distribution, echo.distribution_version, echo.builtin) == ("kijko-test-plugins", "3.1", False)
    assert {name for name, item in skills.items() if item.status == "skipped"} == set(skills) - {"echo"}
    # Only the good ones are usable.
    assert "echo" in found.skill_types and not set(found.skill_types) & (set(skills) - {"echo"})
    reflexes = by_name(found.report, registry.REFLEX_TYPES_GROUP)
    assert reflexes["ping"].status == "loaded" and found.reflex_types["ping"].receives_webhooks
    assert (
        reflexes["echo"].reason == "tests.plugin_samples:EchoSkill is not a subclass of kijko_core.plugins.ReflexType"
    )
    chunkers = by_name(found.report, registry.CHUNKERS_GROUP)
    assert chunkers["lines"].status == "loaded"
    assert chunkers["nochunk"].reason == "tests.plugin_samples:EchoConfig does not provide a chunk method"
    # One structured line per skipped entry point, with the reason and no traceback.
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    skipped = [line for line in lines if line["event"] == "plugin_skipped"]
    assert {line["name"] for line in skipped if line["group"] == registry.SKILL_TYPES_GROUP} == set(skills) - {"echo"}
    assert all(line["level"] == "warning" and "exception" not in line for line in skipped)
    failing = next(line for line in skipped if line["name"] == "failing")
    assert failing["reason"] == reasons["failing"] and failing["distribution"] == "kijko-test-plugins"


def test_two_plugins_with_one_name_are_both_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        tmp_path / "a",
        monkeypatch,
        "kijko-echo-one",
        "1.0",
        {registry.SKILL_TYPES_GROUP: {"echo": f"{SAMPLES}:EchoSkill"}},
    )
    install(
        tmp_path / "b",
        monkeypatch,
        "kijko-echo-two",
        "2.0",
        {registry.SKILL_TYPES_GROUP: {"echo": f"{SAMPLES}:SameNameSkill"}},
    )
    found = discover()
    echoes = [item for item in found.report if item.name == "echo"]
    assert [(item.distribution, item.status) for item in echoes] == [
        ("kijko-echo-one", "skipped"),
        ("kijko-echo-two", "skipped"),
    ]
    assert {item.reason for item in echoes} == {
        "'echo' is declared by more than one plugin (kijko-echo-one, kijko-echo-two)"
    }
    assert "echo" not in found.skill_types


def test_a_plugin_cannot_replace_a_built_in_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kijko distribution's own declaration (shadowing the installed one for this discovery).
    install(
        tmp_path / "core", monkeypatch, "kijko", "9.9", {registry.SKILL_TYPES_GROUP: {"echo": f"{SAMPLES}:EchoSkill"}}
    )
    install(
        tmp_path / "p",
        monkeypatch,
        "kijko-echo",
        "1.0",
        {registry.SKILL_TYPES_GROUP: {"echo": f"{SAMPLES}:SameNameSkill"}},
    )
    found = discover()
    echoes = [item for item in found.report if item.name == "echo"]
    assert [(item.distribution, item.builtin, item.status, item.reason) for item in echoes] == [
        ("kijko", True, "loaded", None),
        ("kijko-echo", False, "skipped", "'echo' is a built-in type's name; a plugin cannot replace it"),
    ]
    assert type(found.skill_types["echo"]).__name__ == "EchoSkill"


def test_unknown_types_are_a_422_naming_the_field() -> None:
    with pytest.raises(PluginError) as unknown:
        registry.skill_type("no-such-type")
    assert unknown.value.to_body()["field"] == "skillType"
    with pytest.raises(PluginError) as trigger:
        registry.reflex_type("no-such-type")
    assert trigger.value.to_body()["code"] == "TRIGGER_TYPE_UNAVAILABLE"
    assert trigger.value.status == 422


# ---------------------------------------------------------------------------------------------
# kijko plugins


def test_kijko_plugins_lists_loaded_and_skipped_plugins_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(
        tmp_path,
        monkeypatch,
        "kijko-cli-sample",
        "0.3",
        {
            registry.SKILL_TYPES_GROUP: {"echo": f"{SAMPLES}:EchoSkill", "old": f"{SAMPLES}:OldApiSkill"},
            registry.REFLEX_TYPES_GROUP: {"ping": f"{SAMPLES}:PingReflex"},
            registry.CHUNKERS_GROUP: {"lines": f"{SAMPLES}:LineChunker"},
        },
    )
    runner = CliRunner()
    listing = runner.invoke(cli, ["plugins"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0] == f"plugin API version {API_VERSION}"
    assert "  echo\t1.2.0\tkijko-cli-sample 0.3\tloaded" in lines
    old = f"skipped: it was written for plugin API version 0; this Kijko offers {API_VERSION}"
    assert f"  old\t-\tkijko-cli-sample 0.3\t{old}" in lines
    ping = lines.index("  ping\t0.1\tkijko-cli-sample 0.3\tloaded")
    assert lines.index("reflex types:") < ping < lines.index("chunkers:")
    assert "  lines\t0.3\tkijko-cli-sample 0.3\tloaded" in lines
    # --strict: a skipped plugin fails the command (for deployment checks).
    assert runner.invoke(cli, ["plugins", "--strict"]).exit_code == 1

    document = runner.invoke(cli, ["plugins", "--json"])
    assert document.exit_code == 0
    parsed = json.loads(document.output)  # nothing but the document on stdout
    assert parsed["apiVersion"] == API_VERSION
    old = next(p for p in parsed["plugins"] if p["name"] == "old")
    assert old == {
        "group": "kijko.skill_types",
        "name": "old",
        "status": "skipped",
        "reason": f"it was written for plugin API version 0; this Kijko offers {API_VERSION}",
        "version": None,
        "description": "",
        "distribution": "kijko-cli-sample",
        "distributionVersion": "0.3",
        "builtin": False,
        "target": "tests.plugin_samples:OldApiSkill",
    }


def test_kijko_plugins_strict_passes_when_nothing_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path, monkeypatch, "kijko-fine", "1", {registry.SKILL_TYPES_GROUP: {"echo": f"{SAMPLES}:EchoSkill"}})
    done = CliRunner().invoke(cli, ["plugins", "--strict"])
    assert done.exit_code == 0, done.output


# ---------------------------------------------------------------------------------------------
# GET /api/v1/plugins


async def test_the_api_lists_the_loaded_types_with_their_config_schemas(client: Any, alice: Account) -> None:
    registry.register_skill_type(RouteSampleSkill())
    registry.register_reflex_type(RouteSampleReflex())
    response = await client.get("/api/v1/plugins", headers=alice.headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["apiVersion"] == API_VERSION
    assert [t["name"] for t in body["skillTypes"]] == sorted(registry.skill_types())
    assert [t["name"] for t in body["reflexTypes"]] == sorted(registry.reflex_types())
    echo = next(t for t in body["skillTypes"] if t["name"] == "sample-echo")
    assert echo == {
        "name": "sample-echo",
        "version": "1.2.0",
        "description": "Answers its prompt",
        "distribution": None,
        "distributionVersion": None,
        "builtin": False,
        "usesModel": False,
        "configSchema": EchoConfig.model_json_schema(),
    }
    assert echo["configSchema"]["properties"]["prefix"]["maxLength"] == 20
    ping = next(t for t in body["reflexTypes"] if t["name"] == "sample-ping")
    assert (ping["receivesWebhooks"], ping["description"], ping["version"]) == (True, "Pings", "0.1")
    assert isinstance(body["chunkers"], list)


async def test_every_role_reads_it(client: Any, kijko: Kijko, alice: Account) -> None:
    viewer = await add_member(kijko, alice.org_id, "viewer")
    member = await add_member(kijko, alice.org_id, "member")
    for account in (viewer, member):
        response = await client.get("/api/v1/plugins", headers=account.headers)
        assert response.status_code == 200
        assert (await response.get_json())["apiVersion"] == API_VERSION


async def test_the_api_needs_a_token(client: Any) -> None:
    response = await client.get("/api/v1/plugins")
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "INVALID_TOKEN"


def test_a_fresh_process_loads_the_good_types_and_logs_the_broken_ones(tmp_path: Path) -> None:
    """What ``Kijko.start`` calls (``registry.load``), in a process of its own: the broken
    plugins are left out of the types skills and reflexes can use, and each is one log line."""
    site = tmp_path / "site"
    with pytest.MonkeyPatch.context() as scoped:
        install(
            site,
            scoped,
            "kijko-mixed",
            "1.0",
            {registry.SKILL_TYPES_GROUP: {"echo": f"{SAMPLES}:EchoSkill", "failing": f"{SAMPLES}:FailingInitSkill"}},
        )
    code = (
        "from kijko_core.logging import configure_logging; configure_logging('info', 'json');"
        "from kijko_core.plugins import registry; registry.load();"
        "print(sorted(n for n in registry.skill_types() if n in ('echo', 'failing')))"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
    )
    *logs, types = done.stdout.strip().splitlines()
    assert types == "['echo']"
    skipped = [json.loads(line) for line in logs if '"plugin_skipped"' in line]
    assert [(line["name"], line["reason"]) for line in skipped] == [
        ("failing", "creating it failed (RuntimeError: no connection)")
    ]
    assert "Traceback" not in done.stdout + done.stderr
