"""Bearer JWTs with claims ``sub`` and ``role``; HS256 locally, the identity provider's key in production."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

from libs.platform.settings import Settings


class Role(StrEnum):
    SOURCE = "source"
    RIDER = "rider"
    PARTNER = "partner"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    role: Role


class InvalidToken(Exception):
    pass


def mint_token(settings: Settings, role: Role, sub: str, ttl_s: int = 30 * 24 * 3600) -> str:
    now = int(time.time())
    claims = {"sub": sub, "role": role.value, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)


def verify_token(settings: Settings, token: str) -> Principal:
    principal, expires_at = _verified(token, settings.jwt_secret, settings.jwt_algorithm)
    if expires_at <= time.time():
        raise InvalidToken("Signature has expired")
    return principal


@functools.lru_cache(maxsize=8192)
def _verified(token: str, secret: str, algorithm: str) -> tuple[Principal, float]:
    """A token's principal and expiry, checked once: a phone sends the same token with every request,
    and checking its signature was a tenth of a request's work. Refusals are not kept."""
    try:
        claims = jwt.decode(token, secret, algorithms=[algorithm], options={"require": ["sub", "exp"]})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    sub, role = claims.get("sub"), claims.get("role")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("claim 'sub' must be a non-empty string")
    try:
        return Principal(sub=sub, role=Role(str(role))), float(claims["exp"])
    except ValueError as exc:
        raise InvalidToken(f"claim 'role' must be one of {', '.join(Role)}") from exc
