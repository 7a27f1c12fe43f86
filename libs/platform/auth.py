"""Bearer JWTs naming a ``sub`` and a warmbee role: the programme's OpenID provider's (RS256, ES256 or EdDSA,
its keys read from the JWKS its discovery document names), or, where env=local only, HS256 with a shared
secret (`warmbee token`). docs/identity.md says what is checked and why.

A service's app holds one ``Tokens`` (libs/platform/http.py): its cache of the provider's keys lives as long
as the process, and every request checks its token on the event loop. So nothing here blocks: the JWKS is
read with an async HTTP client, once when the first provider token arrives, again (at most every
``auth_jwks_min_refresh_s``) when a token names a ``kid`` the cache lacks, and in the background once the
cache is ``auth_jwks_max_age_s`` old. Verifying a signature is the only CPU work, and a token seen before
is not verified again (``_verified_by_provider``)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
import structlog

from libs.platform.settings import Settings

log = structlog.get_logger(__name__)

SHARED_SECRET_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# Until the keys were read once, a failed read is tried again this soon (a provider still starting).
FIRST_READ_RETRY_S = 5.0


class Role(StrEnum):
    SOURCE = "source"
    RIDER = "rider"
    PARTNER = "partner"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    role: Role


_ROLE_NAMES = frozenset(r.value for r in Role)


class InvalidToken(Exception):
    pass


def mint_token(settings: Settings, role: Role, sub: str, ttl_s: int = 30 * 24 * 3600) -> str:
    """An HS256 token for local runs; no service outside env=local accepts one."""
    if settings.env != "local":
        raise ValueError(f"HS256 tokens are for env=local only (this is env={settings.env}): ask the OpenID provider")
    now = int(time.time())
    claims = {"sub": sub, "role": role.value, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)


def _http_error() -> type[Exception]:
    import httpx

    return httpx.HTTPError


# GET a URL and return its JSON object; the provider's keys are read through it (tests give their own).
FetchJson = Callable[[str, float], Awaitable[dict[str, Any]]]


async def fetch_json(url: str, timeout_s: float) -> dict[str, Any]:
    import httpx  # here, not at the top: every command line imports this module, few ever fetch keys (0.35 s)

    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as http:
        response = await http.get(url, headers={"accept": "application/json"})
        response.raise_for_status()
        body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return body


class ProviderKeys:
    """The provider's public keys by ``kid``, read from the ``jwks_uri`` of its discovery document (whose
    ``issuer`` must be the configured one, as OpenID Connect Discovery requires).

    A failed read keeps the keys already held: a provider that blips signs nobody out."""

    def __init__(self, settings: Settings, fetch: FetchJson = fetch_json, clock: Callable[[], float] = time.monotonic):
        if not settings.auth_issuer:
            raise ValueError("ProviderKeys needs WARMBEE_AUTH_ISSUER")
        self.issuer = settings.auth_issuer
        self._min_refresh_s = settings.auth_jwks_min_refresh_s
        self._max_age_s = settings.auth_jwks_max_age_s
        self._timeout_s = settings.auth_fetch_timeout_s
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._read_at = 0.0  # when the keys held were read
        self._tried_at: float | None = None  # when a read last started, successful or not
        self._reading: asyncio.Task[None] | None = None
        self.reads = 0  # JWKS reads that succeeded, for the tests and the docs

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key named ``kid``, reading the JWKS again if it is unknown and the last read is old enough."""
        if self._keys is None:
            await self._read_if_allowed()
        elif self._clock() - self._read_at >= self._max_age_s:
            self._read_in_background()
        key = (self._keys or {}).get(kid)
        if key is None and self._keys is not None:
            await self._read_if_allowed()
            key = self._keys.get(kid)
        if key is None:
            if self._keys is None:
                raise InvalidToken(f"the identity provider's keys could not be read from {self.issuer}; retry later")
            raise InvalidToken(f"no key {kid!r} in the identity provider's JWKS")
        return key

    async def _read_if_allowed(self) -> None:
        if self._reading is not None and not self._reading.done():
            await asyncio.shield(self._reading)  # one read at a time; the others wait for it
            return
        wait_s = self._min_refresh_s if self._keys is not None else min(self._min_refresh_s, FIRST_READ_RETRY_S)
        if self._tried_at is not None and self._clock() - self._tried_at < wait_s:
            return
        self._reading = asyncio.ensure_future(self._read())
        await asyncio.shield(self._reading)

    def _read_in_background(self) -> None:
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        self._tried_at = self._clock()
        try:
            discovery = await self._fetch(self.discovery_url, self._timeout_s)
            if (named := discovery.get("issuer")) != self.issuer:
                raise ValueError(f"the discovery document names issuer {named!r}, not {self.issuer!r}")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError("the discovery document has no jwks_uri")
            keys = jwt.PyJWKSet.from_dict(await self._fetch(jwks_uri, self._timeout_s))
        except (ValueError, jwt.PyJWTError, _http_error()) as exc:
            log.warning("auth.jwks_unreadable", issuer=self.issuer, error=str(exc), keeping=len(self._keys or {}))
            return
        # A key without a kid cannot be chosen by a token's header; signing keys only.
        self._keys = {k.key_id: k for k in keys.keys if k.key_id and k.public_key_use in (None, "sig")}
        self._read_at = self._clock()
        self.reads += 1
        log.info("auth.jwks_read", issuer=self.issuer, kids=sorted(self._keys))


@dataclass(frozen=True, slots=True)
class _Expectation:
    """What a provider token must say besides its signature; part of the cache key of a verified token."""

    issuer: str
    audience: str
    role_claim: str
    leeway_s: int


class Tokens:
    """Verifies the bearer tokens of one service process."""

    def __init__(self, settings: Settings, keys: ProviderKeys | None = None) -> None:
        self.settings = settings
        self.keys = keys or (ProviderKeys(settings) if settings.auth_issuer else None)
        self._expect = (
            _Expectation(settings.auth_issuer, settings.auth_audience, settings.auth_role_claim, settings.auth_leeway_s)
            if settings.auth_issuer and settings.auth_audience
            else None
        )

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        alg = header.get("alg")
        if alg in SHARED_SECRET_ALGORITHMS:
            return self._verify_shared_secret(token)
        if self.keys is None or self._expect is None:
            raise InvalidToken("this run takes HS256 tokens only (no WARMBEE_AUTH_ISSUER); mint one: `warmbee token`")
        if alg not in self.settings.auth_algorithms:
            raise InvalidToken(f"alg {alg!r} is not accepted: one of {', '.join(self.settings.auth_algorithms)}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token's header names no kid (the key that signed it)")
        key = await self.keys.key(kid)
        principal, expires_at = _verified_by_provider(token, key, alg, self._expect)
        if expires_at + self._expect.leeway_s <= time.time():
            raise InvalidToken("Signature has expired")
        return principal

    def _verify_shared_secret(self, token: str) -> Principal:
        # Checked here as well as by the settings: a process whose settings were copied with another env
        # (model_copy does not validate) must not take shared-secret tokens either.
        if self.settings.env != "local":
            raise InvalidToken(f"HS256 tokens are taken only where WARMBEE_ENV=local, not in env={self.settings.env}")
        principal, expires_at = _verified_shared_secret(token, self.settings.jwt_secret, self.settings.jwt_algorithm)
        if expires_at <= time.time():
            raise InvalidToken("Signature has expired")
        return principal


# Why caching verified tokens is safe (a phone sends the same token with every request, and checking its
# signature was a tenth of a request's work): only successes are kept, and each is keyed by everything it
# was checked against. exp is compared again on every use, so a cached token expires on time. nbf cannot
# become false once true. The key is the PyJWK object that ProviderKeys.key returned for the token's kid
# on this very request: once a read of the JWKS drops that kid, key() refuses before the cache is looked
# at, and a kid bound to new key material is another object, so the old entry never matches again. A
# removed key is therefore trusted until the JWKS is next read: on an unknown kid, or at the latest
# auth_jwks_max_age_s after the last read.
@functools.lru_cache(maxsize=8192)
def _verified_by_provider(token: str, key: jwt.PyJWK, alg: str, expect: _Expectation) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=expect.audience,
            issuer=expect.issuer,
            leeway=expect.leeway_s,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    return Principal(sub=_sub(claims), role=role_of(claims, expect.role_claim)), float(claims["exp"])


@functools.lru_cache(maxsize=8192)
def _verified_shared_secret(token: str, secret: str, algorithm: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(token, secret, algorithms=[algorithm], options={"require": ["sub", "exp"]})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    return Principal(sub=_sub(claims), role=role_of(claims, "role")), float(claims["exp"])


def _sub(claims: dict[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("claim 'sub' must be a non-empty string")
    return sub


def role_of(claims: dict[str, Any], claim: str) -> Role:
    """The warmbee role in ``claim`` (a dotted path reaches into objects: realm_access.roles). A list may
    hold other roles of the programme beside it, which are ignored; it must hold exactly one warmbee role,
    since a principal acts as one (a rider's sub is a rider id, a partner's a partner id)."""
    value: Any = claims
    for part in claim.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if names is None:
        raise InvalidToken(f"claim {claim!r} must name one of {', '.join(Role)} (a string or a list)")
    roles = sorted({Role(n) for n in names if isinstance(n, str) and n in _ROLE_NAMES})
    if not roles:
        raise InvalidToken(f"claim {claim!r} must be one of {', '.join(Role)}")
    if len(roles) > 1:
        raise InvalidToken(
            f"claim {claim!r} holds several warmbee roles ({', '.join(roles)}): a token acts as one of them"
        )
    return roles[0]
