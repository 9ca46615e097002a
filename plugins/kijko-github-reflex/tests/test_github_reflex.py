"""The ``github`` reflex type against Kijko's contract suite, with deliveries signed the way
GitHub signs them (HMAC-SHA256 of the raw body, ``X-Hub-Signature-256: sha256=<hex>``)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import pytest
from kijko_github_reflex import GitHubConfig, GitHubReflexType

from kijko_core.errors import MalformedJson, UnsupportedMediaType
from kijko_core.plugins import Delivery, SignatureInvalid
from kijko_core.plugins.testing import ReflexTypeContract, SignedSample, delivery

SECRET = "a6b1c2d3e4f5a6b1c2d3e4f5a6b1c2d3"
GUID = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
PUSH = {"ref": "refs/heads/main", "after": "9" * 40, "repository": {"full_name": "octo-org/octo-repo"}}


def github_delivery(
    payload: Any,
    secret: str,
    *,
    event: str = "push",
    guid: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    form: bool = False,
) -> Delivery:
    """A delivery as GitHub sends it."""
    text = json.dumps(payload)
    body = urlencode({"payload": text}).encode() if form else text.encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return delivery(
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": "292430182",
            "X-Hub-Signature-256": f"sha256={signature}",
        },
    )


class TestGitHubReflexKeepsTheContract(ReflexTypeContract):
    @pytest.fixture
    def reflex_type(self) -> GitHubReflexType:
        return GitHubReflexType()

    @pytest.fixture
    def sample_config(self) -> Mapping[str, Any]:
        return {"events": ["push", "pull_request"]}

    @pytest.fixture
    def invalid_configs(self) -> Sequence[Mapping[str, Any]]:
        return [
            {"events": []},
            {"events": ["Push"]},
            {"events": ["push; rm -rf"]},
            {"events": ["x" * 65]},
            {"events": [f"e{i}" for i in range(51)]},
            {"events": ["push"], "secret": "mine"},  # the secret is Kijko's to generate
        ]

    @pytest.fixture
    def signed_sample(self) -> SignedSample:
        return SignedSample(
            delivery=github_delivery(PUSH, SECRET),
            secret=SECRET,
            config={"events": ["push"]},
            delivery_id=GUID,
            payload=PUSH,
        )

    @pytest.fixture
    def rejected_sample(self) -> tuple[Mapping[str, Any], Delivery]:
        return {"events": ["pull_request"]}, github_delivery(PUSH, SECRET)


def test_githubs_own_example_signature_verifies() -> None:
    """The example of GitHub's documentation ("Validating webhook deliveries")."""
    sample = delivery(
        b"Hello, World!",
        {
            "X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "X-GitHub-Delivery": "d1",
        },
    )
    assert GitHubReflexType().verify(sample, ["It's a Secret to Everybody"]) == "d1"
    with pytest.raises(SignatureInvalid):
        GitHubReflexType().verify(sample, ["It's a secret to everybody"])


@pytest.mark.parametrize(
    "header",
    [
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",  # the legacy SHA-1 header scheme
        "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17",
        "sha256=757107ea",
        "",
    ],
)
def test_other_signature_forms_are_refused(header: str) -> None:
    sample = delivery(b"Hello, World!", {"X-Hub-Signature-256": header, "X-GitHub-Delivery": "d1"})
    with pytest.raises(SignatureInvalid):
        GitHubReflexType().verify(sample, ["It's a Secret to Everybody"])


def test_a_delivery_without_its_id_is_refused() -> None:
    signed = github_delivery(PUSH, SECRET, guid="")
    with pytest.raises(SignatureInvalid):
        GitHubReflexType().verify(signed, [SECRET])
    with pytest.raises(SignatureInvalid):
        GitHubReflexType().verify(github_delivery(PUSH, SECRET, guid="x" * 101), [SECRET])


def test_form_encoded_deliveries_are_read_from_their_payload_field() -> None:
    form = github_delivery(PUSH, SECRET, form=True)
    kind = GitHubReflexType()
    kind.verify(form, [SECRET])
    assert kind.payload(form) == PUSH
    with pytest.raises(MalformedJson):
        kind.payload(delivery(b"other=1", {"Content-Type": "application/x-www-form-urlencoded"}))
    with pytest.raises(MalformedJson):
        kind.payload(delivery(b"{not json", {"Content-Type": "application/json"}))
    with pytest.raises(UnsupportedMediaType):
        kind.payload(delivery(b"<xml/>", {"Content-Type": "application/xml"}))


def test_event_filters_and_ping() -> None:
    kind = GitHubReflexType()

    def accepts(events: list[str], event: str) -> bool:
        sample = github_delivery(PUSH, SECRET, event=event)
        return kind.accepts(GitHubConfig(events=events), sample, kind.payload(sample))

    assert accepts(["push"], "push") and not accepts(["push"], "issues")
    assert accepts(["*"], "issues") and accepts(["*"], "pull_request")
    # ping (sent when the webhook is created) fires nothing unless asked for by name.
    assert not accepts(["*"], "ping") and accepts(["ping"], "ping")
