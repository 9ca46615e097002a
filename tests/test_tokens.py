"""Access-token verification through HTTP (ARCHITECTURE §4, issue 2 §8 "Tokens"): every kind of
bad token answers 401 INVALID_TOKEN in the error shape; a correctly forged one is accepted,
which shows the rejections are about the one thing each case changes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import Key, RSAKey

from kijko_core.auth.local.keys import SigningKeyStore
from kijko_core.auth.local.provider import LocalProvider
from kijko_core.auth.tokens import TokenVerifier
from kijko_core.errors import InvalidToken
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.conftest import Account
from tests.tokens import (
    b64url,
    bearer,
    claims_from,
    forge,
    fresh_key,
    hs256,
    private_key,
    sign,
    unsigned,
    unverified_parts,
)

ME = "/api/v1/auth/me"


async def assert_invalid_token(response: Any) -> None:
    assert response.status_code == 401
    assert await response.get_json() == {
        "detail": "The access token is missing, expired or invalid",
        "code": "INVALID_TOKEN",
        "message": "The access token is missing, expired or invalid",
    }


async def test_a_token_forged_with_the_real_key_and_unchanged_claims_is_accepted(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    token = await forge(kijko, alice.access_token)
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200
    assert (await response.get_json())["id"] == alice.user_id


async def test_missing_authorization_header(client: Any, alice: Account) -> None:
    await assert_invalid_token(await client.get(ME))
    await assert_invalid_token(await client.get("/api/v1/projects"))


@pytest.mark.parametrize("scheme", ["Basic", "Token", "JWT", ""])
async def test_other_schemes_than_bearer(client: Any, alice: Account, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {alice.access_token}".strip()}
    await assert_invalid_token(await client.get(ME, headers=headers))


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage",
        "a.b.c",
        "...",
        "eyJhbGciOiJSUzI1NiJ9",
        b64url(b"[1,2]") + ".e30.",
        b64url(b"\xff\xfe") + ".e30.sig",
        "é.é.é",
        # A header nested deeper than the JSON parser's recursion limit.
        b64url(b"[" * 5000 + b"]" * 5000) + ".e30.sig",
    ],
)
async def test_garbage(client: Any, garbage: str) -> None:
    await assert_invalid_token(await client.get(ME, headers=bearer(garbage)))


async def test_bearer_with_an_empty_token(client: Any) -> None:
    await assert_invalid_token(await client.get(ME, headers={"Authorization": "Bearer "}))


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("expired beyond the leeway", {"iat": -1000, "nbf": -1000, "exp": -120}),
        ("not yet valid beyond the leeway", {"nbf": 120}),
        ("issued in the future", {"iat": 120, "nbf": 0}),
        ("wrong issuer", {"iss": "http://evil.test"}),
        ("issuer with a trailing slash", {"iss": "http://kijko.test/"}),
        ("wrong audience", {"aud": "another-api"}),
        ("audience list without ours", {"aud": ["another-api", "account"]}),
        ("missing aud", {"aud": None}),
        ("missing exp", {"exp": None}),
        ("missing sid", {"sid": None}),
        ("missing sub", {"sub": None}),
        ("sub not a user id", {"sub": "admin"}),
        ("ID token instead of an access token", {"typ": "ID"}),
        ("refresh token instead of an access token", {"typ": "Refresh"}),
        ("missing typ", {"typ": None}),
    ],
)
async def test_claims_that_make_a_validly_signed_token_invalid(
    client: Any, kijko: Kijko, alice: Account, case: str, overrides: dict[str, Any]
) -> None:
    now = int(time.time())
    times = {k: now + v for k, v in overrides.items() if k in ("iat", "nbf", "exp") and v is not None}
    others = {k: v for k, v in overrides.items() if k not in times}
    token = await forge(kijko, alice.access_token, **others, **times)
    await assert_invalid_token(await client.get(ME, headers=bearer(token)))


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": -10},  # expired, but within the 30 s leeway
        {"nbf": 10},  # not yet valid, but within the leeway
        {"aud": ["account", "kijko-api"]},  # our audience among others
    ],
)
async def test_small_clock_skew_and_audience_lists_are_accepted(
    client: Any, kijko: Kijko, alice: Account, overrides: dict[str, Any]
) -> None:
    now = int(time.time())
    values = {k: (now + v if k in ("exp", "nbf") else v) for k, v in overrides.items()}
    token = await forge(kijko, alice.access_token, **values)
    assert (await client.get(ME, headers=bearer(token))).status_code == 200


async def test_bad_signature(client: Any, alice: Account) -> None:
    header, _ = unverified_parts(alice.access_token)
    # Right kid, right claims, wrong key.
    token = sign(claims_from(alice.access_token), fresh_key(), kid=header["kid"])
    await assert_invalid_token(await client.get(ME, headers=bearer(token)))


async def test_tampered_claims_keep_the_old_signature(client: Any, alice: Account, bob: Account) -> None:
    head, _, signature = alice.access_token.split(".")
    payload = b64url(json.dumps(claims_from(alice.access_token, sub=bob.user_id)).encode())
    await assert_invalid_token(await client.get(ME, headers=bearer(f"{head}.{payload}.{signature}")))


async def test_alg_none(client: Any, alice: Account) -> None:
    header, _ = unverified_parts(alice.access_token)
    token = unsigned(claims_from(alice.access_token), header["kid"])
    await assert_invalid_token(await client.get(ME, headers=bearer(token)))


async def test_hs256_signed_with_the_public_key(client: Any, kijko: Kijko, alice: Account) -> None:
    """Algorithm confusion: the attacker knows the public key from the JWKS."""
    header, _ = unverified_parts(alice.access_token)
    public = (await private_key(kijko, header["kid"])).as_pem(private=False)
    jwks = await (await client.get("/.well-known/jwks.json")).get_json()
    public_jwk = next(key for key in jwks["keys"] if key["kid"] == header["kid"])
    claims = claims_from(alice.access_token)
    for secret in (public, public.strip(), json.dumps(public_jwk).encode()):
        token = hs256(claims, secret, header["kid"])
        await assert_invalid_token(await client.get(ME, headers=bearer(token)))


async def test_unknown_kid(client: Any, alice: Account) -> None:
    token = sign(claims_from(alice.access_token), fresh_key())
    await assert_invalid_token(await client.get(ME, headers=bearer(token)))


async def test_no_kid(client: Any, kijko: Kijko, alice: Account) -> None:
    header, _ = unverified_parts(alice.access_token)
    key = await private_key(kijko, header["kid"])
    claims = claims_from(alice.access_token)
    await assert_invalid_token(await client.get(ME, headers=bearer(sign(claims, key, kid=""))))
    without_kid = RSAKey.import_key({k: v for k, v in key.as_dict(private=True).items() if k != "kid"})
    token = jwt.encode({"alg": "RS256"}, claims, without_kid)
    assert "kid" not in unverified_parts(token)[0]
    await assert_invalid_token(await client.get(ME, headers=bearer(token)))


class CountingKeyStore(SigningKeyStore):
    """The real database key source, counting how often the verifier asks it."""

    loads = 0

    async def load(self) -> Mapping[str, Key]:
        self.loads += 1
        return await super().load()


async def test_fifty_unknown_kids_cause_at_most_one_key_load_per_interval(
    make_settings: Any, kijko: Kijko, alice: Account
) -> None:
    settings = make_settings(jwks_refresh_interval_seconds=1)
    store = CountingKeyStore(
        kijko.system_db,
        kijko.keyring,
        retired_visible_seconds=900,
        recheck_seconds=1,
        publish_ahead_seconds=2,
    )
    provider = LocalProvider(settings, kijko.system_db, kijko.keyring)
    provider.verifier = TokenVerifier(
        store,
        issuer=settings.issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        refresh_interval_seconds=settings.jwks_refresh_interval_seconds,
    )
    app = create_app(kijko=dataclasses.replace(kijko, settings=settings, identity=provider))
    try:
        async with app.test_app():
            client = app.test_client()
            attacker = fresh_key()
            claims = claims_from(alice.access_token)
            forged = [sign(claims, attacker, kid=f"unknown-{i}") for i in range(50)]
            responses = await asyncio.gather(*(client.get(ME, headers=bearer(t)) for t in forged))
            assert [r.status_code for r in responses] == [401] * 50
            assert store.loads == 1
            # The one load fetched the real keys: a genuine token needs no further load.
            assert (await client.get(ME, headers=alice.headers)).status_code == 200
            assert store.loads == 1
            # Once the interval has passed, an unknown kid may look again, once.
            await asyncio.sleep(1.1)
            more = [sign(claims, attacker, kid=f"later-{i}") for i in range(10)]
            responses = await asyncio.gather(*(client.get(ME, headers=bearer(t)) for t in more))
            assert [r.status_code for r in responses] == [401] * 10
            assert store.loads == 2
    finally:
        await provider.close()


async def test_organization_and_roles_come_from_memberships_not_from_claims(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    # A validly signed token naming an organization the user does not belong to: 403, no data.
    token = await forge(kijko, alice.access_token, org_id=bob.org_id)
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 403
    assert (await response.get_json())["code"] == "FORBIDDEN"
    # Role claims are ignored: the roles are the membership's.
    token = await forge(kijko, alice.access_token, roles=["viewer"], realm_access={"roles": ["admin"]})
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200
    assert (await response.get_json())["roles"] == ["owner"]


class ChangingKeySource:
    """A key source (as Keycloak's JWKS) whose answers the test sets: a key set, or a failure."""

    def __init__(self, keys: Mapping[str, Key]) -> None:
        self.keys: Mapping[str, Key] | Exception = keys

    async def load(self) -> Mapping[str, Key]:
        if isinstance(self.keys, Exception):
            raise self.keys
        return self.keys


def verifier_over(source: ChangingKeySource, interval: float) -> TokenVerifier:
    return TokenVerifier(
        source,
        issuer="http://kijko.test",
        audience="kijko-api",
        leeway_seconds=0,
        refresh_interval_seconds=interval,
    )


async def test_a_key_that_leaves_the_source_stops_verifying_within_an_interval(
    alice: Account,
) -> None:
    key = fresh_key()
    token = sign(claims_from(alice.access_token), key, kid="k1")
    source = ChangingKeySource({"k1": key})
    verifier = verifier_over(source, interval=0.2)
    assert str((await verifier.verify(token)).user_id) == alice.user_id
    source.keys = {}
    # Cached for the interval, then dropped although the kid is known.
    assert str((await verifier.verify(token)).user_id) == alice.user_id
    await asyncio.sleep(0.25)
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_a_failing_source_keeps_known_keys_and_fails_unknown_ones(alice: Account) -> None:
    key = fresh_key()
    token = sign(claims_from(alice.access_token), key, kid="k1")
    source = ChangingKeySource({"k1": key})
    verifier = verifier_over(source, interval=0.2)
    await verifier.verify(token)
    source.keys = ConnectionError("key source down")
    await asyncio.sleep(0.25)
    assert str((await verifier.verify(token)).user_id) == alice.user_id
    await asyncio.sleep(0.25)
    other = sign(claims_from(alice.access_token), fresh_key(), kid="k2")
    with pytest.raises(ConnectionError):
        await verifier.verify(other)


# --- tokens verified once, then remembered --------------------------------------------------


async def test_a_remembered_token_still_expires(alice: Account) -> None:
    key = fresh_key()
    now = [time.time()]
    verifier = TokenVerifier(
        ChangingKeySource({"k1": key}),
        issuer="http://kijko.test",
        audience="kijko-api",
        leeway_seconds=5,
        refresh_interval_seconds=3600,
        clock=lambda: now[0],
    )
    claims = claims_from(alice.access_token)
    token = sign(claims, key, kid="k1")
    await verifier.verify(token)
    now[0] = claims["exp"] + 5  # the last second the leeway allows
    assert str((await verifier.verify(token)).user_id) == alice.user_id
    now[0] = claims["exp"] + 6
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_a_remembered_token_is_refused_once_its_kid_names_another_key(alice: Account) -> None:
    old, new = fresh_key(), fresh_key()
    source = ChangingKeySource({"k1": old})
    verifier = verifier_over(source, interval=0.2)
    token = sign(claims_from(alice.access_token), old, kid="k1")
    await verifier.verify(token)
    source.keys = {"k1": new}  # the same kid, other key material
    await asyncio.sleep(0.25)
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_remembered_tokens_are_bounded(alice: Account) -> None:
    key = fresh_key()
    verifier = verifier_over(ChangingKeySource({"k1": key}), interval=3600)
    verifier.CACHE_SIZE = 3
    tokens = [sign(claims_from(alice.access_token, jti=str(n)), key, kid="k1") for n in range(5)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._verified) == 3
    assert list(verifier._verified) == tokens[2:]  # the oldest went first
    # A forgotten token is verified in full again, and still valid.
    assert str((await verifier.verify(tokens[0])).user_id) == alice.user_id


class SlowKeySource(ChangingKeySource):
    """A key source whose load waits until the test lets it answer (a JWKS over the network, a
    busy database), counting its loads."""

    def __init__(self, keys: Mapping[str, Key]) -> None:
        super().__init__(keys)
        self.answer = asyncio.Event()
        self.loads = 0

    async def load(self) -> Mapping[str, Key]:
        self.loads += 1
        await self.answer.wait()
        return await super().load()


async def test_a_burst_on_a_fresh_verifier_waits_for_the_first_key_load(alice: Account) -> None:
    # A restarted API process gets every Socket.IO client's handshake at once: none may be
    # refused because the key set is still loading (found by bench/socketio_fanout.py).
    key = fresh_key()
    source = SlowKeySource({"k1": key})
    verifier = verifier_over(source, interval=3600)
    token = sign(claims_from(alice.access_token), key, kid="k1")
    burst = [asyncio.create_task(verifier.verify(token)) for _ in range(20)]
    for _ in range(20):  # turns of the loop: every task reaches the key lookup (no I/O before it)
        await asyncio.sleep(0)
    assert source.loads == 1
    assert not any(task.done() for task in burst)  # they wait for the load, none refused
    source.answer.set()
    identities = await asyncio.gather(*burst)
    assert {str(identity.user_id) for identity in identities} == {alice.user_id}
    assert source.loads == 1
