"""The notifications' two sending loops, and the process that runs the webhook loop alone.

``send_forever`` works through the webhook deliveries that are due; ``send_notices_forever`` posts the rider
notices that are due to the gateway, at the gateway's rate. Both are one loop (``_sending``): send a step,
measure the backlog every ``BACKLOG_EVERY_S``, rest as the loop says; an error is retried with a growing
pause and never ends the loop.

The notifications worker runs both beside its agent. Where one process's core cannot keep up with the
deliveries (about 1,000 a second on this 2-core machine: the HTTP client's CPU), ``warmbee worker
notifications-sender`` runs the webhook loop in processes of their own, as many as are needed, and the
worker is told not to (``WARMBEE_NOTIFICATIONS_WORKER_SENDS_WEBHOOKS=false``). They share the work through the
deliveries' leases (``FOR UPDATE SKIP LOCKED``): no delivery is claimed by two senders at once. Notices stay
with the worker: the gateway's rate is kept per process, and a few notices a second need no second core.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import asyncpg
import structlog
from prometheus_client import start_http_server

from libs.platform.db import Database
from libs.platform.metrics import LOOP_FAILURES
from libs.platform.settings import Settings
from services.notifications.addresses import GuardedResolver, policy_of, refusal
from services.notifications.handlers import measure_backlog, send_due
from services.notifications.notices import measure_notice_backlog, send_due_notices
from services.notifications.sender import Sender
from services.notifications.store import DUE_CHANNEL

log = structlog.get_logger(__name__)

SEND_STEP = 500  # deliveries claimed at a time (bounded again by the in-flight settings)
RETRY_PAUSES_S = (0.5, 1, 2, 5, 10, 30)
BACKLOG_EVERY_S = 5.0  # how often the age of the oldest pending delivery is measured
GATEWAY_IN_FLIGHT = 8  # notices posted to the gateway at once
LISTEN_RETRY_S = 5.0  # how often the sender tries again to LISTEN for new deliveries when it could not


async def until_done(loop: str, work: Callable[[], Awaitable[Any]]) -> Any:
    """``work()`` until it succeeds, pausing longer after each failure; never raises but to cancel."""
    for attempt in range(10**9):
        try:
            return await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            LOOP_FAILURES.labels(loop).inc()
            pause = RETRY_PAUSES_S[min(attempt, len(RETRY_PAUSES_S) - 1)]
            log.exception("notifications.retrying", loop=loop, attempt=attempt + 1, pause_s=pause)
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")


def webhook_sender(settings: Settings) -> Sender:
    """The sender of webhook deliveries: subscribers' addresses pass the guard against request forgery,
    when checked and again when connected (``GuardedResolver``)."""
    policy = policy_of(settings)

    async def check(url: str) -> str | None:
        return await refusal(url, policy)

    return Sender(
        check,
        timeout_s=settings.webhook_timeout_s,
        in_flight=settings.webhook_in_flight,
        in_flight_per_subscription=settings.webhook_in_flight_per_subscription,
        resolver=GuardedResolver(policy),
    )


async def _trusted(url: str) -> str | None:
    return None


def gateway_sender(settings: Settings) -> Sender:
    """The sender of rider notices. The gateway's address is the programme's own setting, not a
    subscriber's: no forgery guard."""
    return Sender(
        _trusted,
        timeout_s=settings.webhook_timeout_s,
        in_flight=GATEWAY_IN_FLIGHT,
        in_flight_per_subscription=GATEWAY_IN_FLIGHT,
    )


# After a step that sent ``sent`` in ``seconds``: wait until the next step may begin.
Rest = Callable[[int, float], Awaitable[None]]


async def _sending(
    loops: tuple[str, str], send: Callable[[], Awaitable[int]], backlog: Callable[[], Awaitable[None]], rest: Rest
) -> None:
    """The loop both senders are: ``loops`` names its sending and its measuring (their failures' label)."""
    sending, measuring = loops
    measured = 0.0
    while True:
        started = time.monotonic()
        sent = await until_done(sending, send)
        if time.monotonic() - measured > BACKLOG_EVERY_S:
            await until_done(measuring, backlog)
            measured = time.monotonic()
        await rest(sent, time.monotonic() - started)


async def send_forever(db: Database, settings: Settings, webhooks: Sender) -> None:
    """The webhook loop: send what is due; when nothing is, wait until new deliveries are recorded (a
    NOTIFY on ``DUE_CHANNEL``, from any replica's commit) or ``webhook_sender_interval_s`` has passed
    (retries coming due, a notice missed), whichever comes first."""
    wake = asyncio.Event()
    listener = _DueListener(settings, wake)

    async def send() -> int:
        wake.clear()  # before the claim: a notice during the sending wakes the next wait at once
        return await send_due(db, settings, webhooks, SEND_STEP)

    async def rest(sent: int, _: float) -> None:
        if sent == 0:
            await listener.listen()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.webhook_sender_interval_s):
                    await wake.wait()

    try:
        await _sending(("notifications_sender", "notifications_backlog"), send, partial(measure_backlog, db), rest)
    finally:
        await listener.close()


async def send_notices_forever(db: Database, settings: Settings, gateway: Sender) -> None:
    """The notice loop: about a second's worth of due notices a step, never faster than the gateway's rate
    (SMS gateways have one: a backlog drains at it); when none is due, a pause of
    ``webhook_sender_interval_s``."""
    step = max(1, min(SEND_STEP, int(settings.notice_rate_per_s)))

    async def rest(sent: int, seconds: float) -> None:
        await asyncio.sleep(max(0.0, sent / settings.notice_rate_per_s - seconds))
        if sent == 0:
            await asyncio.sleep(settings.webhook_sender_interval_s)

    await _sending(
        ("notifications_notice_sender", "notifications_notice_backlog"),
        partial(send_due_notices, db, settings, gateway, step),
        partial(measure_notice_backlog, db),
        rest,
    )


class _DueListener:
    """A connection of its own that LISTENs on ``DUE_CHANNEL`` and sets ``wake`` on every notice; while
    it cannot connect the sender just polls, and it tries again every ``LISTEN_RETRY_S``."""

    def __init__(self, settings: Settings, wake: asyncio.Event) -> None:
        self._settings = settings
        self._wake = wake
        self._conn: asyncpg.Connection | None = None
        self._tried = -LISTEN_RETRY_S

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def listen(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        if time.monotonic() - self._tried < LISTEN_RETRY_S:
            return
        self._tried = time.monotonic()
        try:
            self._conn = await asyncpg.connect(self._settings.database_url, timeout=5)
            await self._conn.add_listener(DUE_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("notifications.listen_failed", error=type(exc).__name__)
            await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


async def run_sender(settings: Settings) -> None:
    """A webhook sender process in the foreground (``warmbee worker notifications-sender``): its metrics on
    ``notifications_sender_metrics_port``, stopped by SIGTERM or SIGINT (it records what ended and gives
    back what it had not finished: ``send_due``)."""
    start_http_server(settings.notifications_sender_metrics_port, addr=settings.host)
    db = Database(settings)
    sending = asyncio.current_task()
    assert sending is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sending.cancel)
    try:
        await until_done("notifications_database", db.open)
        log.info("notifications.sender_started", in_flight=settings.webhook_in_flight)
        async with webhook_sender(settings) as webhooks:
            await send_forever(db, settings, webhooks)
    except asyncio.CancelledError:
        log.info("notifications.sender_stopped")
    finally:
        await db.close()
