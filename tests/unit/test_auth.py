"""Bearer tokens (libs/platform/auth.py): what a provider's token must be, every refusal, and how the
provider's keys are read. The keys are made here; the provider is a discovery document and a JWKS in
memory, read through the fetch function ``ProviderKeys`` takes (tests/e2e/test_identity.py runs a real one)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from libs.platform.auth import InvalidToken, Principal, ProviderKeys, Role, Tokens, mint_token
from libs.platform.settings import Settings

ISSUER = "https://id.example"
AUDIENCE = "https://api.warmbee.example"
MAKERS: dict[str, Any] = {
    "RS256": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    "ES256": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    "EdDSA": (ed25519.Ed25519PrivateKey.generate, OKPAlgorithm),
}


@dataclass
class SigningKey:
    alg: str
    kid: str
    private: Any

    @classmethod
    def new(cls, alg: str = "RS256") -> SigningKey:
        return cls(alg, f"{alg.lower()}-{uuid.uuid4().hex[:8]}", MAKERS[alg][0]())

    def public_jwk(self) -> dict[str, Any]:
        jwk = dict(json.loads(MAKERS[self.alg][1].to_jwk(self.private.public_key())))
        return jwk | {"kid": self.kid, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **header})


@dataclass
class Provider:
    """The provider as warmbee reads it: a discovery document and a JWKS, counting the reads."""

    keys: list[SigningKey]
    issuer: str = ISSUER
    reads: list[str] = field(default_factory=list)

    async def fetch(self, url: str, timeout_s: float) -> dict[str, Any]:
        self.reads.append(url)
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return {"issuer": self.issuer, "jwks_uri": f"{ISSUER}/jwks"}
        assert url == f"{ISSUER}/jwks"
        return {"keys": [k.public_jwk() for k in self.keys]}

    @property
    def jwks_reads(self) -> int:
        return self.reads.count(f"{ISSUER}/jwks")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "auth_issuer": ISSUER,
        "auth_audience": AUDIENCE,
        "auth_jwks_min_refresh_s": 60,
        "auth_jwks_max_age_s": 300,
    }
    return Settings(**(values | overrides))


def tokens_of(provider: Provider, clock: Clock | None = None, **overrides: Any) -> Tokens:
    configured = settings(**overrides)
    return Tokens(configured, ProviderKeys(configured, provider.fetch, clock or Clock()))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "volunteer-platform", "role": "source", "iat": now, "exp": now + 300}
    return {k: v for k, v in (base | overrides).items() if v is not None}


async def refused(tokens: Tokens, token: str) -> str:
    with pytest.raises(InvalidToken) as raised:
        await tokens.verify(token)
    return str(raised.value)


# --- what is accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_a_provider_token_signed_with_each_algorithm_gives_its_sub_and_role(alg: str) -> None:
    key = SigningKey.new(alg)
    tokens = tokens_of(Provider([key]))
    principal = await tokens.verify(key.sign(claims(sub="rider-42", role="rider")))
    assert principal == Principal(sub="rider-42", role=Role.RIDER)


async def test_the_keys_are_read_once_for_many_tokens() -> None:
    key, provider = SigningKey.new(), Provider([])
    provider.keys.append(key)
    tokens = tokens_of(provider)
    for sub in ("a", "b", "c"):
        await tokens.verify(key.sign(claims(sub=sub)))
    assert provider.reads == [f"{ISSUER}/.well-known/openid-configuration", f"{ISSUER}/jwks"]


async def test_clocks_may_differ_by_the_leeway() -> None:
    key = SigningKey.new()
    tokens = tokens_of(Provider([key]), auth_leeway_s=30)
    now = int(time.time())
    assert await tokens.verify(key.sign(claims(exp=now - 20, nbf=now + 20, iat=now + 20)))


# --- every refusal --------------------------------------------------------------------------------


async def test_a_token_of_another_issuer_is_refused() -> None:
    key = SigningKey.new()
    assert "Invalid issuer" in await refused(tokens_of(Provider([key])), key.sign(claims(iss="https://other.example")))


async def test_a_token_for_another_audience_is_refused() -> None:
    key = SigningKey.new()
    token = key.sign(claims(aud="https://canteen.example"))
    assert "Audience doesn't match" in await refused(tokens_of(Provider([key])), token)


async def test_a_token_without_an_audience_is_refused() -> None:
    key = SigningKey.new()
    assert '"aud"' in await refused(tokens_of(Provider([key])), key.sign(claims(aud=None)))


async def test_an_expired_token_is_refused_past_the_leeway() -> None:
    key = SigningKey.new()
    token = key.sign(claims(exp=int(time.time()) - 40))
    assert "expired" in await refused(tokens_of(Provider([key]), auth_leeway_s=30), token)


async def test_a_token_not_yet_valid_is_refused_past_the_leeway() -> None:
    key = SigningKey.new()
    token = key.sign(claims(nbf=int(time.time()) + 40))  # 10 s past the leeway: a slow machine cannot reach it
    assert "not yet valid" in await refused(tokens_of(Provider([key]), auth_leeway_s=30), token)


async def test_a_token_seen_before_is_refused_once_it_expires() -> None:
    """Verified tokens are cached; the cache must not keep one valid past its exp."""
    key = SigningKey.new()
    tokens = tokens_of(Provider([key]), auth_leeway_s=0)
    token = key.sign(claims(exp=int(time.time()) + 1))
    assert await tokens.verify(token)
    await asyncio.sleep(1.1)
    assert "expired" in await refused(tokens, token)


async def test_a_token_signed_by_an_unknown_key_is_refused_after_one_read_of_the_jwks() -> None:
    known, stranger = SigningKey.new(), SigningKey.new()
    provider, clock = Provider([known]), Clock()
    tokens = tokens_of(provider, clock)
    assert await tokens.verify(known.sign(claims()))
    clock.now += 61
    assert f"no key {stranger.kid!r}" in await refused(tokens, stranger.sign(claims()))
    assert provider.jwks_reads == 2


async def test_unknown_kids_read_the_jwks_at_most_once_a_minute() -> None:
    """Tokens with made-up kids must not make every request fetch from the provider."""
    known = SigningKey.new()
    provider, clock = Provider([known]), Clock()
    tokens = tokens_of(provider, clock, auth_jwks_min_refresh_s=60)
    assert await tokens.verify(known.sign(claims()))
    for _ in range(5):
        await refused(tokens, SigningKey.new().sign(claims()))
        clock.now += 10
    assert provider.jwks_reads == 1  # 40 s after the first read: none yet
    clock.now += 20
    await refused(tokens, SigningKey.new().sign(claims()))
    assert provider.jwks_reads == 2


async def test_a_rotated_key_is_picked_up_when_a_token_names_it() -> None:
    old, new = SigningKey.new("ES256"), SigningKey.new("ES256")
    provider, clock = Provider([old]), Clock()
    tokens = tokens_of(provider, clock)
    assert await tokens.verify(old.sign(claims()))
    provider.keys = [new, old]  # the provider rotates: a new signing key, the old one still published
    clock.now += 60
    assert await tokens.verify(new.sign(claims(sub="grid-office")))
    assert await tokens.verify(old.sign(claims()))


async def test_a_key_the_provider_removed_stops_being_trusted_once_the_jwks_is_read_again() -> None:
    """Even for a token that was verified (and cached) while its key was published."""
    old, new = SigningKey.new(), SigningKey.new()
    provider, clock = Provider([old]), Clock()
    tokens = tokens_of(provider, clock, auth_jwks_max_age_s=300)
    token = old.sign(claims())
    assert await tokens.verify(token)
    provider.keys = [new]
    clock.now += 301
    assert await tokens.verify(token)  # the stale JWKS serves while it is read again in the background
    await asyncio.sleep(0)  # the background read
    assert f"no key {old.kid!r}" in await refused(tokens, token)


async def test_a_provider_that_cannot_be_read_refuses_its_tokens_and_keeps_the_keys_it_had() -> None:
    key = SigningKey.new()
    provider, clock = Provider([key], issuer="https://impostor.example"), Clock()
    tokens = tokens_of(provider, clock)
    assert "could not be read" in await refused(tokens, key.sign(claims()))
    provider.issuer = ISSUER
    clock.now += 5  # a first read that failed is tried again soon: the provider may still be starting
    assert await tokens.verify(key.sign(claims()))


async def test_hs256_is_refused_outside_local_even_with_the_right_secret() -> None:
    local = Settings(env="local")
    token = mint_token(local, Role.OPERATOR, "ops-1")
    assert "only where WARMBEE_ENV=local" in await refused(tokens_of(Provider([SigningKey.new()])), token)
    # Also where settings were copied into env=test without validation (model_copy):
    assert "only where WARMBEE_ENV=local" in await refused(Tokens(local.model_copy(update={"env": "test"})), token)
    assert await Tokens(local).verify(token) == Principal(sub="ops-1", role=Role.OPERATOR)


def test_settings_outside_local_refuse_to_start_without_an_identity_provider() -> None:
    for env in ("test", "production"):
        with pytest.raises(ValueError, match="WARMBEE_AUTH_ISSUER and WARMBEE_AUTH_AUDIENCE must be set"):
            Settings(env=env)
    with pytest.raises(ValueError, match="https"):
        Settings(env="production", auth_issuer="http://id.example", auth_audience=AUDIENCE)


def test_hs256_tokens_are_not_minted_outside_local() -> None:
    with pytest.raises(ValueError, match="env=local only"):
        mint_token(settings(), Role.RIDER, "rider-1")


async def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode(claims(), key="", algorithm="none", headers={"kid": "x"})
    assert "'none' is not accepted" in await refused(tokens_of(Provider([SigningKey.new()])), unsigned)
    assert "HS256 tokens only" in await refused(Tokens(Settings(env="local")), unsigned)


async def test_an_algorithm_not_configured_is_refused() -> None:
    key = SigningKey.new("ES256")
    token = key.sign(claims())
    assert "'ES256' is not accepted" in await refused(tokens_of(Provider([key]), auth_algorithms=["RS256"]), token)


async def test_a_token_whose_header_names_another_algorithm_than_its_key_is_refused() -> None:
    rsa_key = SigningKey.new("RS256")
    forged = jwt.encode(claims(), SigningKey.new("ES256").private, algorithm="ES256", headers={"kid": rsa_key.kid})
    await refused(tokens_of(Provider([rsa_key])), forged)


async def test_a_token_without_a_kid_is_refused() -> None:
    key = SigningKey.new()
    token = jwt.encode(claims(), key.private, algorithm="RS256")
    assert "no kid" in await refused(tokens_of(Provider([key])), token)


# --- roles ----------------------------------------------------------------------------------------


async def test_a_token_without_the_role_claim_is_refused() -> None:
    key = SigningKey.new()
    assert "claim 'role' must name one of" in await refused(tokens_of(Provider([key])), key.sign(claims(role=None)))


async def test_an_unknown_role_is_refused() -> None:
    key = SigningKey.new()
    assert "must be one of" in await refused(tokens_of(Provider([key])), key.sign(claims(role="admin")))


async def test_a_list_of_roles_gives_the_one_warmbee_role_in_it_and_ignores_the_others() -> None:
    key = SigningKey.new()
    token = key.sign(claims(sub="rider-7", role=["offline_access", "rider", "uma_authorization"]))
    assert await tokens_of(Provider([key])).verify(token) == Principal("rider-7", Role.RIDER)


async def test_a_list_with_two_warmbee_roles_is_refused() -> None:
    key = SigningKey.new()
    token = key.sign(claims(role=["rider", "operator"]))
    assert "several warmbee roles (operator, rider)" in await refused(tokens_of(Provider([key])), token)


async def test_the_role_claim_is_named_by_the_settings_and_may_be_a_path() -> None:
    key = SigningKey.new()
    token = key.sign(claims(role=None, realm_access={"roles": ["default-roles", "operator"]}))
    tokens = tokens_of(Provider([key]), auth_role_claim="realm_access.roles")
    assert await tokens.verify(token) == Principal("volunteer-platform", Role.OPERATOR)
    assert "claim 'role'" in await refused(tokens_of(Provider([key])), token)
