"""Where a webhook's host really is: looked up when a subscription is made and again before every attempt
(a name may point elsewhere by then), and refused where ``address_problem`` says so. Local runs send
anywhere (the receivers of a developer's machine are on loopback)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

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
