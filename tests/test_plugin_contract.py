"""The contract suite plugin authors run (kijko_core.plugins.testing), run here on a sample type
that keeps the contract, and shown to notice types that break it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from kijko_core.plugins import SkillOutcome
from kijko_core.plugins.registry import SKILL_TYPES_GROUP
from kijko_core.plugins.testing import ReflexTypeContract, SampleRun, SignedSample, SkillTypeContract, delivery
from tests.plugin_samples import EchoSkill, OldApiSkill, PingReflex
from tests.test_plugins import install


@pytest.fixture
def echo_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    install(tmp_path, monkeypatch, "kijko-echo", "1.0", {SKILL_TYPES_GROUP: {"echo": "tests.plugin_samples:EchoSkill"}})
    yield


def _prefixed(outcome: SkillOutcome) -> None:
    assert outcome.output == "> hello"


@pytest.mark.usefixtures("echo_installed")
class TestEchoKeepsTheContract(SkillTypeContract):
    @pytest.fixture
    def skill_type(self) -> EchoSkill:
        return EchoSkill()

    @pytest.fixture
    def sample_config(self) -> Mapping[str, Any]:
        return {"prefix": "> "}

    @pytest.fixture
    def invalid_configs(self) -> Sequence[Mapping[str, Any]]:
        return [{"prefix": "x" * 21}, {"prefix": 3}, {"other": 1}]

    @pytest.fixture
    def sample_run(self) -> SampleRun:
        return SampleRun(config={"prefix": "> "}, prompt="hello", check=_prefixed)


def test_the_suite_notices_another_api_version_and_a_missing_entry_point() -> None:
    contract = SkillTypeContract()
    with pytest.raises(AssertionError, match="written for plugin API version 0"):
        contract.test_api_version(OldApiSkill())
    # Not installed (no dist-info here): the loader cannot find it.
    with pytest.raises(AssertionError, match="no entry point 'echo'"):
        contract.test_kijko_loads_the_installed_entry_point(EchoSkill())


def test_the_suite_notices_a_config_that_accepts_what_it_should_refuse() -> None:
    with pytest.raises(pytest.fail.Exception):
        SkillTypeContract().test_invalid_configs_are_refused(EchoSkill(), [{"prefix": "fine"}])


def test_the_suite_notices_a_signature_check_that_ignores_the_body() -> None:
    # PingReflex compares a header with the secret and never looks at the body.
    sample = SignedSample(delivery=delivery(b'{"a": 1}', {"X-Secret": "s" * 20}), secret="s" * 20, config={})
    contract = ReflexTypeContract()
    contract.test_a_correctly_signed_delivery_is_verified(PingReflex(), sample)
    with pytest.raises(pytest.fail.Exception):
        contract.test_a_tampered_or_wrongly_signed_delivery_is_refused(PingReflex(), sample)


def test_kijko_itself_never_imports_the_suite_or_pytest() -> None:
    """The suite is for plugin authors' tests: the server, worker and CLI run without pytest."""
    code = (
        "import sys, kijko_core.runtime, kijko_server.app, kijko_cli.main, kijko_core.plugins.registry;"
        "print(sorted(m for m in sys.modules if m == 'pytest' or m.startswith('kijko_core.plugins.testing')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
