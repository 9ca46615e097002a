"""docker-compose.yml stays in step with the code: PostgreSQL is healthy only once it answers
over TCP (the image's initialisation server listens on its socket only), the provisioning
service runs a real ``kijko`` command, and every KIJKO_* variable is a setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kijko_cli.main import cli
from kijko_core.config import unknown_variables

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_postgres_is_healthy_only_when_it_answers_over_tcp() -> None:
    test = _compose()["services"]["postgres"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]
    assert test[test.index("-h") + 1] == "127.0.0.1"


def test_provisioning_is_a_kijko_command_that_parses() -> None:
    service = _compose()["services"]["provision"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    command = service["command"]
    assert command[0] == "kijko"
    context = cli.make_context("kijko", command[1:], resilient_parsing=True)
    group = cli.get_command(context, command[1])
    assert group is not None and command[2] in group.list_commands(context)  # type: ignore[attr-defined]


def test_a_worker_runs_next_to_the_api_with_the_same_settings_and_files() -> None:
    services = _compose()["services"]
    worker, api = services["worker"], services["api"]
    assert worker["command"] == ["kijko", "worker"]
    assert "worker" in cli.list_commands(cli.make_context("kijko", [], resilient_parsing=True))
    assert worker["environment"] == api["environment"]
    files = _compose()["x-kijko-env"]["KIJKO_STORAGE_DIR"]
    assert any(v.endswith(f":{files}") for v in worker["volumes"]) and worker["volumes"] == api["volumes"]


def test_every_kijko_variable_in_compose_is_a_setting() -> None:
    compose = _compose()
    names = list(compose["x-kijko-env"])
    for service in compose["services"].values():
        names += [n for n in (service.get("environment") or {}) if n.startswith("KIJKO_")]
    # Keycloak's realm import reads KIJKO_KEYCLOAK_CLIENT_SECRET, which is a setting as well.
    assert unknown_variables(names) == []


def test_the_image_has_git_for_ingestion() -> None:
    """The API and worker services run this image; ingestion clones with the git binary."""
    dockerfile = (Path(__file__).parent.parent / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "apt-get install" in line]
    assert any(" git" in line.split("apt-get install", 1)[1] for line in installs), installs
