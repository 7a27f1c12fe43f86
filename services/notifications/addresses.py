"""Where a webhook's host really is: looked up when a subscription is made and again before every attempt
(a name may point elsewhere by then), and refused where ``address_problem`` says so. Local runs send
anywhere (the receivers of a developer's machine are on loopback).

The look-up before an attempt and the one the connection makes are two: a name that answers a public
address to the first and a private one to the second (DNS rebinding) would pass the check. So the sender's
connections resolve through ``GuardedResolver``, which refuses the same addresses at the moment of
connecting: what is connected to is what was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from libs.platform.settings import Settings
from services.notifications.domain.subscriptions import UrlPolicy, address_problem, url_problem


def policy_of(settings: Settings) -> UrlPolicy:
    return UrlPolicy(
        local=settings.env == "local",
        require_https=settings.webhook_require_https,
        allowed=tuple(ipaddress.ip_network(n, strict=False) for n in settings.webhook_allowed_networks),
    )


async def refusal(url: str, policy: UrlPolicy) -> str | None:
    """Why nothing may be sent to ``url``, or None."""
    problem = url_problem(url, policy)
    if problem is not None or policy.local:
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or 443, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:
        return f"host {host!r} does not resolve ({exc.__class__.__name__})"
    for *_, sockaddr in infos:
        problem = address_problem(ipaddress.ip_address(sockaddr[0]), policy.allowed)
        if problem is not None:
            return problem
    return None


class AddressRefused(OSError):
    """A receiver's host resolved, when connecting, to an address webhooks may not go to."""


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for the sender's connections: the system's answer, refused whole when any
    address in it is one ``address_problem`` refuses (outside local runs)."""

    def __init__(self, policy: UrlPolicy) -> None:
        self._policy = policy
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if not self._policy.local:
            for result in found:
                problem = address_problem(ipaddress.ip_address(result["host"]), self._policy.allowed)
                if problem is not None:
                    raise AddressRefused(problem)
        return found

    async def close(self) -> None:
        await self._resolver.close()
