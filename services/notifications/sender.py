"""The sender: one HTTP attempt at a delivery, signed as Standard Webhooks says, and many at once within limits.

``Sender.attempt`` POSTs a delivery's CloudEvent to its subscription's URL and says what came of it as an
``Outcome``; it never raises for anything the receiver or the network does. A 2xx is delivered; a 3xx is a
failure (redirects are not followed, so a receiver cannot bounce a delivery to an address the guard against
server-side request forgery would refuse); anything else is a failure with the status. The whole attempt,
address check included, is bounded by ``timeout_s``; at most 64 KiB of an answer's body is read (and then
only so that the connection can be reused), the rest is never read.

``Sender.attempt_all`` makes many attempts concurrently within two limits: ``in_flight`` in all, and
``in_flight_per_subscription`` per webhook, so one slow receiver takes only its own slots and does not delay
the others' deliveries.

The client is aiohttp's, not httpx's: 64 signed POSTs at a time to bench/webhooks.py's receiver cost
about 0.6 ms of CPU each with aiohttp and 5 to 7 ms with httpx (its connection pool, on this 2-core
machine), and the sender's whole path is bound by the client's CPU. It is set to do no more than httpx did
here: no redirects, no proxies or .netrc from the environment (``trust_env=False``), no decompression of
answers (the 64 KiB cap is on the bytes that came), no DNS cache (each new connection looks its host up
afresh, after the address check).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver
from standardwebhooks.webhooks import Webhook

from services.notifications import metrics
from services.notifications.addresses import AddressRefused
from services.notifications.domain.deliveries import Due, Outcome

log = structlog.get_logger(__name__)

USER_AGENT = "warmbee-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024  # the most of an answer's body ever read
MAX_ERROR_CHARS = 300

# Given a delivery's URL, the reason it must not be sent there (server-side request forgery), or None.
CheckAddress = Callable[[str], Awaitable[str | None]]


class _CannotSign(Exception):
    """The subscription's secret is not a ``whsec_`` base64 key (the message never shows it)."""


def signed_headers(due: Due, secret: str, now: datetime, signer: Webhook | None = None) -> dict[str, str]:
    """The headers of an attempt at ``due`` made at ``now``: Standard Webhooks' id, timestamp and signature
    (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` with the ``whsec_`` secret; ``signer``, when
    given, is ``Webhook(secret)`` made once)."""
    at = now.astimezone(UTC).replace(microsecond=0)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": due.event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": (signer or Webhook(secret)).sign(due.event_id, at, due.body),
    }


def answer_error(status: int) -> str | None:
    """Why an answer with ``status`` does not deliver, or None for a 2xx."""
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return "redirects are not followed"
    return f"receiver answered {status}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during, outermost first (cycles cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def describe_failure(exc: BaseException, timeout_s: float) -> str:
    """A short account of why an attempt got no answer, in words an operator can act on."""
    if isinstance(exc, _CannotSign):
        return str(exc)
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return f"timed out after {timeout_s:g} s"
    chain = _causes(exc)
    for cause in chain:
        if isinstance(cause, AddressRefused):
            return _cut(f"refused when connecting: {cause}")
        if isinstance(cause, ssl.SSLError):
            return _cut(f"TLS: {cause}")
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return _cut(f"name not resolved: {cause}")
    message = str(exc)
    return _cut(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


@dataclass(slots=True)
class _Answer:
    status: int | None = None


@dataclass(slots=True)
class _Subscription:
    slots: asyncio.Semaphore
    users: int = 0


class Sender:
    """Makes attempts at deliveries over one ``aiohttp.ClientSession`` (the caller's, or one of its own,
    made at the first attempt: a session belongs to the event loop it was made in)."""

    def __init__(
        self,
        check_address: CheckAddress,
        *,
        timeout_s: float = 10.0,
        in_flight: int = 100,
        in_flight_per_subscription: int = 4,
        client: aiohttp.ClientSession | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if in_flight < 1 or in_flight_per_subscription < 1:
            raise ValueError("in_flight and in_flight_per_subscription must be at least 1")
        self._check_address = check_address
        self._timeout_s = timeout_s
        self._total = in_flight
        self._per_subscription = in_flight_per_subscription
        self._in_flight = asyncio.Semaphore(in_flight)
        self._subscriptions: dict[str, _Subscription] = {}
        self._owns_client = client is None
        self._client = client
        self._resolver = resolver  # how its own client's connections find their hosts (GuardedResolver)
        self._signers: dict[str, Webhook] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._total, limit_per_host=0, use_dns_cache=False, resolver=self._resolver
                ),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                # No proxies or .netrc credentials from the environment: a receiver gets what we send.
                trust_env=False,
                auto_decompress=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the client if this sender made it (a caller's client is the caller's to close)."""
        if self._owns_client and self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def attempt(self, due: Due, secret: str) -> Outcome:
        """One attempt at ``due``, signed with the subscription's ``secret``. Never raises for anything the
        receiver or the network does (nor for a secret that cannot sign, or an address check that fails)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = _Answer()
        refusal: str | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                refusal = await self._check_address(due.url)
                if refusal is None:
                    await self._post(due, secret, answer)
        except Exception as exc:
            if answer.status is None:  # a failure after the answer's status (reading its body) changes nothing
                error = describe_failure(exc, self._timeout_s)
        seconds = loop.time() - started
        if refusal is not None:
            outcome = Outcome(delivered=False, status=None, error=_cut(f"refused: {refusal}"), seconds=seconds)
        elif answer.status is None:
            outcome = Outcome(delivered=False, status=None, error=error, seconds=seconds)
        else:
            error = answer_error(answer.status)
            outcome = Outcome(delivered=error is None, status=answer.status, error=error, seconds=seconds)
        metrics.record_attempt(outcome)
        if not outcome.delivered:
            log.info(
                "webhook.attempt_failed",
                delivery_id=due.delivery_id,
                webhook_id=due.webhook_id,
                event_id=due.event_id,
                attempts=due.attempts + 1,
                status=outcome.status,
                error=outcome.error,
                seconds=round(outcome.seconds, 3),
            )
        return outcome

    def _signer(self, secret: str) -> Webhook:
        signer = self._signers.get(secret)
        if signer is None:
            if len(self._signers) >= 10_000:  # secrets of deleted subscriptions do not pile up
                self._signers.clear()
            signer = self._signers[secret] = Webhook(secret)
        return signer

    async def _post(self, due: Due, secret: str, answer: _Answer) -> None:
        try:
            headers = signed_headers(due, secret, datetime.now(UTC), self._signer(secret))
        except Exception:  # the secret is not whsec_<base64>: say so without showing it
            raise _CannotSign("cannot sign: the subscription's secret is not a whsec_ base64 key") from None
        async with self._session().post(
            due.url, data=due.body.encode("utf-8"), headers=headers, allow_redirects=False
        ) as response:
            answer.status = response.status
            read = 0
            while read < MAX_RESPONSE_BYTES and (chunk := await response.content.readany()):
                read += len(chunk)
            if read >= MAX_RESPONSE_BYTES:
                response.close()  # the rest is never read: the connection is closed, not reused

    @contextlib.asynccontextmanager
    async def bounded(self, webhook_id: str) -> AsyncIterator[None]:
        """Hold one of ``webhook_id``'s slots and one of all: the subscription's first, so attempts waiting
        behind a slow receiver wait without holding a slot the other subscriptions could use."""
        subscription = self._subscriptions.get(webhook_id)
        if subscription is None:
            subscription = self._subscriptions[webhook_id] = _Subscription(asyncio.Semaphore(self._per_subscription))
        subscription.users += 1
        try:
            async with subscription.slots, self._in_flight:
                yield
        finally:
            subscription.users -= 1
            if subscription.users == 0:
                del self._subscriptions[webhook_id]

    async def attempt_bounded(self, due: Due, secret: str) -> Outcome:
        """``attempt`` within the limits (the time spent waiting for a slot is not in ``Outcome.seconds``)."""
        async with self.bounded(due.webhook_id):
            return await self.attempt(due, secret)

    async def attempt_all(self, dues: Sequence[tuple[Due, str]]) -> list[tuple[Due, Outcome]]:
        """Attempt every ``(due, secret)`` concurrently within the limits; every outcome, in the given order."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.attempt_bounded(due, secret)) for due, secret in dues]
        return [(due, task.result()) for (due, _), task in zip(dues, tasks, strict=True)]
