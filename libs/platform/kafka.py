"""Kafka clients configured from settings, topic creation, and the batch consumer loop.

The consumer commits offsets only after the handler's database transaction has committed:
a crash between the two redelivers the batch, and the handler's idempotency makes that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from libs.platform import failpoints
from libs.platform.loops import LoopGuard, pause, write_isolating
from libs.platform.metrics import CONSUMER_LAG
from libs.platform.settings import Settings

log = structlog.get_logger(__name__)


class Message(Protocol):
    """The parts of a consumed Kafka record that warmbee reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...  # CloudEvents binary mode: ce_* here


@dataclass(frozen=True, slots=True)
class MadeRecord:
    """A ``Message`` made in this process rather than consumed: events scored straight into a database
    (the replay benchmark's seeding, the tests' records)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...] = ()


BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]
# Sets one message aside that the handler cannot write for a reason that does not pass (a value the
# database refuses, a defect meeting that value), so that the rest of its batch and partition go on.
Quarantine = Callable[[Message, Exception], Awaitable[None]]


def client_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()  # the system's trusted CAs
    if settings.kafka_sasl_mechanism:
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    return options


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=settings.kafka_max_request_bytes,
    )


Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One batch on its way: the future the producer resolves, and where its messages stood in the input
    (a refused batch fails every message in it, so a caller that must find the refused one needs these)."""

    future: asyncio.Future[Any]
    positions: list[int]


async def send_in_batches(
    producer: AIOKafkaProducer, messages: Iterable[tuple[str, bytes | None, bytes, list[Header]]]
) -> list[asyncio.Future[Any]]:
    """Queue (topic, key, value, headers) messages in order, in batches built per partition (the key
    picks the partition, as the producer's own partitioner would): one ``send`` per message cost most
    of a relay's or a load generator's time. Returns the deliveries to wait for."""
    return [d.future for d in await deliver_in_batches(producer, messages)]


async def deliver_in_batches(
    producer: AIOKafkaProducer, messages: Iterable[tuple[str, bytes | None, bytes, list[Header]]]
) -> list[Delivery]:
    """``send_in_batches``, telling which messages each delivery carries."""
    partitioner = DefaultPartitioner()
    partitions: dict[str, list[int]] = {}
    batches: dict[tuple[str, int], tuple[BatchBuilder, list[int]]] = {}
    deliveries: list[Delivery] = []
    for position, (topic, key, value, headers) in enumerate(messages):
        if topic not in partitions:
            partitions[topic] = sorted(await producer.partitions_for(topic))
        partition = partitioner(key, partitions[topic], partitions[topic])
        open_batch = batches.get((topic, partition))
        if open_batch is not None and open_batch[0].append(key=key, value=value, timestamp=None, headers=headers):
            open_batch[1].append(position)
            continue
        if open_batch is not None:  # full: send it and start another
            future = await producer.send_batch(open_batch[0], topic, partition=partition)
            deliveries.append(Delivery(future, open_batch[1]))
        batch = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers):
            batches[topic, partition] = (batch, [position])
        else:  # larger than a batch: on its own
            batches.pop((topic, partition), None)
            future = await producer.send(topic, key=key, value=value, headers=headers, partition=partition)
            deliveries.append(Delivery(future, [position]))
    for (topic, partition), (batch, positions) in batches.items():
        deliveries.append(Delivery(await producer.send_batch(batch, topic, partition=partition), positions))
    return deliveries


async def create_topics(settings: Settings, topics: Sequence[str], replication: int = 1) -> list[str]:
    """Create missing topics with the configured partitions; returns those created now."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created it meanwhile
                await admin.create_topics([NewTopic(t, settings.topic_partitions, replication) for t in missing])
        return missing
    finally:
        await admin.close()


async def wait_for_broker(settings: Settings, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


async def broker_reachable(producer: AIOKafkaProducer) -> bool:
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=2)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance waits for the batch in hand to be written and committed before partitions move."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._lock:
            log.info("consumer.partitions_revoked", partitions=sorted(str(tp) for tp in revoked))
            for tp in revoked:  # their new owner reports their lag now
                with contextlib.suppress(KeyError):
                    CONSUMER_LAG.remove(tp.topic, str(tp.partition))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("consumer.partitions_assigned", partitions=sorted(str(tp) for tp in assigned))


class BatchConsumer:
    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        handler: BatchHandler,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._handler = handler
        self._quarantine = quarantine
        self._guard = LoopGuard("worker_lane")
        self._lock = asyncio.Lock()
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.worker_batch_max,
            fetch_max_wait_ms=settings.worker_batch_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=max(settings.consumer_session_timeout_ms // 3, 300),
        )
        self._stopping = asyncio.Event()
        self._failures = 0
        self._lag_measured_at = float("-inf")

    async def run(self) -> None:
        self._consumer.subscribe([self._topic], listener=_FinishBatchOnRevoke(self._lock))
        await self._consumer.start()
        try:
            while not self._stopping.is_set():
                try:
                    await self._fetch_and_process()
                    self._guard.succeeded()
                except Exception as exc:  # whatever it was, this process goes on consuming
                    await pause(self._stopping, self._guard.failed(exc, expected=isinstance(exc, KafkaError)))
        finally:
            await self._consumer.stop()

    async def _fetch_and_process(self) -> None:
        batches = await self._consumer.getmany(
            timeout_ms=self._settings.worker_batch_wait_ms,
            max_records=self._settings.worker_batch_max * self._settings.worker_concurrency,
        )
        await self._measure_lag()
        if batches:
            async with self._lock:
                await self._process(batches)

    async def _measure_lag(self, every_s: float = 1.0) -> None:
        """Per assigned partition, the messages this consumer has not fetched yet: the partition's
        high-water mark (from the last fetch response) minus the consumer's position."""
        if time.monotonic() - self._lag_measured_at < every_s:
            return
        self._lag_measured_at = time.monotonic()
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:  # nothing fetched from it yet
                continue
            try:
                position = await asyncio.wait_for(self._consumer.position(tp), timeout=1)
            except (KafkaError, TimeoutError):  # revoked meanwhile, or its offset is being reset
                continue
            if position > highwater:
                # The partition's log is shorter than where we are: the broker lost it (the local broker
                # keeps topics in memory) or truncated it. Read it again from the start, as
                # auto_offset_reset=earliest would; scoring is idempotent, so nothing counts twice.
                log.warning("consumer.log_truncated", partition=str(tp), position=position, highwater=highwater)
                await self._consumer.seek_to_beginning(tp)
                continue
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))

    async def _process(self, batches: dict[TopicPartition, list[Message]]) -> None:
        """Write the fetched records as up to ``worker_concurrency`` batches at once, each from
        partitions of its own, then commit the offsets of those that were written."""
        lanes = split_by_partition(batches, self._settings.worker_concurrency)
        written = await asyncio.gather(*(self._write(lane) for lane in lanes))
        if all(written):
            self._failures = 0
        if any(written):
            failpoints.reach("after_ledger_commit")
        offsets = {
            tp: msgs[-1].offset + 1 for lane, ok in zip(lanes, written, strict=True) if ok for tp, msgs in lane.items()
        }
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                # The group moved on (rebalance): the new owner re-reads these; scoring is idempotent.
                log.warning("consumer.commit_failed", error=repr(exc))
        if not all(written):
            self._failures += 1
            await asyncio.sleep(min(0.1 * 2**self._failures, 5.0))

    async def _write(self, lane: dict[TopicPartition, list[Message]]) -> bool:
        messages = [m for tp in sorted(lane, key=lambda t: t.partition) for m in lane[tp]]
        try:
            if self._quarantine is None:
                await self._handler(messages)
            else:  # one message that cannot be written, alone, goes to quarantine; the rest is written
                await write_isolating(messages, self._handler, self._quarantine)
        except Exception:
            # What was not written fails for a reason that passes (a database outage, a deadlock): rewind
            # to the lane's first offsets and try again, so scoring is delayed but nothing is skipped or
            # committed past. Halves already written come again and change nothing (idempotent).
            log.exception("consumer.batch_failed", messages=len(messages), failures=self._failures + 1)
            for tp, msgs in lane.items():
                self._consumer.seek(tp, msgs[0].offset)
            return False
        return True

    def stop(self) -> None:
        self._stopping.set()


def split_by_partition(
    batches: dict[TopicPartition, list[Message]], lanes: int
) -> list[dict[TopicPartition, list[Message]]]:
    """Partitions (never split) shared among at most ``lanes`` groups of about equal size: the
    largest partition first, each to the group that has fewest messages so far."""
    groups: list[dict[TopicPartition, list[Message]]] = [{} for _ in range(min(lanes, len(batches)))]
    sizes = [0] * len(groups)
    for tp, msgs in sorted(batches.items(), key=lambda item: (-len(item[1]), item[0].partition)):
        smallest = sizes.index(min(sizes))
        groups[smallest][tp] = msgs
        sizes[smallest] += len(msgs)
    return [g for g in groups if g]
