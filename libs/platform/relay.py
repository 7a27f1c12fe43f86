"""Relays outbox rows to Kafka: claim a batch, publish it, mark it relayed, in one transaction.

A crash after publishing but before the mark publishes the batch again: consumers are idempotent
by event ``(source, id)`` or entry key, so delivery is at least once and the effect exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from libs.platform.db import TRANSIENT, Database
from libs.platform.kafka import broker_reachable, make_producer, send_in_batches
from libs.platform.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_RELAYED
from libs.platform.outbox_store import OutboxMessage, OutboxStore, reference_kind
from libs.platform.settings import Settings

log = structlog.get_logger(__name__)

# Renders a reference row (in the relay's transaction) into the messages it stands for.
Renderer = Callable[[asyncpg.Connection, OutboxMessage], Awaitable[list[OutboxMessage]]]


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        make_producer: Callable[[], AIOKafkaProducer],
        topics: Sequence[str],
        batch_max: int = 1000,
        idle_s: float = 0.1,
        publish_timeout_s: float = 30.0,
        backlog_every_s: float = 5.0,
        keep_relayed_s: int = 24 * 3600,
        purge_every_s: float = 600.0,
        renderers: Mapping[str, Renderer] | None = None,
    ) -> None:
        self._db = db
        self._renderers = dict(renderers or {})
        self._make_producer = make_producer
        self._producer: AIOKafkaProducer | None = None
        self._topics = list(topics)
        self._batch_max = batch_max
        self._idle_s = idle_s
        self._publish_timeout_s = publish_timeout_s
        self._stopping = asyncio.Event()
        self._backlog_every_s = backlog_every_s
        self._backlog_measured_at = float("-inf")
        self._keep_relayed_s = keep_relayed_s
        self._purge_every_s = purge_every_s
        self._purged_at = time.monotonic()  # nothing old to purge right after start

    async def relay_once(self) -> int:
        """Relay one batch; returns the outbox rows relayed (a reference row is one)."""

        async def work(conn: asyncpg.Connection) -> tuple[int, list[OutboxMessage]]:
            store = OutboxStore(conn)
            pending = await store.claim(self._topics, self._batch_max, list(self._renderers))
            messages = [m for p in pending for m in await self._render(conn, p.message)]
            if pending:
                await self._publish(messages)
                await store.mark_relayed([p.outbox_id for p in pending])
            return len(pending), messages

        rows, relayed = await self._db.run(work)
        for topic, count in collections.Counter(m.topic for m in relayed).items():
            OUTBOX_RELAYED.labels(topic).inc(count)
        return rows

    async def _render(self, conn: asyncpg.Connection, message: OutboxMessage) -> list[OutboxMessage]:
        kind = reference_kind(message)
        if kind is None:
            return [message]
        return await self._renderers[kind](conn, message)

    async def measure_backlog(self) -> None:
        """Export the backlog of this relay's topics and the age of the oldest message waiting."""
        async with self._db.read() as conn:
            backlog = await OutboxStore(conn).backlog_by_topic(self._topics)
        for topic, (waiting, age) in backlog.items():
            OUTBOX_BACKLOG.labels(topic).set(waiting)
            OUTBOX_OLDEST_AGE.labels(topic).set(age)

    async def _purge_now_and_then(self) -> None:
        """Relayed messages are kept a day for inspection, then deleted, so the outbox does not grow forever."""
        if time.monotonic() - self._purged_at < self._purge_every_s:
            return
        self._purged_at = time.monotonic()
        purged = await self._db.run(lambda conn: OutboxStore(conn).purge_relayed(self._topics, self._keep_relayed_s))
        if purged:
            log.info("relay.purged", messages=purged)

    async def _measure_backlog_now_and_then(self) -> None:
        if time.monotonic() - self._backlog_measured_at < self._backlog_every_s:
            return
        self._backlog_measured_at = time.monotonic()
        try:
            await self.measure_backlog()
        except TRANSIENT as exc:
            log.debug("relay.backlog_unmeasured", error=repr(exc))

    async def _publish(self, messages: list[OutboxMessage]) -> None:
        assert self._producer is not None, "run() starts the producer"
        sends = await send_in_batches(
            self._producer, ((m.topic, m.key, m.value, [(k, v.encode()) for k, v in m.headers]) for m in messages)
        )
        # A stuck delivery must not hold the claimed rows forever: fail the batch, roll back, retry.
        await asyncio.wait_for(asyncio.gather(*sends), timeout=self._publish_timeout_s)

    async def run(self) -> None:
        """Relay until stopped; the producer is started here so a broker that is down at
        start-up delays relaying without stopping the service from accepting events."""
        await self._start_producer()
        failures = 0
        while not self._stopping.is_set():
            await self._measure_backlog_now_and_then()
            try:
                await self._purge_now_and_then()
                relayed = await self.relay_once()
                failures = 0
            except (KafkaError, *TRANSIENT) as exc:
                failures += 1
                delay = min(0.2 * 2**failures, 5.0)
                log.warning("relay.failed", error=repr(exc), retry_in_s=delay)
                if isinstance(exc, KafkaError | TimeoutError):
                    # A fresh producer forgets stale metadata (a broker that came back with other topics).
                    await self.close()
                    await self._sleep(delay)
                    await self._start_producer()
                else:
                    await self._sleep(delay)
                continue
            if relayed < self._batch_max:
                await self._sleep(self._idle_s)

    async def _start_producer(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            producer = self._make_producer()
            try:
                await producer.start()
                self._producer = producer
                return
            except (KafkaError, OSError) as exc:
                await producer.stop()
                failures += 1
                delay = min(0.2 * 2**failures, 5.0)
                log.warning("relay.broker_unreachable", error=repr(exc), retry_in_s=delay)
                await self._measure_backlog_now_and_then()  # the backlog grows while the broker is away
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def broker_reachable(self) -> bool:
        return self._producer is not None and await broker_reachable(self._producer)


def relay_for(
    db: Database, settings: Settings, topics: Sequence[str], renderers: Mapping[str, Renderer] | None = None
) -> OutboxRelay:
    """The relay of one service's outbox topics, configured from settings; ``renderers`` turn the
    reference rows of their kind into the messages they stand for."""
    return OutboxRelay(
        db,
        lambda: make_producer(settings),
        topics,
        settings.relay_batch_max,
        settings.relay_idle_ms / 1000,
        renderers=renderers,
    )
