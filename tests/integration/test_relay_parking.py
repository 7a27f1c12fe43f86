"""A row that can never be published is parked with its reason and the rows after it go out; headers are
bounded; the relay loop survives what it did not expect. Real PostgreSQL and a real broker (Tansu, started
here on a port of its own with a schema registry, so the broker itself refuses a record as Kafka would)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from libs.ledger.feed import ENTRIES, render_entries
from libs.platform.db import Connection, Database
from libs.platform.kafka import client_options, create_topics, make_producer, wait_for_broker
from libs.platform.localstack import ROOT, LocalStack
from libs.platform.outbox_store import OutboxMessage, OutboxStore, reference
from libs.platform.relay import HEADER_VALUE_MAX_BYTES, OutboxRelay
from libs.platform.settings import Settings
from tests.conftest import PORT_BASE

BROKER_PORT = PORT_BASE + 1094  # this module's own broker: the e2e stack's may be running at the same time
STRICT_TOPIC = f"strict-{uuid.uuid4().hex[:8]}"  # values must be {"n": <integer>}: the broker refuses others
LOG_DIR = ROOT / "test-artifacts" / "relay-parking"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def broker_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{BROKER_PORT}", "topic_partitions": 3})


@pytest.fixture(scope="module")
async def broker(broker_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    """Tansu with a JSON schema for STRICT_TOPIC; it reads the registry relative to its working directory."""
    home = tmp_path_factory.mktemp("tansu")
    (home / "schema").mkdir()
    schema = {"type": "object", "properties": {"value": {"type": "object", "required": ["n"]}}}
    (home / "schema" / f"{STRICT_TOPIC}.json").write_bytes(orjson.dumps(schema))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    process = spawn_broker(broker_settings, home)
    try:
        await wait_for_broker(broker_settings)
        yield broker_settings
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(home, ignore_errors=True)


def spawn_broker(settings: Settings, home: Path) -> subprocess.Popen[bytes]:
    command = [*LocalStack(settings, LOG_DIR).broker_command(), "--schema-registry", "file://./schema"]
    with (LOG_DIR / "broker.log").open("ab") as out:
        return subprocess.Popen(command, cwd=home, stdout=out, stderr=out, start_new_session=True)


@pytest.fixture
async def producer(broker: Settings) -> AsyncIterator[AIOKafkaProducer]:
    started = make_producer(broker)
    await started.start()
    yield started
    await started.stop()


def relay_on(db: Database, producer: AIOKafkaProducer, topics: list[str], **options: Any) -> OutboxRelay:
    relay = OutboxRelay(db, lambda: producer, topics, **options)
    relay._producer = producer  # started by the fixture
    return relay


async def new_topics(settings: Settings, *names: str) -> None:
    await create_topics(settings, list(names))


async def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    """Every record of ``topic``: waits until ``expected`` have come, then a little longer for any extra."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=300)
            records += [r for rs in fetched.values() for r in rs]
        fetched = await consumer.getmany(timeout_ms=500)  # anything that should not be there
        records += [r for rs in fetched.values() for r in rs]
        return records
    finally:
        await consumer.stop()


async def add(db: Database, messages: list[OutboxMessage]) -> list[int]:
    async def go(conn: Connection) -> list[int]:
        before = await conn.fetchval("SELECT coalesce(max(outbox_id), 0) FROM outbox")
        await OutboxStore(conn).add(messages)
        rows = await conn.fetch("SELECT outbox_id FROM outbox WHERE outbox_id > $1 ORDER BY outbox_id", before)
        return [r["outbox_id"] for r in rows]

    return await db.run(go)


async def state(db: Database, outbox_id: int) -> tuple[bool, bool, str]:
    """(relayed, parked, reason or "") of one row."""
    async with db.read() as conn:
        row = await conn.fetchrow(
            "SELECT relayed_at IS NOT NULL AS relayed, parked_at IS NOT NULL AS parked, park_reason"
            " FROM outbox WHERE outbox_id = $1",
            outbox_id,
        )
    assert row is not None
    return row["relayed"], row["parked"], row["park_reason"] or ""


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_row_too_large_to_publish_is_parked_counted_and_the_rows_after_it_go_out(
    db: Database, broker: Settings, producer: AIOKafkaProducer
) -> None:
    topic = f"t-big-{uuid.uuid4().hex[:8]}"
    await new_topics(broker, topic)
    ids = await add(
        db,
        [
            OutboxMessage(topic, b"rider-1", b"before"),
            OutboxMessage(topic, b"rider-1", b"x" * (2 * MiB)),  # an event accepted when 4 MiB were allowed
            OutboxMessage(topic, b"rider-1", b"after-1"),
            OutboxMessage(topic, b"rider-2", b"after-2"),
        ],
    )
    relay = relay_on(db, producer, [topic])
    parked_before = sample("warmbee_outbox_parked_total", topic=topic)

    assert await relay.relay_once() == 4
    assert await relay.relay_once() == 0  # the parked row is not claimed again

    records = await read_topic(broker, topic, expected=3)
    assert sorted(r.value for r in records) == [b"after-1", b"after-2", b"before"]
    relayed, parked, reason = await state(db, ids[1])
    assert (relayed, parked) == (False, True)
    assert "over the producer's limit of 1048576" in reason
    assert [await state(db, i) for i in (ids[0], ids[2], ids[3])] == [(True, False, "")] * 3

    await relay.measure_backlog()
    assert sample("warmbee_outbox_parked_messages", topic=topic) == 1
    assert sample("warmbee_outbox_parked_total", topic=topic) == parked_before + 1
    assert sample("warmbee_outbox_backlog_messages", topic=topic) == 0
    assert sample("warmbee_outbox_oldest_age_seconds", topic=topic) == 0  # its alert must not fire forever

    async with db.read() as conn:
        (listed,) = await OutboxStore(conn).parked(topic)
    assert (listed.outbox_id, listed.topic, listed.key, listed.size) == (ids[1], topic, b"rider-1", 2 * MiB + 7)

    # Once the limits are raised, the operator puts it back and it goes out.
    assert await db.run(lambda conn: OutboxStore(conn).unpark([ids[1]])) == [ids[1]]
    assert await db.run(lambda conn: OutboxStore(conn).unpark([ids[1]])) == []  # no longer parked
    roomy = make_producer(broker.model_copy(update={"kafka_max_request_bytes": 4 * MiB}))
    await roomy.start()
    try:
        assert await relay_on(db, roomy, [topic], max_message_bytes=4 * MiB).relay_once() == 1
    finally:
        await roomy.stop()
    assert await state(db, ids[1]) == (True, False, "")
    await relay.measure_backlog()
    assert sample("warmbee_outbox_parked_messages", topic=topic) == 0
    assert len(await read_topic(broker, topic, expected=4)) == 4


async def test_a_record_the_broker_refuses_is_parked_alone_and_the_rest_of_its_batch_goes_out(
    db: Database, broker: Settings, producer: AIOKafkaProducer
) -> None:
    await new_topics(broker, STRICT_TOPIC)
    values = [orjson.dumps({"n": n}) for n in range(6)]
    values.insert(3, orjson.dumps({"m": 3}))  # fails the topic's schema: Tansu answers INVALID_RECORD
    ids = await add(db, [OutboxMessage(STRICT_TOPIC, b"one-key", v) for v in values])  # one partition, one batch

    assert await relay_on(db, producer, [STRICT_TOPIC]).relay_once() == 7

    records = await read_topic(broker, STRICT_TOPIC, expected=6)
    assert sorted(orjson.loads(r.value)["n"] for r in records) == list(range(6))
    relayed, parked, reason = await state(db, ids[3])
    assert (relayed, parked) == (False, True)
    assert reason.startswith("refused by Kafka: ")
    assert all([(await state(db, i))[0] for i in ids if i != ids[3]])


async def test_a_topic_name_kafka_refuses_is_parked_at_once_instead_of_timing_out_forever(
    db: Database, broker: Settings, producer: AIOKafkaProducer
) -> None:
    topic, invalid = f"t-name-{uuid.uuid4().hex[:8]}", f"bad topic {uuid.uuid4().hex[:4]}!"
    await new_topics(broker, topic)
    ids = await add(db, [OutboxMessage(invalid, None, b"lost"), OutboxMessage(topic, None, b"kept")])

    started = time.monotonic()
    assert await relay_on(db, producer, [invalid, topic]).relay_once() == 2
    assert time.monotonic() - started < 5  # aiokafka would wait 40 s for its metadata, and again each retry

    assert [r.value for r in await read_topic(broker, topic, expected=1)] == [b"kept"]
    relayed, parked, reason = await state(db, ids[0])
    assert (relayed, parked) == (False, True)
    assert "is not one Kafka accepts" in reason


async def boom(conn: Connection, row: OutboxMessage) -> list[OutboxMessage]:
    raise RuntimeError("the renderer has a bug")


async def divides_by_zero(conn: Connection, row: OutboxMessage) -> list[OutboxMessage]:
    await conn.fetchval("SELECT 1 / 0")  # fails inside the relay's own transaction
    return []


async def test_a_reference_whose_rendering_fails_is_parked_with_the_error_and_the_rest_go_out(
    db: Database, broker: Settings, producer: AIOKafkaProducer
) -> None:
    topic = f"t-render-{uuid.uuid4().hex[:8]}"
    await new_topics(broker, topic)
    ids = await add(
        db,
        [
            reference(topic, "boom", b"[1]"),
            reference(topic, "div", b"[1]"),
            reference(topic, ENTRIES, b"{not a list of entries"),
            OutboxMessage(topic, b"k", b"plain"),
        ],
    )
    renderers = {"boom": boom, "div": divides_by_zero, ENTRIES: render_entries}

    assert await relay_on(db, producer, [topic], renderers=renderers).relay_once() == 4

    assert [r.value for r in await read_topic(broker, topic, expected=1)] == [b"plain"]
    reasons = [await state(db, i) for i in ids[:3]]
    assert all(not relayed and parked for relayed, parked, _ in reasons)
    assert "RuntimeError('the renderer has a bug')" in reasons[0][2]
    assert "DivisionByZeroError" in reasons[1][2]  # and the savepoint kept the transaction usable
    assert "could not be rendered: JSONDecodeError" in reasons[2][2]
    assert await state(db, ids[3]) == (True, False, "")


async def test_a_header_longer_than_the_bound_is_truncated_on_the_topic(
    db: Database, broker: Settings, producer: AIOKafkaProducer
) -> None:
    topic = f"t-hdr-{uuid.uuid4().hex[:8]}"
    await new_topics(broker, topic)
    reason = "could not be scored: " + "无效" * 50_000  # 300 kB of three-byte characters
    await add(
        db,
        [
            OutboxMessage(
                topic,
                b"k",
                b"dead letter",
                (("warmbee-dead-letter-reason", reason), ("warmbee-original-topic", "activity-events")),
            )
        ],
    )

    assert await relay_on(db, producer, [topic]).relay_once() == 1

    (record,) = await read_topic(broker, topic, expected=1)
    headers = dict(record.headers)
    assert headers["warmbee-original-topic"] == b"activity-events"
    truncated = headers["warmbee-dead-letter-reason"]
    assert len(truncated) <= HEADER_VALUE_MAX_BYTES
    text = truncated.decode("utf-8")  # still valid UTF-8
    assert text.startswith("could not be scored: 无效无效")
    assert text.endswith(f"…[truncated from {len(reason.encode())} bytes]")


async def test_the_relay_loop_survives_errors_it_did_not_expect_and_goes_on(
    settings: Settings, db: Database, broker: Settings
) -> None:
    topic = f"t-loop-{uuid.uuid4().hex[:8]}"
    await new_topics(broker, topic)
    calls = 0

    async def odd_once(conn: Connection, row: OutboxMessage) -> list[OutboxMessage]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MemoryError("odd, and may pass")  # neither parked nor a known transient error
        return [OutboxMessage(topic, b"k", b"rendered")]

    own_db = Database(settings)  # closed under the running relay below
    await own_db.open()
    relay = OutboxRelay(own_db, lambda: make_producer(broker), [topic], idle_s=0.02, renderers={"odd": odd_once})
    failures = sample("warmbee_loop_failures_total", loop="relay")
    ids = await add(db, [reference(topic, "odd", b"[1]")])
    running = asyncio.create_task(relay.run())
    try:

        async def relayed(outbox_id: int) -> None:
            deadline = time.monotonic() + 20
            while not (await state(db, outbox_id))[0]:
                assert not running.done(), running
                assert time.monotonic() < deadline, f"row {outbox_id} not relayed"
                await asyncio.sleep(0.05)

        await relayed(ids[0])
        assert calls >= 2
        assert sample("warmbee_loop_failures_total", loop="relay") >= failures + 1

        # The pool gone under it (RuntimeError, not a database error it expects): counted, and it goes on.
        await own_db.close()
        await asyncio.sleep(0.5)
        assert not running.done()
        assert sample("warmbee_loop_failures_total", loop="relay") >= failures + 2
        await own_db.open()
        (later,) = await add(db, [OutboxMessage(topic, b"k", b"after the pool came back")])
        await relayed(later)
    finally:
        relay.stop()
        await asyncio.wait_for(running, timeout=10)
        await relay.close()
        await own_db.close()
    assert {r.value for r in await read_topic(broker, topic, expected=2)} == {b"rendered", b"after the pool came back"}


def warmbee(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_operators_list_parked_rows_and_put_one_back_with_the_cli(db: Database, settings: Settings) -> None:
    topic = f"t-cli-{uuid.uuid4().hex[:8]}"
    stuck, other = await add(db, [OutboxMessage(topic, b"rider-7", b"v" * 300), OutboxMessage(topic, None, b"w")])
    await db.run(lambda conn: OutboxStore(conn).park({stuck: "a message of 2097300 bytes, over the limit"}))

    listed = await asyncio.to_thread(warmbee, settings, "outbox", "parked", "--topic", topic)
    assert listed.returncode == 0, listed.stderr
    (line,) = [row for row in listed.stdout.splitlines() if row.strip().startswith(f"{stuck} ")]
    assert topic in line
    assert "rider-7" in line
    assert " 307 " in line  # key and value bytes
    assert line.endswith("a message of 2097300 bytes, over the limit")
    assert not [row for row in listed.stdout.splitlines() if row.strip().startswith(f"{other} ")]

    retried = await asyncio.to_thread(warmbee, settings, "outbox", "retry", str(stuck))
    assert retried.returncode == 0, retried.stderr
    assert f"back in line: {stuck}" in retried.stdout
    assert (await state(db, stuck))[1:] == (False, "")
    again = await asyncio.to_thread(warmbee, settings, "outbox", "retry", str(stuck))
    assert again.returncode == 1  # not parked any more: said so
    assert "not parked" in again.stderr
    empty = await asyncio.to_thread(warmbee, settings, "outbox", "parked", "--topic", topic)
    assert "no parked outbox rows" in empty.stdout
