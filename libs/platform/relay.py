"""Relays outbox rows to Kafka: claim a batch, publish it, mark it relayed, in one transaction.

A crash after publishing but before the mark publishes the batch again: consumers are idempotent
by event ``(source, id)`` or entry key, so delivery is at least once and the effect exactly once.

A row that can never be published as it is (its message larger than the producer may send, a topic name
Kafka refuses, a record the broker refuses for good, a reference whose rendering fails) is parked with its
reason in the same transaction, and the rows after it go out: retried forever, it held back every later
row of its topics, since claims go in outbox_id order. Operators see parked rows (``warmbee outbox
parked``, ``warmbee_outbox_parked_messages``) and put one back once its cause is fixed (``warmbee outbox
retry``). Errors that say nothing about the rows (the broker away, a lost connection, a timeout) keep
the old way: roll back, back off, try again.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from libs.platform.db import TRANSIENT, Database
from libs.platform.kafka import Header, broker_reachable, deliver_in_batches, make_producer
from libs.platform.loops import LoopGuard, pause
from libs.platform.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PARKED,
    OUTBOX_PARKED_TOTAL,
    OUTBOX_RELAYED,
)
from libs.platform.outbox_store import OutboxMessage, OutboxStore, PendingMessage, reference_kind
from libs.platform.settings import Settings

log = structlog.get_logger(__name__)

# Renders a reference row (in the relay's transaction) into the messages it stands for.
Renderer = Callable[[asyncpg.Connection, OutboxMessage], Awaitable[list[OutboxMessage]]]
# A message as the producer takes it: topic, key, value, headers.
WireMessage = tuple[str, bytes | None, bytes, list[Header]]

# Headers are for routing and tracing, not for payloads: a header value (a dead letter's reason can quote a
# whole invalid event) is cut to this many bytes, the headers of one message to HEADERS_MAX_BYTES in all.
HEADER_VALUE_MAX_BYTES = 1024
HEADER_KEY_MAX_BYTES = 256
HEADERS_MAX_BYTES = 16 * 1024
# Names how many headers did not fit HEADERS_MAX_BYTES and were left out.
HEADERS_DROPPED_HEADER = "warmbee-headers-dropped"
_DROPPED_RESERVE = len(HEADERS_DROPPED_HEADER) + 8
PARK_REASON_MAX_CHARS = 2000

# Kafka's own rule for topic names. aiokafka does not refuse an invalid one: it waits for metadata that never
# comes and times out, which looks transient and would be retried forever.
_KAFKA_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")

# Non-retriable errors that say nothing about the record: the producer's state, credentials, versions,
# the broker away. A batch failing with one of these is retried, never parked: parking on them would park
# every row of a topic whose password expired.
_NOT_THE_RECORDS: tuple[type[KafkaError], ...] = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaUnavailableError,
    kafka_errors.NoBrokersAvailable,
    kafka_errors.ProducerClosed,
    kafka_errors.ProducerFenced,
    kafka_errors.IllegalStateError,
    kafka_errors.KafkaConfigurationError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.IncompatibleBrokerVersion,
    kafka_errors.UnrecognizedBrokerVersion,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.InvalidRequiredAcksError,
    kafka_errors.OutOfOrderSequenceNumber,
    kafka_errors.InvalidProducerEpoch,
    kafka_errors.UnknownProducerId,
    kafka_errors.InvalidProducerIdMapping,
)
# PostgreSQL error classes that pass: connection, transaction rollback (deadlock, serialization), resources,
# lock not available, operator intervention (statement timeout, shutdown), system error.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


def refused_for_good(exc: BaseException) -> bool:
    """Whether the producer or the broker refused a record and would refuse it again (too large, an
    invalid record, an invalid topic...): not retriable, and not about the connection or the producer."""
    return isinstance(exc, KafkaError) and not exc.retriable and not isinstance(exc, _NOT_THE_RECORDS)


def transient_render_error(exc: BaseException) -> bool:
    """Whether a renderer's error may pass by itself (a lost connection, a deadlock, a timeout), so the
    batch is retried; any other error would come back on every try, so its row is parked."""
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        return False  # asyncpg's client-side DataError: an argument it cannot encode, every time
    return isinstance(exc, (*TRANSIENT, MemoryError))


def topic_problem(topic: str) -> str | None:
    if _KAFKA_TOPIC.fullmatch(topic) is None or topic in (".", ".."):
        return f"topic name {topic!r} is not one Kafka accepts (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-')"
    return None


def truncate_utf8(text: str, limit: int) -> bytes:
    """``text`` as UTF-8 in at most ``limit`` bytes: whole, or cut at a character boundary and ended with
    a marker saying how long it was."""
    raw = text.encode("utf-8", "replace")  # a lone surrogate becomes '?': the header stays valid UTF-8
    if len(raw) <= limit:
        return raw
    marker = f"…[truncated from {len(raw)} bytes]".encode()
    # A cut through a multi-byte character leaves an incomplete sequence at the end: drop it.
    head = raw[: max(limit - len(marker), 0)].decode("utf-8", "ignore").encode()
    return head + marker


def bound_headers(
    headers: Iterable[tuple[str, object]],
    value_max: int = HEADER_VALUE_MAX_BYTES,
    total_max: int = HEADERS_MAX_BYTES,
) -> list[Header]:
    """Headers as the producer takes them, each value at most ``value_max`` bytes and all of them at most
    ``total_max`` (keys and values; those that do not fit are left out and counted in a header of their own)."""
    bounded: list[Header] = []
    used, dropped = 0, 0
    for key, value in headers:
        name = truncate_utf8(str(key), HEADER_KEY_MAX_BYTES).decode()
        raw = truncate_utf8(value if isinstance(value, str) else str(value), value_max)
        size = len(name.encode()) + len(raw)
        if used + size > total_max - _DROPPED_RESERVE:
            dropped += 1
            continue
        bounded.append((name, raw))
        used += size
    if dropped:
        bounded.append((HEADERS_DROPPED_HEADER, str(dropped).encode()))
    return bounded


def encoded_size(key: bytes | None, value: bytes, headers: list[Header]) -> int:
    """The size the producer gives a message when it checks it against its max_request_size (record and
    batch overhead included): a message larger than that is refused before it is sent."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def describe_refusal(exc: KafkaError) -> str:
    """The error and, for a broker's answer, what its code means (aiokafka's repr alone is often empty)."""
    description = getattr(exc, "description", None)
    return f"{exc!r}: {description}" if description else repr(exc)


def _reason(text: str) -> str:
    text = text.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL
    return text if len(text) <= PARK_REASON_MAX_CHARS else text[: PARK_REASON_MAX_CHARS - 1] + "…"


@dataclass(slots=True)
class _Ready:
    """A claimed row whose messages are ready to send."""

    outbox_id: int
    messages: list[WireMessage]


@dataclass(slots=True)
class _Outcome:
    claimed: int = 0
    relayed: list[WireMessage] = field(default_factory=list)
    parked: dict[int, tuple[str, str]] = field(default_factory=dict)  # outbox id: topic, reason


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
        max_message_bytes: int = 1024 * 1024,
    ) -> None:
        self._db = db
        self._renderers = dict(renderers or {})
        self._make_producer = make_producer
        self._producer: AIOKafkaProducer | None = None
        self._topics = list(topics)
        self._batch_max = batch_max
        self._idle_s = idle_s
        self._publish_timeout_s = publish_timeout_s
        self._max_message_bytes = max_message_bytes
        self._stopping = asyncio.Event()
        self._backlog_every_s = backlog_every_s
        self._backlog_measured_at = float("-inf")
        self._keep_relayed_s = keep_relayed_s
        self._purge_every_s = purge_every_s
        self._purged_at = time.monotonic()  # nothing old to purge right after start
        # Back-off of the relay loop (as before: at most 5 s, so relaying resumes soon after the broker is back).
        self._guard = LoopGuard("relay", cap_s=5.0)
        self._measure_guard = LoopGuard("relay", cap_s=5.0)

    async def relay_once(self) -> int:
        """Relay one batch; returns the outbox rows claimed (relayed or parked; a reference row is one)."""

        async def work(conn: asyncpg.Connection) -> _Outcome:
            store = OutboxStore(conn)
            pending = await store.claim(self._topics, self._batch_max, list(self._renderers))
            if not pending:
                return _Outcome()
            ready: list[_Ready] = []
            reasons: dict[int, str] = {}
            for p in pending:
                prepared = await self._prepare(conn, p)
                if isinstance(prepared, str):
                    reasons[p.outbox_id] = _reason(prepared)
                else:
                    ready.append(_Ready(p.outbox_id, prepared))
            reasons |= {i: _reason(r) for i, r in (await self._publish(ready)).items()}
            parked = await store.park(reasons)
            relayed = [r for r in ready if r.outbox_id not in reasons]
            await store.mark_relayed([r.outbox_id for r in relayed])
            return _Outcome(
                len(pending),
                [m for r in relayed for m in r.messages],
                {i: (topic, reasons[i]) for i, topic in parked.items()},
            )

        outcome = await self._db.run(work)
        for topic, count in collections.Counter(m[0] for m in outcome.relayed).items():
            OUTBOX_RELAYED.labels(topic).inc(count)
        for outbox_id, (topic, reason) in outcome.parked.items():
            OUTBOX_PARKED_TOTAL.labels(topic).inc()
            log.error("relay.parked", outbox_id=outbox_id, topic=topic, reason=reason)
        return outcome.claimed

    async def _prepare(self, conn: asyncpg.Connection, pending: PendingMessage) -> list[WireMessage] | str:
        """The row's messages as they go to the producer, or why they never can."""
        problem = topic_problem(pending.message.topic)
        if problem is not None:
            return problem
        try:
            messages = await self._render(conn, pending.message)
            wire: list[WireMessage] = []
            for m in messages:
                headers = bound_headers(m.headers)
                size = encoded_size(m.key, m.value, headers)
                if size > self._max_message_bytes:
                    return (
                        f"a message of {size} bytes (key, value, headers and overhead), over the producer's limit "
                        f"of {self._max_message_bytes} (WARMBEE_KAFKA_MAX_REQUEST_BYTES)"
                    )
                if (problem := topic_problem(m.topic)) is not None:
                    return problem
                wire.append((m.topic, m.key, m.value, headers))
        except Exception as exc:
            if transient_render_error(exc):
                raise
            log.warning("relay.render_failed", outbox_id=pending.outbox_id, error=repr(exc), exc_info=exc)
            return f"could not be rendered: {exc!r}"
        return wire

    async def _render(self, conn: asyncpg.Connection, message: OutboxMessage) -> list[OutboxMessage]:
        kind = reference_kind(message)
        if kind is None:
            return [message]
        # A savepoint: a renderer's failed statement must not abort the transaction the batch is claimed in.
        async with conn.transaction():
            return await self._renderers[kind](conn, message)

    async def _publish(self, ready: list[_Ready]) -> dict[int, str]:
        """Publish the messages of ``ready``; returns the rows of those the broker or the producer refused
        for good, with the refusal. Raises on any other failure (the batch is then retried as a whole)."""
        flat = [(r.outbox_id, m) for r in ready for m in r.messages]
        messages = [m for _, m in flat]
        failed = await self._send(messages)
        if not failed:
            return {}
        # A refusal fails every message of its batch: send each of those alone to find the ones refused. The
        # rest is published twice, which consumers, idempotent, take as once.
        positions = sorted({p for batch, _ in failed for p in batch})
        log.warning("relay.batch_refused", error=repr(failed[0][1]), messages=len(positions))
        alone = await asyncio.gather(*(self._send([messages[p]]) for p in positions), return_exceptions=True)
        reasons: dict[int, str] = {}
        for position, result in zip(positions, alone, strict=True):
            if isinstance(result, BaseException):
                raise result
            if result:
                reasons.setdefault(flat[position][0], f"refused by Kafka: {describe_refusal(result[0][1])}")
        return reasons

    async def _send(self, messages: list[WireMessage]) -> list[tuple[list[int], KafkaError]]:
        """Send ``messages`` and wait for every delivery; returns the deliveries refused for good (the
        positions of their messages, and the refusal). Raises any other failure."""
        if not messages:
            return []
        assert self._producer is not None, "run() starts the producer"
        try:
            deliveries = await deliver_in_batches(self._producer, messages)
        except KafkaError as exc:  # the producer's own check, before anything was queued for this message
            if not refused_for_good(exc):
                raise
            return [(list(range(len(messages))), exc)]
        # A stuck delivery must not hold the claimed rows forever: fail the batch, roll back, retry.
        results = await asyncio.wait_for(
            asyncio.gather(*(d.future for d in deliveries), return_exceptions=True), timeout=self._publish_timeout_s
        )
        refused: list[tuple[list[int], KafkaError]] = []
        for delivery, result in zip(deliveries, results, strict=True):
            if isinstance(result, BaseException):
                if not (isinstance(result, KafkaError) and refused_for_good(result)):
                    raise result
                refused.append((delivery.positions, result))
        return refused

    async def measure_backlog(self) -> None:
        """Export, per topic of this relay, the messages waiting, the age of the oldest, and the rows parked."""
        async with self._db.read() as conn:
            backlog = await OutboxStore(conn).backlog_by_topic(self._topics)
        for topic, b in backlog.items():
            OUTBOX_BACKLOG.labels(topic).set(b.waiting)
            OUTBOX_OLDEST_AGE.labels(topic).set(b.oldest_age_s)
            OUTBOX_PARKED.labels(topic).set(b.parked)

    async def _purge_now_and_then(self) -> None:
        """Relayed messages are kept a day for inspection, then deleted, so the outbox does not grow forever."""
        if time.monotonic() - self._purged_at < self._purge_every_s:
            return
        self._purged_at = time.monotonic()
        purged = await self._db.run(lambda conn: OutboxStore(conn).purge_relayed(self._topics, self._keep_relayed_s))
        if purged:
            log.info("relay.purged", messages=purged)

    async def _measure_backlog_now_and_then(self) -> None:
        """Never raises: a backlog that cannot be measured must not stop relaying."""
        if time.monotonic() - self._backlog_measured_at < self._backlog_every_s:
            return
        self._backlog_measured_at = time.monotonic()
        try:
            await self.measure_backlog()
            self._measure_guard.succeeded()
        except TRANSIENT as exc:
            log.debug("relay.backlog_unmeasured", error=repr(exc))
        except Exception as exc:
            self._measure_guard.failed(exc)  # counted and logged; the next try is in backlog_every_s anyway

    async def run(self) -> None:
        """Relay until stopped; the producer is started here so a broker that is down at
        start-up delays relaying without stopping the service from accepting events. No error
        ends it: what it did not expect is logged, counted (warmbee_loop_failures_total{loop="relay"})
        and backed off like a lost broker."""
        while not self._stopping.is_set():
            await self._measure_backlog_now_and_then()
            try:
                if self._producer is None:
                    await self._start_producer()
                    continue
                await self._purge_now_and_then()
                relayed = await self.relay_once()
            except (KafkaError, *TRANSIENT) as exc:
                delay = self._guard.failed(exc, expected=True)
                if isinstance(exc, KafkaError | TimeoutError):
                    # A fresh producer forgets stale metadata (a broker that came back with other topics).
                    await self.close()
                await pause(self._stopping, delay)
                continue
            except Exception as exc:
                await pause(self._stopping, self._guard.failed(exc))
                continue
            self._guard.succeeded()
            if relayed < self._batch_max:
                await pause(self._stopping, self._idle_s)

    async def _start_producer(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            producer = self._make_producer()
            try:
                await producer.start()
                self._producer = producer
                return
            except Exception as exc:
                expected = isinstance(exc, KafkaError | OSError)
                try:
                    await producer.stop()
                except Exception as stop_exc:  # a producer half started may fail to stop too
                    log.debug("relay.producer_stop_failed", error=repr(stop_exc))
                failures += 1
                delay = min(0.2 * 2**failures, 5.0)
                if expected:
                    log.warning("relay.broker_unreachable", error=repr(exc), retry_in_s=delay)
                else:
                    self._guard.failed(exc)
                await self._measure_backlog_now_and_then()  # the backlog grows while the broker is away
                await pause(self._stopping, delay)

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Stop the producer (the next step of ``run`` starts another); never raises."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await producer.stop()
            except Exception as exc:
                log.warning("relay.producer_stop_failed", error=repr(exc))

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
        max_message_bytes=settings.kafka_max_request_bytes,
    )
