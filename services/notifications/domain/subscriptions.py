"""What a webhook subscription may be: its kinds for the caller's role, its URL, its secret. Pure: the
resolver that looks a host up is ``services/notifications/addresses.py``."""

from __future__ import annotations

import base64
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from libs.platform.auth import Role
from libs.platform.errors import DomainError
from services.notifications.domain.kinds import MAY_SUBSCRIBE

MAX_URL_CHARS = 2000
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Where webhooks may go. Local runs: anywhere. Elsewhere: https only (unless ``require_https`` is
    off) and the public internet only, but for the ``allowed`` networks an operator names (a gateway on
    the sub-district's own network, say)."""

    local: bool
    require_https: bool = True
    allowed: tuple[IpNetwork, ...] = ()


def allowed_kinds(role: Role, kinds: Sequence[str]) -> list[str]:
    """The kinds, in order and once each, if the role may subscribe to all of them."""
    may = MAY_SUBSCRIBE.get(role)
    if may is None:
        raise DomainError("riders cannot subscribe to webhooks; they are told through notices", kind="forbidden")
    unique = list(dict.fromkeys(kinds))
    refused = [k for k in unique if k not in may]
    if refused:
        raise DomainError(
            f"kinds: a {role.value} may subscribe to {', '.join(sorted(may))}; not to {', '.join(refused)}",
            kind="kind-not-allowed",
        )
    return unique


def url_problem(url: str, policy: UrlPolicy) -> str | None:
    """Why ``url`` cannot receive webhooks, before any lookup, or None."""
    if len(url) > MAX_URL_CHARS:
        return f"is longer than {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL ({exc})"
    schemes = ("https",) if policy.require_https and not policy.local else ("http", "https")
    if parts.scheme not in schemes:
        return f"must start with {' or '.join(s + '://' for s in schemes)}"
    if not parts.hostname:
        return "names no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user or password; authenticate the webhook by its signature"
    if parts.fragment:
        return "must not have a #fragment"
    if port == 0:
        return "port 0 is not a port"
    if not policy.local and (literal := _literal_address(parts.hostname)) is not None:
        return address_problem(literal, policy.allowed)
    return None


def address_problem(address: IpAddress, allowed: Sequence[IpNetwork] = ()) -> str | None:
    """Why a receiver may not be at ``address`` outside local runs (server-side request forgery)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return None
    for refused, what in (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (address.is_multicast, "a multicast address"),
    ):
        if refused:
            return f"resolves to {address}, {what}: webhooks go to the public internet only"
    return None


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes them: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(12)
