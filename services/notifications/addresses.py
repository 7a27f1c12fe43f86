"""Where a webhook's host really is: looked up when a subscription is made and again before every attempt
(a name may point elsewhere by then), and refused where ``address_problem`` says so. Local runs send
anywhere (the receivers of a developer's machine are on loopback)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from services.notifications.domain.subscriptions import address_problem, url_problem


async def refusal(url: str, local: bool) -> str | None:
    """Why nothing may be sent to ``url``, or None."""
    problem = url_problem(url, local)
    if problem is not None or local:
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
        problem = address_problem(ipaddress.ip_address(sockaddr[0]))
        if problem is not None:
            return problem
    return None
